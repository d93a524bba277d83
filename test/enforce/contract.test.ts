// ONE contract suite that every Enforcer backend passes (Hono's habit of running one router suite
// against all routers): idempotent apply, incremental edits, precedence proven with real traffic,
// drift reported and repaired, and remove() restoring the namespace exactly. Each skip says why.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, link, makeNs, sh } from '../helpers/netns.js'
import { probe, startEchoServer } from '../helpers/traffic.js'
import { createEnforcer, type BackendKind } from '../../src/enforce/factory.js'
import type { DesiredState, DriftKind, Enforcer } from '../../src/enforce/types.js'


interface DriftCase {
  name: string
  /** Optional setup before the first apply (e.g. a Docker-style DOCKER-USER chain). */
  setup?: (ns: string, b: Bins) => void
  /** Break the kernel state the way an admin, a reboot or a Docker restart would. */
  breakIt: (ns: string, b: Bins) => void
  expect: DriftKind[]
  /** The break leaves foreign state behind, so the repaired snapshot cannot equal the good one. */
  leavesForeign?: boolean
}

/** The iptables binaries a backend variant is inspected and broken with. */
interface Bins {
  ipt: string
  ip6t: string
}
const NFT_BINS: Bins = { ipt: 'iptables', ip6t: 'ip6tables' }
const LEGACY_BINS: Bins = { ipt: 'iptables-legacy', ip6t: 'ip6tables-legacy' }

interface Backend {
  label: string
  kind: BackendKind
  bins: Bins
  flavour?: 'legacy'
  /** Reasons this backend cannot run here (null entries mean present). */
  needs: () => (string | null)[]
  /** Is `ip` (a canonical /32 or /128) a member of the role's set? */
  contains?: (ns: string, role: 'block' | 'alert' | 'allow', cidr: string) => boolean
  drifts: DriftCase[]
}

const ok = (f: () => unknown): boolean => {
  try {
    f()
    return true
  } catch {
    return false
  }
}

const dockerUser = (ns: string, b: Bins): void => {
  for (const bin of [b.ipt, b.ip6t]) {
    inNs(ns, bin, ['-N', 'DOCKER-USER'])
    inNs(ns, bin, ['-A', 'DOCKER-USER', '-j', 'RETURN'])
    inNs(ns, bin, ['-I', 'FORWARD', '1', '-j', 'DOCKER-USER'])
  }
}
/** What a Docker restart does: the chain comes back empty (just RETURN) and FORWARD jumps to it. */
const recreateDockerUser = (ns: string, b: Bins): void => {
  for (const bin of [b.ipt, b.ip6t]) {
    inNs(ns, bin, ['-D', 'FORWARD', '-j', 'DOCKER-USER'])
    inNs(ns, bin, ['-F', 'DOCKER-USER'])
    inNs(ns, bin, ['-X', 'DOCKER-USER'])
  }
  dockerUser(ns, b)
}

const ipsetContains = (ns: string, role: string, cidr: string): boolean =>
  ok(() => inNs(ns, 'ipset', ['test', `egress-guard-${role}${cidr.includes(':') ? 6 : 4}`, cidr.replace(/\/(32|128)$/, '')]))

const IPTABLES_DRIFTS: DriftCase[] = [
  { name: 'chain flushed', breakIt: (ns, b) => inNs(ns, b.ipt, ['-F', 'EGRESS-GUARD']), expect: ['chain-rules'] },
  { name: 'OUTPUT jump deleted', breakIt: (ns, b) => inNs(ns, b.ipt, ['-D', 'OUTPUT', '-j', 'EGRESS-GUARD']), expect: ['jump-missing'] },
  { name: 'rule inserted above the jump', breakIt: (ns, b) => inNs(ns, b.ip6t, ['-I', 'OUTPUT', '1', '-d', '2001:db8:ffff::99', '-j', 'ACCEPT']), expect: ['jump-not-first'], leavesForeign: true },
  { name: 'set flushed', breakIt: (ns) => inNs(ns, 'ipset', ['flush', 'egress-guard-block4']), expect: ['set-members'] },
  {
    name: 'set destroyed (after the chain was flushed, as a reboot without the rules would)',
    breakIt: (ns, b) => {
      inNs(ns, b.ipt, ['-F', 'EGRESS-GUARD'])
      inNs(ns, 'ipset', ['destroy', 'egress-guard-block4'])
    },
    expect: ['set-missing', 'chain-rules'],
  },
  { name: 'DOCKER-USER recreated without the jump (Docker restart)', setup: dockerUser, breakIt: recreateDockerUser, expect: ['jump-missing'] },
  { name: 'control-plane set flushed', breakIt: (ns) => inNs(ns, 'ipset', ['flush', 'egress-guard-ctl4']), expect: ['set-members'] },
]

const BACKENDS: Backend[] = [
  {
    label: 'iptables (nf_tables flavour)',
    kind: 'iptables',
    bins: NFT_BINS,
    needs: () => [capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables-restore'), capabilities.tool('ip6tables-restore'), capabilities.tool('nft')],
    contains: ipsetContains,
    drifts: IPTABLES_DRIFTS,
  },
  {
    label: 'iptables (legacy flavour)',
    kind: 'iptables',
    bins: LEGACY_BINS,
    flavour: 'legacy',
    needs: () => [capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables-legacy-restore'), capabilities.tool('ip6tables-legacy-restore'), capabilities.tool('nft')],
    contains: ipsetContains,
    drifts: IPTABLES_DRIFTS,
  },
  {
    label: 'nftables',
    kind: 'nftables',
    bins: NFT_BINS,
    needs: () => [capabilities.netns(), capabilities.tool('nft'), capabilities.tool('ipset'), capabilities.tool('iptables')],
    contains: (ns, role, cidr) => ok(() => inNs(ns, 'nft', ['get', 'element', 'inet', 'egress_guard', `${role}${cidr.includes(':') ? 6 : 4}`, `{ ${cidr.replace(/\/(32|128)$/, '')} }`])),
    drifts: [
      { name: 'table deleted', breakIt: (ns) => inNs(ns, 'nft', ['delete', 'table', 'inet', 'egress_guard']), expect: ['table-missing'] },
      { name: 'guard chain flushed', breakIt: (ns) => inNs(ns, 'nft', ['flush', 'chain', 'inet', 'egress_guard', 'guard']), expect: ['chain-rules'] },
      {
        name: 'output base chain deleted',
        breakIt: (ns) => inNs(ns, 'nft', ['-f', '-'], 'flush chain inet egress_guard output\ndelete chain inet egress_guard output\n'),
        expect: ['jump-missing'],
      },
      { name: 'set flushed', breakIt: (ns) => inNs(ns, 'nft', ['flush', 'set', 'inet', 'egress_guard', 'block4']), expect: ['set-members'] },
      { name: 'control-plane set flushed', breakIt: (ns) => inNs(ns, 'nft', ['flush', 'set', 'inet', 'egress_guard', 'ctl4']), expect: ['set-members'] },
    ],
  },
  { label: 'dry-run', kind: 'dry-run', bins: NFT_BINS, needs: () => [], drifts: [] },
]

// Server-side addresses, all documentation ranges. The client (the enforced "host") routes them over veth.
const ADDR = {
  blocked4: '192.0.2.11', allowedInBlock4: '192.0.2.10', alert4: '198.51.100.10', free4: '203.0.113.50',
  blocked6: '2001:db8:b::11', allowedInBlock6: '2001:db8:b::10', alert6: '2001:db8:a::10', free6: '2001:db8:f::50',
}
const POLICY: DesiredState = {
  version: 1,
  block: { v4: ['192.0.2.0/24', '198.51.100.77/32'], v6: ['2001:db8:b::/48'] },
  alert: { v4: ['198.51.100.0/24'], v6: ['2001:db8:a::/48'] },
  allow: { v4: ['192.0.2.10/32'], v6: ['2001:db8:b::10/128'] },
  // Control-plane endpoints inside the blocked networks, on ports the traffic tests below do not use.
  exempt: { v4: ['192.0.2.11,tcp:8787', '192.0.2.11,udp:53'], v6: ['2001:db8:b::11,tcp:8787'] },
}
const EMPTY: DesiredState = { version: 0, block: { v4: [], v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] } }

function withBlock(d: DesiredState, extra4: string[]): DesiredState {
  return { ...d, version: d.version + 1, block: { v4: [...d.block.v4, ...extra4], v6: d.block.v6 } }
}

/** Foreign state that egress-guard must leave alone (and that makes the built-in tables exist). */
function foreign(ns: string, b: Bins): void {
  inNs(ns, b.ipt, ['-A', 'OUTPUT', '-d', '203.0.113.250', '-j', 'ACCEPT'])
  inNs(ns, b.ipt, ['-A', 'FORWARD', '-d', '203.0.113.251', '-j', 'DROP'])
  inNs(ns, b.ip6t, ['-A', 'OUTPUT', '-d', '2001:db8:ffff::250', '-j', 'ACCEPT'])
  inNs(ns, b.ip6t, ['-A', 'FORWARD', '-d', '2001:db8:ffff::251', '-j', 'DROP'])
  inNs(ns, 'ipset', ['create', 'someone-elses', 'hash:ip'])
  inNs(ns, 'ipset', ['add', 'someone-elses', '203.0.113.252'])
  inNs(ns, 'nft', ['-f', '-'], 'table inet someone_else {\n chain c {\n  type filter hook output priority 100; policy accept;\n  ip daddr 203.0.113.253 counter\n }\n}\n')
}

/** Everything an operator would look at; compared before init and after remove. */
function snapshot(ns: string, b: Bins): string {
  return [
    inNs(ns, b.ipt, ['-S']),
    inNs(ns, b.ip6t, ['-S']),
    inNs(ns, 'ipset', ['list']),
    inNs(ns, 'nft', ['list', 'ruleset']),
  ]
    .join('\n----\n')
    .replace(/packets \d+ bytes \d+/g, 'packets N bytes N')
    // A recreated ipset gets a fresh random hash seed.
    .replace(/initval 0x[0-9a-f]+/g, 'initval X')
}

async function setupTraffic(t: Test, client: string, extra: readonly string[] = []): Promise<void> {
  const server = makeNs(t, 'srv')
  const { bIf } = link(client, ['203.0.113.1/24', '2001:db8:ffff::1/64'], server, ['203.0.113.2/24', '2001:db8:ffff::2/64'])
  const all = [...Object.values(ADDR), ...extra]
  for (const a of all) sh('ip', ['-n', server, 'addr', 'add', a.includes(':') ? `${a}/128` : `${a}/32`, 'dev', bIf, ...(a.includes(':') ? ['nodad'] : [])])
  for (const net of ['192.0.2.0/24', '198.51.100.0/24']) sh('ip', ['-n', client, 'route', 'add', net, 'via', '203.0.113.2'])
  sh('ip', ['-n', client, '-6', 'route', 'add', '2001:db8::/33', 'via', '2001:db8:ffff::2'])
  await startEchoServer(t, server, 8080, all)
}

function make(b: Backend, ns: string, print?: (l: string) => void): Enforcer {
  return createEnforcer(b.kind, { netns: ns, ...(print ? { print } : {}), ...(b.flavour ? { flavour: b.flavour } : {}) })
}

for (const b of BACKENDS) {
  t.test(`contract: ${b.label}`, async (t) => {
    if (b.kind === 'dry-run' && !existsSync(fileURLToPath(new URL('../../src/enforce/dry-run.ts', import.meta.url)))) {
      t.skip('dry-run backend (src/enforce/dry-run.ts) is not built yet', () => {})
      return
    }
    if (!requires(t, ...b.needs())) return
    const kernel = b.kind !== 'dry-run'

    t.test('apply, verify empty, apply again changes nothing, remove restores the namespace', async (t) => {
      const ns = makeNs(t, 'ct')
      foreign(ns, b.bins)
      const before = snapshot(ns, b.bins)
      const printed: string[] = []
      const e = make(b, ns, (l) => printed.push(l))
      await e.init()
      const r1 = await e.apply(POLICY)
      t.equal(r1.backend, b.kind)
      t.ok(r1.changed, 'first apply changes something')
      if (!kernel) {
        t.ok(printed.length + r1.actions.length > 0, 'dry-run says what it would do')
        t.equal(snapshot(ns, b.bins), before, 'dry-run touched nothing')
        await e.remove()
        return
      }
      t.same(await e.verify(), [], 'no drift right after apply')
      const after1 = snapshot(ns, b.bins)
      const r2 = await e.apply(POLICY)
      t.equal(r2.changed, false, 'second apply reports no change')
      t.same(r2.actions, [])
      t.equal(snapshot(ns, b.bins), after1, 'second apply left rules and sets byte-identical (no duplicates)')
      // A fresh instance (a new `apply --once` process) must also see that nothing is to do.
      const r3 = await make(b, ns).apply(POLICY)
      t.equal(r3.changed, false, 'a fresh enforcer sees nothing to do')
      t.not(after1, before)
      await e.remove()
      t.equal(snapshot(ns, b.bins), before, 'remove() restored iptables -S, ip6tables -S, ipset list and nft list ruleset')
      await e.remove()
      t.equal(snapshot(ns, b.bins), before, 'remove() twice is harmless')
    })

    t.test('the first apply after init reports what init created, even with nothing to put in the sets', async (t) => {
      const ns = makeNs(t, 'ci')
      const e = make(b, ns, () => undefined)
      await e.init()
      const r = await e.apply(EMPTY)
      t.ok(r.changed, 'a fresh namespace got sets, chains and jumps: "changed", not "unchanged"')
      t.match(r.actions.join('\n'), kernel ? /chain/ : /create .*sets, chain EGRESS-GUARD/, `the creation is listed:\n${r.actions.join('\n')}`)
      if (!kernel) return
      const again = make(b, ns)
      await again.init()
      const r2 = await again.apply(EMPTY)
      t.equal(r2.changed, false, 'a second run in the same namespace has nothing to create')
      t.same(r2.actions, [])
    })

    if (!kernel) {
      t.skip('incremental edits, traffic and drift: dry-run holds no kernel state to check', () => {})
      return
    }

    t.test('control-plane endpoints stay reachable inside blocked networks; the exemption is per address, protocol and port, and updatable', async (t) => {
      const ns = makeNs(t, 'cp')
      // .12 is "the server's next address": in the blocked /24 like .11, exempt only after the update.
      await setupTraffic(t, ns, ['192.0.2.12', '2001:db8:b::12'])
      const e = make(b, ns)
      // The blocked networks cover the endpoints (`block add 192.0.2.0/24` with force, say); the
      // endpoints themselves are in the block sets too (a blocked name resolved to them).
      const server = (a4: string, a6: string): DesiredState => ({
        ...POLICY,
        version: POLICY.version + 1,
        block: { v4: [...POLICY.block.v4, `${a4}/32`], v6: [...POLICY.block.v6, `${a6}/128`] },
        exempt: { v4: [`${a4},tcp:8080`, '203.0.113.53,udp:53'], v6: [`${a6},tcp:8080`] },
      })
      // Probes run side by side: each is a process start, and they do not interfere.
      const probes = (list: Array<[proto: 'tcp' | 'udp', addr: string]>) => Promise.all(list.map(([proto, a]) => probe(ns, proto, a, 8080)))
      await e.apply(server('192.0.2.11', '2001:db8:b::11'))
      t.same(await e.verify(), [])
      const [ep4, ep6, udp4, udp6, other4, other6] = await probes([['tcp', '192.0.2.11'], ['tcp', '2001:db8:b::11'], ['udp', '192.0.2.11'], ['udp', '2001:db8:b::11'], ['tcp', '192.0.2.12'], ['tcp', '2001:db8:b::12']])
      t.same([ep4, ep6], [{ ok: true }, { ok: true }], 'tcp/8080 of the control-plane endpoint is reachable inside the blocked network (IPv4, IPv6)')
      t.same([udp4!.ok, udp6!.ok], [false, false], 'udp/8080 of the same address is still blocked: only tcp/8080 is exempt')
      t.same([other4!.ok, other6!.ok], [false, false], 'another address in the blocked network is still blocked')

      // The server re-resolved to .12: one edit moves the exemption.
      const r = await e.apply(server('192.0.2.12', '2001:db8:b::12'))
      t.ok(r.changed)
      t.same(await e.verify(), [], 'no drift after the edit')
      const [new4, new6, old4, old6] = await probes([['tcp', '192.0.2.12'], ['tcp', '2001:db8:b::12'], ['tcp', '192.0.2.11'], ['tcp', '2001:db8:b::11']])
      t.same([new4, new6], [{ ok: true }, { ok: true }], 'the new endpoint is reachable after the update')
      t.same([old4!.ok, old6!.ok], [false, false], 'the old address is blocked again once it is no longer an endpoint')
      // A fresh enforcer (another process) reads the same state back: nothing to do.
      const r2 = await make(b, ns).apply(server('192.0.2.12', '2001:db8:b::12'))
      t.equal(r2.changed, false, 'a fresh enforcer sees the exempt set as written')
    })

    t.test('add one entry, remove one entry', async (t) => {
      const ns = makeNs(t, 'ce')
      foreign(ns, b.bins)
      const e = make(b, ns)
      await e.apply(POLICY)
      t.notOk(b.contains!(ns, 'block', '203.0.113.99/32'))
      const plus = withBlock(POLICY, ['203.0.113.99/32'])
      const r = await e.apply(plus)
      t.ok(r.changed)
      t.equal(r.added, 1)
      t.equal(r.removed, 0)
      t.ok(b.contains!(ns, 'block', '203.0.113.99/32'), 'new entry is in the kernel')
      t.same(await e.verify(), [])
      const r2 = await e.apply(POLICY)
      t.equal(r2.removed, 1)
      t.notOk(b.contains!(ns, 'block', '203.0.113.99/32'), 'removed entry is gone')
      t.ok(b.contains!(ns, 'block', '198.51.100.77/32'), 'other entries stay')
      t.same(await e.verify(), [])
    })

    t.test('block rejects, allow wins over an overlapping block, alert is never rejected (real traffic)', async (t) => {
      const ns = makeNs(t, 'cx')
      await setupTraffic(t, ns)
      const e = make(b, ns)
      for (const a of Object.values(ADDR)) t.match(await probe(ns, 'tcp', a, 8080), { ok: true }, `before apply: ${a} reachable`)
      await e.apply(POLICY)
      for (const proto of ['tcp', 'udp'] as const) {
        for (const a of [ADDR.blocked4, ADDR.blocked6]) {
          // TCP: the reset arrives as ECONNREFUSED. UDP from the host itself: REJECT in OUTPUT makes
          // the send fail with EPERM at once (the ICMP error may also arrive as ECONNREFUSED).
          const r = await probe(ns, proto, a, 8080)
          t.equal(r.ok, false, `${proto} to blocked ${a} fails`)
          t.ok(proto === 'tcp' ? r.code === 'ECONNREFUSED' : ['EPERM', 'ECONNREFUSED'].includes(r.code!), `${proto} to blocked ${a}: ${r.code} (fast, not a timeout)`)
        }
        for (const a of [ADDR.allowedInBlock4, ADDR.allowedInBlock6]) t.same(await probe(ns, proto, a, 8080), { ok: true }, `${proto} to allowed ${a} inside a blocked net works`)
        for (const a of [ADDR.alert4, ADDR.alert6]) t.same(await probe(ns, proto, a, 8080), { ok: true }, `${proto} to alert-mode ${a} works`)
        for (const a of [ADDR.free4, ADDR.free6]) t.same(await probe(ns, proto, a, 8080), { ok: true }, `${proto} to unlisted ${a} works`)
      }
      await e.remove()
      t.same(await probe(ns, 'tcp', ADDR.blocked4, 8080), { ok: true }, 'after remove the blocked address is reachable again')
    })

    for (const d of b.drifts) {
      t.test(`drift: ${d.name} is reported and repaired`, async (t) => {
        const ns = makeNs(t, 'cd')
        foreign(ns, b.bins)
        d.setup?.(ns, b.bins)
        const e = make(b, ns)
        await e.apply(POLICY)
        t.same(await e.verify(), [])
        const good = snapshot(ns, b.bins)
        d.breakIt(ns, b.bins)
        const drift = await e.verify()
        t.same([...new Set(drift.map((x) => x.kind))].sort(), [...d.expect].sort(), `verify reports ${d.expect.join(', ')}`)
        t.ok(drift.every((x) => x.detail.length > 0))
        const r = await e.apply(POLICY)
        t.ok(r.changed, 'apply repaired something')
        t.same(await e.verify(), [], 'no drift after repair')
        // Sorted lines: a recreated set or chain is listed in a different place, which is no drift.
        const sorted = (x: string): string => x.split('\n').sort().join('\n')
        if (!d.setup && !d.leavesForeign) t.equal(sorted(snapshot(ns, b.bins)), sorted(good), 'repaired state equals the state before the break')
        t.ok(b.contains!(ns, 'block', '198.51.100.77/32'))
      })
    }
  })
}
