// The sinkhole command builds its matcher straight from the parsed lines (no buildPolicy, no
// duplicate map): duplicates across files, expired lines, allows and `*.` entries must still answer
// exactly as the merged policy would, checked with dig against the real process.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI } from '../helpers/cli.js'
import { dig, freePort, startDnsmasq } from '../helpers/dnsmasq.js'

function tmp(t: Test): string {
  const d = mkdtempSync(join(tmpdir(), `eg-sinkhole-load-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('direct load: duplicates, expiry, allow and *. answer as the merged policy would', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const dm = await startDnsmasq(t, {
    hosts: {
      'dup.example': ['192.0.2.20'], 'old.example': ['192.0.2.21'], 'keep.example': ['192.0.2.22'],
      'www.wild.example': ['192.0.2.23'], 'wild.example': ['192.0.2.24'], 'ok.bad.example': ['192.0.2.25'], 'free.example': ['192.0.2.26'],
    },
  })
  const dir = tmp(t)
  const lists = join(dir, 'lists')
  mkdirSync(lists)
  // dup.example twice across files (first with a reason); old.example only expired; keep.example once
  // expired and once live (the live duplicate must still block); wild: subdomains only.
  writeFileSync(join(lists, 'a.txt'), 'dup.example # first reason\nold.example expires=2001-01-01\nkeep.example expires=2001-01-01\n*.wild.example\nbad.example\n')
  writeFileSync(join(lists, 'b.txt'), 'dup.example # second reason\nkeep.example\n@@ok.bad.example\n')
  const port = await freePort()
  const child = spawn(process.execPath, [CLI, 'sinkhole', '--listen', `127.0.0.1:${port}`, '--upstream', `${dm.address}:${dm.port}`, '--blocklists', lists, '--block-mode', 'nxdomain', '--log-level', 'warn', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += String(d)))
  const deadline = Date.now() + 30_000
  while (!out.includes('\n') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  const ready = JSON.parse(out.split('\n')[0]!) as { entries: number }
  t.equal(ready.entries, 6, 'entries counts loaded lines (duplicates included, expired lines excluded)')
  const status = async (name: string): Promise<string> => (await dig('127.0.0.1', port, name, 'A')).status
  t.equal(await status('dup.example'), 'NXDOMAIN', 'a name listed twice blocks')
  const ede = (await dig('127.0.0.1', port, 'dup.example', 'A')).ede.join('')
  t.match(ede, /first reason/, 'the first line in file order is the one reported')
  t.equal(await status('old.example'), 'NOERROR', 'an expired line does not block')
  t.equal(await status('keep.example'), 'NXDOMAIN', 'an expired duplicate does not hide a live one')
  t.equal(await status('www.wild.example'), 'NXDOMAIN', '*. blocks names under it')
  t.equal(await status('wild.example'), 'NOERROR', '*. does not block the name itself')
  t.equal(await status('ok.bad.example'), 'NOERROR', 'an allow in another file wins over the block of its parent')
  t.equal(await status('free.example'), 'NOERROR', 'unlisted names are forwarded')
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
})
