// Real connections through real kernels: from the "host" namespace itself (OUTPUT) and from a third
// namespace routed through it (FORWARD, or DOCKER-USER when Docker's chain exists), for both backends.
// Blocked addresses fail fast with the expected reject; unblocked ones keep working; after drift
// opens a gap, the next reconcile closes it and the connection fails again.
import t, { type Test } from 'tap'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, link, makeNs, sh } from '../helpers/netns.js'
import { probe, startEchoServer, type ProbeResult } from '../helpers/traffic.js'
import { createEnforcer, type BackendKind } from '../../src/enforce/factory.js'
import type { DesiredState, Enforcer } from '../../src/enforce/types.js'

const PORT = 8081
const A = { blocked4: '192.0.2.11', blocked6: '2001:db8:b::11', free4: '198.51.100.50', free6: '2001:db8:f::50' }
const POLICY: DesiredState = {
  version: 1,
  block: { v4: ['192.0.2.11/32', '192.0.2.128/25'], v6: ['2001:db8:b::/48'] },
  alert: { v4: [], v6: [] },
  allow: { v4: [], v6: [] },
}


/**
 * container (C) --veth-- host (H, the enforced namespace, forwarding) --veth-- server (S).
 * H reaches S directly; C's traffic to S is forwarded by H.
 */
async function topology(t: Test): Promise<{ host: string; container: string }> {
  const host = makeNs(t, 'h')
  const container = makeNs(t, 'c')
  const server = makeNs(t, 's')
  link(container, ['203.0.113.65/26', '2001:db8:c::1/64'], host, ['203.0.113.66/26', '2001:db8:c::2/64'])
  const { bIf } = link(host, ['203.0.113.1/26', '2001:db8:ffff::1/64'], server, ['203.0.113.2/26', '2001:db8:ffff::2/64'])
  for (const a of Object.values(A)) sh('ip', ['-n', server, 'addr', 'add', a.includes(':') ? `${a}/128` : `${a}/32`, 'dev', bIf, ...(a.includes(':') ? ['nodad'] : [])])
  inNs(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
  inNs(host, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1'])
  for (const net of ['192.0.2.0/24', '198.51.100.0/24']) sh('ip', ['-n', host, 'route', 'add', net, 'via', '203.0.113.2'])
  sh('ip', ['-n', host, '-6', 'route', 'add', '2001:db8::/33', 'via', '2001:db8:ffff::2'])
  sh('ip', ['-n', container, 'route', 'add', 'default', 'via', '203.0.113.66'])
  sh('ip', ['-n', container, '-6', 'route', 'add', 'default', 'via', '2001:db8:c::2'])
  sh('ip', ['-n', server, 'route', 'add', 'default', 'via', '203.0.113.1'])
  sh('ip', ['-n', server, '-6', 'route', 'add', 'default', 'via', '2001:db8:ffff::1'])
  await startEchoServer(t, server, PORT, Object.values(A))
  return { host, container }
}

/** What Docker does when it starts: an (empty, RETURN-only) DOCKER-USER chain jumped from FORWARD. */
function dockerUser(ns: string): void {
  for (const bin of ['iptables', 'ip6tables']) {
    inNs(ns, bin, ['-N', 'DOCKER-USER'])
    inNs(ns, bin, ['-A', 'DOCKER-USER', '-j', 'RETURN'])
    inNs(ns, bin, ['-I', 'FORWARD', '1', '-j', 'DOCKER-USER'])
  }
}

/** Expected failure: TCP reset -> ECONNREFUSED; UDP -> ICMP port unreachable (ECONNREFUSED), or EPERM for the host's own sends. */
function isRejected(proto: 'tcp' | 'udp', r: ProbeResult, fromHost: boolean): boolean {
  if (r.ok) return false
  if (proto === 'tcp') return r.code === 'ECONNREFUSED'
  return fromHost ? r.code === 'EPERM' || r.code === 'ECONNREFUSED' : r.code === 'ECONNREFUSED'
}

async function expectBlocked(t: Test, ns: string, fromHost: boolean, label: string): Promise<void> {
  for (const proto of ['tcp', 'udp'] as const) {
    for (const a of [A.blocked4, A.blocked6]) {
      const r = await probe(ns, proto, a, PORT)
      t.ok(isRejected(proto, r, fromHost), `${label}: ${proto} to blocked ${a} rejected (${JSON.stringify(r)})`)
    }
    for (const a of [A.free4, A.free6]) t.same(await probe(ns, proto, a, PORT), { ok: true }, `${label}: ${proto} to unblocked ${a} works`)
  }
}

const BACKENDS: { kind: BackendKind; needs: () => (string | null)[] }[] = [
  { kind: 'iptables', needs: () => [capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables-restore'), capabilities.tool('sysctl')] },
  { kind: 'nftables', needs: () => [capabilities.netns(), capabilities.tool('nft'), capabilities.tool('iptables'), capabilities.tool('sysctl')] },
]

for (const b of BACKENDS) {
  t.test(`${b.kind}: host (OUTPUT) and routed (FORWARD) traffic`, async (t) => {
    if (!requires(t, ...b.needs())) return
    const { host, container } = await topology(t)
    t.same(await probe(container, 'tcp', A.blocked4, PORT), { ok: true }, 'path works before apply')
    const e: Enforcer = createEnforcer(b.kind, { netns: host })
    await e.init()
    await e.apply(POLICY)
    await expectBlocked(t, host, true, 'from the host')
    await expectBlocked(t, container, false, 'forwarded')

    // Drift opens a gap; the next reconcile closes it.
    if (b.kind === 'iptables') {
      inNs(host, 'iptables', ['-D', 'FORWARD', '-j', 'EGRESS-GUARD'])
      inNs(host, 'iptables', ['-D', 'OUTPUT', '-j', 'EGRESS-GUARD'])
    } else inNs(host, 'nft', ['delete', 'table', 'inet', 'egress_guard'])
    t.same(await probe(container, 'tcp', A.blocked4, PORT), { ok: true }, 'drift: forwarded traffic gets through')
    t.same(await probe(host, 'tcp', A.blocked4, PORT), { ok: true }, 'drift: host traffic gets through')
    t.ok((await e.verify()).length > 0, 'verify reports the drift')
    t.ok((await e.apply(POLICY)).changed, 'reconcile repairs')
    t.same(await e.verify(), [])
    t.same(await probe(container, 'tcp', A.blocked4, PORT), { ok: false, code: 'ECONNREFUSED' }, 'forwarded connection fails again')
    t.same(await probe(host, 'tcp', A.blocked4, PORT), { ok: false, code: 'ECONNREFUSED' }, 'host connection fails again')
    await e.remove()
    t.same(await probe(container, 'tcp', A.blocked4, PORT), { ok: true }, 'after remove: reachable')
  })

  t.test(`${b.kind}: Docker's DOCKER-USER chain, and a Docker restart that recreates it`, async (t) => {
    if (!requires(t, ...b.needs())) return
    const { host, container } = await topology(t)
    dockerUser(host)
    const e = createEnforcer(b.kind, { netns: host })
    await e.apply(POLICY)
    if (b.kind === 'iptables') {
      t.equal(inNs(host, 'iptables', ['-S', 'DOCKER-USER']).split('\n')[1], '-A DOCKER-USER -j EGRESS-GUARD', 'jump is first in DOCKER-USER')
      t.notMatch(inNs(host, 'iptables', ['-S', 'FORWARD']), /EGRESS-GUARD/, 'no redundant FORWARD jump')
    }
    await expectBlocked(t, container, false, 'through DOCKER-USER')
    // Docker restart: DOCKER-USER comes back without our jump.
    for (const bin of ['iptables', 'ip6tables']) {
      inNs(host, bin, ['-D', 'FORWARD', '-j', 'DOCKER-USER'])
      inNs(host, bin, ['-F', 'DOCKER-USER'])
      inNs(host, bin, ['-X', 'DOCKER-USER'])
    }
    dockerUser(host)
    if (b.kind === 'iptables') {
      t.same(await probe(container, 'tcp', A.blocked4, PORT), { ok: true }, 'after the Docker restart the gap is open')
      t.match(await e.verify(), [{ kind: 'jump-missing' }])
      await e.apply(POLICY)
    } else {
      // nftables hooks forward in its own table at filter - 10: Docker's chains cannot unhook it.
      t.same(await e.verify(), [], 'nftables: a Docker restart causes no drift')
    }
    t.same(await probe(container, 'tcp', A.blocked4, PORT), { ok: false, code: 'ECONNREFUSED' }, 'blocked again after reconcile')
    t.same(await probe(container, 'udp', A.blocked6, PORT), { ok: false, code: 'ECONNREFUSED' })
    t.same(await probe(container, 'tcp', A.free6, PORT), { ok: true })
  })
}
