// The sinkhole's per-container decisions (issue 16): a client held to an enforce profile gets the
// sinkhole answer and a `deny` hit for a name outside it, alert forwards with an `alert` hit, learn
// forwards and records the name with its answers; a fleet-wide block wins; a client without a profile
// is answered as before. Real sockets on loopback: each client its own 127.0.0.x source address.
import t from 'tap'
import dgram from 'node:dgram'
import dnsPacket from 'dns-packet'
import { createSinkhole } from '../../src/sinkhole/sinkhole.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { compileProfile } from '../../src/profiles/decide.js'
import { createLearnRecorder } from '../../src/sinkhole/learn-recorder.js'
import { answerAddresses } from '../../src/sinkhole/answer.js'
import { silentLogger } from '../../src/log.js'
import type { Profile } from '../../src/profiles/types.js'
import type { Hit } from '../../src/sinkhole/types.js'

/** An upstream that answers every A question with 203.0.113.7 (www.example: a CNAME to edge.cdn.example first). */
async function fakeUpstream(t: { teardown: (f: () => void) => void }): Promise<number> {
  const s = dgram.createSocket('udp4')
  s.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg)
    const name = q.questions![0]!.name
    const answers: dnsPacket.Answer[] =
      name === 'www.example'
        ? [{ type: 'CNAME', name, ttl: 30, data: 'edge.cdn.example' }, { type: 'A', name: 'edge.cdn.example', ttl: 30, data: '203.0.113.8' }]
        : [{ type: 'A', name, ttl: 300, data: '203.0.113.7' }]
    s.send(dnsPacket.encode({ id: q.id, type: 'response', flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers }), rinfo.port, rinfo.address)
  })
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))
  t.teardown(() => s.close())
  return s.address().port
}

async function ask(from: string, port: number, name: string): Promise<dnsPacket.Packet> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((r) => s.bind(0, from, () => r()))
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer for ${name} from ${from}`)), 3000)
      s.on('message', (m) => {
        clearTimeout(timer)
        resolve(dnsPacket.decode(m))
      })
      s.send(dnsPacket.encode({ id: 7, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), port, '127.0.0.1')
    })
  } finally {
    s.close()
  }
}

const profile = (mode: Profile['mode']): Profile => ({
  name: 'web',
  mode,
  source: 'blocklists/profiles/web.txt',
  rules: [{ kind: 'domain', value: 'api.example', source: 'blocklists/profiles/web.txt:1' }],
})
const addrs = (p: dnsPacket.Packet): string[] => (p.answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data: unknown }).data))

t.test('enforce, alert, learn per client; fleet block wins; clients without a profile unchanged', async (t) => {
  const up = await fakeUpstream(t)
  const hits: Omit<Hit, 'count' | 'lastTime'>[] = []
  const learn = createLearnRecorder()
  const s = createSinkhole({
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [{ address: '127.0.0.1', port: up }],
    matcher: buildMatcher([{ kind: 'domain', value: 'evil.example', allow: false, mode: 'block', source: 'fleet.txt:1' }]),
    allowClients: ['127.0.0.0/8'],
    hits: { record: (h) => hits.push(h) },
    learn,
    log: silentLogger,
  })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses()[0]!.port
  const held = { container: { id: 'a'.repeat(64), name: 'web1', image: 'busybox' } }
  s.setClientProfiles(new Map([
    ['127.0.0.2', { compiled: compileProfile(profile('enforce')), ...held }],
    ['127.0.0.3', { compiled: compileProfile(profile('alert')), ...held }],
    ['127.0.0.4', { compiled: compileProfile(profile('learn')), ...held }],
  ]))

  // enforce: allowed name forwarded; a name outside the profile gets the sinkhole answer and a deny hit.
  t.same(addrs(await ask('127.0.0.2', port, 'api.example')), ['203.0.113.7'])
  t.same(addrs(await ask('127.0.0.2', port, 'other.example')), ['0.0.0.0'], 'outside the profile: sinkholed')
  t.match(hits.at(-1), { action: 'deny', profile: 'web', name: 'other.example', client: '127.0.0.2', answer: 'null', entry: { value: 'web', source: 'blocklists/profiles/web.txt' } })
  // A fleet-wide block wins over the profile and over no profile alike.
  t.same(addrs(await ask('127.0.0.2', port, 'evil.example')), ['0.0.0.0'])
  t.match(hits.at(-1), { action: 'block', name: 'evil.example' })
  // No profile: as before (forwarded, no hit).
  const n = hits.length
  t.same(addrs(await ask('127.0.0.1', port, 'other.example')), ['203.0.113.7'], 'unlabelled client reaches it')
  t.equal(hits.length, n)

  // alert: forwarded, with an alert hit naming the profile.
  t.same(addrs(await ask('127.0.0.3', port, 'other.example')), ['203.0.113.7'])
  t.match(hits.at(-1), { action: 'alert', profile: 'web', name: 'other.example', answer: 'forwarded' })

  // learn: forwarded, recorded with its answers (CNAME chain targets' addresses).
  t.same(addrs(await ask('127.0.0.4', port, 'www.example')), ['203.0.113.8'])
  await ask('127.0.0.4', port, 'www.example')
  const rec = learn.drain()
  t.match(rec, [{ profile: 'web', name: 'www.example', count: 2, containers: ['web1'], answers: ['203.0.113.8'] }])
  t.equal(hits.length, n + 1, 'learn makes no hit')

  // The map swapped out: every client as before.
  s.setClientProfiles(new Map())
  t.same(addrs(await ask('127.0.0.2', port, 'other.example')), ['203.0.113.7'])
})

t.test('learn recorder is bounded; answerAddresses reads the chain', async (t) => {
  const r = createLearnRecorder({ maxNames: 2, maxPerRecord: 1 })
  r.record('p', 'a', 'c1')
  r.record('p', 'a', 'c2')
  r.record('p', 'b', undefined)
  r.record('p', 'c', undefined)
  t.equal(r.dropped(), 1)
  t.match(r.drain(), [{ name: 'a', count: 2, containers: ['c1'] }, { name: 'b' }])
  const resp = Buffer.from(dnsPacket.encode({ id: 1, type: 'response', questions: [{ type: 'A', name: 'www.example' }], answers: [{ type: 'CNAME', name: 'www.example', ttl: 5, data: 'x.example' }, { type: 'A', name: 'x.example', ttl: 42, data: '192.0.2.1' }] }))
  t.same(answerAddresses(resp), [{ ip: '192.0.2.1', ttl: 42 }])
})

t.test('hold: an allowed answer waits for its pairs (ports from the allowing line), bounded by holdMs', async (t) => {
  const up = await fakeUpstream(t)
  const written: Array<{ at: number; pairs: unknown[] }> = []
  let stall = false
  const s = createSinkhole({
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [{ address: '127.0.0.1', port: up }],
    matcher: buildMatcher([]),
    allowClients: ['127.0.0.0/8'],
    cache: false,
    holdMs: 50,
    learnPairs: async (pairs) => {
      if (stall) return new Promise(() => {})
      await new Promise((r) => setTimeout(r, 30))
      written.push({ at: Date.now(), pairs })
    },
    log: silentLogger,
  })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses()[0]!.port
  const p: Profile = { ...profile('enforce'), rules: [{ kind: 'domain', value: 'api.example', ports: [443], source: 'w:1' }, { kind: 'domain', value: 'www.example', source: 'w:2' }] }
  s.setClientProfiles(new Map([['127.0.0.2', { compiled: compileProfile(p) }], ['127.0.0.3', { compiled: compileProfile({ ...p, mode: 'alert' }) }]]))
  t.same(addrs(await ask('127.0.0.2', port, 'api.example')), ['203.0.113.7'])
  const got = Date.now()
  t.equal(written.length, 1, 'pairs written before the answer arrived')
  t.ok(written[0]!.at <= got)
  t.same(written[0]!.pairs, [{ container: '127.0.0.2', dst: '203.0.113.7', port: 443, ttlSec: 330 }], 'TTL 300 + grace 30, port of the line')
  // CNAME chain: the target's address; TTL 30 raised to the 60 s floor.
  await ask('127.0.0.2', port, 'www.example')
  t.same(written[1]!.pairs, [{ container: '127.0.0.2', dst: '203.0.113.8', ttlSec: 90 }])
  // alert mode learns too (so its seen sets report only what enforce would refuse).
  await ask('127.0.0.3', port, 'api.example')
  t.equal(written.length, 3)
  // Unheld client: no pairs, no wait.
  await ask('127.0.0.1', port, 'api.example')
  t.equal(written.length, 3)
  // A writer that never answers: the answer goes out after holdMs and is counted.
  stall = true
  const t0 = Date.now()
  t.same(addrs(await ask('127.0.0.2', port, 'api.example')), ['203.0.113.7'])
  t.ok(Date.now() - t0 >= 45, 'held up to holdMs')
  t.equal(s.stats().holdExpired, 1)
})
