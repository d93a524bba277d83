// The forwarder against a real dnsmasq and against a hand-made hostile upstream that sends spoofed
// and mismatched answers first.
import t from 'tap'
import dgram from 'node:dgram'
import dnsPacket from 'dns-packet'
import { capabilities, requires } from '../helpers/caps.js'
import { dig, startDnsmasq } from '../helpers/dnsmasq.js'
import { createUpstream, matchesQuestion } from '../../src/sinkhole/upstream.js'
import { coalesceSlot, createSinkhole } from '../../src/sinkhole/sinkhole.js'
import { cacheKey } from '../../src/sinkhole/cache.js'
import { parseQuery } from '../../src/sinkhole/wire.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { silentLogger } from '../../src/log.js'

type Decoded = dnsPacket.DecodedPacket & { rcode: string }
const query = (name: string, type: dnsPacket.RecordType = 'A', id = 1): Buffer => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] })
const Q = (qname: string, qtype = 1) => ({ qname, qtype, qclass: 1 })
const bigTxt = Array.from({ length: 12 }, (_, i) => `--txt-record=big.example,"${String(i).padStart(2, '0')}${'x'.repeat(150)}"`)

t.test('forwards to dnsmasq with fresh random IDs; TCP when the UDP answer is truncated', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const dm = await startDnsmasq(t, { hosts: { 'good.example': ['192.0.2.10'] }, extraArgs: bigTxt })
  const up = createUpstream({ servers: [{ address: dm.address, port: dm.port }], log: silentLogger, timeoutMs: 1000 })
  t.teardown(() => up.close())
  const ids = new Set<number>()
  for (let i = 0; i < 20; i++) {
    const r = await up.query(query('good.example', 'A', 4242), Q('good.example'))
    ids.add(r.readUInt16BE(0))
    const d = dnsPacket.decode(r) as Decoded
    t.equal((d.answers![0] as { data: string }).data, '192.0.2.10')
  }
  t.ok(ids.size >= 18, `IDs are random, not the client's (${ids.size} distinct of 20)`)
  t.notOk(ids.has(4242) && ids.size === 1)
  const big = await up.query(query('big.example', 'TXT'), Q('big.example', 16))
  const d = dnsPacket.decode(big) as Decoded
  t.equal(d.flag_tc, false, 'full answer')
  t.equal(d.answers!.length, 12, 'all 12 TXT records, over TCP')
  t.equal(up.stats().tcpFallbacks, 1)
  t.ok(big.length > 512)
})

t.test('a sinkhole UDP client gets TC for an answer bigger than its limit, and the full one over TCP', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'), capabilities.tool('dig'))) return
  const dm = await startDnsmasq(t, { extraArgs: [...bigTxt, '--local-ttl=60'] })
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: dm.address, port: dm.port }], matcher: buildMatcher([]), log: silentLogger })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses()[0]!.port
  const udp = await dig('127.0.0.1', port, 'big.example', 'TXT', ['+noedns', '+ignore'])
  t.ok(udp.flags.includes('tc'), 'truncated over UDP without EDNS')
  t.same(udp.answers, [])
  const tcp = await dig('127.0.0.1', port, 'big.example', 'TXT', ['+tcp'])
  t.equal(tcp.answers.length, 12, 'complete over TCP')
  const auto = await dig('127.0.0.1', port, 'big.example', 'TXT', ['+noedns'])
  t.equal(auto.answers.length, 12, 'dig retries over TCP by itself')
})

t.test('spoofed and mismatched answers are ignored; retry moves to the next upstream', async (t) => {
  // A hostile upstream: for each query it first sends a wrong ID, a wrong question, an answer from
  // another port, then the real one.
  const hostile = dgram.createSocket('udp4')
  const other = dgram.createSocket('udp4')
  t.teardown(() => {
    hostile.close()
    other.close()
  })
  await new Promise<void>((r) => hostile.bind(0, '127.0.0.1', () => r()))
  await new Promise<void>((r) => other.bind(0, '127.0.0.1', () => r()))
  hostile.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg)
    const reply = (over: Partial<dnsPacket.Packet>, qname = q.questions![0]!.name) =>
      dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name: qname, type: 'A', class: 'IN' }], answers: [{ name: qname, type: 'A', data: '198.51.100.66' }], ...over })
    hostile.send(reply({ id: (q.id! + 1) & 0xffff }), rinfo.port, rinfo.address)
    hostile.send(reply({}, 'other.example'), rinfo.port, rinfo.address)
    other.send(reply({}), rinfo.port, rinfo.address)
    hostile.send(Buffer.from([1, 2, 3]), rinfo.port, rinfo.address)
    setTimeout(() => hostile.send(reply({ answers: [{ name: q.questions![0]!.name, type: 'A', data: '192.0.2.99' }] }), rinfo.port, rinfo.address), 20)
  })
  const up = createUpstream({ servers: [{ address: '127.0.0.1', port: (hostile.address()).port }], log: silentLogger, timeoutMs: 1000 })
  t.teardown(() => up.close())
  const r = dnsPacket.decode(await up.query(query('Target.Example'), Q('target.example')))
  t.equal((r.answers![0] as { data: string }).data, '192.0.2.99', 'only the matching answer is taken')
  t.ok(up.stats().mismatched >= 3, `mismatched counted: ${up.stats().mismatched}`)

  // Retry: a dead first upstream (nothing listens; the try times out), then the hostile-but-correct one.
  const dead = dgram.createSocket('udp4')
  await new Promise<void>((res) => dead.bind(0, '127.0.0.1', () => res()))
  t.teardown(() => dead.close())
  const up2 = createUpstream({ servers: [{ address: '127.0.0.1', port: dead.address().port }, { address: '127.0.0.1', port: hostile.address().port }], log: silentLogger, timeoutMs: 1000 })
  t.teardown(() => up2.close())
  const r2 = dnsPacket.decode(await up2.query(query('retry.example'), Q('retry.example')))
  t.equal((r2.answers![0] as { data: string }).data, '192.0.2.99')
  t.equal(up2.stats().timeouts, 1, 'one timed-out try, then the second upstream answered')

  const up3 = createUpstream({ servers: [{ address: '127.0.0.1', port: dead.address().port }], log: silentLogger, timeoutMs: 100, attempts: 3 })
  t.teardown(() => up3.close())
  await t.rejects(up3.query(query('x.example'), Q('x.example')), { code: 'EG_UPSTREAM' }, 'every try failed')
  t.equal(up3.stats().timeouts, 3)
})

t.test('matchesQuestion: case-insensitive name, exact type and class', async (t) => {
  const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'WwW.Example', type: 'AAAA', class: 'IN' }] })
  t.ok(matchesQuestion(resp, Q('www.example', 28)))
  t.notOk(matchesQuestion(resp, Q('www.example', 1)))
  t.notOk(matchesQuestion(resp, Q('ww.example', 28)))
  t.notOk(matchesQuestion(query('www.example', 'AAAA'), Q('www.example', 28)), 'a query (QR=0) is not an answer')
})

t.test('identical questions in flight share one upstream query; each client gets its own ID and case', async (t) => {
  const slow = dgram.createSocket('udp4')
  t.teardown(() => slow.close())
  await new Promise<void>((r) => slow.bind(0, '127.0.0.1', () => r()))
  let seen = 0
  slow.on('message', (msg, rinfo) => {
    seen++
    const q = dnsPacket.decode(msg)
    setTimeout(() => slow.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ name: q.questions![0]!.name, type: 'A', ttl: 60, data: '192.0.2.44' }] }), rinfo.port, rinfo.address), 1000)
  })
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: '127.0.0.1', port: slow.address().port }], matcher: buildMatcher([]), log: silentLogger, cache: false, upstreamTimeoutMs: 4000 })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses()[0]!.port
  const client = dgram.createSocket('udp4')
  t.teardown(() => client.close())
  const got = new Map<number, dnsPacket.DecodedPacket>()
  client.on('message', (m) => {
    const d = dnsPacket.decode(m)
    got.set(d.id!, d)
  })
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()))
  for (let i = 0; i < 20; i++) client.send(query(i % 2 ? 'SAME.example' : 'same.example', 'A', 100 + i), port, '127.0.0.1')
  const deadline = Date.now() + 6000
  while (got.size < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(got.size, 20, 'every client answered')
  t.equal(seen, 1, 'the upstream was asked once')
  t.equal(s.stats().coalesced, 19)
  t.equal(got.get(101)!.questions![0]!.name, 'SAME.example', 'each gets its own question case back')
  t.equal(got.get(100)!.questions![0]!.name, 'same.example')
  t.same([...got.values()].map((d) => (d.answers![0] as { data: string }).data), Array(20).fill('192.0.2.44'))
})

t.test('different questions that share a coalescing slot are forwarded on their own, each answered for itself', async (t) => {
  const keyOf = (name: string) => {
    const p = parseQuery(query(name))
    if (!p.ok) throw new Error('bad test query')
    return cacheKey(p.query)
  }
  // Two names whose questions land in the same slot of the direct-mapped coalescing table.
  const a = 'a.example'
  let b = ''
  for (let i = 0; !b; i++) if (coalesceSlot(keyOf(`c${i}.example`)) === coalesceSlot(keyOf(a))) b = `c${i}.example`
  const slow = dgram.createSocket('udp4')
  t.teardown(() => slow.close())
  await new Promise<void>((r) => slow.bind(0, '127.0.0.1', () => r()))
  const asked: string[] = []
  slow.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg)
    const name = q.questions![0]!.name
    asked.push(name)
    const data = name === a ? '192.0.2.1' : '192.0.2.2'
    setTimeout(() => slow.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ name, type: 'A', ttl: 60, data }] }), rinfo.port, rinfo.address), 300)
  })
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: '127.0.0.1', port: slow.address().port }], matcher: buildMatcher([]), log: silentLogger, cache: false })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses()[0]!.port
  const client = dgram.createSocket('udp4')
  t.teardown(() => client.close())
  const got = new Map<number, dnsPacket.DecodedPacket>()
  client.on('message', (m) => {
    const d = dnsPacket.decode(m)
    got.set(d.id!, d)
  })
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()))
  // a (takes the slot), b (same slot, different question: on its own), a again (joins the first).
  client.send(query(a, 'A', 1), port, '127.0.0.1')
  client.send(query(b, 'A', 2), port, '127.0.0.1')
  client.send(query(a, 'A', 3), port, '127.0.0.1')
  const deadline = Date.now() + 4000
  while (got.size < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  const answer = (id: number) => [got.get(id)?.questions?.[0]?.name, (got.get(id)?.answers?.[0] as { data?: string } | undefined)?.data]
  t.same(answer(1), [a, '192.0.2.1'])
  t.same(answer(2), [b, '192.0.2.2'], 'the colliding question gets its own answer')
  t.same(answer(3), [a, '192.0.2.1'])
  t.same(asked.sort(), [a, b].sort(), 'the upstream saw each question once')
  t.equal(s.stats().coalesced, 1, 'only the identical question joined')
})

t.test('a refused upstream (ICMP port unreachable) fails its tries at once, not after the timeout', async (t) => {
  // A port nobody listens on: bind one, note it, close it.
  const gone = dgram.createSocket('udp4')
  await new Promise<void>((r) => gone.bind(0, '127.0.0.1', () => r()))
  const port = gone.address().port
  await new Promise<void>((r) => gone.close(() => r()))
  const up = createUpstream({ servers: [{ address: '127.0.0.1', port }], log: silentLogger, timeoutMs: 5000, attempts: 2 })
  t.teardown(() => up.close())
  const t0 = performance.now()
  const results = await Promise.allSettled([1, 2, 3].map((i) => up.query(query(`r${i}.example`), Q(`r${i}.example`))))
  const ms = performance.now() - t0
  t.same(results.map((r) => r.status), ['rejected', 'rejected', 'rejected'])
  t.match((results[0] as PromiseRejectedResult).reason, { code: 'EG_UPSTREAM', message: /ECONNREFUSED/ })
  t.ok(ms < 2500, `failed in ${ms.toFixed(0)} ms, well before the 5000 ms timeout`)
  t.equal(up.stats().timeouts, 0)
  t.equal(up.stats().failures, 3)
})

t.test('thousands of tries in flight: the deadline queue grows and wraps; answers and timeouts both land', async (t) => {
  // Answers names with an even number, ignores odd ones (they must time out, each exactly once).
  const half = dgram.createSocket('udp4')
  t.teardown(() => half.close())
  await new Promise<void>((r) => half.bind(0, '127.0.0.1', () => r()))
  half.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg)
    const name = q.questions![0]!.name
    if (Number(/^n(\d+)\./.exec(name)![1]) % 2 === 1) return
    half.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ name, type: 'A', data: '192.0.2.7' }] }), rinfo.port, rinfo.address)
  })
  const up = createUpstream({ servers: [{ address: '127.0.0.1', port: half.address().port }], log: silentLogger, timeoutMs: 3000, attempts: 1 })
  t.teardown(() => up.close())
  // Two waves: the first grows the queue from 1024 slots (answered tries stay queued until their
  // deadline), the second starts mid-ring and wraps. Sent 50 at a time, each batch's answers awaited
  // before the next, so no socket buffer overflows even on a loaded machine (a dropped datagram would
  // look like a timeout).
  for (const [wave, n] of [[0, 3000], [1, 1500]] as const) {
    const pending: Promise<string>[] = []
    for (let i = 0; i < n; i += 50) {
      const batch: Promise<string>[] = []
      for (let j = i; j < i + 50; j++) {
        batch.push(up.query(query(`n${j}.w${wave}.example`), Q(`n${j}.w${wave}.example`)).then((r) => (dnsPacket.decode(r).answers![0] as { data: string }).data))
      }
      pending.push(...batch)
      await Promise.all(batch.filter((_, k) => k % 2 === 0))
    }
    const results = await Promise.allSettled(pending)
    const ok = results.filter((r, i) => r.status === 'fulfilled' && r.value === '192.0.2.7' && i % 2 === 0).length
    const timedOut = results.filter((r, i) => r.status === 'rejected' && /timed out/.test((r.reason as Error).message) && i % 2 === 1).length
    t.equal(ok, n / 2, `wave ${wave}: every even name answered (${results.filter((r) => r.status === 'rejected').length} rejected in all)`)
    t.equal(timedOut, n / 2, `wave ${wave}: every odd name timed out`)
  }
  t.equal(up.stats().timeouts, 2250, 'one timeout per unanswered try, none for answered ones')
  t.equal(up.stats().answered, 2250)
})
