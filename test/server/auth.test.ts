// Every authenticated route refuses a missing token, an unknown token and the wrong role, and the
// store is byte-for-byte the same afterwards. The route table is checked against the OpenAPI
// document, so a new route without a row here fails this test.
import t from 'tap'
import { makeServer, sampleHit, sampleReport } from './fixtures/server.js'
import { assertStrongSecret, generateToken, hashToken, TokenIndex } from '../../src/server/auth.js'
import { buildServer } from '../../src/server/build.js'
import { silentLogger } from '../../src/log.js'
import { isEgError } from '../../src/errors.js'

type Role = 'admin' | 'agent' | 'read'
interface Row {
  method: 'GET' | 'POST' | 'DELETE'
  url: string
  /** The path as OpenAPI names it. */
  path: string
  roles: Role[]
  payload?: unknown
}

t.test('every route: no token 401, wrong token 401, wrong role 403, nothing changed', async (t) => {
  const f = await makeServer(t)
  const added = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'keep.example', reason: 'fixture' }] } })
  t.equal(added.statusCode, 201)
  const entryId = added.json().entries[0].id as string
  const readTokenId = (await f.store.listTokens()).find((x) => x.role === 'read')!.id
  const rows: Row[] = [
    { method: 'GET', url: '/v1/policy', path: '/v1/policy', roles: ['agent', 'read', 'admin'] },
    { method: 'GET', url: '/v1/policy/problems', path: '/v1/policy/problems', roles: ['read', 'admin'] },
    { method: 'POST', url: '/v1/report', path: '/v1/report', roles: ['agent'], payload: sampleReport() },
    { method: 'GET', url: '/v1/hosts', path: '/v1/hosts', roles: ['read', 'admin'] },
    { method: 'POST', url: '/v1/hits', path: '/v1/hits', roles: ['agent'], payload: { host: 'web1', hits: [sampleHit()] } },
    { method: 'GET', url: '/v1/hits', path: '/v1/hits', roles: ['read', 'admin'] },
    { method: 'POST', url: '/v1/entries', path: '/v1/entries', roles: ['admin'], payload: { entries: [{ value: 'new.example', reason: 'x' }] } },
    { method: 'DELETE', url: `/v1/entries/${entryId}?reason=x`, path: '/v1/entries/{idOrValue}', roles: ['admin'] },
    { method: 'GET', url: '/v1/entries', path: '/v1/entries', roles: ['read', 'admin'] },
    { method: 'GET', url: '/v1/audit', path: '/v1/audit', roles: ['read', 'admin'] },
    { method: 'POST', url: '/v1/tokens', path: '/v1/tokens', roles: ['admin'], payload: { role: 'read' } },
    { method: 'GET', url: '/v1/tokens', path: '/v1/tokens', roles: ['admin'] },
    { method: 'DELETE', url: `/v1/tokens/${readTokenId}`, path: '/v1/tokens/{id}', roles: ['admin'] },
    { method: 'GET', url: '/metrics', path: '/metrics', roles: ['read', 'admin'] },
    { method: 'GET', url: '/v1/profiles', path: '/v1/profiles', roles: ['read', 'admin'] },
    { method: 'GET', url: '/v1/profiles/web/learned', path: '/v1/profiles/{name}/learned', roles: ['read', 'admin'] },
    { method: 'POST', url: '/v1/learned', path: '/v1/learned', roles: ['agent'], payload: { host: 'web1', records: [] } },
    { method: 'POST', url: '/v1/quarantines', path: '/v1/quarantines', roles: ['admin'], payload: { container: 'web', reason: 'x' } },
    { method: 'DELETE', url: '/v1/quarantines/web?reason=x', path: '/v1/quarantines/{idOrContainer}', roles: ['admin'] },
    { method: 'GET', url: '/v1/quarantines', path: '/v1/quarantines', roles: ['read', 'admin'] },
  ]
  // The table covers every route the server has (healthz is the one open route).
  const doc = (await f.app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> }
  const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).filter((x) => x !== 'GET /healthz').sort()
  t.same(rows.map((r) => `${r.method} ${r.path}`).sort(), documented, 'auth table lists every route')

  const before = await f.snapshot()
  const roleHeaders = { admin: f.auth.admin, agent: f.auth.agent, read: f.auth.read }
  const forged = { authorization: `Bearer ${generateToken().secret}` }
  for (const r of rows) {
    const base = { method: r.method, url: r.url, ...(r.payload !== undefined ? { payload: r.payload as object } : {}) }
    const none = await f.app.inject(base)
    t.equal(none.statusCode, 401, `${r.method} ${r.url} without a token`)
    t.equal(none.json().code, 'EG_UNAUTHORIZED')
    const wrong = await f.app.inject({ ...base, headers: forged })
    t.equal(wrong.statusCode, 401, `${r.method} ${r.url} with an unknown token`)
    if (r.method === 'GET') t.equal((await f.app.inject({ method: 'HEAD', url: r.url })).statusCode, 401, `HEAD ${r.url} (fastify's automatic HEAD route) without a token`)
    const basic = await f.app.inject({ ...base, headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } })
    t.equal(basic.statusCode, 401, `${r.method} ${r.url} with Basic auth`)
    for (const role of (['admin', 'agent', 'read'] as const).filter((x) => !r.roles.includes(x))) {
      const res = await f.app.inject({ ...base, headers: roleHeaders[role] })
      t.equal(res.statusCode, 403, `${r.method} ${r.url} as ${role}`)
      t.equal(res.json().code, 'EG_FORBIDDEN')
    }
  }
  t.equal(await f.snapshot(), before, 'the store is unchanged after every refused request')
  t.same(await f.store.listQuarantines(), [], 'no quarantine was made by a refused request')

  // The allowed roles do get through (so the table is not vacuous): spot-check the writes.
  const ok = await f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth.agent, payload: sampleReport() })
  t.equal(ok.statusCode, 204)
  t.not(await f.snapshot(), before)
})

t.test('an agent token speaks only for its own host', async (t) => {
  const f = await makeServer(t)
  const before = await f.snapshot()
  const r = await f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth.agent2, payload: sampleReport({ host: 'web1' }) })
  t.equal(r.statusCode, 403)
  t.match(r.json().message, /bound to host "web2"/)
  const h = await f.app.inject({ method: 'POST', url: '/v1/hits', headers: f.auth.agent2, payload: { host: 'web1', hits: [sampleHit()] } })
  t.equal(h.statusCode, 403)
  t.equal(await f.snapshot(), before)
})

t.test('a revoked token stops working at once', async (t) => {
  const f = await makeServer(t)
  const c = await f.app.inject({ method: 'POST', url: '/v1/tokens', headers: f.auth.admin, payload: { role: 'read', name: 'grafana' } })
  t.equal(c.statusCode, 201)
  const { id, token } = c.json() as { id: string; token: string }
  t.match(token, /^eg_[A-Za-z0-9_-]{43}$/)
  const list = (await f.app.inject({ url: '/v1/tokens', headers: f.auth.admin })).json()
  t.notOk(JSON.stringify(list).includes(token), 'the list never shows secrets')
  t.notOk(JSON.stringify(list).includes(hashToken(token)), 'nor hashes')
  t.equal((await f.app.inject({ url: '/v1/hosts', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
  t.equal((await f.app.inject({ method: 'DELETE', url: `/v1/tokens/${id}`, headers: f.auth.admin })).statusCode, 204)
  t.equal((await f.app.inject({ url: '/v1/hosts', headers: { authorization: `Bearer ${token}` } })).statusCode, 401)
  t.equal((await f.app.inject({ method: 'DELETE', url: `/v1/tokens/${id}`, headers: f.auth.admin })).statusCode, 404)
  const audit = (await f.app.inject({ url: '/v1/audit', headers: f.auth.admin })).json().events as { action: string; target: string }[]
  t.ok(audit.some((e) => e.action === 'token.remove' && e.target === id))
  t.ok(audit.some((e) => e.action === 'token.create' && e.target === id))
})

t.test('token creation rules: agent tokens need a host, one per host', async (t) => {
  const f = await makeServer(t)
  const a = await f.app.inject({ method: 'POST', url: '/v1/tokens', headers: f.auth.admin, payload: { role: 'agent' } })
  t.equal(a.statusCode, 400)
  const b = await f.app.inject({ method: 'POST', url: '/v1/tokens', headers: f.auth.admin, payload: { role: 'agent', host: 'web1' } })
  t.equal(b.statusCode, 409, 'web1 already has one')
  const c = await f.app.inject({ method: 'POST', url: '/v1/tokens', headers: f.auth.admin, payload: { role: 'root' } })
  t.equal(c.statusCode, 400)
  t.equal(c.json().code, 'EG_BAD_INPUT')
})

t.test('weak admin tokens are refused', async (t) => {
  const good = generateToken().secret
  t.doesNotThrow(() => assertStrongSecret(good, 'test'))
  t.doesNotThrow(() => assertStrongSecret('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'test'), '64 hex digits (openssl rand -hex 32)')
  for (const weak of ['', 'admin', 'changeme-changeme-changeme', 'a'.repeat(64), 'abcdefghij'.repeat(6), 'eg_' + 'Ab1'.repeat(20), 'correct horse battery staple correct horse battery']) {
    t.throws(() => assertStrongSecret(weak, 'test'), { code: 'EG_CONFIG' }, `refuses ${JSON.stringify(weak.slice(0, 20))}`)
  }
})

t.test('no admin credential: the server does not start', async (t) => {
  const { openLowdbStore } = await import('../../src/store/lowdb-store.js')
  const { mkdtemp, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const dir = await mkdtemp(`${tmpdir()}/eg-noadmin-${process.pid}-`)
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = await openLowdbStore(dir)
  t.teardown(() => store.close())
  const err = await buildServer({ store, blocklistDirs: [], log: silentLogger }).then(() => undefined, (e: unknown) => e)
  t.ok(isEgError(err))
  t.match((err as Error).message, /no admin credential/)
})

t.test('TokenIndex: constant-time lookup by hash, malformed headers', async (t) => {
  const a = generateToken()
  const idx = new TokenIndex([{ id: a.id, hash: a.hash, role: 'agent', host: 'h', created: '', createdBy: '' }])
  t.same(idx.lookup(`Bearer ${a.secret}`), { id: a.id, role: 'agent', host: 'h', actor: `agent:${a.id}` })
  t.equal(idx.lookup(`bearer   ${a.secret}  `)?.id, a.id, 'scheme is case-insensitive')
  t.equal(idx.lookup(a.secret), undefined)
  t.equal(idx.lookup(`Bearer ${a.secret}x`), undefined)
  t.equal(idx.lookup(`Bearer ${'x'.repeat(10_000)}`), undefined)
  t.equal(idx.lookup(undefined), undefined)
  t.notOk(idx.hasAdmin)
})
