// buildPolicy (expired out, duplicates merged, order-independent etag) and diffPolicies.
import t from 'tap'
import { buildPolicy, entryKey, entryId } from '../../src/policy/merge.js'
import { diffPolicies } from '../../src/policy/diff.js'
import { parseBlocklist } from '../../src/policy/parse.js'
import type { Entry } from '../../src/policy/types.js'

const NOW = new Date('2026-06-01T12:00:00Z')
const entries = (text: string, file = 'a.txt'): Entry[] => parseBlocklist(text, file, { now: NOW }).entries

/** Deterministic Fisher-Yates shuffle. */
function shuffle<T>(a: T[], seed: number): T[] {
  const out = a.slice()
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const LIST = [
  'b.example # bee', '*.b.example', '@@ok.b.example', 'a.example mode=alert', 'a.example', '203.0.113.0/24 ; SBL1',
  '2001:db8::/48', '198.51.100.7', 'c.example expires=2027-01-01', '0.0.0.0 d.example e.example', '||f.example^',
].join('\n')

t.test('entryKey: identity is kind, value, *., allow and mode', async (t) => {
  const [a, b] = entries('a.example # one\n0.0.0.0 a.example # two')
  t.equal(entryKey(a!), entryKey(b!), 'form and reason do not matter')
  t.equal(entryKey(a!), 'domain a.example block')
  t.equal(entryKey(entries('@@*.a.example')[0]!), 'domain @@*.a.example block')
  t.equal(entryKey(entries('203.0.113.7 mode=alert')[0]!), 'net 203.0.113.7/32 alert')
  t.equal(entryId(a!), a!.id)
})

t.test('buildPolicy: sorted, etag independent of input order, version from the etag', async (t) => {
  const es = entries(LIST)
  const p = buildPolicy(es, { now: NOW })
  t.equal(p.entries.length, 12)
  t.match(p.etag, /^[0-9a-f]{64}$/)
  t.equal(p.version, parseInt(p.etag.slice(0, 12), 16))
  t.equal(p.generatedAt, NOW.toISOString())
  t.same(p.entries.slice(0, 4).map((e) => entryKey(e)), ['domain a.example block', 'domain a.example alert', 'domain b.example block', 'domain *.b.example block'])
  t.same(p.entries.filter((e) => e.kind === 'net').map((e) => e.value), ['198.51.100.7/32', '2001:db8::/48', '203.0.113.0/24'], 'domains first, then networks')
  for (let seed = 1; seed <= 5; seed++) {
    const q = buildPolicy(shuffle(es, seed), { now: NOW })
    t.equal(q.etag, p.etag, `same etag for shuffle ${seed}`)
    t.same(q.entries.map(entryKey), p.entries.map(entryKey), `same order for shuffle ${seed}`)
  }
  const moved = buildPolicy(entries('\n\n# moved\n' + LIST, 'other.txt'), { now: NOW })
  t.equal(moved.etag, p.etag, 'moving lines or renaming files (source, id) does not change the etag')
  t.equal(buildPolicy(es, { now: NOW, version: 7 }).version, 7)
  const changed = buildPolicy(entries(LIST.replace('# bee', '# wasp')), { now: NOW })
  t.not(changed.etag, p.etag, 'a reason change is a new policy')
  t.not(buildPolicy(entries(LIST + '\ng.example'), { now: NOW }).etag, p.etag)
  t.not(buildPolicy(entries(LIST.replace('c.example expires=2027-01-01', 'c.example expires=2027-01-02')), { now: NOW }).etag, p.etag)
  t.same(buildPolicy([], { now: NOW }).entries, [])
})

t.test('buildPolicy: expired entries dropped', async (t) => {
  const es = entries('a.example expires=2026-07-01\nb.example')
  t.equal(buildPolicy(es, { now: NOW }).entries.length, 2)
  const later = buildPolicy(es, { now: new Date('2026-07-02T00:00:00Z') })
  t.same(later.entries.map((e) => e.value), ['b.example'])
  t.not(later.etag, buildPolicy(es, { now: NOW }).etag)
})

t.test('buildPolicy: duplicates merged, first source wins, reasons kept, latest expiry, force', async (t) => {
  const es = [...entries('a.example # from a\nn.example expires=2026-08-01\nm.example expires=2026-08-01', 'a.txt'), ...entries('0.0.0.0 a.example # from b\nn.example expires=2026-09-01\nm.example', 'b.txt')]
  const dups: Array<[string, string]> = []
  const p = buildPolicy(es, { now: NOW, onDuplicate: (kept, dup) => dups.push([kept.source, dup.source]) })
  t.equal(p.entries.length, 3)
  const a = p.entries.find((e) => e.value === 'a.example')!
  t.equal(a.source, 'a.txt:1', 'first source wins')
  t.equal(a.reason, 'from a; from b', 'reasons kept')
  t.equal(p.entries.find((e) => e.value === 'n.example')!.expires, '2026-09-01T23:59:59Z', 'the later expiry')
  t.equal(p.entries.find((e) => e.value === 'm.example')!.expires, undefined, 'no expiry beats any expiry')
  t.same(dups.sort(), [['a.txt:1', 'b.txt:1'], ['a.txt:2', 'b.txt:2'], ['a.txt:3', 'b.txt:3']])
  t.equal(es[0]!.reason, 'from a', 'inputs are not mutated')
  const swapped = buildPolicy([...es.slice(3), ...es.slice(0, 3)], { now: NOW })
  t.equal(swapped.etag, p.etag, 'merged reasons do not depend on order')
  t.equal(swapped.entries.find((e) => e.value === 'a.example')!.source, 'b.txt:1')
  const forced = buildPolicy([...entries('10.0.0.0/8'), ...entries('10.0.0.0/8 force')], { now: NOW })
  t.equal(forced.entries.length, 1)
  t.equal(forced.entries[0]!.force, true)
  const expiredFirst = buildPolicy(entries('x.example expires=2026-06-02\nx.example expires=2026-12-01'), { now: new Date('2026-07-01T00:00:00Z') })
  t.same(expiredFirst.entries.map((e) => [e.source, e.expires]), [['a.txt:2', '2026-12-01T23:59:59Z']], 'an expired duplicate does not hide a live one')
})

t.test('diffPolicies: added, removed, changed by identity', async (t) => {
  const from = entries('a.example\nb.example # old\nc.example\n203.0.113.0/24')
  const to = entries('b.example # new\nc.example\nd.example\n203.0.113.0/24 mode=alert\n0.0.0.0 c.example')
  const d = diffPolicies(from, to)
  t.same(d.added.map(entryKey), ['domain d.example block', 'net 203.0.113.0/24 alert'])
  t.same(d.removed.map(entryKey), ['domain a.example block', 'net 203.0.113.0/24 block'])
  t.same(d.changed.map((c) => [c.from.reason, c.to.reason]), [['old', 'new']])
  const same = diffPolicies(from, [...from].reverse())
  t.same([same.added, same.removed, same.changed], [[], [], []], 'order does not matter')
  t.same(diffPolicies([], from).added.length, 4)
  t.same(diffPolicies(from, []).removed.length, 4)
})
