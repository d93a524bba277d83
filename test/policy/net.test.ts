import t from 'tap'
import { parseIp, formatIp, parseCidr, cidrContains, reservedOverlap, protectedReason } from '../../src/policy/net.js'

t.test('parse and format addresses canonically', async (t) => {
  t.equal(formatIp(parseIp('203.0.113.7')!), '203.0.113.7')
  t.equal(parseIp('01.2.3.4'), undefined, 'leading zeros are refused')
  t.equal(parseIp('1.2.3'), undefined)
  t.equal(formatIp(parseIp('2001:DB8:0:0:0:0:0:1')!), '2001:db8::1')
  t.equal(formatIp(parseIp('2001:db8:0:0:1:0:0:1')!), '2001:db8::1:0:0:1', 'first longest run compressed')
  t.equal(formatIp(parseIp('::ffff:192.0.2.1')!), '::ffff:c000:201')
  t.equal(formatIp(parseIp('::')!), '::')
  t.equal(parseIp('fe80::1%eth0'), undefined, 'zone ids are refused')
})

t.test('CIDRs: canonical form, host bits, prefixes', async (t) => {
  const a = parseCidr('203.0.113.7/24')
  t.ok(a.ok && a.canonical === '203.0.113.0/24' && !a.exact, 'host bits set is not exact')
  const b = parseCidr('203.0.113.7')
  t.ok(b.ok && b.canonical === '203.0.113.7/32' && b.exact)
  const c = parseCidr('2001:db8::/48')
  t.ok(c.ok && c.exact && c.canonical === '2001:db8::/48')
  t.notOk(parseCidr('1.2.3.4/33').ok)
  t.notOk(parseCidr('1.2.3.4/08').ok)
  t.notOk(parseCidr('1.2.3.4/').ok)
  t.notOk(parseCidr('2001:db8::/129').ok)
})

t.test('containment and reserved ranges', async (t) => {
  const n = parseCidr('198.51.100.0/24')
  if (!n.ok) throw new Error('parse')
  t.ok(cidrContains(n.cidr, parseIp('198.51.100.200')!))
  t.notOk(cidrContains(n.cidr, parseIp('198.51.101.1')!))
  t.notOk(cidrContains(n.cidr, parseIp('2001:db8::1')!))
  const all = parseCidr('0.0.0.0/0')
  t.ok(all.ok && reservedOverlap(all.cidr) !== undefined)
  const lo = parseCidr('127.0.0.5/32')
  t.ok(lo.ok && reservedOverlap(lo.cidr) === 'loopback')
  const doc = parseCidr('203.0.113.0/24')
  t.ok(doc.ok && reservedOverlap(doc.cidr) === undefined)
  t.equal(protectedReason('8.8.8.8'), 'public resolver')
  t.equal(protectedReason('10.1.2.3'), 'private range')
  t.equal(protectedReason('192.0.2.10'), undefined)
  t.equal(protectedReason('192.0.2.10', ['192.0.2.0/24']), 'protected address 192.0.2.0/24')
})

t.test('IPv4-mapped IPv6 forms of reserved ranges are reserved too', async (t) => {
  for (const [text, name] of [['::ffff:127.0.0.1/128', 'loopback'], ['::ffff:0:0/96', 'loopback'], ['::ffff:224.0.0.1/128', 'multicast'], ['::ffff:169.254.1.1/128', 'link-local']] as const) {
    const c = parseCidr(text)
    t.ok(c.ok, text)
    if (c.ok) t.equal(reservedOverlap(c.cidr), name, text)
  }
  const ok = parseCidr('::ffff:192.0.2.1/128')
  t.ok(ok.ok && reservedOverlap(ok.cidr) === undefined, 'a mapped documentation address is fine')
  t.equal(protectedReason('::ffff:127.0.0.1'), 'loopback')
})
