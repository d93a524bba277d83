// Learn mode's records: what an upload may hold (names in normal form, canonical addresses, bounded
// lists) and how uploads merge per (profile, name): counts add up, times widen, lists stay bounded,
// future times are clamped, and past the per-profile cap the oldest lastSeen go.
import t from 'tap'
import { learnedRecordProblem, mergeLearned, MAX_ANSWERS, MAX_RECORD_CONTAINERS, type LearnedRecord } from '../../src/profiles/learned.js'

const rec = (over: Partial<LearnedRecord> = {}): LearnedRecord => ({
  profile: 'web', name: 'api.example.com', firstSeen: '2026-06-01T10:00:00Z', lastSeen: '2026-06-01T11:00:00Z', count: 3,
  containers: ['shop-web-1'], answers: ['198.51.100.7', '2001:db8::7'], ...over,
})
const now = new Date('2026-06-01T12:00:00Z')

t.test('learnedRecordProblem', async (t) => {
  t.equal(learnedRecordProblem(rec()), undefined)
  t.equal(learnedRecordProblem(rec({ name: '_dmarc.example.com', answers: [] })), undefined, 'underscores are DNS names too')
  const bad = (over: object) => learnedRecordProblem({ ...rec(), ...over })
  t.match(bad({ profile: 'Web' }), /profile must be/)
  t.match(bad({ name: 'API.example.com' }), /normal form/)
  t.match(bad({ name: 'api.example.com.' }), /normal form/)
  t.match(bad({ name: '*.example.com' }), /normal form/)
  t.match(bad({ name: 'a b.example' }), /invalid character/)
  t.match(bad({ name: 'x'.repeat(64) + '.example' }), /63/)
  t.match(bad({ firstSeen: 'yesterday' }), /RFC 3339/)
  t.match(bad({ firstSeen: '2026-06-01T12:00:00Z' }), /after lastSeen/)
  t.match(bad({ count: 0 }), /count/)
  t.match(bad({ count: 1.5 }), /count/)
  t.match(bad({ containers: Array(MAX_RECORD_CONTAINERS + 1).fill('c') }), /at most 16/)
  t.match(bad({ containers: ['a;b'] }), /invalid container name/)
  t.match(bad({ answers: Array(MAX_ANSWERS + 1).fill('198.51.100.1') }), /at most 8/)
  t.match(bad({ answers: ['198.051.100.1'] }), /invalid answer address/)
  t.match(bad({ answers: ['2001:DB8::7'] }), /not canonical/)
  t.match(learnedRecordProblem(null), /not an object/)
})

t.test('mergeLearned: counts add, times widen, lists bounded with the newest first', async (t) => {
  const a = mergeLearned([], 'web1', [rec()], { now })
  t.same(a.records, [{ ...rec(), firstSeen: '2026-06-01T10:00:00.000Z', lastSeen: '2026-06-01T11:00:00.000Z', hosts: ['web1'] }])
  const b = mergeLearned(a.records, 'web2', [rec({ firstSeen: '2026-06-01T09:00:00Z', lastSeen: '2026-06-01T09:30:00Z', count: 2, containers: ['shop-web-2'], answers: ['198.51.100.8'] })], { now })
  t.same(b.records[0], {
    profile: 'web', name: 'api.example.com', firstSeen: '2026-06-01T09:00:00.000Z', lastSeen: '2026-06-01T11:00:00.000Z', count: 5,
    containers: ['shop-web-2', 'shop-web-1'], answers: ['198.51.100.8', '198.51.100.7', '2001:db8::7'], hosts: ['web2', 'web1'],
  })
  t.equal(a.records.length, 1, 'pure: the input list is not changed')
  t.equal(a.records[0]!.count, 3)
  // Bounded lists: 20 containers over several uploads keep 16, 10 answers keep 8.
  let cur = b.records
  for (let i = 0; i < 20; i++) cur = mergeLearned(cur, `h${i}`, [rec({ containers: [`c${i}`], answers: [`203.0.113.${i}`] })], { now }).records
  t.equal(cur[0]!.containers.length, MAX_RECORD_CONTAINERS)
  t.equal(cur[0]!.containers[0], 'c19', 'the newest container first')
  t.equal(cur[0]!.answers.length, MAX_ANSWERS)
  t.equal(cur[0]!.hosts.length, 16)
  // A leading / from Docker's API is dropped.
  t.same(mergeLearned([], 'web1', [rec({ containers: ['/shop-web-1'] })], { now }).records[0]!.containers, ['shop-web-1'])
})

t.test('mergeLearned: a time in the future is taken as now', async (t) => {
  const r = mergeLearned([], 'web1', [rec({ firstSeen: '2030-01-01T00:00:00Z', lastSeen: '2030-01-01T00:00:00Z' })], { now }).records[0]!
  t.equal(r.lastSeen, now.toISOString())
  t.equal(r.firstSeen, now.toISOString())
})

t.test('mergeLearned: past the cap, the oldest lastSeen go', async (t) => {
  const recs = Array.from({ length: 6 }, (_, i) => rec({ name: `n${i}.example`, firstSeen: `2026-06-01T0${i}:00:00Z`, lastSeen: `2026-06-01T0${i}:30:00Z` }))
  const first = mergeLearned([], 'web1', recs.slice(0, 4), { now, cap: 4 })
  t.equal(first.evicted, 0)
  const r = mergeLearned(first.records, 'web1', recs.slice(4), { now, cap: 4 })
  t.equal(r.evicted, 2)
  t.same(r.records.map((x) => x.name), ['n2.example', 'n3.example', 'n4.example', 'n5.example'], 'n0 and n1 (oldest lastSeen) evicted; kept sorted by name')
  // A name seen again is fresh again: it survives the next eviction.
  const again = mergeLearned(r.records, 'web1', [rec({ name: 'n2.example', lastSeen: '2026-06-01T11:59:00Z', firstSeen: '2026-06-01T11:59:00Z' }), rec({ name: 'n9.example' })], { now, cap: 4 })
  t.same(again.records.map((x) => x.name), ['n2.example', 'n4.example', 'n5.example', 'n9.example'])
})
