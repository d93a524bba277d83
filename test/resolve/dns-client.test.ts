// The DNS client against a real dnsmasq (A, AAAA, CNAME chains, TTLs, truncation -> TCP) and against
// small fake servers for what dnsmasq will not do on demand (silence, forged ids, CNAME loops).
import t from 'tap'
import { createSocket } from 'node:dgram'
import * as dnsPacket from 'dns-packet'
import { resolveName, parseUpstream } from '../../src/resolve/dns-client.js'
import { capabilities, requires } from '../helpers/caps.js'
import { startDnsmasq } from './dnsmasq.js'

const ips = (r: { addrs: Array<{ ip: string }> }): string[] => r.addrs.map((a) => a.ip).sort()

t.test('real dnsmasq upstream', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const many = Array.from({ length: 80 }, (_, i) => `198.51.100.${i + 1} big.example`).join('\n') + '\n'
  const dm = await startDnsmasq(t, [
    '--local-ttl=77',
    '--host-record=evil.example,203.0.113.7,2001:db8::7',
    '--host-record=v6only.example,2001:db8::66',
    '--host-record=target.example,203.0.113.9',
    '--cname=alias.example,mid.example',
    '--cname=mid.example,target.example',
    '--address=/wild.example/203.0.113.55',
    '--address=/nothing.example/',
  ], { hosts: many })
  const up = { upstreams: [{ address: '127.0.0.1', port: dm.port }], timeoutMs: 1000 }

  t.test('A and AAAA with TTL', async (t) => {
    const r = await resolveName('Evil.Example.', up)
    t.equal(r.rcode, 'NOERROR')
    t.same(ips(r), ['2001:db8::7', '203.0.113.7'])
    t.same(r.addrs.find((a) => a.ip === '2001:db8::7')?.family, 6)
    t.ok(r.addrs.every((a) => a.ttl === 77), 'TTL from --local-ttl')
  })
  t.test('AAAA only', async (t) => {
    const r = await resolveName('v6only.example', up)
    t.same(ips(r), ['2001:db8::66'])
  })
  t.test('CNAME chain inside the answer', async (t) => {
    const r = await resolveName('alias.example', up)
    t.same(ips(r), ['203.0.113.9'])
    t.same(r.cnames, ['mid.example', 'target.example'])
  })
  t.test('--address wildcard', async (t) => {
    const r = await resolveName('x.wild.example', up)
    t.same(ips(r), ['203.0.113.55'])
  })
  t.test('NXDOMAIN', async (t) => {
    const r = await resolveName('nothing.example', up)
    t.equal(r.rcode, 'NXDOMAIN')
    t.same(r.addrs, [])
  })
  t.test('REFUSED is reported as such', async (t) => {
    const r = await resolveName('unknown.example', up)
    t.equal(r.rcode, 'REFUSED')
  })
  t.test('truncated UDP answer is retried over TCP', async (t) => {
    // 80 A records do not fit in 512 bytes: dnsmasq sets TC, and only TCP returns all of them.
    const r = await resolveName('big.example', up)
    t.equal(r.addrs.length, 80)
    t.ok(ips(r).includes('198.51.100.80'))
  })
})

t.test('a silent upstream times out with a coded error; the next upstream answers', async (t) => {
  const silent = createSocket('udp4')
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r))
  t.teardown(() => silent.close())
  const port = silent.address().port
  let seen = 0
  silent.on('message', () => seen++)
  await t.rejects(resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }], timeoutMs: 200, attempts: 2 }), { code: 'EG_UPSTREAM', message: /timeout/ })
  t.equal(seen, 4, 'A and AAAA, each tried twice')
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const dm = await startDnsmasq(t, ['--host-record=evil.example,203.0.113.7'])
  const r = await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }, { address: '127.0.0.1', port: dm.port }], timeoutMs: 200 })
  t.same(ips(r), ['203.0.113.7'], 'fell over to the second upstream')
})

/** A fake upstream: `reply(query)` returns the packets to send back (or none). */
async function fakeServer(t: { teardown: (f: () => void) => void }, reply: (q: dnsPacket.DecodedPacket) => dnsPacket.Packet[]): Promise<number> {
  const sock = createSocket('udp4')
  sock.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg)
    for (const p of reply(q)) sock.send(dnsPacket.encode(p), rinfo.port, rinfo.address)
  })
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r))
  t.teardown(() => sock.close())
  return sock.address().port
}

const resp = (q: dnsPacket.DecodedPacket, answers: dnsPacket.Answer[], over: Partial<dnsPacket.Packet> = {}): dnsPacket.Packet => ({
  type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers, ...over,
})

t.test('replies with a wrong id or question are ignored, the real one is taken', async (t) => {
  const port = await fakeServer(t, (q) => {
    const type = q.questions![0]!.type
    if (type !== 'A') return [resp(q, [])]
    return [
      resp(q, [{ type: 'A', name: 'evil.example', ttl: 60, data: '192.0.2.66' }], { id: (q.id! + 1) % 65536 }),
      resp(q, [{ type: 'A', name: 'other.example', ttl: 60, data: '192.0.2.67' }], { questions: [{ type: 'A', name: 'other.example' }] }),
      resp(q, [{ type: 'A', name: 'evil.example', ttl: 60, data: '203.0.113.7' }]),
    ]
  })
  const r = await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }], timeoutMs: 500 })
  t.same(ips(r), ['203.0.113.7'])
})

t.test('random ids', async (t) => {
  const seen = new Set<number>()
  const port = await fakeServer(t, (q) => {
    seen.add(q.id!)
    return [resp(q, [])]
  })
  for (let i = 0; i < 5; i++) await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }] })
  t.ok(seen.size >= 8, `ids vary (${seen.size} distinct of 10)`)
})

t.test('a CNAME leaving the answer is re-queried; TTL is the chain minimum', async (t) => {
  const asked: string[] = []
  const port = await fakeServer(t, (q) => {
    const { name, type } = q.questions![0]!
    asked.push(`${name} ${type}`)
    if (name === 'evil.example') return [resp(q, [{ type: 'CNAME', name: 'evil.example', ttl: 30, data: 'edge.cdn.example' }])]
    if (name === 'edge.cdn.example' && type === 'A') return [resp(q, [{ type: 'A', name, ttl: 300, data: '203.0.113.80' }])]
    return [resp(q, [])]
  })
  const r = await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }] })
  t.same(r.addrs, [{ ip: '203.0.113.80', family: 4, ttl: 30 }])
  t.same(r.cnames, ['edge.cdn.example'])
  t.ok(asked.includes('edge.cdn.example A'))
})

t.test('a CNAME loop ends with a clear error', async (t) => {
  const port = await fakeServer(t, (q) => {
    const { name } = q.questions![0]!
    return [resp(q, [{ type: 'CNAME', name, ttl: 30, data: name === 'a.example' ? 'b.example' : 'a.example' }])]
  })
  await t.rejects(resolveName('a.example', { upstreams: [{ address: '127.0.0.1', port }] }), { code: 'EG_UPSTREAM', message: /loop/ })
})

t.test('parseUpstream', async (t) => {
  t.same(parseUpstream('192.0.2.1'), { address: '192.0.2.1', port: 53 })
  t.same(parseUpstream('127.0.0.1:5399'), { address: '127.0.0.1', port: 5399 })
  t.same(parseUpstream('[2001:db8::1]:5353'), { address: '2001:db8::1', port: 5353 })
  t.same(parseUpstream('2001:db8::1'), { address: '2001:db8::1', port: 53 })
  t.equal(parseUpstream('evil.example'), undefined)
  t.equal(parseUpstream('1.2.3.4:99999'), undefined)
})

t.test('a forged reply from another port is ignored even with the right id', async (t) => {
  const forger = createSocket('udp4')
  await new Promise<void>((r) => forger.bind(0, '127.0.0.1', r))
  t.teardown(() => forger.close())
  const port2 = await fakeServer(t, (q) => {
    const type = q.questions![0]!.type
    return [resp(q, type === 'A' ? [{ type: 'A', name: 'evil.example', ttl: 60, data: '203.0.113.7' }] : [])]
  })
  // The upstream as the client sees it: a relay to port2. For each query, a forger that saw it (so it
  // knows the id and question) answers first, from its own port.
  const proxy = createSocket('udp4')
  proxy.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg)
    if (q.type === 'query') {
      const forged = resp(q, [{ type: 'A', name: 'evil.example', ttl: 60, data: '192.0.2.66' }])
      forger.send(dnsPacket.encode(forged), rinfo.port, rinfo.address, () => {
        const relay = createSocket('udp4')
        relay.on('message', (ans) => {
          proxy.send(ans, rinfo.port, rinfo.address)
          relay.close()
        })
        relay.send(msg, port2, '127.0.0.1')
      })
    }
  })
  await new Promise<void>((r) => proxy.bind(0, '127.0.0.1', r))
  t.teardown(() => proxy.close())
  const r = await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port: proxy.address().port }], timeoutMs: 1000 })
  t.same(ips(r), ['203.0.113.7'], 'only the reply from the upstream address and port counts')
})

t.test('IPv6 upstream', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const dm = await startDnsmasq(t, ['--host-record=evil.example,203.0.113.7'], { listen: '::1' })
  const r = await resolveName('evil.example', { upstreams: [{ address: '::1', port: dm.port }] })
  t.same(ips(r), ['203.0.113.7'])
})

t.test('truncated answer and no TCP: the truncated records are used', async (t) => {
  const port = await fakeServer(t, (q) => {
    const type = q.questions![0]!.type
    if (type !== 'A') return [resp(q, [])]
    return [resp(q, [{ type: 'A', name: 'evil.example', ttl: 60, data: '203.0.113.7' }], { flags: dnsPacket.TRUNCATED_RESPONSE | dnsPacket.RECURSION_DESIRED })]
  })
  // Nothing listens on TCP at that port number (the fake server is UDP only): the connection is refused.
  const r = await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }], timeoutMs: 500 })
  t.same(ips(r), ['203.0.113.7'])
})

t.test('one family failing is reported, the other answers', async (t) => {
  const port = await fakeServer(t, (q) => {
    const type = q.questions![0]!.type
    if (type === 'AAAA') return [] // silent for AAAA
    return [resp(q, [{ type: 'A', name: 'evil.example', ttl: 60, data: '203.0.113.7' }])]
  })
  const r = await resolveName('evil.example', { upstreams: [{ address: '127.0.0.1', port }], timeoutMs: 150, attempts: 1 })
  t.same(ips(r), ['203.0.113.7'])
  t.same(r.failed, [6])
})
