// `egress-guard server` as a real process: it listens, serves, reloads on SIGHUP, stops on SIGTERM;
// and it refuses to start on a corrupt store (leaving the file alone), a weak admin token, or no
// admin credential at all.
import t from 'tap'
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { runCli } from '../helpers/cli.js'
import { spawnServer, startServer, tempDir } from '../server/fixtures/process.js'
import { createApiClient } from '../../src/client/api-client.js'

t.test('listens on loopback, serves the policy, reloads on SIGHUP, exits 0 on SIGTERM', async (t) => {
  const s = await startServer(t)
  t.match(s.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const health = await (await fetch(`${s.url}/healthz`)).json()
  t.same(health, { ok: true, version: 1 })
  const api = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  const p = await api.getPolicy()
  t.equal(p.status, 200)
  t.same(p.policy?.entries.map((e) => e.value), ['evil.example'])
  t.equal((await api.getPolicy({ etag: p.etag })).status, 304)
  t.equal((await fetch(`${s.url}/v1/policy`)).status, 401)

  await writeFile(join(s.blocklists, 'base.txt'), 'evil.example\nworse.example\n')
  s.child.kill('SIGHUP')
  let v = 1
  for (let i = 0; i < 200 && v === 1; i++) {
    await sleep(25)
    v = (await api.health()).version
  }
  t.equal(v, 2, 'the change is picked up (SIGHUP or the watcher)')
  t.equal(await s.stop('SIGTERM'), 0)
})

t.test('a corrupt store: startup fails with a message naming the file, which is unchanged', async (t) => {
  const dir = await tempDir(t, 'corrupt')
  const data = join(dir, 'data')
  await mkdir(data)
  const file = join(data, 'egress-guard.json')
  const text = '{"schema":1,"version":7,"entries":[{"kind":"domain","va'
  await writeFile(file, text)
  const r = await runCli(['server', '--listen', '127.0.0.1:0', '--data', data, '--blocklists', dir], { cwd: dir, env: { EG_CONFIG: '' } })
  t.equal(r.code, 1)
  t.match(r.stderr, /store file .*egress-guard\.json: not valid JSON/)
  t.match(r.stderr, /will not overwrite it/)
  t.notMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace')
  t.equal(await readFile(file, 'utf8'), text)
})

t.test('a weak admin token, or none at all: the server refuses to start', async (t) => {
  const dir = await tempDir(t, 'weak')
  const weak = join(dir, 'weak.token')
  await writeFile(weak, 'changeme\n')
  const r1 = await runCli(['server', '--listen', '127.0.0.1:0', '--data', join(dir, 'd1'), '--blocklists', dir, '--admin-token-file', weak], { cwd: dir, env: { EG_CONFIG: '' } })
  t.equal(r1.code, 2)
  t.match(r1.stderr, /admin token is too short/)
  await writeFile(weak, 'a'.repeat(64) + '\n')
  const r2 = await runCli(['server', '--listen', '127.0.0.1:0', '--data', join(dir, 'd2'), '--blocklists', dir, '--admin-token-file', weak], { cwd: dir, env: { EG_CONFIG: '' } })
  t.equal(r2.code, 2)
  t.match(r2.stderr, /looks weak/)
  const r3 = await runCli(['server', '--listen', '127.0.0.1:0', '--data', join(dir, 'd3'), '--blocklists', dir], { cwd: dir, env: { EG_CONFIG: '' } })
  t.equal(r3.code, 2)
  t.match(r3.stderr, /no admin credential/)
  const r4 = await runCli(['server', '--listen', 'localhost'], { cwd: dir, env: { EG_CONFIG: '' } })
  t.equal(r4.code, 2)
  t.match(r4.stderr, /--listen must be HOST:PORT/)
})

t.test('DATA/admin.token is used when no --admin-token-file is given', async (t) => {
  const dir = await tempDir(t, 'deftok')
  const data = join(dir, 'data')
  const made = await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', join(data, 'admin.token')], { cwd: dir })
  t.equal(made.code, 0, made.stderr)
  const s = spawnServer(t, ['--listen', '127.0.0.1:0', '--data', data, '--blocklists', dir, '--log-level', 'warn'], dir)
  const url = await s.listening
  const hosts = await runCli(['hosts', '--json'], { cwd: dir, env: { EG_SERVER: url, EG_TOKEN_FILE: join(data, 'admin.token') } })
  t.equal(hosts.code, 0, hosts.stderr)
  t.same(JSON.parse(hosts.stdout).hosts, [])
  s.child.kill('SIGINT')
  t.equal(await s.exited, 0)
})

t.test('--tls-cert/--tls-key serve HTTPS; admin commands trust the CA with --ca', async (t) => {
  const { capabilities, requires } = await import('../helpers/caps.js')
  if (!requires(t, capabilities.tool('openssl'))) return
  const { execFileSync } = await import('node:child_process')
  const dir = await tempDir(t, 'tls')
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  const s = await startServer(t, { args: ['--tls-cert', cert, '--tls-key', key] })
  t.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const ok = await runCli(['hosts', '--json', '--ca', cert], { cwd: s.dir, env: s.env })
  t.equal(ok.code, 0, ok.stderr)
  const untrusted = await runCli(['hosts'], { cwd: s.dir, env: s.env })
  t.equal(untrusted.code, 1)
  t.match(untrusted.stderr, /certificate|self.signed/i)
  const half = await runCli(['server', '--tls-cert', cert], { cwd: dir, env: { EG_CONFIG: '' } })
  t.equal(half.code, 2)
  t.match(half.stderr, /--tls-cert and --tls-key go together/)
})
