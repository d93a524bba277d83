// The Store's quarantines and learned records, as a contract any Store implementation passes (run
// here against lowdb): quarantines add/list/remove with their audit records in the same write and
// survive a reopen; learned records merge per (profile, name), filter by lastSeen, stay bounded per
// profile and live in their own file; a store file from before these collections still opens.
import t from 'tap'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LEARNED_FILE, MAIN_FILE, openLowdbStore } from '../../src/store/lowdb-store.js'
import type { Store } from '../../src/store/types.js'
import { MAX_LEARNED_PER_PROFILE, type LearnedRecord } from '../../src/profiles/learned.js'

type T = { teardown: (fn: () => unknown) => void }
async function tempDir(t: T): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `eg-storeq-${process.pid}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const rec = (name: string, over: Partial<LearnedRecord> = {}): LearnedRecord => ({
  profile: 'web', name, firstSeen: '2026-06-01T10:00:00Z', lastSeen: '2026-06-01T11:00:00Z', count: 1, containers: ['shop-web-1'], answers: ['198.51.100.7'], ...over,
})

/** The contract: `open(dir)` opens (or reopens) a store on the same data. */
function contract(name: string, open: (dir: string, now: () => Date) => Promise<Store>): void {
  t.test(`${name}: quarantines add, list, remove, audit, reopen`, async (t) => {
    const dir = await tempDir(t)
    const clock = { now: new Date('2026-06-01T12:00:00Z') }
    const s = await open(dir, () => clock.now)
    t.same(await s.listQuarantines(), [])
    const a = await s.addQuarantine({ container: 'shop-web-1', reason: 'miner download' }, { actor: 'alice' })
    t.match(a, { id: /^q-[0-9a-f]{12}$/, container: 'shop-web-1', reason: 'miner download', added: '2026-06-01T12:00:00.000Z', actor: 'alice' })
    t.notOk('host' in a)
    t.notOk('expires' in a)
    clock.now = new Date('2026-06-01T12:01:00Z')
    const b = await s.addQuarantine({ container: 'web', host: 'web1', reason: 'r2', expires: '2026-06-01T16:01:00Z' }, { actor: 'bob' })
    t.not(a.id, b.id)
    t.same((await s.listQuarantines()).map((q) => q.id), [a.id, b.id], 'oldest first')
    const audit = await s.listAudit(10)
    t.same(audit.slice(0, 2).map((e) => [e.action, e.actor, e.target, e.reason]), [['quarantine.add', 'bob', 'web', 'r2'], ['quarantine.add', 'alice', 'shop-web-1', 'miner download']])
    t.same(audit[0]!.details, { id: b.id, host: 'web1', expires: '2026-06-01T16:01:00Z' })
    // A copy comes back: changing it changes nothing stored.
    ;(await s.listQuarantines())[0]!.container = 'changed'
    t.equal((await s.listQuarantines())[0]!.container, 'shop-web-1')
    await s.close()

    const s2 = await open(dir, () => clock.now)
    t.same(await s2.listQuarantines(), [a, b], 'kept across a reopen')
    t.same(await s2.removeQuarantines(['q-000000000000'], { actor: 'carol', reason: 'x' }), [], 'an unknown id removes nothing')
    const removed = await s2.removeQuarantines([a.id], { actor: 'carol', reason: 'reimaged' })
    t.same(removed, [a])
    t.same((await s2.listQuarantines()).map((q) => q.id), [b.id])
    const r = (await s2.listAudit(1))[0]!
    t.same([r.action, r.actor, r.target, r.reason], ['quarantine.remove', 'carol', 'shop-web-1', 'reimaged'])
    t.same(r.details, { id: a.id, addedBy: 'alice', added: a.added })
    await s2.close()
  })

  t.test(`${name}: learned records merge per (profile, name), filter by lastSeen, reopen`, async (t) => {
    const dir = await tempDir(t)
    const now = new Date('2026-06-08T12:00:00Z')
    const s = await open(dir, () => now)
    t.same(await s.mergeLearned('web1', [rec('api.example.com', { count: 2 }), rec('old.example.com', { firstSeen: '2026-05-01T00:00:00Z', lastSeen: '2026-05-02T00:00:00Z' }), rec('db.example', { profile: 'db' })]), { accepted: 3, evicted: 0 })
    await s.mergeLearned('web2', [rec('api.example.com', { count: 3, lastSeen: '2026-06-08T11:00:00Z', containers: ['shop-web-2'] })])
    const all = await s.listLearned({ profile: 'web' })
    t.same(all.map((r) => [r.name, r.count, r.hosts, r.containers]), [['api.example.com', 5, ['web2', 'web1'], ['shop-web-2', 'shop-web-1']], ['old.example.com', 1, ['web1'], ['shop-web-1']]])
    t.same((await s.listLearned({ profile: 'web', since: new Date('2026-06-01T00:00:00Z') })).map((r) => r.name), ['api.example.com'], 'since: by lastSeen')
    t.same((await s.listLearned({ profile: 'db' })).map((r) => r.name), ['db.example'], 'per profile')
    t.same(await s.listLearned({ profile: 'none' }), [])
    t.same(await s.listLearned({ profile: '__proto__' }), [], 'no prototype key reads as a profile')
    await s.close()
    const s2 = await open(dir, () => now)
    t.same((await s2.listLearned({ profile: 'web' })).map((r) => [r.name, r.count]), [['api.example.com', 5], ['old.example.com', 1]], 'kept across a reopen')
    await s2.close()
  })

  t.test(`${name}: learned records are bounded per profile`, async (t) => {
    const dir = await tempDir(t)
    const s = await open(dir, () => new Date('2026-06-08T12:00:00Z'))
    const batch = (from: number, n: number, day: string): LearnedRecord[] =>
      Array.from({ length: n }, (_, i) => rec(`n${from + i}.example.com`, { firstSeen: `${day}T00:00:00Z`, lastSeen: `${day}T00:00:00Z` }))
    for (let i = 0; i < MAX_LEARNED_PER_PROFILE; i += 1000) await s.mergeLearned('web1', batch(i, 1000, '2026-06-01'))
    const r = await s.mergeLearned('web1', batch(MAX_LEARNED_PER_PROFILE, 10, '2026-06-02'))
    t.equal(r.evicted, 10)
    const kept = await s.listLearned({ profile: 'web' })
    t.equal(kept.length, MAX_LEARNED_PER_PROFILE)
    t.ok(kept.some((x) => x.name === `n${MAX_LEARNED_PER_PROFILE + 9}.example.com`), 'the newest are kept')
    await s.close()
  })
}

contract('lowdb', (dir, now) => openLowdbStore(dir, { now, softFlushMs: 0 }))

t.test('lowdb: learned records live in their own file; an older main file without quarantines opens', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, MAIN_FILE), JSON.stringify({ schema: 1, version: 4, etag: 'e4', entries: [], tokens: [], agents: [], audit: [] }))
  const s = await openLowdbStore(dir, { softFlushMs: 0 })
  t.same(await s.listQuarantines(), [], 'no quarantines list: none')
  await s.mergeLearned('web1', [rec('api.example.com')])
  await s.addQuarantine({ container: 'web', reason: 'r' }, { actor: 'a' })
  await s.close()
  const main = JSON.parse(await readFile(join(dir, MAIN_FILE), 'utf8'))
  t.equal(main.version, 4)
  t.equal(main.quarantines.length, 1)
  t.notOk(JSON.stringify(main).includes('api.example.com'), 'learned records are not in the main file')
  t.equal(JSON.parse(await readFile(join(dir, LEARNED_FILE), 'utf8')).profiles.web[0].name, 'api.example.com')
})

t.test('lowdb: a malformed quarantines list or learned file stops startup and is not overwritten', async (t) => {
  const dir = await tempDir(t)
  const text = JSON.stringify({ schema: 1, version: 1, etag: '', entries: [], tokens: [], agents: [], audit: [], quarantines: {} })
  await writeFile(join(dir, MAIN_FILE), text)
  await t.rejects(openLowdbStore(dir), { code: 'EG_STORE_CORRUPT', message: /"quarantines" is not a list/ })
  t.equal(await readFile(join(dir, MAIN_FILE), 'utf8'), text)
  const dir2 = await tempDir(t)
  await writeFile(join(dir2, LEARNED_FILE), JSON.stringify({ schema: 1, profiles: { web: 'x' } }))
  await t.rejects(openLowdbStore(dir2), { code: 'EG_STORE_CORRUPT', message: /learned\.json: "profiles" is missing or not an object of lists/ })
  t.equal(await readFile(join(dir2, LEARNED_FILE), 'utf8'), JSON.stringify({ schema: 1, profiles: { web: 'x' } }))
  const dir3 = await tempDir(t)
  await writeFile(join(dir3, LEARNED_FILE), '{"schema":1,"prof')
  await t.rejects(openLowdbStore(dir3), { code: 'EG_STORE_CORRUPT', message: /not valid JSON/ })
})
