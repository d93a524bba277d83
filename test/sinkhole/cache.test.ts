// The answer cache (TTL = minimum of the records, RFC 2308 negative caching, LRU bound, TTLs counted
// down on the way out) and the two guards in front of everything: client ACL and rate limiter.
import t from 'tap'
import dnsPacket from 'dns-packet'
import { cacheKey, cacheLifetime, createCache } from '../../src/sinkhole/cache.js'
import { createAcl } from '../../src/sinkhole/acl.js'
import { createRateLimiter } from '../../src/sinkhole/rate-limit.js'
import { parseQuery, type Query } from '../../src/sinkhole/wire.js'

const soa = (ttl: number, minimum: number): dnsPacket.Answer => ({ name: 'example', type: 'SOA', ttl, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum } }) as dnsPacket.Answer
function resp(over: Partial<dnsPacket.Packet> & { rcode?: string }): Buffer {
  return dnsPacket.encode({ type: 'response', id: 1, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name: 'www.example', type: 'A', class: 'IN' }], ...over } as dnsPacket.Packet)
}
function q(name = 'www.example', id = 99, edns = false): { buf: Buffer; q: Query } {
  const buf = dnsPacket.encode({ type: 'query', id, questions: [{ name, type: 'A', class: 'IN' }], ...(edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer] } : {}) })
  const p = parseQuery(buf)
  if (!p.ok) throw new Error('bad query')
  return { buf, q: p.query }
}

t.test('lifetime: minimum TTL of answers and authority, additional and OPT ignored', async (t) => {
  const r = resp({
    answers: [{ name: 'www.example', type: 'CNAME', ttl: 300, data: 'cdn.example' }, { name: 'cdn.example', type: 'A', ttl: 40, data: '192.0.2.1' }],
    additionals: [{ name: 'x.example', type: 'A', ttl: 1, data: '192.0.2.2' }, { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer],
  })
  const l = cacheLifetime(r)
  t.equal(l.ttl, 40)
  t.equal(l.ttlOffs.length, 3, 'every TTL but the OPT pseudo-record is patched on the way out')
})

t.test('negative caching per RFC 2308: min(SOA TTL, SOA MINIMUM); no SOA, no caching', async (t) => {
  const nx = Buffer.from(resp({ authorities: [soa(900, 30)] }))
  nx.writeUInt16BE((nx.readUInt16BE(2) & ~0xf) | 3, 2)
  t.equal(cacheLifetime(nx).ttl, 30, 'NXDOMAIN: SOA minimum')
  t.equal(cacheLifetime(resp({ authorities: [soa(20, 3600)] })).ttl, 20, 'NODATA: SOA TTL when smaller')
  t.equal(cacheLifetime(resp({})).ttl, 0, 'NODATA without SOA is not cached')
  const sf = Buffer.from(resp({ answers: [{ name: 'www.example', type: 'A', ttl: 60, data: '192.0.2.1' }] }))
  sf.writeUInt16BE((sf.readUInt16BE(2) & ~0xf) | 2, 2)
  t.equal(cacheLifetime(sf).ttl, 0, 'SERVFAIL is not cached')
  const tc = Buffer.from(resp({ answers: [{ name: 'www.example', type: 'A', ttl: 60, data: '192.0.2.1' }] }))
  tc.writeUInt16BE(tc.readUInt16BE(2) | 0x0200, 2)
  t.equal(cacheLifetime(tc).ttl, 0, 'truncated answers are not cached')
  t.equal(cacheLifetime(Buffer.from([1, 2, 3])).ttl, 0, 'garbage is not cached')
})

t.test('get: client ID and question case, TTL counted down, expiry, LRU bound', async (t) => {
  let now = 1_000_000
  const c = createCache({ maxEntries: 2, now: () => now })
  const a = q('www.example')
  const key = cacheKey(a.q)
  t.equal(c.set(key, resp({ answers: [{ name: 'www.example', type: 'A', ttl: 10, data: '192.0.2.1' }] })), 10)
  now += 3500
  const mixed = q('WWW.Example', 4321)
  t.equal(cacheKey(mixed.q), key, 'the key is case-insensitive')
  const got = dnsPacket.decode(c.get(key, mixed.buf, mixed.q)!)
  t.equal(got.id, 4321)
  t.equal(got.questions![0]!.name, 'WWW.Example', "the client's question bytes are echoed")
  t.equal((got.answers![0] as { ttl: number }).ttl, 7, 'TTL counted down by whole seconds')
  now += 7000
  t.equal(c.get(key, a.buf, a.q), undefined, 'expired')
  t.equal(c.size, 0)
  const k1 = cacheKey(q('one.example').q)
  const k2 = cacheKey(q('two.example').q)
  const k3 = cacheKey(q('three.example').q)
  const r = resp({ answers: [{ name: 'www.example', type: 'A', ttl: 60, data: '192.0.2.1' }] })
  c.set(k1, r)
  c.set(k2, r)
  t.ok(c.get(k1, a.buf, a.q), 'k1 used: k2 becomes the least recently used')
  c.set(k3, r)
  t.equal(c.size, 2)
  t.equal(c.get(k2, a.buf, a.q), undefined, 'LRU entry evicted')
  t.ok(c.get(k1, a.buf, a.q))
  t.not(cacheKey(q('www.example', 1, true).q), key, 'EDNS and plain queries are cached apart')
})

t.test('client ACL: networks, IPv4-mapped IPv6, bad config', async (t) => {
  const acl = createAcl(['127.0.0.0/8', '172.16.0.0/12', '2001:db8::/32'])
  t.ok(acl('127.0.0.1'))
  t.ok(acl('172.17.0.2'))
  t.ok(acl('::ffff:172.18.0.9'), 'IPv4-mapped (dual-stack socket)')
  t.ok(acl('2001:db8::5'))
  t.notOk(acl('192.0.2.1'))
  t.notOk(acl('::1'))
  t.notOk(acl('garbage'))
  t.throws(() => createAcl(['10.0.0.0/33']), { code: 'EG_CONFIG' })
})

t.test('rate limiter: burst, refill, per client, bounded memory', async (t) => {
  let now = 0
  const rl = createRateLimiter({ qps: 10, burst: 3, now: () => now, maxClients: 100 })
  t.same([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a')], [true, true, true, false])
  t.ok(rl.take('b'), 'another client has its own bucket')
  now += 100
  t.ok(rl.take('a'), 'one token back after 100 ms at 10 qps')
  t.notOk(rl.take('a'))
  for (let i = 0; i < 1000; i++) {
    now += 1000
    rl.take(`spoofed-${i}`)
  }
  t.ok(rl.size <= 100, `bounded (${rl.size})`)
})
