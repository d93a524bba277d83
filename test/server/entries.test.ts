// POST/DELETE/GET /v1/entries: validation like blocklist lines, all-or-nothing, reasons, the audit
// log (who, what, why), removal by id or value, file entries protected.
import t from 'tap'
import { makeServer } from './fixtures/server.js'

t.test('add, list, remove, with the audit trail', async (t) => {
  const f = await makeServer(t)
  const add = await f.app.inject({
    method: 'POST',
    url: '/v1/entries',
    headers: f.auth.admin,
    payload: { entries: [{ value: 'Bad.Example.', reason: 'incident 42', expires: '4h' }, { value: '198.51.100.0/24', reason: 'scanner', mode: 'alert' }, { value: 'ok.example', reason: 'vendor', allow: true }] },
  })
  t.equal(add.statusCode, 201)
  const body = add.json()
  t.equal(body.version, 2)
  t.same(body.entries.map((e: { value: string }) => e.value), ['bad.example', '198.51.100.0/24', 'ok.example'], 'normalised like file entries')
  t.equal(body.entries[0].expires, '2026-06-01T16:00:00Z', '4h from the (injected) clock')
  t.equal(body.entries[0].actor, 'admin')
  t.equal(body.entries[0].source, 'api:admin')
  t.equal(body.entries[1].mode, 'alert')
  t.equal(body.entries[2].allow, true)

  const ls = await f.app.inject({ url: '/v1/entries?source=api', headers: f.auth.read })
  t.equal(ls.json().entries.length, 3)
  t.equal((await f.app.inject({ url: '/v1/entries?source=file', headers: f.auth.read })).json().entries.length, 2)
  t.same((await f.app.inject({ url: '/v1/entries?mode=alert', headers: f.auth.read })).json().entries.map((e: { value: string }) => e.value), ['198.51.100.0/24'])
  t.same((await f.app.inject({ url: '/v1/entries?allow=true', headers: f.auth.read })).json().entries.map((e: { value: string }) => e.value), ['ok.example'])
  t.same((await f.app.inject({ url: '/v1/entries?q=incident', headers: f.auth.read })).json().entries.map((e: { value: string }) => e.value), ['bad.example'])

  const rmById = await f.app.inject({ method: 'DELETE', url: `/v1/entries/${body.entries[1].id}?reason=false%20positive`, headers: f.auth.admin })
  t.equal(rmById.statusCode, 200)
  t.equal(rmById.json().version, 3)
  const rmByValue = await f.app.inject({ method: 'DELETE', url: '/v1/entries/BAD.example', headers: f.auth.admin })
  t.equal(rmByValue.statusCode, 200)
  t.same(rmByValue.json().removed.map((e: { value: string }) => e.value), ['bad.example'])
  const cidr = await f.app.inject({ method: 'DELETE', url: `/v1/entries/${encodeURIComponent('203.0.113.0/24')}`, headers: f.auth.admin })
  t.equal(cidr.statusCode, 409, 'file entries are edited in git')
  t.match(cidr.json().message, /blocklists\/base\.txt:3.*edit the blocklist file/)
  const missing = await f.app.inject({ method: 'DELETE', url: '/v1/entries/nothing.example', headers: f.auth.admin })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().code, 'EG_NOT_FOUND')

  const events = (await f.app.inject({ url: '/v1/audit?limit=50', headers: f.auth.read })).json().events as { action: string; actor: string; target: string; reason?: string; time: string }[]
  const adds = events.filter((e) => e.action === 'entry.add')
  t.same(adds.map((e) => [e.actor, e.target, e.reason]).sort(), [['admin', '198.51.100.0/24', 'scanner'], ['admin', 'bad.example', 'incident 42'], ['admin', 'ok.example', 'vendor']])
  const rms = events.filter((e) => e.action === 'entry.remove')
  t.same(rms.map((e) => [e.actor, e.target, e.reason ?? null]), [['admin', 'bad.example', null], ['admin', '198.51.100.0/24', 'false positive']], 'newest first')
  t.ok(events.every((e) => e.time === '2026-06-01T12:00:00.000Z'))
  const versions = events.filter((e) => e.action === 'policy.version').map((e) => e.reason ?? '')
  t.ok(versions.includes('1 entry removed by admin'), `singular for one entry: ${JSON.stringify(versions)}`)
  t.notOk(versions.some((r) => /\b1 entries\b/.test(r)), 'never "1 entries"')
  t.equal((await f.app.inject({ url: '/v1/audit?limit=2', headers: f.auth.read })).json().events.length, 2)
})

t.test('bad bodies: 400 with a code, nothing added', async (t) => {
  const f = await makeServer(t)
  const before = await f.snapshot()
  const post = (payload: unknown, headers: Record<string, string> = {}) =>
    f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, ...headers }, payload: payload as string })
  const cases: [string, unknown][] = [
    ['no reason', { entries: [{ value: 'a.example' }] }],
    ['empty reason', { entries: [{ value: 'a.example', reason: '' }] }],
    ['empty list', { entries: [] }],
    ['not a list', { entries: 'a.example' }],
    ['unknown field', { entries: [{ value: 'a.example', reason: 'r', colour: 'red' }] }],
    ['bad mode', { entries: [{ value: 'a.example', reason: 'r', mode: 'drop' }] }],
    ['no body', {}],
  ]
  for (const [name, payload] of cases) {
    const r = await post(payload)
    t.equal(r.statusCode, 400, name)
    t.equal(r.json().code, 'EG_BAD_INPUT', name)
  }
  // One bad item among good ones: the whole batch is refused, the problems name the index.
  const mixed = await post({ entries: [{ value: 'fine.example', reason: 'r' }, { value: 'bad..example', reason: 'r' }, { value: '0.0.0.0/0', reason: 'r' }, { value: 'x.example', reason: 'r', expires: 'tomorrowish' }] })
  t.equal(mixed.statusCode, 400)
  const problems = mixed.json().details.problems as { index: number; message: string }[]
  t.same(problems.map((p) => p.index), [1, 2, 3])
  t.match(problems[1]!.message, /0\.0\.0\.0\/0/)
  t.equal((await post({ entries: [{ value: 'past.example', reason: 'r', expires: '2020-01-01' }] })).statusCode, 400, 'already expired')
  t.equal((await post({ entries: [{ value: '10.0.0.0/7', reason: 'r' }] })).statusCode, 400, 'too broad without force')
  const raw = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, 'content-type': 'application/json' }, payload: '{"entries": [' })
  t.equal(raw.statusCode, 400, 'malformed JSON')
  t.equal(raw.json().code, 'EG_BAD_INPUT')
  const txt = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, 'content-type': 'text/plain' }, payload: 'evil.example' })
  t.equal(txt.statusCode, 400, 'text is not an entries object')
  t.equal(txt.json().code, 'EG_BAD_INPUT')
  const xml = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, 'content-type': 'application/xml' }, payload: '<entries/>' })
  t.equal(xml.statusCode, 415)
  t.equal(xml.json().code, 'EG_BAD_INPUT')
  const big = await post({ entries: [{ value: 'a.example', reason: 'x'.repeat(2 << 20) }] })
  t.equal(big.statusCode, 413)
  t.equal(big.json().code, 'EG_TOO_LARGE')
  t.equal(await f.snapshot(), before, 'nothing changed')
  t.equal((await f.app.inject({ url: '/v1/policy', headers: f.auth.read })).json().version, 1)
})

t.test('force accepts a broad network', async (t) => {
  const f = await makeServer(t)
  const r = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: '10.0.0.0/7', reason: 'r', force: true }] } })
  t.equal(r.statusCode, 201)
  t.equal(r.json().entries[0].force, true)
})
