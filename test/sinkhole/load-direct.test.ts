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

t.test('CompactEntries: the view reads back exactly what the parser made, and builds the same matcher', async (t) => {
  const { parseBlocklist } = await import('../../src/policy/parse.js')
  const { CompactEntries } = await import('../../src/policy/matcher-builder.js')
  const { buildMatcher } = await import('../../src/policy/matcher.js')
  const now = new Date()
  const text = [
    'plain.example', '@@ok.plain.example', '*.wild.example # why', 'alert.example mode=alert ; watch',
    '203.0.113.0/24', '2001:db8::/48 expires=2999-01-01', '0.0.0.0/4 force', 'far.example expires=2999-01-01T00:00:00Z',
    'plain.example ; again',
  ].join('\n')
  const a = parseBlocklist(text, 'a.txt', { now, seen: false }).entries
  const b = parseBlocklist('other.example\n', 'dir/b.txt', { now, seen: false }).entries
  const api = { ...a[0]!, source: 'api:alice', id: 'e1', added: '2026-01-01T00:00:00Z', actor: 'alice' }
  const store = new CompactEntries()
  const oddId = { ...b[0]!, value: 'odd.example', id: 'F-not-a-file-id' }
  const all = [...a, ...b, api, oddId]
  // a.txt through the parser's onEntry (file and line given, as the sinkhole does), the rest by source.
  const viaHook = parseBlocklist(text, 'a.txt', { now, seen: false, onEntry: (e, file, line) => store.add(e, file, line) })
  t.same(viaHook.entries, [], 'onEntry: entries are handed over, not collected')
  for (const e of [...b, api, oddId]) store.add(e)
  t.equal(store.length, all.length)
  const view = store.view()
  t.equal(view.length, all.length)
  t.same([...view], all, 'iteration: deep-equal entries, ids included')
  t.same(view[2], all[2])
  t.equal(view[all.length], undefined)
  t.same(view.map((e) => e.source), all.map((e) => e.source))
  const fromView = buildMatcher(view, { now })
  const fromArray = buildMatcher(all, { now })
  for (const q of ['plain.example', 'ok.plain.example', 'x.wild.example', 'wild.example', 'alert.example', 'other.example', 'free.example', 'far.example']) {
    t.same(fromView.matchName(q), fromArray.matchName(q), q)
  }
  for (const ip of ['203.0.113.9', '2001:db8::1', '1.2.3.4', '198.51.100.1']) t.same(fromView.matchIp(ip), fromArray.matchIp(ip), ip)
  t.ok(fromView.matchName('plain.example'), 'a listed name is found (the comparison is not vacuous)')
  t.notOk(fromView.matchName('free.example'))
})
