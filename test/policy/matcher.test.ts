// Matcher semantics: suffix matching, `*.` names, precedence, most-specific reporting, expiry,
// normalisation and CIDR longest-prefix lookups, on entries built by hand.
import t from 'tap'
import { buildMatcher, parseV4 } from '../../src/policy/matcher.js'
import type { Entry } from '../../src/policy/types.js'
import { entryId } from '../../src/policy/merge.js'
import { isExpired, parseExpires } from '../../src/policy/expiry.js'

let line = 0
function dom(value: string, more: Partial<Entry> = {}): Entry {
  return { kind: 'domain', value, allow: false, mode: 'block', source: `lists/a.txt:${++line}`, ...more }
}
function net(value: string, more: Partial<Entry> = {}): Entry {
  return { kind: 'net', value, allow: false, mode: 'block', source: `lists/b.txt:${++line}`, ...more }
}

t.test('plain name matches itself and every name under it; *. only names under it', async (t) => {
  const m = buildMatcher([dom('evil.example'), dom('bad.example', { subdomainsOnly: true })])
  t.equal(m.matchName('evil.example')?.action, 'block')
  t.equal(m.matchName('www.evil.example')?.action, 'block')
  t.equal(m.matchName('a.b.c.d.evil.example')?.entry.value, 'evil.example', 'deep subdomain')
  t.equal(m.matchName('bad.example'), undefined, '*.bad.example does not match bad.example')
  t.equal(m.matchName('x.bad.example')?.entry.value, 'bad.example')
  t.equal(m.matchName('x.bad.example')?.entry.subdomainsOnly, true)
  t.equal(m.matchName('y.x.bad.example')?.action, 'block')
})

t.test('no false matches on label boundaries', async (t) => {
  const m = buildMatcher([dom('evil.example'), dom('example.org', { subdomainsOnly: true })])
  t.equal(m.matchName('notevil.example'), undefined)
  t.equal(m.matchName('evil.example.com'), undefined)
  t.equal(m.matchName('example'), undefined)
  t.equal(m.matchName('vil.example'), undefined)
  t.equal(m.matchName('evil.exampl'), undefined)
  t.equal(m.matchName('xexample.org'), undefined)
  t.equal(m.matchName('good.example'), undefined)
  t.equal(m.matchName(''), undefined)
  t.equal(m.matchName('.'), undefined)
  t.equal(m.matchName('..'), undefined)
})

t.test('case and trailing dot are normalised on lookup (and on entries)', async (t) => {
  const m = buildMatcher([dom('evil.example'), dom('Upper.Example.')])
  t.equal(m.matchName('EVIL.Example.')?.entry.value, 'evil.example')
  t.equal(m.matchName('WWW.evil.EXAMPLE')?.action, 'block')
  t.equal(m.matchName('a.upper.example')?.entry.value, 'upper.example')
  t.equal(m.matchName('evil.example..'), undefined, 'only one trailing dot is dropped')
})

t.test('non-ASCII queries are compared in punycode', async (t) => {
  const m = buildMatcher([dom('xn--bcher-kva.example')])
  t.equal(m.matchName('www.bücher.example')?.entry.value, 'xn--bcher-kva.example')
  t.equal(m.matchName('bücher.example')?.action, 'block')
  t.equal(m.matchName('bucher.example'), undefined)
})

t.test('a name that is no valid IDN (bytes as the sinkhole reads them) is still under its blocked parent', async (t) => {
  // Before: domainToASCII refused these, the lookup said "no match" and the sinkhole forwarded them.
  const m = buildMatcher([dom('evil.example'), dom('ads.example', { subdomainsOnly: true }), dom('ok.evil.example', { allow: true })])
  t.equal(m.matchName('\u009b31m.evil.example')?.entry.value, 'evil.example', 'a C1 byte in a label')
  t.equal(m.matchName('x\x1b]0;t\x07.\u0080\u00ff.evil.example')?.action, 'block', 'ESC, BEL and high bytes')
  t.equal(m.matchName('\u00c3\u00a9.ads.example')?.action, 'block', 'UTF-8 bytes read one per character, under a *. entry')
  t.equal(m.matchName('\u009b.ok.evil.example')?.action, 'allow', 'an allow below still wins')
  t.equal(m.matchName('evil\u009b.example'), undefined, 'a label that only looks like a listed one matches nothing')
  t.equal(m.matchName('\u009b.example'), undefined)
})

t.test('allow wins over block both ways; the rest stays blocked', async (t) => {
  const m = buildMatcher([dom('evil.example'), dom('good.evil.example', { allow: true, reason: 'ours' })])
  t.equal(m.matchName('good.evil.example')?.action, 'allow')
  t.equal(m.matchName('api.good.evil.example')?.action, 'allow')
  t.equal(m.matchName('api.good.evil.example')?.entry.reason, 'ours')
  t.equal(m.matchName('bad.evil.example')?.action, 'block')
  t.equal(m.matchName('evil.example')?.action, 'block')

  // The allow is less specific than the block: allow still wins.
  const m2 = buildMatcher([dom('x.evil.example'), dom('evil.example', { allow: true })])
  const v = m2.matchName('a.x.evil.example')
  t.equal(v?.action, 'allow')
  t.equal(v?.entry.value, 'evil.example')
  t.equal(m2.matchName('x.evil.example')?.action, 'allow')
})

t.test('allow with *. covers names under it only', async (t) => {
  const m = buildMatcher([dom('evil.example'), dom('evil.example', { subdomainsOnly: true, allow: true })])
  t.equal(m.matchName('evil.example')?.action, 'block')
  t.equal(m.matchName('www.evil.example')?.action, 'allow')
})

t.test('the most specific entry of the winning action is reported', async (t) => {
  const m = buildMatcher([
    dom('example', { reason: 'tld' }),
    dom('evil.example', { reason: 'domain' }),
    dom('cdn.evil.example', { reason: 'cdn' }),
    dom('x.cdn.evil.example', { mode: 'alert', reason: 'trial' }),
  ])
  t.equal(m.matchName('a.cdn.evil.example')?.entry.reason, 'cdn')
  t.equal(m.matchName('cdn.evil.example')?.entry.reason, 'cdn')
  t.equal(m.matchName('www.evil.example')?.entry.reason, 'domain')
  t.equal(m.matchName('other.example')?.entry.reason, 'tld')
  // block beats a more specific alert
  const v = m.matchName('y.x.cdn.evil.example')
  t.equal(v?.action, 'block')
  t.equal(v?.entry.reason, 'cdn')
})

t.test('alert only when nothing blocks; entries come back whole', async (t) => {
  const e = dom('trial.example', { mode: 'alert', reason: 'try it', expires: '2999-01-01', id: 'api-7', actor: 'ops', added: '2026-01-01T00:00:00Z' })
  const m = buildMatcher([e, dom('blocked.example')])
  const v = m.matchName('www.trial.example')
  t.equal(v?.action, 'alert')
  t.same(v?.entry, e, 'every field survives the compact store')
  t.equal(m.matchName('blocked.example')?.entry.source, `lists/a.txt:${line}`)
  const api = dom('api.example', { source: 'api:alice' })
  const ptr = dom('odd.example', { source: 'weird:007' })
  const m2 = buildMatcher([api, ptr])
  t.equal(m2.matchName('api.example')?.entry.source, 'api:alice')
  t.equal(m2.matchName('odd.example')?.entry.source, 'weird:007')
})

t.test('file-style ids are stored as numbers and come back exact; other ids are kept', async (t) => {
  const a = dom('file.example', { subdomainsOnly: true })
  a.id = entryId(a)
  const b = dom('api.example', { id: 'a1b2', actor: 'bob' })
  const edge = ['f00000000000', 'fzzzzzzzzzzz', 'f0000z000001', 'fZZZZZZZZZZZ', 'f0000000000', 'f-0000000000', 'g00000000000']
  const more = edge.map((id, i) => dom(`e${i}.example`, { id }))
  const m = buildMatcher([a, b, ...more])
  t.same(m.matchName('x.file.example')?.entry, a)
  t.same(m.matchName('api.example')?.entry, b)
  for (const e of more) t.same(m.matchName(e.value)?.entry, e, String(e.id))
})

t.test('equally specific entries of one action: the first in input order is reported', async (t) => {
  const m = buildMatcher([dom('dup.example', { reason: 'first' }), dom('dup.example', { reason: 'second' })])
  t.equal(m.matchName('dup.example')?.entry.reason, 'first')
  const m2 = buildMatcher([dom('dup.example', { subdomainsOnly: true, reason: 'star' }), dom('dup.example', { reason: 'plain' })])
  t.equal(m2.matchName('a.dup.example')?.entry.reason, 'star')
  t.equal(m2.matchName('dup.example')?.entry.reason, 'plain')
})

t.test('expired entries never match', async (t) => {
  const now = new Date('2026-06-15T12:00:00Z')
  const entries = [
    dom('old.example', { expires: '2026-06-14' }),
    dom('today.example', { expires: '2026-06-15' }),
    dom('instant.example', { expires: '2026-06-15T12:00:00Z' }),
    dom('later.example', { expires: '2026-06-15T12:00:01Z' }),
    dom('evil.example'),
    dom('ok.evil.example', { allow: true, expires: '2026-01-01' }),
    net('203.0.113.0/24', { expires: '2026-01-01T00:00:00Z' }),
    net('198.51.100.0/24', { expires: '2027-01-01' }),
  ]
  const m = buildMatcher(entries, { now })
  for (const e of entries) {
    if (e.expires === undefined || e.expires === '2026-06-15T12:00:00Z') continue
    const v = e.kind === 'domain' ? m.matchName(e.value) : m.matchIp(e.value.replace(/0\/24$/, '9'))
    // Policies carry canonical expiries (parseExpires); bare dates mean the end of that day.
    t.equal(v?.entry.value === e.value, !isExpired({ expires: parseExpires(e.expires)! }, now), `agrees with isExpired: ${e.value} ${e.expires}`)
  }
  t.equal(m.matchName('old.example'), undefined, 'yesterday')
  t.equal(m.matchName('today.example')?.action, 'block', 'a bare date lasts to the end of that day UTC')
  t.equal(m.matchName('instant.example'), undefined, 'expires <= now')
  t.equal(m.matchName('later.example')?.action, 'block')
  t.equal(m.matchName('ok.evil.example')?.action, 'block', 'an expired allow no longer wins')
  t.equal(m.matchIp('203.0.113.9'), undefined)
  t.equal(m.matchIp('198.51.100.9')?.action, 'block')

  // A long-lived matcher (real clock) drops entries the moment they expire.
  const soon = new Date(Date.now() + 300).toISOString()
  const live = buildMatcher([dom('soon.example', { expires: soon })])
  t.equal(live.matchName('soon.example')?.action, 'block')
  await new Promise((r) => setTimeout(r, 400))
  t.equal(live.matchName('soon.example'), undefined)
})

t.test('IPv4 CIDRs: longest prefix, precedence, strict input', async (t) => {
  const m = buildMatcher([
    net('198.51.0.0/16', { reason: 'wide' }),
    net('198.51.100.0/24', { reason: 'net' }),
    net('198.51.100.7/32', { reason: 'host' }),
    net('198.51.100.128/25', { allow: true, reason: 'ours' }),
    net('203.0.113.0/24', { mode: 'alert' }),
    net('203.0.113.5/32'),
  ])
  t.equal(m.matchIp('198.51.100.7')?.entry.reason, 'host')
  t.equal(m.matchIp('198.51.100.8')?.entry.reason, 'net')
  t.equal(m.matchIp('198.51.7.8')?.entry.reason, 'wide')
  t.equal(m.matchIp('198.51.100.200')?.action, 'allow')
  t.equal(m.matchIp('198.51.100.200')?.entry.value, '198.51.100.128/25')
  t.equal(m.matchIp('198.50.255.255'), undefined)
  t.equal(m.matchIp('198.52.0.0'), undefined)
  t.equal(m.matchIp('203.0.113.4')?.action, 'alert')
  t.equal(m.matchIp('203.0.113.5')?.action, 'block')
  t.equal(m.matchIp('::ffff:198.51.100.7')?.entry.reason, 'host', 'v4-mapped IPv6')
  t.equal(m.matchIp('::ffff:c633:6407')?.entry.reason, 'host', 'v4-mapped, hex form')
  for (const bad of ['198.51.100', '198.51.100.07', '198.51.100.256', '198.51.100.7/32', ' 198.51.100.7', 'evil.example', '', '1.2.3.4.5', '::ffff:1.2.3', 'fe80::1%eth0', ':::']) {
    t.equal(m.matchIp(bad), undefined, `invalid: ${JSON.stringify(bad)}`)
  }
})

t.test('IPv6 CIDRs: longest prefix, no cross-family matches', async (t) => {
  const m = buildMatcher([
    net('2001:db8::/32', { reason: 'doc' }),
    net('2001:db8:1::/48', { reason: 'site' }),
    net('2001:db8:1::1/128', { reason: 'host' }),
    net('::ffff:203.0.113.0/120', { reason: 'mapped' }),
    net('32.1.13.184/32', { reason: 'v4 lookalike' }),
  ])
  t.equal(m.matchIp('2001:db8:1::1')?.entry.reason, 'host')
  t.equal(m.matchIp('2001:DB8:1:0:0:0:0:1')?.entry.reason, 'host', 'case and uncompressed form')
  t.equal(m.matchIp('2001:db8:1::2')?.entry.reason, 'site')
  t.equal(m.matchIp('2001:db8:2::1')?.entry.reason, 'doc')
  t.equal(m.matchIp('2001:db9::1'), undefined)
  t.equal(m.matchIp('2001:db8::')?.entry.reason, 'doc')
  t.equal(m.matchIp('203.0.113.9')?.entry.reason, 'mapped', 'a v4-mapped network matches the IPv4 address')
  t.equal(m.matchIp('::ffff:203.0.113.9')?.entry.reason, 'mapped')
  t.equal(m.matchIp('::2001:db8'), undefined)
})

t.test('names never match nets and addresses never match names', async (t) => {
  const m = buildMatcher([dom('203.0.113.5'), net('198.51.100.5/32')])
  t.equal(m.matchIp('203.0.113.5'), undefined)
  t.equal(m.matchName('198.51.100.5'), undefined)
})

t.test('empty matcher and an empty list', async (t) => {
  const m = buildMatcher([])
  t.equal(m.matchName('evil.example'), undefined)
  t.equal(m.matchIp('203.0.113.5'), undefined)
  t.equal(m.matchIp('2001:db8::1'), undefined)
})

t.test('parseV4 is strict', async (t) => {
  t.equal(parseV4('0.0.0.0'), 0)
  t.equal(parseV4('255.255.255.255'), 0xffffffff)
  t.equal(parseV4('203.0.113.7'), (203 * 2 ** 24) + 113 * 256 + 7)
  for (const bad of ['1.2.3', '1.2.3.4.', '.1.2.3', '1..2.3', '01.2.3.4', '1.2.3.256', '1.2.3.a', '1.2.3.-1', '1111.2.3.4']) {
    t.equal(parseV4(bad), -1, bad)
  }
})

t.test('a verdict is built once per entry and shared: frozen, and still right per lookup', async (t) => {
  const m = buildMatcher([dom('evil.example', { reason: 'r1' }), dom('ok.evil.example', { allow: true }), net('203.0.113.0/24')])
  const a = m.matchName('evil.example')!
  const b = m.matchName('www.evil.example')!
  t.equal(a, b, 'the same entry decides, so the same object comes back')
  t.ok(Object.isFrozen(a) && Object.isFrozen(a.entry), 'shared, so read-only')
  t.throws(() => {
    ;(a.entry as { value: string }).value = 'changed'
  }, TypeError)
  t.equal(m.matchName('evil.example')?.entry.value, 'evil.example', 'a caller cannot change what later lookups see')
  const c = m.matchName('x.ok.evil.example')!
  t.not(c, a)
  t.equal(c.action, 'allow')
  t.equal(c.entry.value, 'ok.evil.example')
  t.equal(m.matchIp('203.0.113.9'), m.matchIp('203.0.113.200'), 'addresses share their network entry too')
  t.equal(m.matchName('other.example'), undefined, 'a miss stays a miss')
})
