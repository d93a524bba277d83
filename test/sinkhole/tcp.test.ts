// TCP transport: RFC 7766 framing and pipelining, idle and slow clients cut, the connection cap
// cannot be exhausted by idle clients, half-close handled.
import t, { type Test } from 'tap'
import net from 'node:net'
import dnsPacket from 'dns-packet'
import { capabilities, requires } from '../helpers/caps.js'
import { dig } from '../helpers/dnsmasq.js'
import { createSinkhole, type SinkholeOptions } from '../../src/sinkhole/sinkhole.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { silentLogger } from '../../src/log.js'

const matcher = buildMatcher([{ kind: 'domain', value: 'bad.example', allow: false, mode: 'block', source: 't:1' }])
const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
const query = (name: string, id: number): Buffer => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] })

async function start(t: Test, extra: Partial<SinkholeOptions> = {}) {
  // The upstream is never reached in these tests (only blocked names are asked).
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: '127.0.0.1', port: 9 }], matcher, log: silentLogger, ...extra })
  await s.start()
  t.teardown(() => s.stop())
  return { s, port: s.addresses().find((a) => a.proto === 'tcp')!.port }
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => resolve(c))
    c.on('error', reject)
  })
}

/** Collect framed responses until `n` arrived or the socket closed. */
function readFrames(c: net.Socket, n: number, timeoutMs = 2000): Promise<{ msgs: Buffer[]; closed: boolean }> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0)
    const msgs: Buffer[] = []
    const done = (closed: boolean) => {
      clearTimeout(timer)
      c.removeAllListeners('data')
      resolve({ msgs, closed })
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        msgs.push(buf.subarray(2, 2 + buf.readUInt16BE(0)))
        buf = buf.subarray(2 + buf.readUInt16BE(0))
      }
      if (msgs.length >= n) done(false)
    })
    c.once('close', () => done(true))
  })
}

t.test('several pipelined queries on one connection, split across writes', async (t) => {
  const { port } = await start(t)
  const c = await connect(port)
  t.teardown(() => c.destroy())
  const all = Buffer.concat([frame(query('bad.example', 1)), frame(query('a.bad.example', 2)), frame(query('b.bad.example', 3))])
  const got = readFrames(c, 3)
  // Byte-by-byte for the first frame, then the rest in one go: framing must not care.
  for (let i = 0; i < 10; i++) c.write(all.subarray(i, i + 1))
  c.write(all.subarray(10))
  const { msgs } = await got
  t.same(msgs.map((m) => dnsPacket.decode(m).id).sort(), [1, 2, 3])
  t.same(msgs.map((m) => (dnsPacket.decode(m).answers![0] as { data: string }).data), ['0.0.0.0', '0.0.0.0', '0.0.0.0'])
})

t.test('half-close after the query: the answer still arrives, then the server closes', async (t) => {
  const { port } = await start(t)
  const c = await connect(port)
  t.teardown(() => c.destroy())
  const got = readFrames(c, 2)
  c.end(Buffer.concat([frame(query('bad.example', 7)), frame(query('x.bad.example', 8))]))
  const { msgs } = await got
  t.equal(msgs.length, 2)
  await new Promise<void>((r) => (c.closed ? r() : c.once('close', () => r())))
  t.pass('closed after answering')
})

t.test('a zero-length frame or garbage frame: connection closed or FORMERR, server fine', async (t) => {
  const { s, port } = await start(t)
  const c1 = await connect(port)
  t.teardown(() => c1.destroy())
  const r1 = readFrames(c1, 1)
  c1.write(Buffer.from([0, 0]))
  t.equal((await r1).closed, true, 'empty frame closes the connection')
  const c2 = await connect(port)
  t.teardown(() => c2.destroy())
  const r2 = readFrames(c2, 2)
  const garbage = Buffer.alloc(65535, 0x41)
  garbage.writeUInt16BE(0x1234, 0)
  garbage.writeUInt16BE(0x0100, 2)
  c2.write(Buffer.concat([frame(garbage), frame(query('bad.example', 9))]))
  const { msgs } = await r2
  t.equal(msgs.length, 2)
  t.equal((dnsPacket.decode(msgs[0]!) as { rcode?: string }).rcode, 'FORMERR', 'maximum-size garbage: FORMERR')
  t.equal(dnsPacket.decode(msgs[1]!).id, 9, 'next query on the same connection answered')
  t.equal(s.stats().server.handlerErrors, 0)
})

t.test('idle, slow and half-open clients are cut and cannot exhaust the connection cap', async (t) => {
  if (!requires(t, capabilities.tool('dig'))) return
  const max = 4
  const { s, port } = await start(t, { maxTcpClients: max, tcpIdleMs: 600 })
  const idle: net.Socket[] = []
  const closed = new Set<number>()
  for (let i = 0; i < max + 3; i++) {
    const c = await connect(port)
    c.on('error', () => undefined)
    c.on('close', () => closed.add(i))
    idle.push(c)
    t.teardown(() => c.destroy())
  }
  // One of them is a slowloris: a byte every 100 ms of a frame it never finishes.
  const slow = idle[idle.length - 1]!
  slow.write(Buffer.from([0x01]))
  const drip = setInterval(() => !slow.destroyed && slow.write(Buffer.from([0x41])), 100)
  t.teardown(() => clearInterval(drip))
  // Another has sent a complete query and half-closed without reading.
  const halfOpen = idle[idle.length - 2]!
  halfOpen.end(frame(query('bad.example', 5)))
  halfOpen.resume() // discard what arrives, so its 'close' is observable here
  await new Promise((r) => setTimeout(r, 50))
  t.ok(s.stats().server.tcpConnections <= max, `never more than ${max} connections (${s.stats().server.tcpConnections})`)
  const r = await dig('127.0.0.1', port, 'bad.example', 'A', ['+tcp'])
  t.same(r.answers.map((a) => a[2]), ['0.0.0.0'], 'a real query is answered while the slots are full of idle clients')
  t.ok(s.stats().server.tcpEvicted >= 3, `idle connections evicted (${s.stats().server.tcpEvicted})`)
  const until = Date.now() + 10_000 // polled, not slept: a busy machine delays timers
  while ((closed.size < idle.length || s.stats().server.tcpConnections > 0) && Date.now() < until) await new Promise((res) => setTimeout(res, 50))
  t.equal(closed.size, idle.length, 'every idle, slow and half-open connection has been closed')
  t.equal(s.stats().server.tcpConnections, 0)
  t.ok(s.stats().server.tcpTimedOut >= 1, 'the slow client was timed out, dripping bytes did not keep it alive')
  const again = await dig('127.0.0.1', port, 'x.bad.example', 'A', ['+tcp'])
  t.same(again.answers.map((a) => a[2]), ['0.0.0.0'])
})

t.test('a client that sends many queries and never reads: reading pauses, it is cut, others are served', async (t) => {
  if (!requires(t, capabilities.tool('dig'))) return
  const { s, port } = await start(t, { tcpIdleMs: 500 })
  // Built before connecting: encoding takes longer than the idle timeout on a busy machine.
  const frames = Buffer.concat(Array.from({ length: 100_000 }, (_, i) => frame(query(`n${i}.bad.example`, i & 0xffff))))
  const c = await connect(port)
  t.teardown(() => c.destroy())
  c.pause() // never read
  c.on('error', () => undefined)
  c.write(frames)
  const r = await dig('127.0.0.1', port, 'bad.example', 'A', ['+tcp'])
  t.same(r.answers.map((a) => a[2]), ['0.0.0.0'], 'another client is served meanwhile')
  // Watch the server side: a paused client socket does not notice the close until it reads.
  const deadline = Date.now() + 20_000
  while (s.stats().server.tcpConnections > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100))
  t.equal(s.stats().server.tcpConnections, 0, 'the non-reading client was cut by the idle timeout')
  const read = s.stats().server.tcpIn - 1
  t.ok(read < 100_000, `reading paused under backpressure (${read} of 100000 queries read; ~7 MB of answers do not fit the socket buffers)`)
  t.equal(s.stats().server.tcpTimedOut, 1)
})
