// POST/DELETE/GET /v1/quarantines through inject(): the quarantine enters the policy (new version and
// etag, woken long-polls, carried whole in diffs), is audited, expires like an entry; bad input is a
// coded 4xx that changes nothing; roles; the agents' reports say which containers each one holds,
// and which containers are held to which profile (GET /v1/profiles, missing profiles).
import t from 'tap'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { makeServer, sampleReport, type Fixture } from './fixtures/server.js'
import { buildPolicy } from '../../src/policy/merge.js'
import { serverEtag } from '../../src/agent/local-source.js'
import type { Quarantine } from '../../src/quarantine/types.js'

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return
    await sleep(10)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const ID = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12'
const getPolicy = (f: Fixture, q = '', etag?: string) => f.app.inject({ url: `/v1/policy${q}`, headers: { ...f.auth.agent, ...(etag ? { 'if-none-match': `"${etag}"` } : {}) } })
const add = (f: Fixture, payload: unknown, who: keyof Fixture['auth'] = 'admin') => f.app.inject({ method: 'POST', url: '/v1/quarantines', headers: f.auth[who], payload: payload as object })
const snap = async (f: Fixture) => (await f.snapshot()) + JSON.stringify(await f.store.listQuarantines())

t.test('a quarantine is a new policy version that wakes long-polls, travels in diffs and is audited', async (t) => {
  const f = await makeServer(t)
  const v1 = (await getPolicy(f)).json()
  t.equal(v1.quarantines, undefined, 'none: no quarantines key')
  const waiting = getPolicy(f, '?wait=30', v1.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the long-poll to wait')
  const r = await add(f, { container: 'shop-web-1', host: 'web1', reason: 'miner download', expires: '4h' })
  t.equal(r.statusCode, 201)
  const q = r.json().quarantine as Quarantine
  t.match(q, { id: /^q-[0-9a-f]{12}$/, container: 'shop-web-1', host: 'web1', reason: 'miner download', expires: '2026-06-01T16:00:00Z', added: '2026-06-01T12:00:00.000Z', actor: 'admin' })
  t.equal(r.json().version, v1.version + 1)
  const woken = await waiting
  t.equal(woken.statusCode, 200, 'the long-poll is answered by the quarantine')
  const v2 = woken.json()
  t.same(v2.quarantines, [q])
  t.not(v2.etag, v1.etag)
  t.same(v2.entries, v1.entries, 'the entries did not change')
  t.equal(v2.etag, serverEtag(v2.entries, undefined, v2.quarantines), 'the agent can reproduce the etag')
  t.not(v2.etag, buildPolicy(v2.entries).etag, 'the etag covers the quarantine')
  // A diff since v1 carries the quarantines whole.
  const d = await getPolicy(f, `?since=${v1.version}`)
  t.equal(d.headers['x-policy-diff'], '1')
  t.same([d.json().added, d.json().removed, d.json().quarantines], [[], [], [q]])

  const audit = (await f.app.inject({ url: '/v1/audit?limit=5', headers: f.auth.read })).json().events
  t.match(audit[0], { action: 'policy.version', reason: 'quarantine of shop-web-1 on web1 added by admin' })
  t.match(audit[1], { action: 'quarantine.add', actor: 'admin', target: 'shop-web-1', reason: 'miner download', details: { id: q.id, host: 'web1', expires: '2026-06-01T16:00:00Z' } })

  // The same container on the same host again: 409, nothing changes.
  const before = await snap(f)
  const dup = await add(f, { container: '/shop-web-1', host: 'WEB1', reason: 'again' })
  t.equal(dup.statusCode, 409)
  t.equal(dup.json().code, 'EG_CONFLICT')
  t.same(dup.json().details, { id: q.id })
  t.equal(await snap(f), before)
  // On every host it is a different quarantine.
  t.equal((await add(f, { container: 'shop-web-1', reason: 'fleet-wide' })).statusCode, 201)

  // Lift by id: reason required, audited, a new version without it.
  const noReason = await f.app.inject({ method: 'DELETE', url: `/v1/quarantines/${q.id}`, headers: f.auth.admin })
  t.equal(noReason.statusCode, 400)
  t.equal(noReason.json().code, 'EG_BAD_INPUT')
  const blank = await f.app.inject({ method: 'DELETE', url: `/v1/quarantines/${q.id}?reason=%20`, headers: f.auth.admin })
  t.equal(blank.statusCode, 400)
  const rm = await f.app.inject({ method: 'DELETE', url: `/v1/quarantines/${q.id}?reason=reimaged`, headers: f.auth.admin })
  t.equal(rm.statusCode, 200)
  t.same(rm.json().removed.map((x: Quarantine) => x.id), [q.id])
  const v4 = (await getPolicy(f)).json()
  t.equal(rm.json().version, v4.version)
  t.same(v4.quarantines.map((x: Quarantine) => x.host ?? '*'), ['*'])
  t.match((await f.app.inject({ url: '/v1/audit?limit=2', headers: f.auth.read })).json().events[1], { action: 'quarantine.remove', target: 'shop-web-1', reason: 'reimaged', details: { id: q.id } })
  // Lift by container text: every quarantine of it; then none left, and the etag is the entries' own again.
  const byText = await f.app.inject({ method: 'DELETE', url: '/v1/quarantines/%2Fshop-web-1?reason=done', headers: f.auth.admin })
  t.equal(byText.statusCode, 200)
  t.equal(byText.json().removed.length, 1)
  const v5 = (await getPolicy(f)).json()
  t.equal(v5.quarantines, undefined)
  t.equal(v5.etag, v1.etag)
  const none = await f.app.inject({ method: 'DELETE', url: '/v1/quarantines/shop-web-1?reason=x', headers: f.auth.admin })
  t.equal(none.statusCode, 404)
  t.equal(none.json().code, 'EG_NOT_FOUND')
})

t.test('bad input: a coded 400 and nothing stored; roles', async (t) => {
  const f = await makeServer(t)
  const before = await snap(f)
  const cases: [string, unknown, RegExp][] = [
    ['no reason', { container: 'web' }, /reason/],
    ['blank reason', { container: 'web', reason: '   ' }, /reason must not be blank/],
    ['no container', { reason: 'r' }, /container/],
    ['container with a space', { container: 'web 1', reason: 'r' }, /container/],
    ['container with shell', { container: '$(reboot)', reason: 'r' }, /container/],
    ['container with a slash inside', { container: 'a/b', reason: 'r' }, /container/],
    ['bad host', { container: 'web', host: 'a b', reason: 'r' }, /host/],
    ['bad expires', { container: 'web', reason: 'r', expires: 'soon' }, /invalid expires "soon"/],
    ['past expires', { container: 'web', reason: 'r', expires: '2020-01-01' }, /already past/],
    ['unknown field', { container: 'web', reason: 'r', mode: 'x' }, /additional/],
    ['reason too long', { container: 'web', reason: 'x'.repeat(1025) }, /reason/],
  ]
  for (const [name, payload, message] of cases) {
    const r = await add(f, payload)
    t.equal(r.statusCode, 400, name)
    t.equal(r.json().code, 'EG_BAD_INPUT', name)
    t.match(r.json().message, message, name)
  }
  t.equal((await add(f, { container: 'web', reason: 'r' }, 'read')).statusCode, 403, 'read role cannot quarantine')
  t.equal((await add(f, { container: 'web', reason: 'r' }, 'agent')).statusCode, 403, 'nor an agent')
  t.equal((await f.app.inject({ method: 'POST', url: '/v1/quarantines', payload: { container: 'web', reason: 'r' } })).statusCode, 401)
  t.equal((await f.app.inject({ method: 'DELETE', url: '/v1/quarantines/web?reason=x', headers: f.auth.read })).statusCode, 403)
  t.equal(await snap(f), before, 'nothing changed')
  t.equal((await f.app.inject({ url: '/v1/quarantines', headers: f.auth.read })).statusCode, 200, 'read may list')
  t.equal((await f.app.inject({ url: '/v1/quarantines', headers: f.auth.agent })).statusCode, 403, 'agents get quarantines with the policy')
  // A duration, a date and an RFC 3339 time are all accepted and stored canonical.
  t.equal((await add(f, { container: 'a', reason: 'r', expires: '2026-12-31' })).json().quarantine.expires, '2026-12-31T23:59:59Z')
  t.equal((await add(f, { container: 'b', reason: 'r', expires: '2026-06-02T10:00:00+02:00' })).json().quarantine.expires, '2026-06-02T08:00:00Z')
})

t.test('a quarantine leaves the policy when it expires', async (t) => {
  const f = await makeServer(t)
  const v1 = (await getPolicy(f)).json()
  await add(f, { container: 'web', reason: 'r', expires: '1h' })
  t.equal((await getPolicy(f)).json().quarantines.length, 1)
  f.clock.now = new Date('2026-06-01T13:00:00Z')
  await f.app.eg.policy.rebuild('test')
  t.equal((await getPolicy(f)).json().quarantines.length, 1, 'in force up to and including its expiry instant')
  f.clock.now = new Date('2026-06-01T13:00:01Z')
  await f.app.eg.policy.rebuild('expiry')
  const p = (await getPolicy(f)).json()
  t.equal(p.quarantines, undefined)
  t.equal(p.etag, v1.etag)
  t.same((await f.app.inject({ url: '/v1/quarantines', headers: f.auth.read })).json().quarantines, [])
  // The expired record can still be removed (cleanup), by its container text.
  t.equal((await f.app.inject({ method: 'DELETE', url: '/v1/quarantines/web?reason=cleanup', headers: f.auth.admin })).statusCode, 200)
})

t.test('reports: the containers each host holds; GET /v1/quarantines and /v1/profiles join them', async (t) => {
  const f = await makeServer(t)
  await mkdir(join(f.blocklists, 'profiles'))
  await writeFile(join(f.blocklists, 'profiles', 'web.txt'), 'mode=learn\napi.example\n')
  await f.app.eg.reload()
  const q = (await add(f, { container: 'shop-web-1', reason: 'miner' })).json().quarantine as Quarantine
  const list0 = (await f.app.inject({ url: '/v1/quarantines', headers: f.auth.read })).json()
  t.same(list0.quarantines.map((x: { id: string; matched: unknown[] }) => [x.id, x.matched]), [[q.id, []]], 'no match yet')
  const p0 = (await f.app.inject({ url: '/v1/profiles', headers: f.auth.read })).json()
  t.equal(p0.profiles[0].containers, undefined, 'no agent reports containers yet: no containers key')
  t.equal(p0.missing, undefined)

  const report = (auth: keyof Fixture['auth'], body: object) => f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth[auth], payload: body })
  t.equal((await report('agent', sampleReport({ containers: [
    { id: ID, name: 'shop-web-1', profile: 'web', quarantineId: q.id },
    { id: 'cd'.repeat(32), name: 'shop-web-2', profile: 'web' },
    { id: 'ef'.repeat(32), name: 'legacy', profile: 'nosuch' },
  ] }))).statusCode, 204)
  t.equal((await report('agent2', sampleReport({ host: 'web2', containers: [] }))).statusCode, 204)

  const list = (await f.app.inject({ url: '/v1/quarantines', headers: f.auth.read })).json()
  t.same(list.quarantines[0].matched, [{ host: 'web1', container: { id: ID, name: 'shop-web-1' } }])
  const p = (await f.app.inject({ url: '/v1/profiles', headers: f.auth.read })).json()
  t.same(p.profiles[0].containers, [{ host: 'web1', container: { id: ID, name: 'shop-web-1' } }, { host: 'web1', container: { id: 'cd'.repeat(32), name: 'shop-web-2' } }])
  t.same(p.missing, [{ host: 'web1', container: { id: 'ef'.repeat(32), name: 'legacy' }, profile: 'nosuch' }], 'a label naming no profile is shown as such')
  const hosts = (await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })).json()
  t.same(hosts.hosts.find((h: { host: string }) => h.host === 'web1').containers.map((c: { name: string }) => c.name), ['shop-web-1', 'shop-web-2', 'legacy'])

  // The report schema: bad held containers are a 400 and change nothing.
  const before = await snap(f)
  for (const [name, c] of [
    ['short id', { id: 'abc', name: 'x' }],
    ['upper-case id', { id: ID.toUpperCase(), name: 'x' }],
    ['bad quarantine id', { id: ID, name: 'x', quarantineId: 'q-1' }],
    ['unknown field', { id: ID, name: 'x', extra: 1 }],
    ['no name', { id: ID }],
  ] as const) {
    const r = await report('agent', sampleReport({ containers: [c] }))
    t.equal(r.statusCode, 400, name)
    t.equal(r.json().code, 'EG_BAD_INPUT', name)
  }
  t.equal((await report('agent', sampleReport({ containers: Array(4097).fill({ id: ID, name: 'x' }) }))).statusCode, 400, 'at most 4096')
  t.equal(await snap(f), before)
})
