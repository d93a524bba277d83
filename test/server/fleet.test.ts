// Agents' reports and the fleet view (in-sync, behind, silent, drift with an injected clock), and
// hit upload and queries.
import t from 'tap'
import { makeServer, sampleHit, sampleReport } from './fixtures/server.js'
import { hostState } from '../../src/server/fleet.js'

t.test('fleet states from reports', async (t) => {
  const f = await makeServer(t)
  const cur = (await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })).json()
  const report = (auth: { authorization: string }, over: Record<string, unknown>) => f.app.inject({ method: 'POST', url: '/v1/report', headers: auth, payload: sampleReport(over) })
  t.equal((await report(f.auth.agent, { host: 'web1', version: cur.version, etag: cur.etag })).statusCode, 204)
  t.equal((await report(f.auth.agent2, { host: 'web2', version: 0, etag: 'old' })).statusCode, 204)
  const hosts = async () => (await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })).json()
  let h = await hosts()
  t.same(h.current, { version: cur.version, etag: cur.etag })
  t.same(h.hosts.map((x: { host: string; state: string }) => [x.host, x.state]), [['web1', 'in-sync'], ['web2', 'behind']])
  t.equal(h.hosts[0].lastSeen, '2026-06-01T12:00:00.000Z')
  t.same(h.hosts[0].counts, sampleReport().counts)

  // A policy change puts web1 behind until it reports the new etag.
  await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'n.example', reason: 'r' }] } })
  h = await hosts()
  t.equal(h.hosts[0].state, 'behind')
  const next = (await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })).json()
  await report(f.auth.agent, { host: 'web1', version: next.version, etag: next.etag, drift: ['set eg-v4 missing 203.0.113.0/24'], repairs: 3 })
  h = await hosts()
  t.equal(h.hosts[0].state, 'drift', 'drift wins over in-sync')
  t.equal(h.hosts[0].repairs, 3)
  await report(f.auth.agent, { host: 'web1', version: next.version, etag: next.etag })
  t.equal((await hosts()).hosts[0].state, 'in-sync')

  // 91 s later (3 x the 30 s interval + 1), both are silent.
  f.clock.now = new Date(f.clock.now.getTime() + 91_000)
  t.same((await hosts()).hosts.map((x: { state: string }) => x.state), ['silent', 'silent'])
  const metrics = await f.app.inject({ url: '/metrics', headers: f.auth.read })
  t.match(metrics.body, /egress_guard_server_agents\{state="silent"\} 2/)

  t.equal((await report(f.auth.agent, { host: 'web1', counts: { entries: -1, domains: 0, nets: 0, v4: 0, v6: 0 } })).statusCode, 400, 'negative counts')
  t.equal((await report(f.auth.agent, { host: 'web1', extra: 1 })).statusCode, 400, 'unknown field')
})

t.test('hostState precedence', async (t) => {
  const a = { ...sampleReport(), version: 7, etag: 'e', lastSeen: '2026-06-01T12:00:00Z' }
  const at = (s: number) => new Date(Date.parse('2026-06-01T12:00:00Z') + s * 1000)
  const cur = (etag: string, version = 7, generatedAt = '2026-06-01T11:00:00Z') => ({ version, etag, generatedAt })
  t.equal(hostState(a, cur('e'), at(10), 90_000), 'in-sync')
  t.equal(hostState(a, cur('f'), at(10), 90_000), 'behind')
  t.equal(hostState({ ...a, drift: ['x'] }, cur('f'), at(10), 90_000), 'drift')
  t.equal(hostState({ ...a, drift: ['x'] }, cur('e'), at(90), 90_000), 'drift', 'exactly 90 s is not silent yet')
  t.equal(hostState({ ...a, drift: ['x'] }, cur('e'), at(91), 90_000), 'silent')
  // Same etag, older version: in sync only if the report came after the current version was built.
  t.equal(hostState({ ...a, version: 5 }, cur('e', 7, '2026-06-01T12:00:01Z'), at(10), 90_000), 'behind', 'reported before version 7 existed')
  t.equal(hostState({ ...a, version: 5 }, cur('e', 7, '2026-06-01T11:59:59Z'), at(10), 90_000), 'in-sync', 'reported the same content after version 7 existed')
})

t.test('a block added and removed again: a host that never confirmed it is behind, not in sync (versions, not only etags)', async (t) => {
  const f = await makeServer(t)
  const tick = () => (f.clock.now = new Date(f.clock.now.getTime() + 1000))
  const hosts = async () => (await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })).json()
  const report = (over: Record<string, unknown>) => f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth.agent, payload: sampleReport({ host: 'web1', ...over }) })
  const v1 = (await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })).json()
  t.equal((await report({ version: v1.version, etag: v1.etag })).statusCode, 204)
  tick()
  // The hostile push: it cuts web1 off, so web1 never reports again (but is not silent for 90 s).
  await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: '198.51.100.0/24', reason: 'hostile' }] } })
  tick()
  const rm = await f.app.inject({ method: 'DELETE', url: '/v1/entries/198.51.100.0%2F24', headers: f.auth.admin })
  t.equal(rm.statusCode, 200, rm.body)
  const h = await hosts()
  t.equal(h.current.etag, v1.etag, 'the version after the removal has the etag of the version before the add')
  t.ok(h.current.version > v1.version)
  t.equal(h.hosts[0].state, 'behind', 'web1 last confirmed an older version: behind, not in-sync')
  tick()
  // web1 reaches the server again; its etag already matched, so it kept its version number.
  await report({ version: v1.version, etag: v1.etag })
  t.equal((await hosts()).hosts[0].state, 'in-sync', 'a report after the removal with the current content is in sync')
  await report({ version: h.current.version, etag: h.current.etag })
  t.equal((await hosts()).hosts[0].state, 'in-sync')
})

t.test('hits: upload, query by time, host, container, domain; batch limit', async (t) => {
  const f = await makeServer(t)
  const up = (auth: { authorization: string }, host: string, hits: unknown[]) => f.app.inject({ method: 'POST', url: '/v1/hits', headers: auth, payload: { host, hits } })
  const r = await up(f.auth.agent, 'web1', [
    sampleHit(),
    sampleHit({ name: 'a.evil.example', lastTime: '2026-06-01T11:00:00Z', time: '2026-06-01T11:00:00Z' }),
    sampleHit({ name: 'other.example', container: undefined, client: '10.0.0.9', lastTime: '2026-06-01T11:59:50Z', host: 'spoofed' }),
  ])
  t.equal(r.statusCode, 202)
  t.same(r.json(), { accepted: 3 })
  t.equal((await up(f.auth.agent2, 'web2', [sampleHit({ name: 'evil.example', lastTime: '2026-06-01T11:58:00Z' })])).statusCode, 202)
  const q = async (qs: string) => (await f.app.inject({ url: `/v1/hits${qs}`, headers: f.auth.read })).json().hits as { name: string; host: string; lastTime: string }[]
  const all = await q('')
  t.equal(all.length, 4)
  t.same(all.map((h) => h.lastTime), [...all.map((h) => h.lastTime)].sort().reverse(), 'newest first')
  t.ok(all.every((h) => h.host === 'web1' || h.host === 'web2'), 'host comes from the upload, not the hit')
  t.equal((await q('?since=30m')).length, 3)
  t.equal((await q('?since=2026-06-01T11:59:00Z')).length, 2)
  t.same((await q('?host=web2')).map((h) => h.host), ['web2'])
  t.equal((await q('?container=web')).length, 3, 'by container name')
  t.equal((await q('?container=frontend')).length, 3, 'by compose service')
  t.equal((await q('?container=abc123')).length, 3, 'by id prefix')
  t.same((await q('?domain=evil.example')).map((h) => h.name).sort(), ['a.evil.example', 'evil.example', 'evil.example'])
  t.equal((await q('?limit=1')).length, 1)
  t.equal((await f.app.inject({ url: '/v1/hits?since=yesterday', headers: f.auth.read })).statusCode, 400)

  const before = await f.snapshot()
  t.equal((await up(f.auth.agent, 'web1', Array.from({ length: 1001 }, () => sampleHit()))).statusCode, 400, 'at most 1000 per batch')
  t.equal((await up(f.auth.agent, 'web1', [sampleHit({ count: 0 })])).statusCode, 400)
  t.equal((await up(f.auth.agent, 'web1', [sampleHit({ time: 'noon' })])).statusCode, 400)
  t.equal((await up(f.auth.agent, 'web1', [sampleHit(), { name: 'x' }])).statusCode, 400, 'one bad hit refuses the batch')
  t.equal(await f.snapshot(), before)
  t.match((await f.app.inject({ url: '/metrics', headers: f.auth.read })).body, /egress_guard_server_hits_received_total 4/)
})
