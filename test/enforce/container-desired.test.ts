// Pure core of the container-egress seam: state and pair validation (nothing that is not an address
// reaches ipset/nft, which would resolve a name), per-address normalisation, the pending buffer's
// bound and expiry, and the decision model in rule order.
import t from 'tap'
import { addressKey, decide, normalizePairs, normalizeState, PendingPairs, type NormalState } from '../../src/enforce/container-desired.js'
import type { ContainerState } from '../../src/enforce/container-types.js'

const ID = 'ab'.repeat(32)
const SINK = { v4: ['172.30.0.1'], v6: ['fd00:30::1'], port: 53 }

t.test('normalizeState: one entry per address, nets of its family, canonical text, sorted', async (t) => {
  const s = normalizeState({
    containers: [
      { id: ID, addresses: ['FD00:30:0::2', '172.30.0.2'], mode: 'enforce', nets: [{ cidr: '198.51.100.20/28' }, { cidr: '2001:db8::/32', ports: [443, 80, 443] }, { cidr: '198.51.100.16/28' }] },
    ],
    sinkhole: SINK,
  })
  t.same(s.held.map((h) => [h.ip, h.family, h.mode]), [['172.30.0.2', 4, 'enforce'], ['fd00:30::2', 6, 'enforce']])
  t.same(s.held[0]!.nets, [{ cidr: '198.51.100.16/28' }], 'host bits masked, duplicates merged, v4 nets only')
  t.same(s.held[1]!.nets, [{ cidr: '2001:db8::/32', ports: [80, 443] }], 'ports sorted and de-duplicated')
  t.equal(s.held[0]!.key, addressKey(ID, '172.30.0.2'))
  t.match(s.held[0]!.key, /^[0-9a-f]{10}$/)
  t.not(addressKey(ID, '172.30.0.2'), addressKey('cd'.repeat(32), '172.30.0.2'), 'another container on the same address gets other sets')
})

t.test('normalizeState rejects bad input, naming every problem, and builds nothing', async (t) => {
  const bad = {
    containers: [
      { id: 'not-hex', addresses: ['172.30.0.2', 'evil.example'], mode: 'enforce', nets: [{ cidr: '10.0.0.0/33' }, { cidr: '10.0.0.0/8', ports: [0] }] },
      { id: ID, addresses: ['172.30.0.2'], mode: 'learn', nets: [] },
    ],
    sinkhole: { v4: ['nope'], v6: [], port: 70000 },
  } as unknown as ContainerState
  try {
    normalizeState(bad)
    t.fail('should throw')
  } catch (e) {
    const err = e as { code: string; details: { problems: string[] } }
    t.equal(err.code, 'EG_BAD_INPUT')
    const p = err.details.problems.join('\n')
    for (const re of [/id must be/, /invalid address "evil.example"/, /invalid prefix length/, /ports must be/, /mode must be/, /also belongs to container/, /sinkhole: invalid address/, /sinkhole: port/]) t.match(p, re)
  }
})

t.test('normalizePairs: addresses only, same family, ports need a proto or get both', async (t) => {
  t.same(normalizePairs([{ container: '172.30.0.2', dst: '198.51.100.10', ttlSec: 59.2 }]), [{ ip: '172.30.0.2', family: 4, dst: '198.51.100.10', ttl: 60 }])
  t.same(
    normalizePairs([{ container: 'fd00:30::2', dst: '2001:DB8:0::1', port: 443, ttlSec: 1e12 }]).map((p) => [p.dst, p.proto, p.port, p.ttl]),
    [['2001:db8::1', 'tcp', 443, 2_147_483], ['2001:db8::1', 'udp', 443, 2_147_483]],
  )
  for (const [label, pair, re] of [
    ['a host name', { container: '172.30.0.2', dst: 'evil.example', ttlSec: 60 }, /invalid dst/],
    ['a leading zero', { container: '172.30.0.02', dst: '198.51.100.1', ttlSec: 60 }, /invalid container/],
    ['mixed families', { container: '172.30.0.2', dst: '2001:db8::1', ttlSec: 60 }, /different families/],
    ['no ttl', { container: '172.30.0.2', dst: '198.51.100.1', ttlSec: 0 }, /ttlSec/],
    ['proto without port', { container: '172.30.0.2', dst: '198.51.100.1', proto: 'tcp', ttlSec: 60 }, /proto without port/],
    ['bad port', { container: '172.30.0.2', dst: '198.51.100.1', proto: 'tcp', port: 65536, ttlSec: 60 }, /port must be/],
    ['injection', { container: '172.30.0.2', dst: '198.51.100.1 timeout 1\nflush x', ttlSec: 60 }, /invalid dst/],
  ] as const) {
    t.throws(() => normalizePairs([{ container: '172.30.0.2', dst: '198.51.100.9', ttlSec: 1 }, pair as never]), { code: 'EG_BAD_INPUT', message: re }, label)
  }
})

t.test('PendingPairs: bounded, per address, ttl cut to what is left', async (t) => {
  const p = new PendingPairs(3)
  const pair = (ip: string, dst: string, ttl: number) => ({ ip, family: 4 as const, dst, ttl })
  p.add(pair('10.0.0.1', '198.51.100.1', 10), 0)
  p.add(pair('10.0.0.2', '198.51.100.2', 10), 0)
  p.add(pair('10.0.0.1', '198.51.100.3', 2), 0)
  p.add(pair('10.0.0.3', '198.51.100.4', 10), 0)
  t.equal(p.count, 3)
  t.equal(p.dropped, 1, 'the oldest pair went')
  t.same(p.take('10.0.0.1', 1500), [pair('10.0.0.1', '198.51.100.3', 1)], 'the dropped one is gone; ttl cut to 1 s left')
  t.same(p.take('10.0.0.1', 1500), [], 'taken once')
  t.same(p.take('10.0.0.2', 10_000), [], 'expired pairs are not returned')
  p.drop('10.0.0.3')
  t.equal(p.count, 0)
})

t.test('decide: the rule order', async (t) => {
  const state: NormalState = normalizeState({
    containers: [
      { id: ID, addresses: ['172.30.0.2'], mode: 'enforce', nets: [{ cidr: '198.51.100.16/28', ports: [443] }, { cidr: '192.0.2.0/24' }] },
      { id: 'cd'.repeat(32), addresses: ['172.30.0.3'], mode: 'alert', nets: [] },
      { id: 'ef'.repeat(32), addresses: ['172.30.0.4'], mode: 'quarantine', nets: [{ cidr: '0.0.0.0/0' }] },
    ],
    sinkhole: SINK,
  })
  const learned = (ip: string, dst: string, proto: string, port?: number): boolean => ip === '172.30.0.2' && (dst === '203.0.113.5' || (dst === '203.0.113.6' && proto === 'tcp' && port === 443))
  const d = (src: string, dst: string, proto: 'tcp' | 'udp' | 'icmp', port?: number, established = false) => decide(state, learned, { src, dst, proto, ...(port ? { port } : {}), established })
  t.same(d('172.30.0.9', '203.0.113.5', 'tcp', 80), { verdict: 'pass' }, 'not held')
  t.same(d('172.30.0.2', '203.0.113.5', 'tcp', 80), { verdict: 'accept' }, 'learned, any port')
  t.same(d('172.30.0.2', '203.0.113.5', 'icmp'), { verdict: 'accept' }, 'learned, any protocol')
  t.same(d('172.30.0.2', '203.0.113.6', 'tcp', 443), { verdict: 'accept' }, 'learned port')
  t.same(d('172.30.0.2', '203.0.113.6', 'tcp', 80), { verdict: 'reject', seen: 'refused' }, 'not that port')
  t.same(d('172.30.0.2', '198.51.100.20', 'udp', 443), { verdict: 'accept' }, 'ported net, udp too')
  t.same(d('172.30.0.2', '198.51.100.20', 'tcp', 80), { verdict: 'reject', seen: 'refused' })
  t.same(d('172.30.0.2', '192.0.2.7', 'tcp', 22), { verdict: 'accept' }, 'open net')
  t.same(d('172.30.0.2', '203.0.113.5', 'udp', 53), { verdict: 'reject', seen: 'refused' }, 'DNS elsewhere beats a learned pair')
  t.same(d('172.30.0.2', '192.0.2.7', 'tcp', 853), { verdict: 'reject', seen: 'refused' }, 'DoT beats a profile net')
  t.same(d('172.30.0.2', '172.30.0.1', 'udp', 53), { verdict: 'accept' }, 'the sinkhole')
  t.same(d('172.30.0.2', '172.30.0.1', 'tcp', 8080), { verdict: 'reject', seen: 'refused' }, 'another host port')
  t.same(d('172.30.0.2', '198.51.100.99', 'tcp', 80, true), { verdict: 'accept' }, 'established')
  t.same(d('172.30.0.3', '198.51.100.99', 'tcp', 80), { verdict: 'accept', seen: 'alerted' }, 'alert')
  t.same(d('172.30.0.4', '198.51.100.99', 'tcp', 80, true), { verdict: 'reject', seen: 'quarantine' }, 'quarantine beats established and nets')
  t.same(d('172.30.0.4', '172.30.0.1', 'tcp', 53), { verdict: 'accept' }, 'quarantine: the sinkhole still answers')
})
