// GET /v1/policy: ETag and 304, long-poll wake-up and timeout, diffs since a version, blocklist file
// reloads (a bad or unreadable file never drops the good policy), expiry, close during a long-poll.
import t from 'tap'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { makeServer, type Fixture } from './fixtures/server.js'

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return
    await sleep(10)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const get = (f: Fixture, url: string, etag?: string) => f.app.inject({ url, headers: { ...f.auth.agent, ...(etag ? { 'if-none-match': `"${etag}"` } : {}) } })

t.test('full policy, ETag, 304', async (t) => {
  const f = await makeServer(t)
  const r = await get(f, '/v1/policy')
  t.equal(r.statusCode, 200)
  const body = r.json()
  t.equal(body.version, 1)
  t.equal(r.headers.etag, `"${body.etag}"`)
  t.same(body.entries.map((e: { value: string }) => e.value).sort(), ['203.0.113.0/24', 'evil.example'])
  t.ok(body.entries.every((e: { id?: string }) => typeof e.id === 'string'), 'every entry has an id')
  const evil = body.entries.find((e: { value: string }) => e.value === 'evil.example')
  t.equal(evil.reason, 'miner pool')
  t.equal(evil.source, 'blocklists/base.txt:2')
  t.equal((await get(f, '/v1/policy', body.etag)).statusCode, 304)
  const weak = await f.app.inject({ url: '/v1/policy', headers: { ...f.auth.agent, 'if-none-match': `W/"other", W/"${body.etag}"` } })
  t.equal(weak.statusCode, 304, 'a list with a weak match is a match')
  t.equal((await get(f, '/v1/policy', 'stale')).statusCode, 200)
  t.equal((await f.app.inject({ url: '/v1/policy?wait=61', headers: f.auth.agent })).statusCode, 400, 'wait is at most 60')
  t.equal((await f.app.inject({ url: '/v1/policy?wait=abc', headers: f.auth.agent })).json().code, 'EG_BAD_INPUT')
})

t.test('long-poll: a waiting request returns 200 when an entry is added, 304 when the wait ends', async (t) => {
  const f = await makeServer(t)
  const v1 = (await get(f, '/v1/policy')).json()
  const waiting = get(f, '/v1/policy?wait=30', v1.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the request to wait')
  const add = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'new.example', reason: 'incident 7' }] } })
  t.equal(add.statusCode, 201)
  const r = await waiting
  t.equal(r.statusCode, 200, 'woken by the change, long before the 30 s wait ends (a timeout answers 304)')
  t.equal(r.json().version, 2)
  t.ok(r.json().entries.some((e: { value: string }) => e.value === 'new.example'))
  t.equal(f.app.eg.policy.waiters.size, 0)

  const started = Date.now()
  const idle = await get(f, '/v1/policy?wait=1', r.json().etag)
  t.equal(idle.statusCode, 304, 'no change: 304 when the wait ends')
  t.ok(Date.now() - started >= 900, 'it did wait')
  t.equal(idle.headers.etag, `"${r.json().etag}"`)

  // Many waiters, one change, all woken.
  const many = Array.from({ length: 200 }, () => get(f, '/v1/policy?wait=30', r.json().etag))
  await until(() => f.app.eg.policy.waiters.size === 200, '200 waiters')
  await f.app.inject({ method: 'DELETE', url: '/v1/entries/new.example?reason=done', headers: f.auth.admin })
  const answers = await Promise.all(many)
  t.ok(answers.every((a) => a.statusCode === 200 && a.json().version === 3), 'all 200 woken with version 3')
})

t.test('close() answers waiting long-polls instead of hanging', async (t) => {
  const f = await makeServer(t)
  const v1 = (await get(f, '/v1/policy')).json()
  const waiting = get(f, '/v1/policy?wait=60', v1.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the request to wait')
  await f.app.close()
  t.equal((await waiting).statusCode, 304)
})

t.test('diff since a version', async (t) => {
  const f = await makeServer(t)
  const v1 = (await get(f, '/v1/policy')).json()
  const add = (value: string, extra = {}) => f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value, reason: 'r', ...extra }] } })
  const a = (await add('a.example')).json().entries[0]
  await add('b.example')
  await f.app.inject({ method: 'DELETE', url: `/v1/entries/${a.id}`, headers: f.auth.admin })
  await writeFile(join(f.blocklists, 'base.txt'), '# miner pool\nevil.example\n')
  await f.app.eg.reload()
  const cur = (await get(f, '/v1/policy')).json()
  t.equal(cur.version, 5)
  const d = await get(f, `/v1/policy?since=${v1.version}`)
  t.equal(d.headers['x-policy-diff'], '1')
  const body = d.json()
  t.equal(body.since, 1)
  t.equal(body.version, 5)
  t.equal(body.etag, cur.etag)
  t.same(body.added.map((e: { value: string }) => e.value), ['b.example'], 'a.example came and went: not in the diff')
  const netId = v1.entries.find((e: { value: string }) => e.value === '203.0.113.0/24').id
  t.same(body.removed, [netId])
  // Applying the diff to v1 gives the current entries.
  const ids = new Set(v1.entries.map((e: { id: string }) => e.id))
  for (const id of body.removed) ids.delete(id)
  for (const e of body.added) ids.add(e.id)
  t.same([...ids].sort(), cur.entries.map((e: { id: string }) => e.id).sort())

  const same = await get(f, '/v1/policy?since=5')
  t.same([same.json().added, same.json().removed], [[], []])
  const unknown = await get(f, '/v1/policy?since=99')
  t.notOk(unknown.headers['x-policy-diff'], 'unknown version: the full policy')
  t.ok(Array.isArray(unknown.json().entries))
})

t.test('blocklist files: reload, a bad line, an unreadable file, a deleted file', async (t) => {
  const f = await makeServer(t, { files: { 'base.txt': 'evil.example\n', 'extra.list': '198.51.100.7\n' } })
  const values = async () => (await get(f, '/v1/policy')).json().entries.map((e: { value: string }) => e.value).sort()
  t.same(await values(), ['198.51.100.7/32', 'evil.example'])
  await writeFile(join(f.blocklists, 'base.txt'), 'evil.example\nnot a valid line!!\nworse.example\n')
  await f.app.eg.reload()
  t.same(await values(), ['198.51.100.7/32', 'evil.example', 'worse.example'], 'the bad line is skipped, the rest applies')
  const probs = (await f.app.inject({ url: '/v1/policy/problems', headers: f.auth.read })).json().problems
  t.equal(probs.length, 1)
  t.match(probs[0].text, /base\.txt:2: /)
  const v = (await get(f, '/v1/policy')).json().version
  // A file that turns to binary garbage (a botched checkout) cannot be read: keep its entries.
  await writeFile(join(f.blocklists, 'extra.list'), Buffer.from([0x00, 0xff, 0x10]))
  await f.app.eg.reload()
  t.same(await values(), ['198.51.100.7/32', 'evil.example', 'worse.example'], 'unreadable file keeps its previous entries')
  t.equal((await get(f, '/v1/policy')).json().version, v, 'and the version does not move')
  const p2 = (await f.app.inject({ url: '/v1/policy/problems', headers: f.auth.read })).json().problems
  t.ok(p2.some((p: { text: string }) => /extra\.list:0: .*keeping its previous 1 entries/.test(p.text)))
  await rm(join(f.blocklists, 'extra.list'))
  await f.app.eg.reload()
  t.same(await values(), ['evil.example', 'worse.example'], 'a deleted file takes its entries with it')
})

t.test('file changes are picked up by the watcher and wake long-polls', async (t) => {
  const f = await makeServer(t, { deps: { watch: true } })
  const v1 = (await get(f, '/v1/policy')).json()
  const waiting = get(f, '/v1/policy?wait=30', v1.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the request to wait')
  await writeFile(join(f.blocklists, 'new.txt'), 'fresh.example # from git\n')
  const r = await waiting
  t.equal(r.statusCode, 200)
  t.ok(r.json().entries.some((e: { value: string }) => e.value === 'fresh.example'))
})

t.test('an expiring entry leaves the policy at its expiry', async (t) => {
  const f = await makeServer(t)
  const add = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'brief.example', reason: 'r', expires: '1s' }] } })
  t.equal(add.statusCode, 201)
  const cur = (await get(f, '/v1/policy')).json()
  t.ok(cur.entries.some((e: { value: string }) => e.value === 'brief.example'))
  const waiting = get(f, '/v1/policy?wait=30', cur.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the request to wait')
  f.clock.now = new Date(f.clock.now.getTime() + 5000)
  const r = await waiting
  t.equal(r.statusCode, 200)
  t.notOk(r.json().entries.some((e: { value: string }) => e.value === 'brief.example'))
  t.equal(r.json().version, cur.version + 1)
})
