// POST /v1/learned and GET /v1/profiles/:name/learned through inject(): agents upload learn-mode
// records for their own host only, names are checked as DNS names (one bad record refuses the batch
// and stores nothing), records of profiles the policy does not have are dropped, uploads merge, the
// query filters by lastSeen; roles and coded errors.
import t from 'tap'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeServer, type Fixture } from './fixtures/server.js'
import type { LearnedRecord } from '../../src/profiles/learned.js'

const rec = (name: string, over: Partial<LearnedRecord> = {}): LearnedRecord => ({
  profile: 'web', name, firstSeen: '2026-06-01T10:00:00Z', lastSeen: '2026-06-01T11:00:00Z', count: 1, containers: ['shop-web-1'], answers: ['198.51.100.7'], ...over,
})

async function withProfile(t: Parameters<typeof makeServer>[0]): Promise<Fixture> {
  const f = await makeServer(t)
  await mkdir(join(f.blocklists, 'profiles'))
  await writeFile(join(f.blocklists, 'profiles', 'web.txt'), 'mode=learn\n')
  await f.app.eg.reload()
  return f
}

const upload = (f: Fixture, body: unknown, who: keyof Fixture['auth'] = 'agent') => f.app.inject({ method: 'POST', url: '/v1/learned', headers: f.auth[who], payload: body as object })
const learned = (f: Fixture, q = '', who: keyof Fixture['auth'] = 'read') => f.app.inject({ url: `/v1/profiles/web/learned${q}`, headers: f.auth[who] })

t.test('upload, merge, query', async (t) => {
  const f = await withProfile(t)
  const r = await upload(f, { host: 'web1', records: [rec('api.example.com', { count: 2 }), rec('old.example.com', { lastSeen: '2026-05-20T00:00:00Z', firstSeen: '2026-05-20T00:00:00Z' }), rec('x.example', { profile: 'gone' })] })
  t.equal(r.statusCode, 202)
  t.same(r.json(), { accepted: 2, ignored: 1 }, 'a profile the policy does not have is dropped')
  t.equal((await upload(f, { host: 'web2', records: [rec('api.example.com', { count: 3, containers: ['shop-web-9'] })] }, 'agent2')).statusCode, 202)

  const all = (await learned(f, '?since=30d')).json()
  t.equal(all.profile, 'web')
  t.equal(all.mode, 'learn')
  t.same(all.records.map((x: { name: string; count: number; hosts: string[]; containers: string[] }) => [x.name, x.count, x.hosts, x.containers]), [
    ['api.example.com', 5, ['web2', 'web1'], ['shop-web-9', 'shop-web-1']],
    ['old.example.com', 1, ['web1'], ['shop-web-1']],
  ])
  t.same((await learned(f)).json().records.map((x: { name: string }) => x.name), ['api.example.com'], 'default since 7d (by lastSeen)')
  t.same((await learned(f, '?since=2026-05-01T00:00:00Z')).json().records.length, 2, 'since as an RFC 3339 time')
  t.equal((await learned(f, '', 'admin')).statusCode, 200)
  t.equal((await learned(f, '', 'agent')).statusCode, 403)
  t.equal((await learned(f, '?since=soon')).statusCode, 400)
  const none = await f.app.inject({ url: '/v1/profiles/nosuch/learned', headers: f.auth.read })
  t.equal(none.statusCode, 404)
  t.equal(none.json().code, 'EG_NOT_FOUND')
  t.equal((await f.app.inject({ url: '/v1/profiles/Bad!/learned', headers: f.auth.read })).statusCode, 400)
})

t.test('bad uploads: coded 4xx, nothing stored', async (t) => {
  const f = await withProfile(t)
  const cases: [string, unknown, number, RegExp][] = [
    ['not normal form', { host: 'web1', records: [rec('ok.example.com'), rec('API.Example.com')] }, 400, /records\[1\] "API.Example.com": name not in normal form/],
    ['invalid name', { host: 'web1', records: [rec('a b.example')] }, 400, /invalid character/],
    ['bad answer', { host: 'web1', records: [rec('ok.example.com', { answers: ['1.2.3'] })] }, 400, /invalid answer address/],
    ['9 answers', { host: 'web1', records: [rec('ok.example.com', { answers: Array(9).fill('198.51.100.1') })] }, 400, /answers/],
    ['bad profile name', { host: 'web1', records: [rec('ok.example.com', { profile: 'Web' })] }, 400, /profile/],
    ['count 0', { host: 'web1', records: [rec('ok.example.com', { count: 0 })] }, 400, /count/],
    ['bad time', { host: 'web1', records: [rec('ok.example.com', { lastSeen: 'now' })] }, 400, /lastSeen/],
    ['bad container', { host: 'web1', records: [rec('ok.example.com', { containers: ['a;b'] })] }, 400, /containers/],
    ['extra field', { host: 'web1', records: [{ ...rec('ok.example.com'), extra: 1 }] }, 400, /additional/],
    ['too many', { host: 'web1', records: Array(1001).fill(rec('ok.example.com')) }, 400, /records/],
    ['another host', { host: 'web2', records: [rec('ok.example.com')] }, 403, /bound to host "web1"/],
  ]
  for (const [name, body, status, message] of cases) {
    const r = await upload(f, body)
    t.equal(r.statusCode, status, name)
    t.match(r.json().message, message, name)
    t.ok(['EG_BAD_INPUT', 'EG_FORBIDDEN'].includes(r.json().code), name)
  }
  const r = await upload(f, { host: 'web1', records: [rec('ok.example.com'), rec('API.Example.com')] })
  t.same(r.json().details.problems.map((p: { index: number }) => p.index), [1], 'the problem names the record')
  t.equal((await upload(f, { host: 'web1', records: [rec('ok.example.com')] }, 'admin')).statusCode, 403, 'only agents upload')
  t.equal((await upload(f, { host: 'web1', records: [rec('ok.example.com')] }, 'read')).statusCode, 403)
  t.same((await learned(f, '?since=3650d')).json().records, [], 'nothing was stored')
})
