// `profile suggest` as a pure function: one name a line with its comment (first seen, lookups,
// containers), many siblings folded into `*.parent` (never a TLD, a registry suffix or a shared
// hosting suffix), names under a proposed name folded into it, lines of the current profile kept and
// not repeated, single-label names left out, and the text reads back as a profile without a problem.
import t from 'tap'
import { foldable, suggestProfile } from '../../src/profiles/suggest.js'
import { parseProfile } from '../../src/profiles/parse.js'
import type { LearnedRecord } from '../../src/profiles/learned.js'
import type { ProfileRule } from '../../src/profiles/types.js'

const now = new Date('2026-06-08T12:00:00Z')
let day = 1
const rec = (name: string, over: Partial<LearnedRecord> = {}): LearnedRecord => ({
  profile: 'web', name, firstSeen: `2026-06-0${(day++ % 7) + 1}T10:00:00Z`, lastSeen: '2026-06-08T10:00:00Z', count: 1, containers: ['shop-web-1'], answers: [], ...over,
})
const body = (text: string): string[] => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))

t.test('one name a line, each with first seen, lookups and containers', async (t) => {
  const s = suggestProfile([
    rec('api.stripe.com', { firstSeen: '2026-06-02T08:00:00Z', count: 120, containers: ['shop-web-1', 'shop-web-2'] }),
    rec('sentry.io', { firstSeen: '2026-06-03T09:00:00Z', count: 4, containers: ['shop-worker-1'] }),
  ], { name: 'web', mode: 'learn', currentMode: 'learn', since: '7d', now })
  t.same(body(s.text), [
    'mode=learn',
    'api.stripe.com  # first seen 2026-06-02, 120 lookups, containers: shop-web-1, shop-web-2',
    'sentry.io  # first seen 2026-06-03, 4 lookups, containers: shop-worker-1',
  ])
  t.match(s.text, /^# Profile web: proposed by `egress-guard profile suggest web --since 7d` at 2026-06-08T12:00:00.000Z\n# from 2 names \(124 lookups\) learned in the last 7d\./)
  t.match(s.text, /# When reviewed: mode=alert shows what enforce would refuse/)
  const parsed = parseProfile(s.text, 'web.txt', 'web')
  t.same(parsed.problems, [], 'reads back as a profile without a problem')
  t.equal(parsed.profile.mode, 'learn')
  t.same(parsed.profile.rules.map((r) => [r.value, r.reason]), [
    ['api.stripe.com', 'first seen 2026-06-02, 120 lookups, containers: shop-web-1, shop-web-2'],
    ['sentry.io', 'first seen 2026-06-03, 4 lookups, containers: shop-worker-1'],
  ])
})

t.test('five or more siblings under one parent become *.parent; four stay names', async (t) => {
  const shards = ['a', 'b', 'c', 'd', 'e'].map((x, i) => rec(`${x}.cdn.example.net`, { count: i + 1, containers: [`c${i}`], firstSeen: `2026-06-0${i + 2}T00:00:00Z` }))
  const deep = rec('x.y.cdn.example.net', { count: 10, containers: ['c9'] })
  const four = ['p', 'q', 'r', 's'].map((x) => rec(`${x}.img.example.org`))
  const s = suggestProfile([...shards, deep, ...four], { name: 'web', mode: 'enforce', now })
  t.same(body(s.text).map((l) => l.split('  #')[0]), ['mode=enforce', '*.cdn.example.net', 'p.img.example.org', 'q.img.example.org', 'r.img.example.org', 's.img.example.org'])
  const line = s.lines.find((l) => l.value === '*.cdn.example.net')!
  t.equal(line.count, 25, 'the lookups of every name it stands for')
  t.equal(line.firstSeen, '2026-06-02T00:00:00Z', 'the earliest first seen')
  t.same(line.containers, ['c0', 'c1', 'c2', 'c3', 'c4', 'c9'])
  t.match(s.text, /\*\.cdn\.example\.net {2}# first seen 2026-06-02, 25 lookups, containers: c0, c1, c2, c3, c4 \(\+1 more\), 6 names under it: a\.cdn\.example\.net, b\.cdn\.example\.net, c\.cdn\.example\.net, d\.cdn\.example\.net, e\.cdn\.example\.net \(\+1 more\)/)
  t.notMatch(s.text, /When reviewed/, 'no hint when the mode is already enforce')
  t.same(parseProfile(s.text, 'web.txt', 'web').problems, [])
  // A threshold of 6 keeps them apart.
  t.equal(suggestProfile([...shards], { name: 'web', mode: 'enforce', now, siblingThreshold: 6 }).lines.length, 5)
})

t.test('the highest parent folds; a parent looked up itself becomes a plain line', async (t) => {
  const names = ['a', 'b', 'c', 'd', 'e'].flatMap((x) => [`${x}.example.com`, `${x}.cdn.example.com`])
  const s = suggestProfile([...names.map((n) => rec(n)), rec('example.com')], { name: 'web', mode: 'enforce', now })
  t.same(s.lines.map((l) => l.value), ['example.com'], 'example.com (looked up) covers itself and the 10 names under it')
  t.equal(s.lines[0]!.names.length, 11)
  const s2 = suggestProfile(names.map((n) => rec(n)), { name: 'web', mode: 'enforce', now })
  t.same(s2.lines.map((l) => l.value), ['*.example.com'], 'without it: *.example.com, which covers *.cdn.example.com too')
})

t.test('never folded: a top-level domain, a registry suffix, a shared hosting suffix', async (t) => {
  t.notOk(foldable('com'))
  t.notOk(foldable('co.uk'))
  t.notOk(foldable('com.au'))
  t.ok(foldable('example.uk'))
  t.ok(foldable('example.com'))
  t.notOk(foldable('cloudfront.net'))
  t.notOk(foldable('s3.eu-west-1.amazonaws.com'), 'every bucket is somebody\'s')
  t.notOk(foldable('github.io'))
  t.ok(foldable('myorg.github.io'), 'one tenant under a shared suffix may fold')
  const tld = ['a', 'b', 'c', 'd', 'e'].map((x) => rec(`${x}.com`))
  t.same(suggestProfile(tld, { name: 'web', mode: 'enforce', now }).lines.map((l) => l.value), ['a.com', 'b.com', 'c.com', 'd.com', 'e.com'])
  const uk = ['a', 'b', 'c', 'd', 'e'].map((x) => rec(`${x}.co.uk`))
  t.equal(suggestProfile(uk, { name: 'web', mode: 'enforce', now }).lines.length, 5)
  const cf = ['d1', 'd2', 'd3', 'd4', 'd5'].map((x) => rec(`${x}.cloudfront.net`))
  t.same(suggestProfile(cf, { name: 'web', mode: 'enforce', now }).lines.map((l) => l.value), ['d1.cloudfront.net', 'd2.cloudfront.net', 'd3.cloudfront.net', 'd4.cloudfront.net', 'd5.cloudfront.net'])
})

t.test('names under a proposed name fold into it; duplicates merge; single labels are left out', async (t) => {
  const s = suggestProfile([
    rec('api.example.com', { count: 2, containers: ['a'] }),
    rec('v2.api.example.com', { count: 3, containers: ['b'] }),
    rec('api.example.com', { count: 5, containers: ['c'], firstSeen: '2026-06-01T00:00:00Z' }),
    rec('db', { count: 50 }),
    rec('localhost'),
  ], { name: 'web', mode: 'learn', now })
  t.same(s.lines, [{ value: 'api.example.com', firstSeen: '2026-06-01T00:00:00Z', count: 10, containers: ['a', 'b', 'c'], names: ['api.example.com', 'v2.api.example.com'] }])
  t.same(s.skipped, ['db', 'localhost'])
  t.match(s.text, /# Not proposed: single-label names \(a line would allow a whole top-level domain\): db, localhost/)
  t.equal(s.names, 4)
  t.same(parseProfile(s.text, 'web.txt', 'web').problems, [], 'no bare-TLD warning either')
})

t.test('the current profile\'s lines are kept first; names they allow are not repeated', async (t) => {
  const existing: ProfileRule[] = [
    { kind: 'domain', value: 'api.example.com', ports: [443], reason: 'the API', source: 'blocklists/profiles/web.txt:2' },
    { kind: 'domain', value: 'cdn.example', subdomainsOnly: true, source: 'blocklists/profiles/web.txt:3' },
    { kind: 'net', value: '198.51.100.0/24', force: false, source: 'blocklists/profiles/web.txt:4' },
  ]
  const s = suggestProfile([rec('api.example.com'), rec('x.cdn.example'), rec('cdn.example'), rec('new.example.org')], {
    name: 'web', mode: 'alert', currentMode: 'learn', existing, existingSource: 'blocklists/profiles/web.txt', now,
  })
  t.same(body(s.text).map((l) => l.split('  #')[0]), ['mode=alert', 'api.example.com port=443', '*.cdn.example', '198.51.100.0/24', 'cdn.example', 'new.example.org'])
  t.same(s.covered, ['api.example.com', 'x.cdn.example'])
  t.match(s.text, /# \(the profile in the policy is in mode=learn\)/)
  t.match(s.text, /# Kept from the current profile \(blocklists\/profiles\/web\.txt\); it already allows 2 learned names: api\.example\.com, x\.cdn\.example/)
  const p = parseProfile(s.text, 'web.txt', 'web')
  t.same(p.problems, [])
  t.same(p.profile.rules[0], { kind: 'domain', value: 'api.example.com', ports: [443], reason: 'the API', source: 'web.txt:10' })
})

t.test('nothing learned', async (t) => {
  const s = suggestProfile([], { name: 'web', mode: 'learn', now })
  t.same(s.lines, [])
  t.match(s.text, /# Nothing learned: containers held to this profile would reach only the DNS sinkhole/)
})
