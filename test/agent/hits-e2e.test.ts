// Hits end to end with real processes: an agent with its embedded sinkhole answers a blocked lookup
// (real dig), the hit reaches the server (GET /v1/hits names the host); with the server killed the next
// hit waits in the on-disk spool and is uploaded once the server is back on the same data dir.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { requires, capabilities } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { dig, freePort } from '../helpers/dnsmasq.js'
import { until } from '../helpers/wait.js'

function start(t: { teardown: (f: () => unknown) => void }, args: string[]): ChildProcess & { out: () => string } {
  const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { out: () => string }
  let out = ''
  c.stdout!.on('data', (d) => (out = (out + String(d)).slice(-20000)))
  c.stderr!.on('data', (d) => (out = (out + String(d)).slice(-20000)))
  c.out = () => out
  t.teardown(() => void (c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')))
  return c
}

t.test('sinkhole hits reach the server, via the spool while it is down', async (t) => {
  if (!requires(t, capabilities.tool('dig'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-hits-e2e-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const data = join(tmp, 'data')
  const lists = join(tmp, 'lists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'base.txt'), 'evil.example # miner pool\n')
  writeFileSync(join(tmp, 'hosts'), '127.0.0.1 localhost\n')
  const port = await freePort()
  const dnsPort = await freePort()
  const url = `http://127.0.0.1:${port}`
  const adminFile = join(tmp, 'admin.token')
  const agentFile = join(tmp, 'agent.token')
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', adminFile])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', 'hits1', '--data', data, '--out', agentFile])).code, 0)
  const serverArgs = ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`, '--admin-token-file', adminFile, '--log-level', 'warn']
  let server = start(t, serverArgs)
  const healthy = () => until('server health', async () => {
    try {
      return (await fetch(`${url}/healthz`)).ok
    } catch {
      return false
    }
  }, 15_000)
  await healthy()
  const spool = join(tmp, 'state', 'hits-spool.jsonl')
  const agent = start(t, ['agent', '--server', url, '--token-file', agentFile, '--host', 'hits1', '--state-dir', join(tmp, 'state'), '--backend', 'dry-run',
    '--hosts-file', join(tmp, 'hosts'), '--upstream', '127.0.0.1:9', '--sinkhole-listen', `127.0.0.1:${dnsPort}`, '--hit-log', join(tmp, 'hits.jsonl'),
    '--retry-max', '1s', '--log-level', 'info'])
  t.teardown(() => void agent.kill('SIGTERM'))
  await until('agent enforces the policy', () => /"policy enforced"/.test(agent.out()), 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))

  const adminTok = readFileSync(adminFile, 'utf8').trim()
  const hits = async (): Promise<Array<{ name: string; host?: string; entry: { reason?: string } }>> => {
    const r = await fetch(`${url}/v1/hits?since=1h`, { headers: { authorization: `Bearer ${adminTok}` } })
    return ((await r.json()) as { hits: Array<{ name: string; host?: string; entry: { reason?: string } }> }).hits
  }

  const a = await dig('127.0.0.1', dnsPort, 'evil.example')
  t.equal(a.status, 'NOERROR')
  t.match(JSON.stringify(a), /0\.0\.0\.0/, 'the sinkhole answer')
  await until('hit on the server', async () => (await hits()).some((h) => h.name === 'evil.example'), 15_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))
  const h = (await hits()).find((x) => x.name === 'evil.example')
  t.equal(h?.host, 'hits1', 'the hit names the host')
  t.equal(h?.entry.reason, 'miner pool')

  // Server down: the next hit is spooled on disk.
  server.kill('SIGKILL')
  await new Promise((r) => server.once('exit', r))
  const b = await dig('127.0.0.1', dnsPort, 'c2.evil.example')
  t.equal(b.status, 'NOERROR', 'the sinkhole keeps answering with the server down')
  await until('hit spooled', () => existsSync(spool) && readFileSync(spool, 'utf8').includes('c2.evil.example'), 15_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))
  t.pass('hit waits in the spool file')

  // Server back on the same data dir: the spool drains.
  server = start(t, serverArgs)
  await healthy()
  await until('spooled hit uploaded', async () => (await hits()).some((x) => x.name === 'c2.evil.example'), 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))
  t.pass('spooled hit uploaded after the server came back')
  await until('spool emptied', () => !existsSync(spool), 5000).catch((e: Error) => t.fail(e.message))
  t.equal(agent.exitCode, null, 'the agent never exited')
})
