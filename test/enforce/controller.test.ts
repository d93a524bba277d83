// The enforcement controller with the dry-run backend (and a drifting fake), a real address book
// fed by a scripted resolver, and a hosts file in a temp dir: apply, idempotence, TTL re-resolution,
// reconcile repairs, timers; background resolution (writes before lookups, batched answers) and the
// resolved-address store (restore, save, a corrupt store reported until healed).
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEnforcementController } from '../../src/enforce/controller.js'
import { createDryRunEnforcer } from '../../src/enforce/dry-run.js'
import { createHostsFile } from '../../src/enforce/hosts-file.js'
import { createAddressBook, type AddressSnapshot, type AddressStore } from '../../src/resolve/address-book.js'
import type { ResolveResult } from '../../src/resolve/dns-client.js'
import type { DesiredState, Drift, Enforcer } from '../../src/enforce/types.js'
import type { Entry, Policy } from '../../src/policy/types.js'
import { silentLogger } from '../../src/log.js'

let n = 0
const e = (kind: Entry['kind'], value: string, more: Partial<Entry> = {}): Entry => ({ kind, value, allow: false, mode: 'block', source: `t.txt:${++n}`, ...more })
const policy = (entries: Entry[], version = 1): Policy => ({ version, etag: `e${version}`, entries, generatedAt: new Date().toISOString() })

function setup(t: { teardown: (f: () => void) => void }, enforcer?: Enforcer) {
  const dir = mkdtempSync(join(tmpdir(), `eg-ctl-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const hostsPath = join(dir, 'hosts')
  writeFileSync(hostsPath, '127.0.0.1 localhost\n')
  let clock = 1_000_000
  const answers: Record<string, string[]> = { 'evil.example': ['203.0.113.7', '8.8.8.8'] }
  const resolve = async (name: string): Promise<ResolveResult> => ({
    addrs: (answers[name] ?? []).map((ip) => ({ ip, family: ip.includes(':') ? 6 : 4, ttl: 60 })), cnames: [], rcode: answers[name] ? 'NOERROR' : 'NXDOMAIN',
  })
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, now: () => clock, resolve: resolve as never })
  const printed: string[] = []
  const dry = createDryRunEnforcer((l) => printed.push(l))
  const ctl = createEnforcementController({ enforcer: enforcer ?? dry, hosts: createHostsFile(hostsPath), book, protect: [], log: silentLogger, reconcileIntervalMs: 20 })
  t.teardown(() => ctl.stop())
  return { ctl, dry, printed, hostsPath, answers, tick: (s: number) => (clock += s * 1000) }
}

t.test('setPolicy applies kernel + hosts; the second time changes nothing', async (t) => {
  const { ctl, dry, hostsPath } = setup(t)
  const p = policy([e('domain', 'evil.example'), e('net', '198.51.100.0/24'), e('domain', 'watch.example', { mode: 'alert' })])
  const r1 = await ctl.setPolicy(p)
  t.equal(r1.report.changed, true)
  t.same(r1.hosts, { changed: true, names: 1 })
  t.same(r1.warnings, ['evil.example resolved to 8.8.8.8, not blocked: public resolver'])
  t.same(dry.snapshot()?.block.v4, ['198.51.100.0/24', '203.0.113.7/32'])
  t.match(readFileSync(hostsPath, 'utf8'), /0\.0\.0\.0 evil\.example\n:: evil\.example\n/)
  const r2 = await ctl.setPolicy(p)
  t.equal(r2.report.changed, false)
  t.same(r2.hosts, { changed: false, names: 1 })
  const st = ctl.stats()
  t.equal(st.version, 1)
  t.same(st.entries, { block4: 2, block6: 0, alert4: 0, alert6: 0, allow4: 0, allow6: 0, hostsNames: 1, domains: 2 })
  t.equal(st.applies, 2)
})

t.test('refreshOnce re-applies when an answer changes after its TTL', async (t) => {
  const { ctl, dry, answers, tick } = setup(t)
  await ctl.setPolicy(policy([e('domain', 'evil.example')]))
  answers['evil.example'] = ['203.0.113.9']
  let r = await ctl.refreshOnce()
  t.equal(r.changed, false, 'TTL not run out yet')
  t.same(dry.snapshot()?.block.v4, ['203.0.113.7/32'])
  tick(60)
  r = await ctl.refreshOnce()
  t.equal(r.changed, true)
  t.same(dry.snapshot()?.block.v4, ['203.0.113.9/32'])
})

t.test('reconcileOnce repairs a tampered hosts file and counts it', async (t) => {
  const { ctl, hostsPath } = setup(t)
  t.same(await ctl.reconcileOnce(), { drift: [], repaired: false }, 'nothing applied yet')
  await ctl.setPolicy(policy([e('domain', 'evil.example')]))
  t.same(await ctl.reconcileOnce(), { drift: [], repaired: false })
  writeFileSync(hostsPath, '127.0.0.1 localhost\n')
  const r = await ctl.reconcileOnce()
  t.equal(r.drift.length, 1)
  t.equal(r.drift[0]!.kind, 'hosts-block')
  t.equal(r.repaired, true)
  t.match(readFileSync(hostsPath, 'utf8'), /0\.0\.0\.0 evil\.example/)
  t.equal(ctl.stats().repairs, 1)
})

/** A backend whose "kernel" can be tampered with: verify reports drift until apply runs again. */
function drifting(): Enforcer & { tamper(): void; applies: DesiredState[] } {
  let broken = false
  const applies: DesiredState[] = []
  return {
    name: 'dry-run',
    applies,
    tamper: () => void (broken = true),
    async init() {},
    async apply(d) {
      applies.push(d)
      const was = broken
      broken = false
      return { backend: 'fake', changed: was || applies.length === 1, added: 0, removed: 0, ms: 0, actions: [] }
    },
    async verify(): Promise<Drift[]> {
      return broken ? [{ kind: 'set-members', detail: 'block4 lost 1 member' }] : []
    },
    async remove() {},
  }
}

t.test('kernel drift is re-applied; the periodic loop does it by itself', async (t) => {
  const fake = drifting()
  const { ctl } = setup(t, fake)
  await ctl.setPolicy(policy([e('net', '203.0.113.0/24')]))
  fake.tamper()
  const r = await ctl.reconcileOnce()
  t.same(r, { drift: [{ kind: 'set-members', detail: 'block4 lost 1 member' }], repaired: true })
  t.equal(fake.applies.length, 2)
  t.same(fake.applies[1]!.block.v4, ['203.0.113.0/24'])
  ctl.start()
  fake.tamper()
  // Wait (bounded) for the 20 ms reconcile timer to notice; a functional wait, not a timing assertion.
  for (let i = 0; i < 1000 && ctl.stats().repairs < 2; i++) await new Promise((res) => setTimeout(res, 10))
  t.equal(ctl.stats().repairs, 2, 'the timer found and repaired the drift')
  await ctl.stop()
})

t.test('a failing backend is reported in stats and rethrown', async (t) => {
  const bad: Enforcer = {
    name: 'iptables', async init() {}, async verify() { return [] }, async remove() {},
    async apply() { throw Object.assign(new Error('iptables-restore: line 3 failed'), { code: 'EG_EXEC' }) },
  }
  const { ctl } = setup(t, bad)
  await t.rejects(ctl.setPolicy(policy([e('net', '203.0.113.0/24')])), /line 3 failed/)
  t.match(ctl.stats().lastError, /iptables: apply failed: iptables-restore: line 3 failed/)
})

t.test('skipped addresses are logged once, with domain and ip fields', async (t) => {
  const { PassThrough } = await import('node:stream')
  const { createLogger } = await import('../../src/log.js')
  const lines: Array<Record<string, unknown>> = []
  const sink = new PassThrough()
  sink.on('data', (d: Buffer) => {
    for (const l of String(d).split('\n')) if (l.trim()) lines.push(JSON.parse(l))
  })
  const book = createAddressBook({
    upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1,
    resolve: (async () => ({ addrs: [{ ip: '8.8.8.8', family: 4, ttl: 60 }], cnames: [], rcode: 'NOERROR' })) as never,
  })
  const ctl = createEnforcementController({ enforcer: createDryRunEnforcer(() => {}), book, protect: [], log: createLogger({ destination: sink }) })
  await ctl.setPolicy(policy([e('domain', 'evil.example')], 1))
  await ctl.setPolicy(policy([e('domain', 'evil.example')], 2))
  await new Promise((r) => setImmediate(r))
  const hits = lines.filter((l) => l.msg === 'resolved address not blocked')
  t.equal(hits.length, 1, 'once, not on every apply')
  t.match(hits[0], { domain: 'evil.example', ip: '8.8.8.8', reason: 'public resolver', component: 'enforce', level: 40 })
  await ctl.stop()
})

/** A resolver whose answers the test releases by name; `fail` makes a name's lookup throw. */
function gatedResolver() {
  const waiting = new Map<string, Array<(r: ResolveResult | Error) => void>>()
  const resolve = (name: string): Promise<ResolveResult> =>
    new Promise((res, rej) => {
      const l = waiting.get(name) ?? []
      l.push((r) => (r instanceof Error ? rej(r) : res(r)))
      waiting.set(name, l)
    })
  const answer = (name: string, ips: string[] | Error): void => {
    for (const cb of waiting.get(name) ?? []) cb(ips instanceof Error ? ips : { addrs: ips.map((ip) => ({ ip, family: ip.includes(':') ? 6 : 4, ttl: 60 })), cnames: [], rcode: 'NOERROR' })
    waiting.delete(name)
  }
  return { resolve: resolve as never, answer, asked: (name: string) => waiting.has(name) }
}

/** The dry-run backend, counting its applies. */
function countingDry() {
  const dry = createDryRunEnforcer(() => {})
  const applies: DesiredState[] = []
  const enforcer: Enforcer = { ...dry, name: 'dry-run', apply: (d) => (applies.push(d), dry.apply(d)) }
  return { enforcer, applies, snapshot: () => dry.snapshot() }
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 5))
}

t.test('background mode: explicit networks and the hosts block first, answers batched as they land', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-ctl-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const hostsPath = join(dir, 'hosts')
  writeFileSync(hostsPath, '127.0.0.1 localhost\n')
  const g = gatedResolver()
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, resolve: g.resolve })
  const k = countingDry()
  const ctl = createEnforcementController({ enforcer: k.enforcer, hosts: createHostsFile(hostsPath), book, protect: [], log: silentLogger, batchMs: 30 })
  t.teardown(() => ctl.stop())
  const p = policy([e('domain', 'silent.example'), e('domain', 'a.example'), e('domain', 'b.example'), e('net', '198.51.100.0/24')])
  const r = await ctl.setPolicy(p, { resolution: 'background' })
  t.equal(r.resolving, 3, 'returned with the three lookups still out')
  t.same(k.snapshot()?.block.v4, ['198.51.100.0/24'], 'the explicit network is in place')
  t.match(readFileSync(hostsPath, 'utf8'), /0\.0\.0\.0 silent\.example/, 'the hosts block too')
  t.equal(k.applies.length, 1)
  // Two answers within the batch window: one more kernel write, not two.
  g.answer('a.example', ['203.0.113.1'])
  g.answer('b.example', ['203.0.113.2'])
  await until(() => k.applies.length > 1)
  await new Promise((res) => setTimeout(res, 60))
  t.equal(k.applies.length, 2, 'one write for both answers')
  t.same(k.snapshot()?.block.v4, ['198.51.100.0/24', '203.0.113.1/32', '203.0.113.2/32'], 'while silent.example is still unanswered')
  t.equal(ctl.stats().resolving, 1)
  g.answer('silent.example', new Error('timeout after 2000 ms'))
  await ctl.idle()
  t.equal(k.applies.length, 2, 'a failed lookup changes nothing: no write')
  t.equal(ctl.stats().resolveErrors, 1)
  t.equal(ctl.stats().resolving, 0)
})

t.test('after stop(), late answers are not written to the kernel', async (t) => {
  const g = gatedResolver()
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, resolve: g.resolve })
  const k = countingDry()
  const ctl = createEnforcementController({ enforcer: k.enforcer, book, protect: [], log: silentLogger, batchMs: 1 })
  await ctl.setPolicy(policy([e('domain', 'late.example')]), { resolution: 'background' })
  await ctl.stop()
  g.answer('late.example', ['203.0.113.5'])
  await new Promise((res) => setTimeout(res, 30))
  t.equal(k.applies.length, 1)
  t.same(k.snapshot()?.block.v4, [])
})

/** An in-memory AddressStore. */
function memoryStore(initial?: Awaited<ReturnType<AddressStore['read']>>) {
  const writes: AddressSnapshot[] = []
  const store: AddressStore = {
    file: '/state/resolved-addresses.json',
    read: async () => initial,
    write: async (s) => void writes.push(JSON.parse(JSON.stringify(s))),
  }
  return { store, writes }
}

t.test('persistAddresses: restored addresses are in the first write although DNS is down; saved after a round and at stop', async (t) => {
  const g = gatedResolver()
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, resolve: g.resolve })
  const k = countingDry()
  const ctl = createEnforcementController({ enforcer: k.enforcer, book, protect: [], log: silentLogger, batchMs: 1 })
  const m = memoryStore({ snapshot: { domains: { 'c2.example': { answers: [['203.0.113.10']], gone: [], expiresAt: 0 } } } })
  t.same(await ctl.persistAddresses(m.store), { restored: 1 })
  await ctl.setPolicy(policy([e('domain', 'c2.example')]), { resolution: 'background' })
  t.same(k.snapshot()?.block.v4, ['203.0.113.10/32'], 'in the kernel before any lookup')
  t.ok(g.asked('c2.example'), 'the expired entry is looked up again at once')
  g.answer('c2.example', new Error('timeout'))
  await ctl.idle()
  t.same(k.snapshot()?.block.v4, ['203.0.113.10/32'], 'kept: the lookup failed')
  t.equal(m.writes.length, 1, 'saved after the round')
  t.same(m.writes[0]!.domains['c2.example']!.answers, [['203.0.113.10']])
  t.same(ctl.stats().addressCache, { file: m.store.file, restored: 1, writes: 1, writeErrors: 0, corrupt: 0 })
  await ctl.stop()
  t.equal(m.writes.length, 2, 'and at stop')
})

t.test('a corrupt address store never stops enforcement; it is a problem until every name answered again', async (t) => {
  const g = gatedResolver()
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, resolve: g.resolve })
  const k = countingDry()
  const ctl = createEnforcementController({ enforcer: k.enforcer, book, protect: [], log: silentLogger, batchMs: 1 })
  t.teardown(() => ctl.stop())
  const m = memoryStore({ problem: 'checksum mismatch (truncated or edited)', aside: '/state/resolved-addresses.json.corrupt' })
  t.same(await ctl.persistAddresses(m.store), { restored: 0, problem: 'checksum mismatch (truncated or edited)' })
  await ctl.setPolicy(policy([e('domain', 'a.example'), e('domain', 'b.example'), e('net', '198.51.100.0/24')]), { resolution: 'background' })
  t.same(k.snapshot()?.block.v4, ['198.51.100.0/24'], 'the policy is enforced')
  t.match(ctl.stats().problems, [/resolved-address cache \/state\/resolved-addresses\.json unusable \(checksum mismatch.*moved to \/state\/resolved-addresses\.json\.corrupt/])
  g.answer('a.example', ['203.0.113.1'])
  g.answer('b.example', new Error('timeout'))
  await ctl.idle()
  t.equal(ctl.stats().problems.length, 1, 'still: b.example has not answered')
  t.equal(ctl.stats().addressCache?.corrupt, 1)
  t.equal(m.writes.length, 1, 'the good answer is saved over it')
  await ctl.refreshOnce() // nothing due yet (retry in 30 s): the problem stays
  t.equal(ctl.stats().problems.length, 1)
})

t.test('a corrupt address store is cleared once every name answered', async (t) => {
  const g = gatedResolver()
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, resolve: g.resolve })
  const ctl = createEnforcementController({ enforcer: countingDry().enforcer, book, protect: [], log: silentLogger, batchMs: 1 })
  t.teardown(() => ctl.stop())
  await ctl.persistAddresses(memoryStore({ problem: 'not JSON' }).store)
  await ctl.setPolicy(policy([e('domain', 'a.example')]), { resolution: 'background' })
  t.equal(ctl.stats().problems.length, 1)
  g.answer('a.example', ['203.0.113.1'])
  await ctl.idle()
  t.same(ctl.stats().problems, [])
})

t.test('changed addresses are saved at most once per interval; the last change is not lost', async (t) => {
  const g = gatedResolver()
  let clock = 1_000_000
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, now: () => clock, resolve: g.resolve })
  const ctl = createEnforcementController({ enforcer: countingDry().enforcer, book, protect: [], log: silentLogger, batchMs: 1, saveIntervalMs: 200 })
  t.teardown(() => ctl.stop())
  const m = memoryStore()
  await ctl.persistAddresses(m.store)
  await ctl.setPolicy(policy([e('domain', 'a.example')]), { resolution: 'background' })
  g.answer('a.example', ['203.0.113.1'])
  await ctl.idle()
  t.equal(m.writes.length, 1, 'the first change: saved at once')
  clock += 60_000
  const round = ctl.refreshOnce()
  await until(() => g.asked('a.example'))
  g.answer('a.example', ['203.0.113.2'])
  await round
  t.equal(m.writes.length, 1, 'a second change right after: not yet')
  await until(() => m.writes.length === 2)
  t.same(m.writes[1]!.domains['a.example']!.answers, [['203.0.113.2']], 'saved once the interval is over')
})
