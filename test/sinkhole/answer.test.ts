// Unit tests of the pure decision: dns-packet encodes the queries and decodes the replies.
import t from 'tap'
import dnsPacket from 'dns-packet'
import { answer, checkForwarded, compileBlockMode, parseBlockMode } from '../../src/sinkhole/answer.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import type { Entry } from '../../src/policy/types.js'

const e = (value: string, extra: Partial<Entry> = {}): Entry => ({ kind: value.includes('/') ? 'net' : 'domain', value, allow: false, mode: 'block', source: 'test.txt:1', ...extra })
const matcher = buildMatcher([
  e('bad.example', { reason: 'miner pool' }),
  e('ok.bad.example', { allow: true, source: 'test.txt:2' }),
  e('watch.example', { mode: 'alert', source: 'test.txt:3' }),
  e('203.0.113.0/24', { source: 'test.txt:4' }),
])
const plan = compileBlockMode('null', 30)

function q(name: string, type: dnsPacket.RecordType = 'A', extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({ type: 'query', id: 777, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }], ...extra })
}
type Decoded = dnsPacket.DecodedPacket & { rcode: string }
const decode = (b: Buffer): Decoded => dnsPacket.decode(b) as Decoded
const edns = { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer] }

function reply(buf: Buffer, p = plan) {
  const d = answer(buf, matcher, p)
  if (d.kind !== 'reply') throw new Error(`expected a reply, got ${d.kind}`)
  return { d, pkt: decode(d.packet) }
}

t.test('null mode: A 0.0.0.0, AAAA ::, NODATA with SOA for other types; AA and RA set', async (t) => {
  const a = reply(q('bad.example'))
  t.equal(a.pkt.id, 777)
  t.equal(a.pkt.rcode, 'NOERROR')
  t.ok(a.pkt.flag_aa && a.pkt.flag_ra && a.pkt.flag_rd && a.pkt.flag_qr)
  t.same(a.pkt.answers!.map((r) => [r.name, r.type, (r as { data: string }).data, (r as { ttl?: number }).ttl]), [['bad.example', 'A', '0.0.0.0', 30]])
  t.same(a.pkt.questions, [{ name: 'bad.example', type: 'A', class: 'IN' }])
  t.equal(a.d.hit?.action, 'block')
  t.equal(a.d.hit?.answer, 'null')
  const aaaa = reply(q('deep.sub.BAD.example', 'AAAA'))
  t.same(aaaa.pkt.answers!.map((r) => (r as { data: string }).data), ['::'], 'subdomains, any case')
  t.equal(aaaa.pkt.questions![0]!.name, 'deep.sub.BAD.example', 'question echoed byte for byte')
  const mx = reply(q('bad.example', 'MX'))
  t.equal(mx.pkt.rcode, 'NOERROR')
  t.equal(mx.pkt.answers!.length, 0)
  t.equal(mx.pkt.authorities![0]!.type, 'SOA')
})

t.test('nxdomain, refused and custom modes', async (t) => {
  const nx = reply(q('bad.example'), compileBlockMode('nxdomain', 10))
  t.equal(nx.pkt.rcode, 'NXDOMAIN')
  t.equal(nx.pkt.authorities![0]!.type, 'SOA')
  t.equal((nx.pkt.authorities![0] as { data: { minimum: number } }).data.minimum, 10)
  const rf = reply(q('bad.example'), compileBlockMode('refused'))
  t.equal(rf.pkt.rcode, 'REFUSED')
  t.equal(rf.d.hit?.answer, 'refused')
  const custom = compileBlockMode(parseBlockMode('198.51.100.9'))
  const c = reply(q('bad.example'), custom)
  t.same(c.pkt.answers!.map((r) => (r as { data: string }).data), ['198.51.100.9'])
  t.equal(c.d.hit?.answer, 'custom:198.51.100.9')
  const c6 = reply(q('bad.example', 'AAAA'), custom)
  t.equal(c6.pkt.answers!.length, 0, 'custom IPv4 only: AAAA is NODATA')
  const both = compileBlockMode(parseBlockMode('198.51.100.9,2001:db8::9'))
  t.same(reply(q('bad.example', 'AAAA'), both).pkt.answers!.map((r) => (r as { data: string }).data), ['2001:db8::9'])
  t.throws(() => parseBlockMode('bogus'), { code: 'EG_CONFIG' })
  t.throws(() => compileBlockMode('null', -1), { code: 'EG_CONFIG' })
})

t.test('EDE Blocked (RFC 8914) only when the client sent EDNS', async (t) => {
  const with_ = reply(q('bad.example', 'A', edns))
  const opt = with_.pkt.additionals!.find((r) => r.type === 'OPT') as unknown as { options: Array<{ code: number; data: Buffer }>; udpPayloadSize: number }
  t.ok(opt, 'OPT present')
  const ede = opt.options.find((o) => o.code === 15)!
  t.ok(ede, 'EDE option present')
  t.equal(ede.data.readUInt16BE(0), 15, 'info-code 15 Blocked')
  t.match(ede.data.subarray(2).toString(), /bad\.example: miner pool \(test\.txt:1\)/)
  const without = reply(q('bad.example'))
  t.equal(without.pkt.additionals!.length, 0)
})

t.test('allow, alert and unlisted names are forwarded', async (t) => {
  const ok = answer(q('ok.bad.example'), matcher, plan)
  t.equal(ok.kind, 'forward')
  t.equal(ok.kind === 'forward' && ok.check, false, 'explicitly allowed: answer not re-checked')
  const al = answer(q('x.watch.example'), matcher, plan)
  t.equal(al.kind === 'forward' && al.hit?.action, 'alert')
  t.equal(al.kind === 'forward' && al.hit?.answer, 'forwarded')
  const un = answer(q('good.example'), matcher, plan)
  t.ok(un.kind === 'forward' && un.check && !un.hit)
  t.equal(un.kind === 'forward' && un.query.qname, 'good.example')
})

t.test('bad input: FORMERR, NOTIMP, REFUSED, BADVERS or silence', async (t) => {
  t.equal(answer(Buffer.alloc(5), matcher, plan).kind, 'drop', 'shorter than a header')
  const resp = q('bad.example')
  resp.writeUInt16BE(resp.readUInt16BE(2) | 0x8000, 2)
  t.equal(answer(resp, matcher, plan).kind, 'drop', 'a response is never answered')
  const rc = (b: Buffer) => {
    const d = answer(b, matcher, plan)
    return d.kind === 'reply' ? decode(d.packet).rcode : d.kind
  }
  t.equal(rc(dnsPacket.encode({ type: 'query', id: 1, questions: [] })), 'FORMERR', 'zero questions')
  t.equal(rc(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'a.example', type: 'A' }, { name: 'b.example', type: 'A' }] })), 'FORMERR', 'two questions')
  t.equal(rc(q('bad.example').subarray(0, 20)), 'FORMERR', 'truncated question')
  const loop = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1])
  t.equal(rc(loop), 'FORMERR', 'compression pointer loop in the question')
  const notify = q('bad.example')
  notify.writeUInt16BE((notify.readUInt16BE(2) & ~0x7800) | (4 << 11), 2)
  t.equal(rc(notify), 'NOTIMP', 'opcode NOTIFY')
  t.equal(rc(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'version.bind', type: 'TXT', class: 'CH' }] })), 'REFUSED', 'CHAOS class')
  t.equal(rc(q('bad.example', 'AXFR' as dnsPacket.RecordType)), 'REFUSED', 'AXFR')
  const v1 = dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'x.example', type: 'A' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [], ednsVersion: 1 } as unknown as dnsPacket.Answer] })
  // dns-packet may not encode a version: patch it in (OPT TTL byte 2 is VERSION; rdlen is the last 2 bytes).
  v1[v1.length - 5] = 1
  const d = answer(v1, matcher, plan)
  t.ok(d.kind === 'reply' && d.rcode === 16, 'BADVERS for EDNS version 1')
  const twoOpt = dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'x.example', type: 'A' }], additionals: [edns.additionals[0]!, edns.additionals[0]!] })
  t.equal(rc(twoOpt), 'FORMERR', 'two OPT records')
  const unknownType = Buffer.from(q('good.example'))
  unknownType.writeUInt16BE(65280, unknownType.length - 4)
  t.equal(answer(unknownType, matcher, plan).kind, 'forward', 'unknown types are forwarded')
})

t.test('checkForwarded: CNAME to a blocked name, blocked addresses, allowed targets', async (t) => {
  const resp = (answers: dnsPacket.Answer[]) => dnsPacket.encode({ type: 'response', id: 9, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name: 'alias.example', type: 'A' }], answers })
  const viaCname = checkForwarded(resp([{ name: 'alias.example', type: 'CNAME', data: 'cdn.bad.example' }, { name: 'cdn.bad.example', type: 'A', data: '192.0.2.1' }]), matcher)
  t.equal(viaCname.kind, 'block')
  t.equal(viaCname.kind === 'block' && viaCname.via, 'cname:cdn.bad.example')
  const viaIp = checkForwarded(resp([{ name: 'alias.example', type: 'A', data: '203.0.113.77' }]), matcher)
  t.equal(viaIp.kind === 'block' && viaIp.via, 'ip:203.0.113.77')
  t.equal(checkForwarded(resp([{ name: 'alias.example', type: 'CNAME', data: 'ok.bad.example' }, { name: 'ok.bad.example', type: 'A', data: '192.0.2.1' }]), matcher).kind, 'ok')
  t.equal(checkForwarded(resp([{ name: 'alias.example', type: 'CNAME', data: 'x.watch.example' }]), matcher).kind, 'alert')
  t.equal(checkForwarded(resp([{ name: 'alias.example', type: 'A', data: '192.0.2.1' }]), matcher).kind, 'ok')
  t.equal(checkForwarded(Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0]), matcher).kind, 'malformed')
})

t.test('EDNS options are hop-by-hop: COOKIE and CLIENT-SUBNET are not forwarded upstream', async (t) => {
  const { parseQuery, withoutEdnsOptions } = await import('../../src/sinkhole/wire.js')
  const withOpts = dnsPacket.encode({
    type: 'query',
    id: 5,
    questions: [{ name: 'good.example', type: 'A', class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1400, flags: dnsPacket.DNSSEC_OK, options: [{ code: 10, data: Buffer.from('0011223344556677', 'hex') }, { code: 'CLIENT_SUBNET', family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '198.51.100.0' }] } as unknown as dnsPacket.Answer],
  })
  const p = parseQuery(withOpts)
  t.ok(p.ok)
  if (!p.ok) return
  const up = withoutEdnsOptions(withOpts, p.query)
  t.ok(up.length < withOpts.length)
  const opt = decode(up).additionals![0] as unknown as { type: string; udpPayloadSize: number; flag_do: boolean; options: unknown[] }
  t.equal(opt.type, 'OPT')
  t.equal(opt.udpPayloadSize, 1400, 'UDP size kept')
  t.equal(opt.flag_do, true, 'DO bit kept')
  t.same(opt.options, [], 'options dropped')
  const plain = q('good.example')
  const pp = parseQuery(plain)
  t.equal(pp.ok && withoutEdnsOptions(plain, pp.query), plain, 'no EDNS: the same buffer, no copy')
})

t.test('checkForwarded: HTTPS/SVCB target names and address hints (RFC 9460)', async (t) => {
  const name = (n: string) => Buffer.concat([...n.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
  function https(target: string, params: Array<[number, Buffer]>): Buffer {
    const rdata = Buffer.concat([u16(1), name(target), ...params.map(([k, v]) => Buffer.concat([u16(k), u16(v.length), v]))])
    const header = Buffer.from([0, 9, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0])
    const question = Buffer.concat([name('site.example'), u16(65), u16(1)])
    const rr = Buffer.concat([Buffer.from([0xc0, 12]), u16(65), u16(1), Buffer.from([0, 0, 0, 60]), u16(rdata.length), rdata])
    return Buffer.concat([header, question, rr])
  }
  const alpn = Buffer.from([2, 0x68, 0x32])
  t.equal(checkForwarded(https('', [[1, alpn], [4, Buffer.from([192, 0, 2, 1])]]), matcher).kind, 'ok', 'harmless hints pass')
  const viaTarget = checkForwarded(https('cdn.bad.example', [[1, alpn]]), matcher)
  t.equal(viaTarget.kind === 'block' && viaTarget.via, 'svcb:cdn.bad.example', 'blocked TargetName')
  const viaV4 = checkForwarded(https('', [[1, alpn], [4, Buffer.from([192, 0, 2, 1, 203, 0, 113, 9])]]), matcher)
  t.equal(viaV4.kind === 'block' && viaV4.via, 'svcb-hint:203.0.113.9', 'blocked ipv4hint')
  t.equal(checkForwarded(https('', [[4, Buffer.from([1, 2, 3])]]), matcher).kind, 'malformed', 'a hint of the wrong length')
  t.equal(checkForwarded(https('', [[4, Buffer.from([1, 2, 3, 4])]]).subarray(0, 40), matcher).kind, 'malformed', 'cut short')
})
