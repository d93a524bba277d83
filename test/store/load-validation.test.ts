// A store file that was edited by hand or restored is checked again when the server starts. Entries
// that fail the API's own validation (0.0.0.0/0, shell characters in a name) are reported as
// `file:line` problems (log, GET /v1/policy/problems, a metric) and not served, so agents, which
// refuse a whole policy over one bad entry, keep getting new policies; they stay in the file. A
// wrong shape (a value that is not a string) stops start-up naming the file and leaves it untouched.
import t from 'tap'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MAIN_FILE, openLowdbStore } from '../../src/store/lowdb-store.js'
import { policyProblems } from '../../src/agent/policy-check.js'
import { generateToken } from '../../src/server/auth.js'
import { spawnServer, tempDir } from '../server/fixtures/process.js'

type T = Parameters<typeof tempDir>[0]

const stored = (n: number, over: Record<string, unknown>) => ({
  kind: 'domain', value: `e${n}.example`, allow: false, mode: 'block', source: 'api:alice', id: `api-00000000000${n}`, added: '2026-01-01T00:00:00.000Z', actor: 'alice', reason: `entry ${n}`, ...over,
})

/** A store with an admin token (as `token create --data` makes it), then edited like a person would. */
async function editedStore(t: T, edit: (d: Record<string, any>) => void): Promise<{ dir: string; data: string; file: string; tokenFile: string; text: string }> {
  const dir = await tempDir(t, 'load')
  const data = join(dir, 'data')
  const tokenFile = join(dir, 'admin.token')
  const tk = generateToken()
  const store = await openLowdbStore(data, { lock: true })
  await store.addToken({ id: tk.id, hash: tk.hash, role: 'admin', created: new Date().toISOString(), createdBy: 'cli' }, { actor: 'cli' })
  await store.close()
  await writeFile(tokenFile, tk.secret + '\n', { mode: 0o600 })
  const file = join(data, MAIN_FILE)
  const d = JSON.parse(await readFile(file, 'utf8'))
  edit(d)
  const text = JSON.stringify(d, null, 2)
  await writeFile(file, text)
  return { dir, data, file, tokenFile, text }
}

const serverArgs = (s: { data: string; dir: string; tokenFile: string }) => ['--listen', '127.0.0.1:0', '--data', s.data, '--blocklists', join(s.dir, 'none'), '--admin-token-file', s.tokenFile, '--log-level', 'error']

t.test('invalid stored entries are reported and not served; the rest is', async (t) => {
  const s = await editedStore(t, (d) => {
    d.entries.push(
      stored(1, { value: 'good.example' }),
      stored(2, { kind: 'net', value: '0.0.0.0/0', force: true }),
      stored(3, { value: '$(reboot).example' }),
      stored(4, { value: 'Mixed.Example.' }),
      stored(5, { value: 'a`id`.example', subdomainsOnly: true }),
    )
  })
  const srv = spawnServer(t, serverArgs(s), s.dir)
  const url = await srv.listening
  const auth = { authorization: `Bearer ${(await readFile(s.tokenFile, 'utf8')).trim()}` }
  const get = async (path: string) => await fetch(url + path, { headers: auth })
  const json = async (path: string): Promise<any> => (await get(path)).json()

  const policy = await json('/v1/policy')
  t.same(policy.entries.map((e: { value: string }) => e.value).sort(), ['good.example', 'mixed.example'], 'the valid entries are served, normalised as the API would')
  t.same(policyProblems(policy), [], 'an agent accepts the served policy')
  t.notOk(JSON.stringify(policy).includes('reboot') || JSON.stringify(policy).includes('0.0.0.0'))

  const { problems } = await json('/v1/policy/problems')
  t.equal(problems.length, 3)
  const lines = s.text.split('\n')
  for (const [p, id, why] of [[problems[0], 'api-000000000002', /covers/], [problems[1], 'api-000000000003', /character|invalid|name/i], [problems[2], 'api-000000000005', /character|invalid|name/i]] as const) {
    t.equal(p.file, s.file, `${id}: names the store file`)
    t.match(lines[p.line - 1], id, `${id}: the line is the entry's (${p.file}:${p.line})`)
    t.match(p.message, why)
    t.match(p.text, `${s.file}:${p.line}: entries[`)
  }
  const metrics = await (await get('/metrics')).text()
  t.match(metrics, /egress_guard_server_store_invalid_entries 3/)
  t.match(srv.stderr(), /3 stored entries fail validation and are not served; see GET \/v1\/policy\/problems/)
  t.match(srv.stderr(), /covers/, 'and the log says which and why')

  // A change through the API rewrites the file: the invalid entries stay in it, still not served,
  // and the problems' lines follow them.
  const add = await fetch(url + '/v1/entries', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ entries: [{ value: 'new.example', reason: 'x' }] }) })
  t.equal(add.status, 201)
  const text = await readFile(s.file, 'utf8')
  const disk = JSON.parse(text)
  t.same(disk.entries.map((e: { id: string }) => e.id).slice(0, 5), ['api-000000000001', 'api-000000000002', 'api-000000000003', 'api-000000000004', 'api-000000000005'], 'kept in the file as they were')
  t.equal(disk.entries[1].value, '0.0.0.0/0')
  const after = (await json('/v1/policy/problems')).problems
  t.equal(after.length, 3)
  for (const p of after) t.match(text.split('\n')[p.line - 1], /"id": "api-00000000000[235]"/, 'lines still point at the entries')
  t.notOk(JSON.stringify(await json('/v1/policy')).includes('0.0.0.0'))
  srv.child.kill('SIGTERM')
  t.equal(await srv.exited, 0)
})

t.test('a wrong shape stops start-up naming the file, which is left untouched', async (t) => {
  const cases: [string, (d: Record<string, any>) => void, RegExp][] = [
    ['a value that is not a string', (d) => d.entries.push(stored(1, { value: 5 })), /entries\[0\]\.value is not valid \(5\)/],
    ['an unknown kind', (d) => d.entries.push(stored(1, { kind: 'regex' })), /entries\[0\]\.kind is not valid/],
    ['allow as a string', (d) => d.entries.push(stored(1, { allow: 'no' })), /entries\[0\]\.allow is not valid/],
    ['a token with an unknown role', (d) => (d.tokens[0].role = 'root'), /tokens\[0\]\.role is not valid/],
    ['a version that is not a number', (d) => (d.version = '3'), /"version" is missing or not a whole number/],
  ]
  for (const [i, [name, edit, message]] of cases.entries()) {
    const s = await editedStore(t, edit)
    const before = await readdir(s.data)
    // The reported case (a TypeError at start-up) through the real command; the others through the store.
    if (i === 0) {
      const srv = spawnServer(t, serverArgs(s), s.dir)
      srv.listening.catch(() => {})
      t.equal(await srv.exited, 1, `${name}: the server does not start`)
      t.match(srv.stderr(), `egress-guard server: store file ${s.file}: `, `${name}: the file is named`)
      t.match(srv.stderr(), message, name)
      t.notMatch(srv.stderr(), /TypeError|internal error/, `${name}: a coded error, not a crash`)
    }
    const err = await openLowdbStore(s.data, { lock: true }).then(() => undefined, (e: { code: string; message: string }) => e)
    t.equal(err?.code, 'EG_STORE_CORRUPT', `${name}: EG_STORE_CORRUPT`)
    t.match(err?.message, `store file ${s.file}: `, `${name}: the file is named`)
    t.match(err?.message, message, name)
    t.equal(await readFile(s.file, 'utf8'), s.text, `${name}: the file is unchanged`)
    t.same(await readdir(s.data), before, `${name}: nothing written beside it`)
  }
})

t.test('the store does not take an entry it would refuse to serve after a restart', async (t) => {
  const dir = await tempDir(t, 'load')
  const s = await openLowdbStore(dir)
  t.teardown(() => s.close())
  const before = await readFile(join(dir, MAIN_FILE), 'utf8')
  const err = await s
    .addEntries([{ kind: 'domain', value: 'ok.example', allow: false, mode: 'block', source: 'x' }, { kind: 'net', value: '0.0.0.0/0', allow: false, mode: 'block', source: 'x', force: true }], { actor: 'a' })
    .then(() => undefined, (e: { code: string; message: string }) => e)
  t.equal(err?.code, 'EG_BAD_INPUT')
  t.match(err?.message, /"0\.0\.0\.0\/0": .*covers.*nothing was added/)
  t.same(await s.listEntries(), [], 'all or nothing')
  t.equal(await readFile(join(dir, MAIN_FILE), 'utf8'), before, 'nothing written')
})
