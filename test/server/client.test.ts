// The API client against a real listening server (plain HTTP and TLS with a private CA): every
// method, 304 and diff shapes, long-poll, errors mapped back to EgError with the server's code.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeServer, sampleHit, sampleReport } from './fixtures/server.js'
import { createApiClient } from '../../src/client/api-client.js'
import { buildServer } from '../../src/server/build.js'
import { generateToken } from '../../src/server/auth.js'
import { silentLogger } from '../../src/log.js'
import { isEgError } from '../../src/errors.js'
import { capabilities, requires } from '../helpers/caps.js'

const secret = (h: { authorization: string }) => h.authorization.slice('Bearer '.length)

t.test('every client method over real HTTP', async (t) => {
  const f = await makeServer(t)
  const url = await f.app.listen({ host: '127.0.0.1', port: 0 })
  const admin = createApiClient({ url, token: secret(f.auth.admin) })
  const agent = createApiClient({ url, token: secret(f.auth.agent), timeoutMs: 5000 })
  t.same(await admin.health(), { ok: true, version: 1 })

  const full = await agent.getPolicy()
  t.equal(full.status, 200)
  t.equal(full.etag, full.policy!.etag, 'etag unquoted')
  t.same(await agent.getPolicy({ etag: full.etag }), { status: 304, etag: full.etag })
  const waiting = agent.getPolicy({ etag: full.etag, waitSec: 20, since: full.policy!.version })
  const added = await admin.addEntries([{ value: 'c.example', reason: 'client test' }])
  t.equal(added.version, 2)
  const diff = await waiting
  t.equal(diff.status, 200)
  t.equal(diff.diff!.since, 1)
  t.same(diff.diff!.added.map((e) => e.value), ['c.example'])
  t.equal(diff.etag, diff.diff!.etag)

  await agent.report(sampleReport({ version: 2, etag: diff.etag }) as never)
  t.equal((await admin.hosts()).hosts[0]!.state, 'in-sync')
  t.same(await agent.uploadHits('web1', [sampleHit() as never]), { accepted: 1 })
  t.equal((await admin.hits({ since: '1h' })).hits.length, 1)
  t.equal((await admin.listEntries({ source: 'api' })).entries.length, 1)
  t.same((await admin.removeEntry('c.example', 'done')).removed.map((e) => e.value), ['c.example'])
  t.ok((await admin.audit(5)).events.length > 0)
  const tok = await admin.createToken({ role: 'read', name: 'x' })
  t.ok((await admin.listTokens()).tokens.some((x) => x.id === tok.id))
  await admin.removeToken(tok.id)
  t.match(await admin.metrics(), /egress_guard_server_policy_version 3/)
  t.same((await admin.policyProblems()).problems, [])

  const err = await agent.addEntries([{ value: 'x.example', reason: 'r' }]).catch((e: unknown) => e)
  t.ok(isEgError(err))
  t.match(err, { code: 'EG_FORBIDDEN', statusCode: 403 })
  const bad = await admin.addEntries([{ value: 'bad..example', reason: 'r' }]).catch((e: unknown) => e)
  t.match(bad, { code: 'EG_BAD_INPUT', statusCode: 400, details: { problems: [{ index: 0 }] } })

  // An aborted long-poll rejects at once and leaves no waiter behind.
  const ac = new AbortController()
  const p = agent.getPolicy({ etag: (await agent.getPolicy()).etag, waitSec: 30, signal: ac.signal })
  for (let i = 0; i < 200 && f.app.eg.policy.waiters.size === 0; i++) await new Promise((r) => setTimeout(r, 10))
  ac.abort()
  await t.rejects(p)
  for (let i = 0; i < 200 && f.app.eg.policy.waiters.size > 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(f.app.eg.policy.waiters.size, 0, 'the server dropped the waiter when the client left')

  const down = createApiClient({ url: 'http://127.0.0.1:9', token: 'x', timeoutMs: 2000 })
  t.match(await down.health().catch((e: unknown) => e), { code: 'EG_UPSTREAM' })
})

t.test('TLS with a private CA', async (t) => {
  if (!requires(t, capabilities.tool('openssl'))) return
  const f = await makeServer(t)
  const key = join(f.dir, 'key.pem')
  const cert = join(f.dir, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  const admin = generateToken()
  const app = await buildServer({ store: f.store, blocklistDirs: [f.blocklists], log: silentLogger, adminTokenHash: admin.hash, https: { key: await readFile(key), cert: await readFile(cert) } })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  t.match(url, /^https:/)
  const ok = createApiClient({ url, token: admin.secret, ca: await readFile(cert, 'utf8') })
  t.equal((await ok.getPolicy()).status, 200)
  const untrusted = createApiClient({ url, token: admin.secret })
  t.match(await untrusted.health().catch((e: unknown) => e), { code: 'EG_UPSTREAM' }, 'an unknown CA is refused')
})
