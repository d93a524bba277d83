// Terminal escape injection, end to end with real processes: a container-style DNS query whose name
// carries ESC, BEL and a C1 CSI byte reaches a real agent's sinkhole, the hit reaches a real server,
// and `egress-guard hits` / `hosts` / `block ls` (the real CLI) print the escapes as text, never a raw
// control byte; --json gives the exact bytes back. An agent token's report with control characters is
// refused (400 EG_CONTROL_CHAR); a value already in the store is still shown escaped.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, runCli } from '../helpers/cli.js'
import { freePort, startDnsmasq } from '../helpers/dnsmasq.js'
import { requires, capabilities } from '../helpers/caps.js'
import { until } from '../helpers/wait.js'
import { openLowdbStore } from '../../src/store/lowdb-store.js'

/** Any C0 control but newline, DEL, C1, or a bidi control: what must never reach the terminal. */
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/

function start(t: { teardown: (f: () => unknown) => void }, args: string[]): ChildProcess & { out: () => string } {
  const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { out: () => string }
  let out = ''
  c.stdout!.on('data', (d) => (out = (out + String(d)).slice(-20000)))
  c.stderr!.on('data', (d) => (out = (out + String(d)).slice(-20000)))
  c.out = () => out
  t.teardown(() => void (c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')))
  return c
}

/** An A query for the labels given as raw bytes, built by hand (RFC 1035 4.1): any byte in a label. */
function query(labels: Buffer[], id = 0x1234): Buffer {
  const header = Buffer.alloc(12)
  header.writeUInt16BE(id, 0)
  header.writeUInt16BE(0x0100, 2) // RD
  header.writeUInt16BE(1, 4) // one question
  const name = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])])
  return Buffer.concat([header, name, Buffer.from([0, 1, 0, 1])]) // A, IN
}

function ask(port: number, packet: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    const timer = setTimeout(() => {
      s.close()
      reject(new Error('no answer from the sinkhole'))
    }, 3000)
    s.on('message', (m) => {
      clearTimeout(timer)
      s.close()
      resolve(m)
    })
    s.send(packet, port, '127.0.0.1')
  })
}

t.test('hostile names and reports reach the operator escaped', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-escapes-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const data = join(tmp, 'data')
  const lists = join(tmp, 'lists')
  mkdirSync(lists)
  // Whoever edits the blocklist repository writes the reasons: the parser blanks C0/C1 controls in
  // them, a bidi override gets through to the outputs.
  writeFileSync(join(lists, 'base.txt'), 'evil.example # miner \u202eloop\n')
  writeFileSync(join(tmp, 'hosts'), '127.0.0.1 localhost\n')
  const files = { admin: join(tmp, 'admin.token'), agent: join(tmp, 'agent.token') }
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', files.admin])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', 'esc1', '--data', data, '--out', files.agent])).code, 0)
  // A report stored before the API refused control characters (or by an older server).
  const store = await openLowdbStore(data)
  await store.upsertAgent({
    host: 'old1', version: 0, etag: 'x', counts: { entries: 0, domains: 0, nets: 0, v4: 0, v6: 0 }, repairs: 0,
    drift: ['\u009b31mred'], errors: ['\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07'], agentVersion: '0.0\x1b[8m', lastSeen: new Date().toISOString(),
  })
  await store.close()

  // A real upstream that answers at once, so the agent's first apply does not wait on timeouts.
  const dns = await startDnsmasq(t, { hosts: { 'evil.example': ['198.51.100.66'] } })
  const port = await freePort()
  const dnsPort = await freePort()
  const url = `http://127.0.0.1:${port}`
  const env = { EG_SERVER: url, EG_TOKEN_FILE: files.admin, EG_CONFIG: '' }
  start(t, ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`, '--admin-token-file', files.admin, '--log-level', 'warn'])
  await until('server health', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 15_000)
  const agent = start(t, ['agent', '--server', url, '--token-file', files.agent, '--host', 'esc1', '--state-dir', join(tmp, 'state'), '--backend', 'dry-run',
    '--hosts-file', join(tmp, 'hosts'), '--upstream', `127.0.0.1:${dns.port}`, '--sinkhole-listen', `127.0.0.1:${dnsPort}`, '--hit-log', join(tmp, 'hits.jsonl'),
    '--report-interval', '1s', '--log-level', 'info'])
  t.teardown(() => void agent.kill('SIGTERM'))
  await until('agent enforces the policy', () => /"policy enforced"/.test(agent.out()), 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))

  // The query: x ESC ] 0 ; p w n e d BEL . CSI(0x9b) 3 1 m . evil . example
  const labels = [Buffer.from('x\x1b]0;pwned\x07', 'latin1'), Buffer.from([0x9b, 0x33, 0x31, 0x6d]), Buffer.from('evil'), Buffer.from('example')]
  const answer = await ask(dnsPort, query(labels))
  t.equal(answer.readUInt16BE(0), 0x1234, 'the sinkhole answered')
  t.equal(answer.readUInt16BE(2) & 0xf, 0, 'NOERROR')
  t.ok(answer.subarray(-4).equals(Buffer.from([0, 0, 0, 0])), 'with the sinkhole address 0.0.0.0')
  const name = 'x\x1b]0;pwned\x07.\u009b31m.evil.example' // one character per byte, as the sinkhole reads it
  const adminTok = readFileSync(files.admin, 'utf8').trim()
  await until('hit on the server', async () => {
    const r = await fetch(`${url}/v1/hits?since=1h`, { headers: { authorization: `Bearer ${adminTok}` } })
    return ((await r.json()) as { hits: Array<{ name: string }> }).hits.some((h) => h.name === name)
  }, 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))

  const hits = await runCli(['hits'], { env })
  t.equal(hits.code, 0, hits.stderr)
  t.ok(hits.stdout.includes('x\\x1b]0;pwned\\x07.\\x9b31m.evil.example'), `hits shows the name escaped:\n${hits.stdout}`)
  t.ok(hits.stdout.includes('miner \\u202eloop'), 'and the reason from the blocklist')
  t.notOk(RAW_CONTROL.test(hits.stdout + hits.stderr), 'no raw ESC, BEL or C1 byte reaches the terminal')
  const hitsJson = await runCli(['hits', '--json'], { env })
  t.equal(hitsJson.code, 0, hitsJson.stderr)
  t.notOk(RAW_CONTROL.test(hitsJson.stdout), '--json: no raw control byte either (C1 as \\u009b)')
  t.ok((JSON.parse(hitsJson.stdout) as { hits: Array<{ name: string }> }).hits.some((h) => h.name === name), '--json gives the name back exactly')

  // An agent token cannot store control characters any more: 400 with a code, nothing changes.
  const agentTok = readFileSync(files.agent, 'utf8').trim()
  const refused = await fetch(`${url}/v1/report`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agentTok}`, 'content-type': 'application/json' },
    body: JSON.stringify({ host: 'esc1', version: 1, etag: 'x', counts: { entries: 0, domains: 0, nets: 0, v4: 0, v6: 0 }, repairs: 0, drift: ['\x1b[2J'], errors: ['\x1b]0;pwned\x07'], agentVersion: '1' }),
  })
  t.equal(refused.status, 400)
  t.equal(((await refused.json()) as { code: string }).code, 'EG_CONTROL_CHAR')

  const hosts = await runCli(['hosts'], { env })
  t.equal(hosts.code, 0, hosts.stderr)
  t.match(hosts.stdout, /^old1 .*\\x9b31mred.*\\x1b\]8;;https:\/\/evil\.example\/\\x07click\\x1b\]8;;\\x07.*0\.0\\x1b\[8m$/m, `the stored report is shown escaped:\n${hosts.stdout}`)
  t.match(hosts.stdout, /^esc1 /m, 'the real agent is listed')
  t.notOk(RAW_CONTROL.test(hosts.stdout + hosts.stderr), 'no raw control byte')
  const hostsJson = await runCli(['hosts', '--json'], { env })
  t.notOk(RAW_CONTROL.test(hostsJson.stdout), '--json: no raw control byte')
  t.same((JSON.parse(hostsJson.stdout) as { hosts: Array<{ host: string; drift: string[] }> }).hosts.find((h) => h.host === 'old1')?.drift, ['\u009b31mred'], 'exact in JSON')

  const ls = await runCli(['block', 'ls'], { env })
  t.equal(ls.code, 0, ls.stderr)
  t.ok(ls.stdout.includes('miner \\u202eloop'), 'block ls: the reason escaped')
  t.notOk(RAW_CONTROL.test(ls.stdout + ls.stderr), 'no raw control byte')
  t.equal(agent.exitCode, null, 'the agent kept running')
})
