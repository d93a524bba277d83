// `egress-guard agent` as a real process: option errors exit 2, a corrupt cache exits 1 naming the file
// (left untouched), and a directory-only agent with the dry-run backend enforces and stops cleanly.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, runCli } from '../helpers/cli.js'
import { createLocalSource, combinePolicies } from '../../src/agent/local-source.js'
import { silentLogger } from '../../src/log.js'

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), `eg-agentcmd-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('bad options exit 2 with a message', async (t) => {
  const r1 = await runCli(['agent'])
  t.equal(r1.code, 2, r1.stderr)
  t.match(r1.stderr, /--server|--blocklists/)
  const r2 = await runCli(['agent', '--blocklists', '/nonexistent', '--backend', 'pf'])
  t.equal(r2.code, 2, r2.stderr)
  t.match(r2.stderr, /backend/)
  const r3 = await runCli(['agent', '--server', 'http://127.0.0.1:1'])
  t.equal(r3.code, 2, r3.stderr)
  t.match(r3.stderr, /token-file/)
  const r4 = await runCli(['agent', '--blocklists', '/x', '--upstream', 'not-an-ip'])
  t.equal(r4.code, 2, r4.stderr)
  // The config file's "agent" section is read (and validated) like flags.
  const d = tmp(t)
  writeFileSync(join(d, 'c.json'), JSON.stringify({ backend: 'iptables', agent: { blocklists: '/x', 'on-exit': 'sometimes' } }))
  const r5 = await runCli(['agent', '--config', join(d, 'c.json')])
  t.equal(r5.code, 2)
  t.match(r5.stderr, /on-exit/)
})

t.test('a corrupt cache stops the agent with exit 1, naming the file, which is left as it was', async (t) => {
  const d = tmp(t)
  mkdirSync(join(d, 'lists'))
  mkdirSync(join(d, 'state'))
  writeFileSync(join(d, 'lists', 'a.txt'), '203.0.113.7\n')
  writeFileSync(join(d, 'hosts'), '127.0.0.1 localhost\n')
  const cache = join(d, 'state', 'policy-cache.json')
  writeFileSync(cache, '{"format":1,"checksum":"')
  const r = await runCli(['agent', '--blocklists', join(d, 'lists'), '--state-dir', join(d, 'state'), '--backend', 'dry-run', '--hosts-file', join(d, 'hosts')], { timeoutMs: 30_000 })
  t.equal(r.code, 1)
  t.match(r.stderr, cache)
  t.match(r.stderr, /corrupt policy cache/)
  t.equal(readFileSync(cache, 'utf8'), '{"format":1,"checksum":"')
  t.equal(readFileSync(join(d, 'hosts'), 'utf8'), '127.0.0.1 localhost\n', 'nothing applied')
})

for (const [backend, netns, expectRe] of [
  ['dry-run', undefined, /"policy enforced"/],
  ['iptables', 'eg-does-not-exist-x', /apply failed|applying policy/],
] as const) {
  t.test(`directory-only agent (${backend}${netns ? ', failing apply' : ''}) runs until SIGTERM and exits 0`, async (t) => {
    const d = tmp(t)
    mkdirSync(join(d, 'lists'))
    writeFileSync(join(d, 'lists', 'a.txt'), '203.0.113.7\n*.evil.example\nbad name here\n')
    writeFileSync(join(d, 'hosts'), '127.0.0.1 localhost\n')
    const child = spawn(process.execPath, [CLI, 'agent', '--blocklists', join(d, 'lists'), '--state-dir', join(d, 'state'), '--backend', backend,
      ...(netns ? ['--netns', netns] : []), '--hosts-file', join(d, 'hosts'), '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')))
    let out = ''
    child.stdout.on('data', (x) => (out += String(x)))
    child.stderr.on('data', (x) => (out += String(x)))
    for (let i = 0; i < 400 && !expectRe.test(out); i++) await new Promise((r) => setTimeout(r, 100))
    t.match(out, expectRe)
    t.match(out, /bad name here|a\.txt:3/, 'the bad line is reported')
    // A failed apply is logged and retried with backoff; the agent does not exit over it.
    t.equal(child.exitCode, null, 'still running')
    child.kill('SIGTERM')
    const code = await new Promise((r) => child.on('exit', r))
    t.equal(code, 0, out.slice(-3000))
  })
}

t.test('local source + combine: union through buildPolicy, server version kept', async (t) => {
  const d = tmp(t)
  writeFileSync(join(d, 'a.txt'), 'evil.example\n203.0.113.0/24\n')
  writeFileSync(join(d, 'b.list'), '@@good.evil.example\n')
  writeFileSync(join(d, '.hidden.txt'), 'hidden.example\n')
  writeFileSync(join(d, 'notes.md'), 'x.example\n')
  const src = createLocalSource({ dir: d, log: silentLogger })
  const entries = await src.load()
  t.same(entries.map((e) => e.value).sort(), ['203.0.113.0/24', 'evil.example', 'good.evil.example'])
  const server = { version: 42, etag: 'x', generatedAt: '', entries: [{ kind: 'domain' as const, value: 'evil.example', allow: false, mode: 'block' as const, source: 'api:a', id: 'a1' }] }
  const p = combinePolicies(server, entries)
  t.equal(p.version, 42)
  t.equal(p.entries.length, 3, 'the duplicate evil.example merged')
  t.same(combinePolicies(server, []), server, 'no local entries: the server policy as it is')
  // A deleted file drops out, a changed one is re-read.
  rmSync(join(d, 'b.list'))
  writeFileSync(join(d, 'a.txt'), 'evil.example\n')
  const again = await src.load()
  t.same(again.map((e) => e.value), ['evil.example'])
})
