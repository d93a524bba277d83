// healthz, metrics, the OpenAPI document, 404s and rate limits: the operational edges.
import t from 'tap'
import { makeServer } from './fixtures/server.js'

t.test('healthz needs no token; unknown routes are coded 404s', async (t) => {
  const f = await makeServer(t)
  const h = await f.app.inject({ url: '/healthz' })
  t.equal(h.statusCode, 200)
  t.same(h.json(), { ok: true, version: 1 })
  const nf = await f.app.inject({ url: '/v2/nothing' })
  t.equal(nf.statusCode, 404)
  t.same(Object.keys(nf.json()).sort(), ['code', 'message', 'statusCode'])
  t.equal(nf.json().code, 'EG_NOT_FOUND')
})

t.test('metrics: policy version, entries, agents, latency by route', async (t) => {
  const f = await makeServer(t)
  await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })
  const m = await f.app.inject({ url: '/metrics', headers: f.auth.read })
  t.equal(m.statusCode, 200)
  t.match(m.headers['content-type'], /text\/plain/)
  t.match(m.body, /egress_guard_server_policy_version 1/)
  t.match(m.body, /egress_guard_server_policy_entries\{kind="domain",mode="block",allow="false",source="file"\} 1/)
  t.match(m.body, /egress_guard_server_request_duration_seconds_count\{method="GET",route="\/v1\/policy",status="200"\} 1/)
  t.match(m.body, /egress_guard_server_longpoll_waiting 0/)
})

t.test('open metrics flag serves /metrics without a token', async (t) => {
  const f = await makeServer(t, { deps: { openMetrics: true } })
  t.equal((await f.app.inject({ url: '/metrics' })).statusCode, 200)
  t.equal((await f.app.inject({ url: '/v1/hosts' })).statusCode, 401, 'nothing else opens')
})

t.test('openapi.json describes every route with its schemas', async (t) => {
  const f = await makeServer(t)
  const doc = (await f.app.inject({ url: '/openapi.json' })).json()
  t.match(doc.openapi, /^3\./)
  t.ok(doc.paths['/v1/policy'].get.parameters.some((p: { name: string }) => p.name === 'wait'))
  t.same(doc.paths['/v1/entries'].post.requestBody.content['application/json'].schema.required, ['entries'])
  t.ok(doc.components.securitySchemes.bearer)
})

t.test('rate limits per token answer 429 with a code', async (t) => {
  const f = await makeServer(t, { deps: { limits: { ratePerMinute: 3 } } })
  const codes: number[] = []
  for (let i = 0; i < 5; i++) codes.push((await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })).statusCode)
  t.same(codes, [200, 200, 200, 429, 429])
  const r = await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })
  t.equal(r.json().code, 'EG_RATE_LIMITED')
  t.ok(r.headers['retry-after'])
  // The window is a minute; what is left of it is the wait. A moment into the window the two differ
  // (the message used to say "at most 3 requests per 59 seconds; retry later").
  await new Promise((res) => setTimeout(res, 1100))
  const late = await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })
  const m = /^rate limit: at most 3 requests per minute; retry in (\d+) seconds$/.exec(late.json().message)
  t.ok(m, `message states the window and the wait: ${late.json().message}`)
  t.equal(m?.[1], String(late.headers['retry-after']), 'the wait is the Retry-After header')
  t.ok(Number(m?.[1]) < 60, 'and less than the window')
  t.equal((await f.app.inject({ url: '/v1/hosts', headers: f.auth.admin })).statusCode, 200, 'another token has its own budget')
})

t.test('requests without a valid token are rate limited by address, before any body is parsed', async (t) => {
  const f = await makeServer(t, { deps: { limits: { ratePerMinute: 2 } } })
  const codes: number[] = []
  for (let i = 0; i < 4; i++) codes.push((await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { authorization: 'Bearer eg_guess' }, payload: { entries: [] } })).statusCode)
  t.same(codes, [401, 401, 429, 429])
  t.equal((await f.app.inject({ url: '/v1/hosts', headers: f.auth.read })).statusCode, 200, 'a valid token has its own budget')
})
