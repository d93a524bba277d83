// The enforcement controller with the dry-run backend (and a drifting fake), a real address book
// fed by a scripted resolver, and a hosts file in a temp dir: apply, idempotence, TTL re-resolution,
// reconcile repairs, timers.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEnforcementController } from '../../src/enforce/controller.js'
import { createDryRunEnforcer } from '../../src/enforce/dry-run.js'
import { createHostsFile } from '../../src/enforce/hosts-file.js'
import { createAddressBook } from '../../src/resolve/address-book.js'
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
