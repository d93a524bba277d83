// Proof with the real tools: `dig` against a running sinkhole that forwards to a real dnsmasq.
import t, { type Test } from 'tap'
import dgram from 'node:dgram'
import net from 'node:net'
import dnsPacket from 'dns-packet'
import { capabilities, requires } from '../helpers/caps.js'
import { dig, startDnsmasq, type Dnsmasq } from '../helpers/dnsmasq.js'
import { createSinkhole, type SinkholeOptions, type Sinkhole } from '../../src/sinkhole/sinkhole.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { silentLogger } from '../../src/log.js'
import type { Entry } from '../../src/policy/types.js'
import type { Hit } from '../../src/sinkhole/types.js'

const e = (value: string, extra: Partial<Entry> = {}): Entry => ({ kind: value.includes('/') ? 'net' : 'domain', value, allow: false, mode: 'block', source: 'incident.txt:1', ...extra })
const matcher = buildMatcher([
  e('bad.example', { reason: 'miner download' }),
  e('ok.bad.example', { allow: true, source: 'incident.txt:2' }),
  e('watch.example', { mode: 'alert', source: 'incident.txt:3' }),
  e('203.0.113.0/24', { source: 'incident.txt:4', reason: 'C2 network' }),
])

type T = Test
let upstream: Dnsmasq

async function sinkhole(t: T, extra: Partial<SinkholeOptions> = {}): Promise<{ s: Sinkhole; port: number; hits: Array<Omit<Hit, 'count' | 'lastTime'>> }> {
  const hits: Array<Omit<Hit, 'count' | 'lastTime'>> = []
  const s = createSinkhole({
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [{ address: upstream.address, port: upstream.port }],
    matcher,
    log: silentLogger,
    hits: { record: (h) => void hits.push(h) },
    upstreamTimeoutMs: 1000,
    ...extra,
  })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses().find((a) => a.proto === 'udp')!.port
  t.equal(s.addresses().find((a) => a.proto === 'tcp')!.port, port, 'UDP and TCP on the same port')
  return { s, port, hits }
}

t.before(async () => {
  if (capabilities.tool('dig') || capabilities.tool('dnsmasq')) return
  upstream = await startDnsmasq(t, {
    hosts: {
      'good.example': ['192.0.2.10', '2001:db8::10'],
      'bad.example': ['192.0.2.66'],
      'www.bad.example': ['192.0.2.67'],
      'ok.bad.example': ['192.0.2.11'],
      'x.watch.example': ['192.0.2.12'],
      'ipblocked.example': ['203.0.113.50'],
    },
    cnames: { 'alias.example': 'www.bad.example', 'fine-alias.example': 'good.example' },
    addresses: { 'nx.example': '' }, // `--address=/nx.example/`: NXDOMAIN
    extraArgs: ['--local-ttl=300'],
  })
})

t.test('null mode (default): blocked names and subdomains, EDE with EDNS; the rest forwarded', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const { s, port, hits } = await sinkhole(t)
  for (const name of ['bad.example', 'www.bad.example', 'a.b.c.BAD.example']) {
    const r = await dig('127.0.0.1', port, name, 'A')
    t.equal(r.status, 'NOERROR', `${name} status`)
    t.same(r.answers.map((a) => a[2]), ['0.0.0.0'], `${name} -> 0.0.0.0`)
    t.ok(r.flags.includes('aa') && r.flags.includes('ra'), 'AA and RA')
    t.equal(r.ttls[0], 60, 'block TTL')
    t.match(r.ede.join('\n'), /EDE: 15 \(Blocked\).*bad\.example: miner download \(incident\.txt:1\)/, 'EDE Blocked with the reason')
  }
  const v6 = await dig('127.0.0.1', port, 'bad.example', 'AAAA')
  t.same(v6.answers.map((a) => a[2]), ['::'])
  const mx = await dig('127.0.0.1', port, 'bad.example', 'MX')
  t.equal(mx.status, 'NOERROR')
  t.same(mx.answers, [], 'NODATA for other types')
  const noedns = await dig('127.0.0.1', port, 'bad.example', 'A', ['+noedns'])
  t.same(noedns.ede, [], 'no EDE without EDNS')
  t.same(noedns.answers.map((a) => a[2]), ['0.0.0.0'])

  const good = await dig('127.0.0.1', port, 'good.example', 'A')
  t.equal(good.status, 'NOERROR')
  t.same(good.answers, [['good.example', 'A', '192.0.2.10']], 'unlisted: upstream answer')
  t.same((await dig('127.0.0.1', port, 'good.example', 'AAAA')).answers.map((a) => a[2]), ['2001:db8::10'])
  t.same((await dig('127.0.0.1', port, 'ok.bad.example', 'A')).answers.map((a) => a[2]), ['192.0.2.11'], '@@ allowed under a blocked name: upstream answer')
  t.same((await dig('127.0.0.1', port, 'fine-alias.example', 'A')).answers.map((a) => a[2]), ['good.example', '192.0.2.10'], 'harmless CNAME passes')
  t.equal((await dig('127.0.0.1', port, 'nothing.nx.example', 'A')).status, 'NXDOMAIN', 'upstream NXDOMAIN passes through')
  t.equal(s.stats().upstream.sent > 0, true)

  const alert = await dig('127.0.0.1', port, 'x.watch.example', 'A')
  t.same(alert.answers.map((a) => a[2]), ['192.0.2.12'], 'alert mode: forwarded')

  const before = hits.length
  const viaCname = await dig('127.0.0.1', port, 'alias.example', 'A')
  t.same(viaCname.answers, [['alias.example', 'A', '0.0.0.0']], 'CNAME chain reaching a blocked name is blocked')
  t.match(viaCname.ede.join(''), /Blocked/)
  const viaIp = await dig('127.0.0.1', port, 'ipblocked.example', 'A')
  t.same(viaIp.answers, [['ipblocked.example', 'A', '0.0.0.0']], 'forwarded answer with a blocked address is blocked')
  t.match(viaIp.ede.join(''), /203\.0\.113\.0\/24: C2 network/)
  t.equal(hits.length, before + 2)

  const names = hits.map((h) => `${h.action}:${h.name}:${h.qtype}:${h.answer}`)
  t.ok(names.includes('block:bad.example:A:null'))
  t.ok(names.includes('block:a.b.c.bad.example:A:null'), 'hit names are lower-cased')
  t.ok(names.includes('alert:x.watch.example:A:forwarded'))
  t.ok(names.includes('block:alias.example:A:null'))
  const h = hits.find((x) => x.name === 'bad.example')!
  t.equal(h.client, '127.0.0.1')
  t.same(h.entry, { value: 'bad.example', source: 'incident.txt:1', reason: 'miner download', id: undefined, mode: 'block' })
  t.ok(!Number.isNaN(Date.parse(h.time)))
  t.ok(s.stats().blocked >= 8)
})

t.test('nxdomain, refused and custom modes, over UDP and TCP', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const nx = await sinkhole(t, { blockMode: 'nxdomain', blockTtl: 15 })
  for (const proto of [[], ['+tcp']]) {
    const r = await dig('127.0.0.1', nx.port, 'sub.bad.example', 'A', proto)
    t.equal(r.status, 'NXDOMAIN', `nxdomain ${proto.join('')}`)
    t.match(r.ede.join(''), /Blocked/)
    t.same((await dig('127.0.0.1', nx.port, 'good.example', 'A', proto)).answers.map((a) => a[2]), ['192.0.2.10'])
  }
  const rf = await sinkhole(t, { blockMode: 'refused' })
  t.equal((await dig('127.0.0.1', rf.port, 'bad.example', 'A')).status, 'REFUSED')
  t.equal((await dig('127.0.0.1', rf.port, 'bad.example', 'A', ['+tcp'])).status, 'REFUSED')
  t.equal((await dig('127.0.0.1', rf.port, 'good.example', 'A')).status, 'NOERROR')
  const cu = await sinkhole(t, { blockMode: { a: '198.51.100.1', aaaa: '2001:db8::1' }, blockTtl: 10 })
  const a = await dig('127.0.0.1', cu.port, 'www.bad.example', 'A', ['+tcp'])
  t.same(a.answers, [['www.bad.example', 'A', '198.51.100.1']])
  t.same(a.ttls, [10])
  t.same((await dig('127.0.0.1', cu.port, 'www.bad.example', 'AAAA')).answers.map((x) => x[2]), ['2001:db8::1'])
  t.same(cu.hits.map((h) => h.answer), ['custom:198.51.100.1', 'custom:2001:db8::1'])
})

t.test('a client outside allowClients is refused', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const { s, port } = await sinkhole(t, { allowClients: ['172.16.0.0/12', '2001:db8::/32'] })
  for (const extra of [[], ['+tcp']]) {
    for (const name of ['good.example', 'bad.example']) {
      const r = await dig('127.0.0.1', port, name, 'A', extra)
      t.equal(r.status, 'REFUSED', `${name} ${extra.join('')} refused`)
      t.same(r.answers, [])
    }
  }
  t.equal(s.stats().upstream.sent, 0, 'nothing was forwarded for a refused client')
  t.ok(s.stats().refusedClients >= 4)
})

t.test('per-client rate limit: excess UDP is dropped, counted; TCP gets REFUSED', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  // 0.5 qps: one token every 2 s, so a busy machine's scheduling delays cannot refill the bucket
  // between the flood and the checks below.
  const { s, port } = await sinkhole(t, { rateLimit: { qps: 0.5, burst: 5 } })
  const sock = dgram.createSocket('udp4')
  t.teardown(() => sock.close())
  let answered = 0
  sock.on('message', () => answered++)
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()))
  const t0 = Date.now()
  for (let i = 0; i < 40; i++) sock.send(dnsPacket.encode({ type: 'query', id: i, questions: [{ name: 'bad.example', type: 'A' }] }), port, '127.0.0.1')
  const deadline = Date.now() + 5000
  while (s.stats().queries < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  await new Promise((r) => setTimeout(r, 100))
  const refills = Math.floor(((Date.now() - t0) / 1000) * 0.5)
  t.ok(answered >= 5 && answered <= 5 + refills, `burst answered (${answered}, ${refills} refilled), the rest dropped`)
  t.ok(s.stats().rateLimited >= 35 - refills, `counted: ${s.stats().rateLimited}`)
  // Straight away over TCP (no process spawn in between): REFUSED rather than silence.
  const tcp = await new Promise<Buffer>((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => {
      const q = dnsPacket.encode({ type: 'query', id: 77, questions: [{ name: 'bad.example', type: 'A' }] })
      c.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]))
    })
    let buf = Buffer.alloc(0)
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.destroy()
        resolve(buf.subarray(2))
      }
    })
    c.on('error', reject)
  })
  t.equal((dnsPacket.decode(tcp) as { rcode?: string }).rcode, 'REFUSED', 'over the limit on TCP: REFUSED')
  await new Promise((r) => setTimeout(r, 2200))
  const later = await dig('127.0.0.1', port, 'bad.example', 'A')
  t.same(later.answers.map((a) => a[2]), ['0.0.0.0'], 'tokens refill: answered again')
})

t.test('cache: a repeat is answered without the upstream, TTL counts down; setMatcher re-checks', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const { s, port } = await sinkhole(t)
  const first = await dig('127.0.0.1', port, 'good.example', 'A')
  t.same(first.ttls, [300])
  const sent = s.stats().upstream.sent
  await new Promise((r) => setTimeout(r, 1100))
  const again = await dig('127.0.0.1', port, 'good.example', 'A')
  t.same(again.answers, first.answers)
  t.ok(again.ttls[0]! < 300 && again.ttls[0]! >= 280, `TTL decremented (${again.ttls[0]})`)
  t.equal(s.stats().upstream.sent, sent, 'no new upstream query')
  t.equal(s.stats().cacheHits, 1)
  s.setMatcher(buildMatcher([e('192.0.2.10/32')]))
  t.same((await dig('127.0.0.1', port, 'good.example', 'A')).answers.map((a) => a[2]), ['0.0.0.0'], 'new policy applies to a cached answer')
  t.same((await dig('127.0.0.1', port, 'bad.example', 'A')).answers.map((a) => a[2]), ['192.0.2.66'], 'old block gone after the swap')
})

t.test('SERVFAIL when every upstream fails', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const { port, hits } = await sinkhole(t, { upstreams: [{ address: '127.0.0.1', port: 9 }], upstreamTimeoutMs: 300, upstreamAttempts: 2 })
  const r = await dig('127.0.0.1', port, 'good.example', 'A', ['+time=3'])
  t.equal(r.status, 'SERVFAIL')
  t.match(r.ede.join(''), /EDE: 22 \(No Reachable Authority\)/, 'EDE says why')
  t.same((await dig('127.0.0.1', port, 'bad.example', 'A')).answers.map((a) => a[2]), ['0.0.0.0'], 'blocking does not need the upstream')
  t.equal((await dig('127.0.0.1', port, 'x.watch.example', 'A', ['+time=3'])).status, 'SERVFAIL')
  t.ok(hits.some((h) => h.action === 'alert' && h.name === 'x.watch.example'), 'an alert-mode lookup is a hit even when the upstream fails')
})

t.test('several listen addresses, IPv6 included, each on UDP and TCP', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }, { address: '::1', port: 0 }], upstreams: [{ address: upstream.address, port: upstream.port }], matcher, log: silentLogger })
  await s.start()
  t.teardown(() => s.stop())
  const addrs = s.addresses()
  t.same(addrs.map((a) => `${a.proto} ${a.address}`).sort(), ['tcp 127.0.0.1', 'tcp ::1', 'udp 127.0.0.1', 'udp ::1'])
  const v6 = addrs.find((a) => a.address === '::1')!
  for (const extra of [[], ['+tcp']]) {
    t.same((await dig('::1', v6.port, 'bad.example', 'AAAA', extra)).answers.map((a) => a[2]), ['::'], `::1 ${extra.join('')} blocked`)
    t.same((await dig('::1', v6.port, 'good.example', 'A', extra)).answers.map((a) => a[2]), ['192.0.2.10'], `::1 ${extra.join('')} forwarded`)
  }
})

t.test('a dual-stack [::] listener sees IPv4 clients as plain IPv4 (ACL, hits)', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const hits: string[] = []
  const s = createSinkhole({ listen: [{ address: '::', port: 0 }], upstreams: [{ address: upstream.address, port: upstream.port }], matcher, log: silentLogger, allowClients: ['127.0.0.0/8'], hits: { record: (h) => void hits.push(h.client) } })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses()[0]!.port
  for (const extra of [[], ['+tcp']]) t.same((await dig('127.0.0.1', port, 'bad.example', 'A', extra)).answers.map((a) => a[2]), ['0.0.0.0'], `allowed as 127.0.0.1 ${extra.join('')}`)
  t.same(hits, ['127.0.0.1', '127.0.0.1'])
  t.equal((await dig('::1', port, 'bad.example', 'A')).status, 'REFUSED', '::1 is not in 127.0.0.0/8')
})

t.test('stop() then start() again: serves and forwards as before; stop() leaves no handle behind', async (t) => {
  if (!requires(t, capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: upstream.address, port: upstream.port }], matcher, log: silentLogger })
  const handles = () => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length
  const before = handles()
  await s.start()
  const p1 = s.addresses()[0]!.port
  t.same((await dig('127.0.0.1', p1, 'good.example', 'A')).answers.map((a) => a[2]), ['192.0.2.10'])
  await s.stop()
  t.equal(s.addresses().length, 0)
  await new Promise((r) => setTimeout(r, 50))
  t.ok(handles() <= before, `no leaked handles (${before} before, ${handles()} after stop)`)
  await s.start()
  t.teardown(() => s.stop())
  const p2 = s.addresses()[0]!.port
  t.same((await dig('127.0.0.1', p2, 'good.example', 'A', ['+tcp'])).answers.map((a) => a[2]), ['192.0.2.10'], 'forwarding works after a restart')
  t.same((await dig('127.0.0.1', p2, 'bad.example', 'A')).answers.map((a) => a[2]), ['0.0.0.0'])
})
