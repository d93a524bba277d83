// The Docker API verdict in the fleet view: an agent's report carries it, the server validates it
// (bad shapes are 400 and change nothing), keeps it with the host, answers it in /v1/hosts, and counts
// hosts per verdict in /metrics.
import t from 'tap'
import { makeServer, sampleReport } from './fixtures/server.js'

const exposed = { verdict: 'fail', listeners: ['[::]:2375'], detail: 'dockerd (pid 7) listens on [::]:2375 without --tlsverify' }

t.test('reported, stored, shown in /v1/hosts, counted in /metrics', async (t) => {
  const f = await makeServer(t)
  const report = (auth: { authorization: string }, over: Record<string, unknown>) => f.app.inject({ method: 'POST', url: '/v1/report', headers: auth, payload: sampleReport(over) })
  t.equal((await report(f.auth.agent, { host: 'web1', dockerApi: exposed })).statusCode, 204)
  t.equal((await report(f.auth.agent2, { host: 'web2', dockerApi: { verdict: 'ok', listeners: [], detail: 'unix socket only' } })).statusCode, 204)
  const hosts = (await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })).json() as { hosts: Array<{ host: string; dockerApi?: unknown }> }
  t.same(hosts.hosts.map((h) => [h.host, h.dockerApi]), [['web1', exposed], ['web2', { verdict: 'ok', listeners: [], detail: 'unix socket only' }]])
  t.same((await f.store.listAgents()).find((a) => a.host === 'web1')?.dockerApi, exposed, 'kept in the store')
  const m = (await f.app.inject({ url: '/metrics', headers: f.auth.read })).body
  t.match(m, /egress_guard_server_agents_docker_api\{verdict="fail"\} 1/)
  t.match(m, /egress_guard_server_agents_docker_api\{verdict="ok"\} 1/)
  t.match(m, /egress_guard_server_agents_docker_api\{verdict="warn"\} 0/)
  // An agent without dockerd (or an older agent) reports none: no longer counted.
  t.equal((await report(f.auth.agent, { host: 'web1' })).statusCode, 204)
  t.match((await f.app.inject({ url: '/metrics', headers: f.auth.read })).body, /egress_guard_server_agents_docker_api\{verdict="fail"\} 0/)
})

t.test('a bad dockerApi is 400 and changes nothing', async (t) => {
  const f = await makeServer(t)
  const before = await f.snapshot()
  for (const bad of [
    { ...exposed, verdict: 'exposed' },
    { ...exposed, extra: 1 },
    { verdict: 'fail', listeners: ['[::]:2375'] },
    { ...exposed, listeners: Array.from({ length: 65 }, (_, i) => `10.0.0.${i}:2375`) },
    { ...exposed, detail: 'x'.repeat(1025) },
    'fail',
  ]) {
    const r = await f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth.agent, payload: sampleReport({ dockerApi: bad }) })
    t.equal(r.statusCode, 400, JSON.stringify(bad).slice(0, 80))
    t.equal(r.json().code, 'EG_BAD_INPUT')
  }
  t.equal(await f.snapshot(), before, 'nothing stored')
})
