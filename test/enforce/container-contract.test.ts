// ONE contract suite for the container-egress seam (issue 16), run against both kernel backends with
// real traffic through a Docker-like topology in throwaway namespaces (container -> bridge -> host,
// forwarding -> remote; DOCKER-USER made as Docker makes it), and against the dry-run twin through
// its decision model. Every refusal is shown next to a connection that still works.
import t, { type Test } from 'tap'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs } from '../helpers/netns.js'
import { until } from '../helpers/wait.js'
import { CT, makeContainerNet, startProber, startSession, type CtNet } from '../helpers/container-net.js'
import { createContainerEnforcer } from '../../src/enforce/container-factory.js'
import { createEnforcer, type BackendKind } from '../../src/enforce/factory.js'
import { createContainerDryRun, createDryRunKernel, type DryRunContainerEnforcer } from '../../src/enforce/container-dry-run.js'
import { addressKey } from '../../src/enforce/container-desired.js'
import type { ContainerEgress, ContainerEnforcer, ContainerState, SeenEvent } from '../../src/enforce/container-types.js'
import type { DesiredState, DriftKind } from '../../src/enforce/types.js'

const ID1 = 'c1'.repeat(32)
const ID2 = 'c2'.repeat(32)
const ID1B = 'b1'.repeat(32)
const SINK = { v4: [CT.bridge4], v6: [CT.bridge6], port: 53 }
const c1 = (over: Partial<ContainerEgress> = {}): ContainerEgress => ({ id: ID1, addresses: [CT.c1.v4, CT.c1.v6], mode: 'enforce', nets: [{ cidr: CT.netCidr4 }], ...over })
const c2 = (over: Partial<ContainerEgress> = {}): ContainerEgress => ({ id: ID2, addresses: [CT.c2.v4, CT.c2.v6], mode: 'enforce', nets: [], ...over })
const state = (...containers: ContainerEgress[]): ContainerState => ({ containers, sinkhole: SINK })
/** The fleet policy beside it: a block must still win, an @@allow must not open a held container. */
const FLEET: DesiredState = { version: 1, block: { v4: [`${CT.fleetBlocked4}/32`], v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [`${CT.fleetAllowed4}/32`], v6: [] } }

interface Bins {
  ipt: string
  ip6t: string
}
interface Variant {
  label: string
  kind: BackendKind
  flavour?: 'legacy'
  bins: Bins
  needs: () => (string | null)[]
  /** Seconds left on c1's learned pair to `dst` (portless), read from the kernel. */
  expiresOf: (host: string, key: string, dst: string) => number | undefined
  /** Extra enforcer options to run the timeout-refresh check with (nft: both forms). */
  refreshForms?: Record<string, unknown>[]
  /** Break the kernel state as an admin, a reboot or Docker would; verify() must name `expect`. */
  drifts: { name: string; breakIt: (host: string) => void; expect: DriftKind[]; cleanup?: (host: string) => void }[]
}

const IPT_DRIFTS: Variant['drifts'] = [
  { name: 'held chain flushed', breakIt: (h) => inNs(h, 'iptables', ['-F', 'EGRESS-GUARD-CTH']), expect: ['chain-rules'] },
  { name: 'INPUT jump deleted', breakIt: (h) => inNs(h, 'ip6tables', ['-D', 'INPUT', '-j', 'EGRESS-GUARD-CT']), expect: ['jump-missing'] },
  {
    name: 'rule inserted above our jump',
    breakIt: (h) => inNs(h, 'iptables', ['-I', 'DOCKER-USER', '1', '-d', '203.0.113.99', '-j', 'RETURN']),
    expect: ['jump-not-first'],
    // The foreign rule stays (it is not ours); the test takes it out for the final snapshot.
    cleanup: (h) => inNs(h, 'iptables', ['-D', 'DOCKER-USER', '-d', '203.0.113.99', '-j', 'RETURN']),
  },
  { name: 'enforce set flushed', breakIt: (h) => inNs(h, 'ipset', ['flush', 'egress-guard-ct-enforce4']), expect: ['set-members'] },
]

const VARIANTS: Variant[] = [
  {
    label: 'iptables',
    kind: 'iptables',
    bins: { ipt: 'iptables', ip6t: 'ip6tables' },
    needs: () => [capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables-restore'), capabilities.tool('stdbuf'), capabilities.tool('conntrack'), capabilities.tool('nft')],
    expiresOf: (host, key, dst) => {
      const m = new RegExp(`^${dst.replace(/\./g, '\\.')} timeout (\\d+)$`, 'm').exec(inNs(host, 'ipset', ['list', `egress-guard-ct-l-${key}`]))
      return m ? Number(m[1]) : undefined
    },
    drifts: IPT_DRIFTS,
  },
  {
    label: 'nftables',
    kind: 'nftables',
    bins: { ipt: 'iptables', ip6t: 'ip6tables' },
    needs: () => [capabilities.netns(), capabilities.tool('nft'), capabilities.tool('conntrack'), capabilities.tool('iptables'), capabilities.tool('ipset')],
    expiresOf: (host, key, dst) => {
      const j = JSON.parse(inNs(host, 'nft', ['-j', 'list', 'set', 'inet', 'egress_guard_ct', `l_${key}`])) as { nftables: { set?: { elem?: { elem: { val: string; expires: number } }[] } }[] }
      const el = j.nftables.flatMap((x) => x.set?.elem ?? []).find((e) => e.elem.val === dst)
      return el?.elem.expires
    },
    refreshForms: [{ timeoutRefresh: 'add' }, { timeoutRefresh: 'readd' }],
    drifts: [
      { name: 'address chain flushed', breakIt: (h) => inNs(h, 'nft', ['flush', 'chain', 'inet', 'egress_guard_ct', `c_${chainKey(h)}`]), expect: ['chain-rules'] },
      { name: 'mode map flushed', breakIt: (h) => inNs(h, 'nft', ['flush', 'map', 'inet', 'egress_guard_ct', 'mode4']), expect: ['set-members'] },
      {
        name: 'input base chain deleted',
        breakIt: (h) => inNs(h, 'nft', ['-f', '-'], 'flush chain inet egress_guard_ct input\ndelete chain inet egress_guard_ct input\n'),
        expect: ['jump-missing'],
      },
      { name: 'table deleted', breakIt: (h) => inNs(h, 'nft', ['delete', 'table', 'inet', 'egress_guard_ct']), expect: ['table-missing'] },
    ],
  },
]

/** The nft chain name of c1's IPv4 address (its key is a hash of id/address). */
function chainKey(host: string): string {
  const m = /172\.30\.0\.2 : goto c_([0-9a-f]{10})/.exec(inNs(host, 'nft', ['list', 'map', 'inet', 'egress_guard_ct', 'mode4']))
  if (!m) throw new Error('no chain for c1 in mode4')
  return m[1]!
}

function snapshot(ns: string, b: Bins): string {
  return [inNs(ns, b.ipt, ['-S']), inNs(ns, b.ip6t, ['-S']), inNs(ns, 'ipset', ['list']), inNs(ns, 'nft', ['list', 'ruleset'])]
    .join('\n----\n')
    .replace(/packets \d+ bytes \d+/g, 'packets N bytes N')
}

type From = 'c1' | 'c2'
const addr = (from: From, dst: string): string => (dst.includes(':') ? CT[from].v6 : CT[from].v4)

/** One expected outcome: `from` reaches dst:port over proto, or not. */
type Case = [label: string, from: From, proto: 'tcp' | 'udp', dst: string, port: number, reaches: boolean]

async function expectCases(t: Test, reach: (from: From, proto: 'tcp' | 'udp', dst: string, port: number) => Promise<boolean>, cases: Case[]): Promise<void> {
  const got = await Promise.all(cases.map(([, from, proto, dst, port]) => reach(from, proto, dst, port)))
  cases.forEach(([label, , , , , want], i) => t.equal(got[i], want, `${want ? 'reaches' : 'refused'}: ${label}`))
}

const hasEvent = (evs: SeenEvent[], e: Partial<SeenEvent>): boolean => evs.some((x) => Object.entries(e).every(([k, v]) => (x as unknown as Record<string, unknown>)[k] === v))

for (const v of VARIANTS) {
  t.test(`container contract: ${v.label}`, async (t) => {
    if (!requires(t, ...v.needs())) return
    const net: CtNet = await makeContainerNet(t, { dockerUser: v.bins })
    const H = net.host
    const before = snapshot(H, v.bins)
    const make = (): ContainerEnforcer => createContainerEnforcer(v.kind, { netns: H, ...(v.flavour ? { flavour: v.flavour } : {}) })
    const e = make()
    t.teardown(() => e.close())
    const fleet = createEnforcer(v.kind, { netns: H })
    const probers = { c1: await startProber(t, net.c1), c2: await startProber(t, net.c2) }
    const reach = async (from: From, proto: 'tcp' | 'udp', dst: string, port: number): Promise<boolean> => (await probers[from].probe(proto, dst, port, 2500)).ok

    t.test('before any rule, every container reaches everything', async (t) => {
      await expectCases(t, reach, [
        ['c1 -> A', 'c1', 'tcp', CT.dstA4, CT.port, true],
        ['c1 -> other DNS', 'c1', 'udp', CT.dns4, 53, true],
        ['c2 -> A (v6)', 'c2', 'tcp', CT.dstA6, CT.port, true],
      ])
    })

    t.test('enforce: only the sinkhole, learned pairs and profile nets', async (t) => {
      await e.init()
      const r1 = await e.apply(state(c1(), c2()))
      t.ok(r1.changed, 'first apply changes something')
      t.notOk((await e.apply(state(c1(), c2()))).changed, 'a second apply writes nothing')
      // The fleet enforcer too, AFTER ours: its jump goes first, ours must stay valid behind it.
      await fleet.apply(FLEET)
      t.same(await e.verify(), [], 'no drift with the fleet chain in front')
      t.same(await fleet.verify(), [], 'the fleet chain is happy too')
      await expectCases(t, reach, [
        ['unlearned address', 'c1', 'tcp', CT.dstA4, CT.port, false],
        ['unlearned address (v6)', 'c1', 'tcp', CT.dstA6, CT.port, false],
        ['profile net', 'c1', 'tcp', CT.net4, CT.port, true],
        ['profile net is c1s, not c2s', 'c2', 'tcp', CT.net4, CT.port, false],
        ['DNS to the sinkhole (udp)', 'c1', 'udp', CT.bridge4, 53, true],
        ['DNS to the sinkhole (tcp)', 'c1', 'tcp', CT.bridge4, 53, true],
        ['DNS to the sinkhole (v6)', 'c1', 'udp', CT.bridge6, 53, true],
        ['DNS to another server (udp)', 'c1', 'udp', CT.dns4, 53, false],
        ['DNS to another server (tcp)', 'c1', 'tcp', CT.dns4, 53, false],
        ['DNS-over-TLS', 'c1', 'tcp', CT.dns4, 853, false],
        ['DNS to another server (v6)', 'c1', 'udp', CT.dns6, 53, false],
        ['another host port', 'c1', 'tcp', CT.bridge4, CT.port, false],
        ['fleet @@allow does not open a held container', 'c1', 'tcp', CT.fleetAllowed4, CT.port, false],
      ])
      const r = await e.learn([
        { container: CT.c1.v4, dst: CT.dstA4, ttlSec: 600 },
        { container: CT.c1.v4, dst: CT.dstB4, proto: 'tcp', port: CT.port, ttlSec: 600 },
        { container: CT.c1.v6, dst: CT.dstA6, ttlSec: 600 },
        { container: CT.c1.v4, dst: CT.dns4, ttlSec: 600 },
        { container: CT.c1.v4, dst: CT.fleetBlocked4, ttlSec: 600 },
      ])
      t.same(r, { written: 5, deferred: 0 })
      // learn() resolved: the pairs are in the kernel, so connect at once (no wait, no retry).
      await expectCases(t, reach, [
        ['learned pair', 'c1', 'tcp', CT.dstA4, CT.port, true],
        ['learned pair, any port', 'c1', 'tcp', CT.dstA4, CT.otherPort, true],
        ['learned pair, udp', 'c1', 'udp', CT.dstA4, CT.port, true],
        ['learned pair (v6)', 'c1', 'tcp', CT.dstA6, CT.port, true],
        ['port-limited pair, its port', 'c1', 'tcp', CT.dstB4, CT.port, true],
        ['port-limited pair, another port', 'c1', 'tcp', CT.dstB4, CT.otherPort, false],
        ['port-limited pair, another proto', 'c1', 'udp', CT.dstB4, CT.port, false],
        ['c1s pair does not open c2', 'c2', 'tcp', CT.dstA4, CT.port, false],
        ['c1s pair does not open c2 (v6)', 'c2', 'tcp', CT.dstA6, CT.port, false],
        ['a learned DNS server: its other ports', 'c1', 'tcp', CT.dns4, CT.port, true],
        ['a learned DNS server: still no DNS', 'c1', 'udp', CT.dns4, 53, false],
        ['a learned DNS server: still no DoT', 'c1', 'tcp', CT.dns4, 853, false],
        ['a fleet-wide block wins over a learned pair', 'c1', 'tcp', CT.fleetBlocked4, CT.port, false],
      ])
      const seen = await e.seen()
      t.ok(hasEvent(seen, { kind: 'refused', src: CT.c1.v4, dst: CT.dstA4, proto: 'tcp', port: CT.port }), 'seen: the refused connect')
      t.ok(hasEvent(seen, { kind: 'refused', src: CT.c1.v4, dst: CT.dns4, proto: 'udp', port: 53 }), 'seen: the refused DNS')
      t.ok(hasEvent(seen, { kind: 'refused', src: CT.c2.v4, dst: CT.net4, proto: 'tcp', port: CT.port }), 'seen: c2s refusal')
      t.ok(hasEvent(seen, { kind: 'refused', src: CT.c1.v6, dst: CT.dns6, proto: 'udp', port: 53 }), 'seen: a v6 refusal')
      t.notOk(hasEvent(seen, { dst: CT.net4, src: CT.c1.v4 }), 'an allowed connect is not seen')
      t.same(await e.seen(), [], 'seen() drains')
    })

    t.test('a re-learned pair takes the timeout of the newest answer', async (t) => {
      const key = addressKey(ID1, CT.c1.v4)
      const dst = '198.51.100.99'
      for (const form of v.refreshForms ?? [{}]) {
        const ef = createContainerEnforcer(v.kind, { netns: H, ...form })
        await ef.apply(state(c1(), c2()))
        await ef.learn([{ container: CT.c1.v4, dst, ttlSec: 5 }])
        t.ok((v.expiresOf(H, key, dst) ?? 99) <= 5, `${JSON.stringify(form)}: 5 s`)
        await ef.learn([{ container: CT.c1.v4, dst, ttlSec: 500 }])
        t.ok((v.expiresOf(H, key, dst) ?? 0) > 100, `${JSON.stringify(form)}: extended to 500 s`)
        await ef.learn([{ container: CT.c1.v4, dst, ttlSec: 30 }])
        t.ok((v.expiresOf(H, key, dst) ?? 99) <= 30, `${JSON.stringify(form)}: the newest answer wins`)
        await ef.close()
      }
    })

    t.test('a connection opened while its pair was valid outlives the pair; a new one does not', async (t) => {
      const s = await startSession(t, net.c1, CT.dstC4, CT.sessionPort)
      await e.learn([{ container: CT.c1.v4, dst: CT.dstC4, ttlSec: 2 }])
      t.equal(await s.open(), 'connected')
      t.equal(await s.roundTrip(), 'ok')
      const waited = await until('the pair to expire', async () => !(await reach('c1', 'tcp', CT.dstC4, CT.port)), 8000, 250)
      t.comment(`pair expired after ~${waited} ms`)
      t.equal(await s.roundTrip(), 'ok', 'the established session still works')
      t.equal(await s.roundTrip(), 'ok', 'and again')
      t.notOk(await reach('c1', 'tcp', CT.dstC4, CT.port), 'a new connect after expiry fails')
      await e.learn([{ container: CT.c1.v4, dst: CT.dstC4, ttlSec: 60 }])
      t.ok(await reach('c1', 'tcp', CT.dstC4, CT.port), 'a new lookup (learn) opens it again')
    })

    t.test('quarantine: the running session is cut, new connects fail, DNS to the sinkhole works', async (t) => {
      await e.learn([{ container: CT.c2.v4, dst: CT.dstD4, ttlSec: 600 }])
      const s = await startSession(t, net.c2, CT.dstD4, CT.sessionPort)
      t.equal(await s.open(), 'connected')
      t.equal(await s.roundTrip(), 'ok', 'session up before quarantine')
      const flows = (): string => inNs(H, 'conntrack', ['-L', '-f', 'ipv4', '-s', CT.c2.v4])
      t.match(flows(), new RegExp(`dst=${CT.dstD4} .*dport=${CT.sessionPort}`), 'the session is tracked')
      await e.apply(state(c1(), c2({ mode: 'quarantine' })))
      await e.cut(CT.c2.v4)
      await e.cut(CT.c2.v6)
      t.notMatch(flows(), new RegExp(`dport=${CT.sessionPort}`), 'cut() deleted its conntrack entry')
      const after = await s.roundTrip()
      t.not(after, 'ok', `the session is cut (${after})`)
      await expectCases(t, reach, [
        ['quarantined: its learned pair', 'c2', 'tcp', CT.dstD4, CT.port, false],
        ['quarantined: another address', 'c2', 'tcp', CT.dstA4, CT.port, false],
        ['quarantined: v6', 'c2', 'tcp', CT.dstA6, CT.port, false],
        ['quarantined: DNS to the sinkhole', 'c2', 'udp', CT.bridge4, 53, true],
        ['quarantined: DNS to the sinkhole (tcp)', 'c2', 'tcp', CT.bridge4, 53, true],
        ['quarantined: DNS to the sinkhole (v6)', 'c2', 'udp', CT.bridge6, 53, true],
        ['quarantined: DNS elsewhere', 'c2', 'udp', CT.dns4, 53, false],
        ['c1 is not quarantined', 'c1', 'tcp', CT.dstA4, CT.port, true],
      ])
      const seen = await e.seen()
      t.ok(hasEvent(seen, { kind: 'quarantine', src: CT.c2.v4, dst: CT.dstA4, proto: 'tcp', port: CT.port }), 'seen: quarantine refusal')
      t.notOk(hasEvent(seen, { src: CT.c2.v4, dst: CT.bridge4 }), 'DNS to the sinkhole is not a refusal')
    })

    t.test('alert: nothing is blocked, would-be refusals are seen', async (t) => {
      await e.apply(state(c1(), c2({ mode: 'alert' })))
      await expectCases(t, reach, [
        ['alert: unlearned address', 'c2', 'tcp', CT.dstB4, CT.port, true],
        ['alert: DNS elsewhere', 'c2', 'udp', CT.dns4, 53, true],
        ['alert: v6', 'c2', 'tcp', CT.dstA6, CT.port, true],
        ['enforce beside it still refuses', 'c1', 'tcp', CT.dstD4, CT.port, false],
      ])
      const seen = await e.seen()
      t.ok(hasEvent(seen, { kind: 'alerted', src: CT.c2.v4, dst: CT.dstB4, proto: 'tcp', port: CT.port }), 'seen: alerted connect')
      t.ok(hasEvent(seen, { kind: 'alerted', src: CT.c2.v4, dst: CT.dns4, proto: 'udp', port: 53 }), 'seen: alerted DNS')
      t.ok(hasEvent(seen, { kind: 'refused', src: CT.c1.v4, dst: CT.dstD4 }), 'seen: the enforce refusal beside it')
      t.notOk(hasEvent(seen, { kind: 'refused', src: CT.c2.v4 }), 'alert never refuses')
    })

    t.test('learned pairs survive a re-apply and an agent restart; forget() and a new container drop them', async (t) => {
      const s = state(c1(), c2())
      await e.apply(s)
      await e.apply(state(c1({ nets: [] }), c2()))
      await e.apply(s)
      t.ok(await reach('c1', 'tcp', CT.dstA4, CT.port), 'pair kept across re-applies')
      await e.close()
      const e2 = make()
      t.teardown(() => e2.close())
      await e2.init()
      await e2.apply(s)
      t.same(await e2.verify(), [], 'a new instance sees no drift')
      await expectCases(t, reach, [
        ['pair kept across a restart', 'c1', 'tcp', CT.dstA4, CT.port, true],
        ['v6 pair kept across a restart', 'c1', 'tcp', CT.dstA6, CT.port, true],
        ['ported pair kept', 'c1', 'tcp', CT.dstB4, CT.port, true],
      ])
      await e2.forget(CT.c1.v4)
      await expectCases(t, reach, [
        ['forgotten', 'c1', 'tcp', CT.dstA4, CT.port, false],
        ['forgotten (ported)', 'c1', 'tcp', CT.dstB4, CT.port, false],
        ['forget is per address: v6 kept', 'c1', 'tcp', CT.dstA6, CT.port, true],
        ['profile net unaffected', 'c1', 'tcp', CT.net4, CT.port, true],
      ])
      // A new container that gets c1's address must not inherit c1's pairs.
      await e2.learn([{ container: CT.c1.v4, dst: CT.dstA4, ttlSec: 600 }])
      t.ok(await reach('c1', 'tcp', CT.dstA4, CT.port), 'relearned')
      await e2.apply(state(c1({ id: ID1B }), c2()))
      t.notOk(await reach('c1', 'tcp', CT.dstA4, CT.port), 'a new container id on the same address starts empty')
      // Learned before the address was applied (the container's first lookup beat the agent).
      await e2.apply(state(c1({ id: ID1B })))
      t.same(await e2.learn([{ container: CT.c2.v4, dst: CT.dstA4, ttlSec: 600 }]), { written: 0, deferred: 1 })
      await e2.apply(state(c1({ id: ID1B }), c2()))
      t.ok(await reach('c2', 'tcp', CT.dstA4, CT.port), 'a deferred pair is in the kernel once the address is applied')
      t.notOk(await reach('c2', 'tcp', CT.dstB4, CT.port), 'and nothing else')
      await e2.close()
    })

    t.test('drift is reported and repaired', async (t) => {
      const s = state(c1(), c2())
      const e3 = make()
      t.teardown(() => e3.close())
      await e3.apply(s)
      await e3.learn([{ container: CT.c1.v4, dst: CT.dstA4, ttlSec: 600 }])
      t.same(await e3.verify(), [], 'clean')
      for (const d of v.drifts) {
        d.breakIt(H)
        const drift = await e3.verify()
        t.same([...new Set(drift.map((x) => x.kind))].sort(), [...d.expect].sort(), `${d.name}: ${drift.map((x) => x.detail).join('; ')}`)
        await e3.apply(s)
        t.same(await e3.verify(), [], `${d.name}: repaired`)
        d.cleanup?.(H)
      }
      await expectCases(t, reach, [
        ['after repairs: still refused', 'c1', 'tcp', CT.dstD4, CT.port, false],
        ['after repairs: profile net', 'c1', 'tcp', CT.net4, CT.port, true],
      ])
      await e3.close()
    })

    t.test('100,000 learned pairs load in batches and coexist with a connect', async (t) => {
      const e4 = make()
      t.teardown(() => e4.close())
      await e4.apply(state(c1(), c2()))
      const pairs = []
      for (let i = 0; i < 100_000; i++) pairs.push({ container: CT.c1.v4, dst: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, ttlSec: 600, ...(i % 2 ? { proto: 'tcp' as const, port: 443 } : {}) })
      const t0 = performance.now()
      const r = await e4.learn(pairs)
      const ms = performance.now() - t0
      t.comment(`${v.label}: 100,000 learned pairs in ${Math.round(ms)} ms`)
      t.equal(r.written, 100_000)
      t.ok(ms < 60_000, 'loads in well under a minute')
      await e4.learn([{ container: CT.c1.v4, dst: CT.dstA4, ttlSec: 600 }])
      await expectCases(t, reach, [
        ['with 100,000 pairs: learned', 'c1', 'tcp', CT.dstA4, CT.port, true],
        ['with 100,000 pairs: unlearned', 'c1', 'tcp', CT.dstD4, CT.port, false],
      ])
      await e4.close()
    })

    t.test('remove() leaves no set, chain, rule or table behind', async (t) => {
      await fleet.remove()
      const pid = (e as unknown as { writerPid?: () => number | undefined }).writerPid?.()
      await e.remove()
      t.equal(snapshot(H, v.bins), before, 'the host namespace is as before')
      if (pid) t.throws(() => process.kill(pid, 0), 'the writer process is gone')
      await expectCases(t, reach, [['after remove', 'c1', 'tcp', CT.dstD4, CT.port, true]])
      await e.remove()
      t.equal(snapshot(H, v.bins), before, 'a second remove is a no-op')
    })
  })
}

t.test('container contract: dry-run (the same model, no kernel)', async (t) => {
  let clock = 1_000_000
  const kernel = createDryRunKernel()
  const printed: string[] = []
  t.equal(createContainerEnforcer('dry-run', { print: () => {} }).name, 'dry-run', 'the factory makes it')
  // Built directly for the injectable clock (expiry without sleeping).
  const mk = (): DryRunContainerEnforcer => createContainerDryRun((l) => printed.push(l), { kernel, now: () => clock })
  const e = mk()
  const reach = async (from: From, proto: 'tcp' | 'udp', dst: string, port: number): Promise<boolean> => e.decide({ src: addr(from, dst), dst, proto, port }).verdict !== 'reject'
  await e.init()
  await e.apply(state(c1(), c2()))
  t.ok(printed.some((l) => l.includes('hold 172.30.0.2 in enforce')), 'prints what it would do')
  await e.learn([
    { container: CT.c1.v4, dst: CT.dstA4, ttlSec: 600 },
    { container: CT.c1.v4, dst: CT.dstB4, proto: 'tcp', port: CT.port, ttlSec: 600 },
  ])
  await expectCases(t, reach, [
    ['learned', 'c1', 'tcp', CT.dstA4, CT.port, true],
    ['port-limited, other port', 'c1', 'tcp', CT.dstB4, CT.otherPort, false],
    ['not for c2', 'c2', 'tcp', CT.dstA4, CT.port, false],
    ['profile net', 'c1', 'tcp', CT.net4, CT.port, true],
    ['sinkhole DNS', 'c1', 'udp', CT.bridge4, 53, true],
    ['other DNS', 'c1', 'udp', CT.dns4, 53, false],
    ['DoT', 'c1', 'tcp', CT.dns4, 853, false],
  ])
  await e.learn([{ container: CT.c1.v4, dst: CT.dstC4, ttlSec: 2 }])
  t.ok(await reach('c1', 'tcp', CT.dstC4, CT.port), 'short pair valid')
  clock += 2500
  t.notOk(await reach('c1', 'tcp', CT.dstC4, CT.port), 'expired: a new connect fails')
  t.equal(e.decide({ src: CT.c1.v4, dst: CT.dstC4, proto: 'tcp', port: CT.port, established: true }).verdict, 'accept', 'an established one still passes')
  await e.apply(state(c1(), c2({ mode: 'quarantine' })))
  t.equal(e.decide({ src: CT.c2.v4, dst: CT.dstA4, proto: 'tcp', port: CT.port, established: true }).verdict, 'reject', 'quarantine cuts established traffic')
  t.ok(await reach('c2', 'udp', CT.bridge4, 53), 'quarantine: sinkhole DNS')
  await e.apply(state(c1(), c2({ mode: 'alert' })))
  t.ok(await reach('c2', 'tcp', CT.dstB4, CT.port), 'alert blocks nothing')
  const seen = await e.seen()
  t.ok(hasEvent(seen, { kind: 'refused', src: CT.c1.v4, dst: CT.dns4 }))
  t.ok(hasEvent(seen, { kind: 'quarantine', src: CT.c2.v4, dst: CT.dstA4 }))
  t.ok(hasEvent(seen, { kind: 'alerted', src: CT.c2.v4, dst: CT.dstB4 }))
  // A second instance on the same pretend kernel (agent restart) keeps the pairs.
  const e2 = mk()
  await e2.apply(state(c1(), c2()))
  t.equal(e2.decide({ src: CT.c1.v4, dst: CT.dstA4, proto: 'tcp', port: CT.port }).verdict, 'accept', 'pairs survive a new instance')
  await e2.forget(CT.c1.v4)
  t.equal(e2.decide({ src: CT.c1.v4, dst: CT.dstA4, proto: 'tcp', port: CT.port }).verdict, 'reject', 'forget drops them')
  await e2.remove()
  t.equal(kernel.installed, false)
  t.equal(kernel.learned.size, 0, 'remove drops every learned set')
})
