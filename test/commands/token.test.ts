// `egress-guard token create|ls|rm`: bootstrap into a store directory (file mode 0600, never
// overwritten), then through the server; the secret is shown once and never stored.
import t from 'tap'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startServer, tempDir } from '../server/fixtures/process.js'
import { createApiClient } from '../../src/client/api-client.js'

t.test('bootstrap with --data: the file is 0600, the store has only a hash', async (t) => {
  const dir = await tempDir(t, 'tok')
  const out = join(dir, 'admin.token')
  const r = await runCli(['token', 'create', '--role', 'admin', '--data', join(dir, 'data'), '--out', out], { cwd: dir })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /token tok-[0-9a-f]+ \(admin\) written to/)
  const secret = (await readFile(out, 'utf8')).trim()
  t.match(secret, /^eg_[A-Za-z0-9_-]{43}$/)
  t.equal((await stat(out)).mode & 0o777, 0o600)
  const store = await readFile(join(dir, 'data', 'egress-guard.json'), 'utf8')
  t.notOk(store.includes(secret), 'the secret is not in the store')
  t.notOk(store.includes(secret.slice(3)), 'not even without its prefix')
  const again = await runCli(['token', 'create', '--role', 'admin', '--data', join(dir, 'data'), '--out', out], { cwd: dir })
  t.equal(again.code, 2)
  t.match(again.stderr, /already exists/)
  t.equal((await readFile(out, 'utf8')).trim(), secret, 'an existing token file is never replaced')
  const stdoutOnly = await runCli(['token', 'create', '--role', 'read', '--data', join(dir, 'data')], { cwd: dir })
  t.match(stdoutOnly.stdout, /^eg_[A-Za-z0-9_-]{43}\n$/, 'stdout is the secret alone')
  t.match(stdoutOnly.stderr, /shown once/)
  const bad = await runCli(['token', 'create', '--role', 'agent', '--data', join(dir, 'data')], { cwd: dir })
  t.equal(bad.code, 2)
  t.match(bad.stderr, /needs --host/)
})

t.test('create, ls, rm through the server', async (t) => {
  const s = await startServer(t)
  const cli = (args: string[]) => runCli(args, { cwd: s.dir, env: s.env })
  const c = await cli(['token', 'create', '--role', 'agent', '--host', 'web9', '--json'])
  t.equal(c.code, 0, c.stderr)
  const made = JSON.parse(c.stdout) as { id: string; token: string; role: string; host: string }
  t.equal(made.host, 'web9')
  const agent = createApiClient({ url: s.url, token: made.token })
  t.equal((await agent.getPolicy()).status, 200)
  const ls = await cli(['token', 'ls'])
  t.match(ls.stdout, new RegExp(`${made.id}\\s+agent\\s+web9`))
  t.notOk(ls.stdout.includes(made.token))
  const dup = await cli(['token', 'create', '--role', 'agent', '--host', 'web9'])
  t.equal(dup.code, 1)
  t.match(dup.stderr, /already has an agent token/)
  const rm = await cli(['token', 'rm', made.id])
  t.equal(rm.code, 0)
  t.equal(await agent.getPolicy().then(() => 'ok', (e: { code: string }) => e.code), 'EG_UNAUTHORIZED', 'the host is cut off alone')
  const gone = await cli(['token', 'rm', made.id])
  t.equal(gone.code, 1)
  // A non-admin token cannot make tokens.
  const readTok = JSON.parse((await cli(['token', 'create', '--role', 'read', '--json'])).stdout).token as string
  const readFile2 = join(s.dir, 'read.token')
  await writeFile(readFile2, readTok)
  const denied = await runCli(['token', 'create', '--role', 'admin'], { cwd: s.dir, env: { ...s.env, EG_TOKEN_FILE: readFile2 } })
  t.equal(denied.code, 1)
  t.match(denied.stderr, /a read token may not POST \/v1\/tokens/)
})

t.test('token create --data refuses while a server holds the store', async (t) => {
  const s = await startServer(t)
  const r = await runCli(['token', 'create', '--role', 'read', '--data', s.data], { cwd: s.dir })
  t.equal(r.code, 1)
  t.match(r.stderr, /is in use by process \d+ \(a running server\?\)/, r.stderr)
  t.equal(await s.stop(), 0)
  const after = await runCli(['token', 'create', '--role', 'read', '--data', s.data], { cwd: s.dir })
  t.equal(after.code, 0, 'the lock went with the server')
})
