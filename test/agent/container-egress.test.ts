// The agent's container wiring (issue 16): which containers the kernel holds to which profile (pure
// plan), and the edge that re-applies on container and policy changes, forgets pairs of addresses that
// left, reports labels naming no profile, and turns the kernel's seen sets into hits. The kernel here
// is the dry-run twin (its decide() is the backends' model, proved against both kernels by the
// container contract suite); the real-kernel proof is test/e2e/profile-enforce.test.ts.
import t from 'tap'
import { planContainers, leftAddresses } from '../../src/agent/container-state.js'
import { createContainerEgress, type ContainerSource } from '../../src/agent/container-egress.js'
import { createContainerDryRun } from '../../src/enforce/container-dry-run.js'
import { sinkholeForContainers } from '../../src/agent/sinkhole-addresses.js'
import { silentLogger } from '../../src/log.js'
import type { ContainerChange, ContainerRecord } from '../../src/docker/types.js'
import type { Profile } from '../../src/profiles/types.js'
import type { Hit } from '../../src/sinkhole/types.js'

const id = (c: string): string => c.repeat(64)
const rec = (c: string, name: string, addr: string, profile?: string): ContainerRecord => ({
  id: id(c),
  name,
  image: 'busybox',
  labels: profile !== undefined ? { 'egress-guard.profile': profile } : {},
  ...(profile !== undefined ? { profile } : {}),
  addresses: [addr],
  networks: [{ name: 'bridge', ipv4: addr }],
})
const web: Profile = {
  name: 'web',
  mode: 'enforce',
  source: 'blocklists/profiles/web.txt',
  rules: [
    { kind: 'domain', value: 'api.example', ports: [443], source: 'blocklists/profiles/web.txt:1' },
    { kind: 'net', value: '198.51.100.0/24', ports: [443], source: 'blocklists/profiles/web.txt:2' },
    { kind: 'net', value: '192.0.2.7/32', source: 'blocklists/profiles/web.txt:3' },
  ],
}
const sink = { v4: ['172.17.0.1'], v6: [], port: 53 }

t.test('plan: enforce/alert listed with their nets, learn and unlabelled not, a missing profile = enforce with none, quarantine wins', async (t) => {
  const rs = [
    rec('a', 'web1', '172.17.0.2', 'web'),
    rec('b', 'plain', '172.17.0.3'),
    rec('c', 'typo', '172.17.0.4', 'wbe'),
    rec('d', 'learner', '172.17.0.5', 'learner'),
    rec('e', 'watch', '172.17.0.6', 'watch'),
    rec('f', 'bad', '172.17.0.7'),
  ]
  const profiles: Profile[] = [web, { ...web, name: 'learner', mode: 'learn' }, { ...web, name: 'watch', mode: 'alert' }]
  const p = planContainers(rs, profiles, new Set([id('f')]), sink)
  t.same(
    p.state.containers.map((c) => [c.id[0], c.mode, c.nets]),
    [
      ['a', 'enforce', [{ cidr: '198.51.100.0/24', ports: [443] }, { cidr: '192.0.2.7/32' }]],
      ['c', 'enforce', []],
      ['e', 'alert', [{ cidr: '198.51.100.0/24', ports: [443] }, { cidr: '192.0.2.7/32' }]],
      ['f', 'quarantine', []],
    ],
  )
  t.same(p.missing, [{ id: id('c'), name: 'typo', profile: 'wbe' }])
  t.same([...p.held.keys()].map((k) => k[0]), ['a', 'd', 'e'])
  t.same(p.state.sinkhole, sink)
  // No profiles at all (no policy yet): a labelled container is held to DNS only (fail closed).
  t.same(planContainers([rs[0]!], undefined, new Set(), sink).state.containers.map((c) => [c.mode, c.nets]), [['enforce', []]])
  t.same(leftAddresses(p.state, planContainers([rs[0]!], profiles, new Set(), sink).state), ['172.17.0.4', '172.17.0.6', '172.17.0.7'])
})

t.test('sinkhole addresses for containers: loopback left out, the configured port while nothing is bound', async (t) => {
  t.same(sinkholeForContainers([{ address: '127.0.0.1', port: 53, proto: 'udp' }, { address: '172.17.0.1', port: 53, proto: 'udp' }], []), { v4: ['172.17.0.1'], v6: [], port: 53 })
  t.same(sinkholeForContainers([{ address: '127.0.0.1', port: 5353, proto: 'udp' }], [{ interface: 'docker0', port: 5353 }]), { v4: [], v6: [], port: 5353 })
})

function fakeDocker(initial: ContainerRecord[]): ContainerSource & { set(rs: ContainerRecord[], change: ContainerChange): void } {
  let rs = initial
  const fns: ((c: ContainerChange) => void)[] = []
  return {
    list: () => rs,
    onChange: (fn) => (fns.push(fn), () => void fns.splice(fns.indexOf(fn), 1)),
    byIp: (ip) => {
      const r = rs.find((x) => x.addresses.includes(ip))
      return r ? { id: r.id, name: r.name, image: r.image } : undefined
    },
    recordByIp: (ip) => rs.find((x) => x.addresses.includes(ip)),
    set(next, change) {
      rs = next
      for (const f of fns) f(change)
    },
  }
}

t.test('edge: applies profiles to labelled containers, follows changes, forgets pairs, seen -> hits', async (t) => {
  const lines: string[] = []
  const enforcer = createContainerDryRun((l) => lines.push(l))
  const a = rec('a', 'web1', '172.17.0.2', 'web')
  const b = rec('b', 'plain', '172.17.0.3')
  const docker = fakeDocker([a, b])
  const hits: Omit<Hit, 'count' | 'lastTime'>[] = []
  const eg = createContainerEgress({ enforcer, containers: docker, sinkhole: () => sink, hits: { record: (h) => hits.push(h) }, log: silentLogger, seenIntervalMs: 60_000 })
  await eg.setProfiles([web])
  await eg.start()
  t.teardown(() => eg.stop())
  t.same(enforcer.kernel.state?.held.map((h) => [h.ip, h.mode]), [['172.17.0.2', 'enforce']])
  t.equal(eg.profileOf('172.17.0.2')?.name, 'web')
  t.equal(eg.profileOf('172.17.0.3'), undefined)

  // Kernel model: the labelled container is refused outside its profile, the unlabelled one is untouched.
  t.same(enforcer.decide({ src: '172.17.0.2', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'reject', seen: 'refused' })
  t.same(enforcer.decide({ src: '172.17.0.2', dst: '198.51.100.4', proto: 'tcp', port: 443 }), { verdict: 'accept' })
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' })
  t.equal(await eg.pollSeen(), 1)
  t.match(hits, [{ action: 'deny', profile: 'web', client: '172.17.0.2', name: '203.0.113.9', qtype: 'tcp/80', container: { name: 'web1' }, entry: { value: 'web', source: 'blocklists/profiles/web.txt' } }])
  hits.length = 0

  // A learned pair, then the container stops: its pairs go with it.
  await enforcer.learn([{ container: '172.17.0.2', dst: '203.0.113.50', ttlSec: 120 }])
  t.same(enforcer.decide({ src: '172.17.0.2', dst: '203.0.113.50', proto: 'tcp', port: 80 }), { verdict: 'accept' })
  docker.set([b], { type: 'removed', record: a })
  await eg.sync()
  t.same(enforcer.kernel.state?.held, [])
  t.equal(enforcer.kernel.learned.size, 0)

  // Restart with a new address: held again at the new address only; the old one's pairs are gone.
  const a2 = { ...a, addresses: ['172.17.0.9'], networks: [{ name: 'bridge', ipv4: '172.17.0.9' }] }
  docker.set([a2, b], { type: 'added', record: a2 })
  await eg.sync()
  t.same(enforcer.kernel.state?.held.map((h) => h.ip), ['172.17.0.9'])
  t.same(enforcer.decide({ src: '172.17.0.9', dst: '203.0.113.50', proto: 'tcp', port: 80 }), { verdict: 'reject', seen: 'refused' })

  // Policy change: the profile goes to alert; nothing is refused and would-be refusals are alert hits.
  await eg.setProfiles([{ ...web, mode: 'alert' }])
  await eg.pollSeen()
  hits.length = 0
  t.same(enforcer.decide({ src: '172.17.0.9', dst: '203.0.113.50', proto: 'tcp', port: 80 }), { verdict: 'accept', seen: 'alerted' })
  await eg.pollSeen()
  t.match(hits, [{ action: 'alert', profile: 'web', name: '203.0.113.50', entry: { mode: 'alert' } }])

  // learn mode: not held at all.
  await eg.setProfiles([{ ...web, mode: 'learn' }])
  t.same(enforcer.kernel.state?.held, [])
  t.same(eg.problems(), [])
})

t.test('edge: a label naming no profile is held to DNS only, reported once as a hit and in problems', async (t) => {
  const enforcer = createContainerDryRun(() => {})
  const c = rec('c', 'typo', '172.17.0.4', 'wbe')
  const docker = fakeDocker([c])
  const hits: Omit<Hit, 'count' | 'lastTime'>[] = []
  const eg = createContainerEgress({ enforcer, containers: docker, sinkhole: () => sink, hits: { record: (h) => hits.push(h) }, log: silentLogger, seenIntervalMs: 60_000 })
  await eg.start()
  t.teardown(() => eg.stop())
  // Before any policy: held (fail closed) but not yet reported (every label would name no profile).
  t.same(enforcer.kernel.state?.held.map((h) => [h.ip, h.mode, h.nets]), [['172.17.0.4', 'enforce', []]])
  t.same(eg.problems(), [])
  await eg.setProfiles([web])
  await eg.setProfiles([web])
  t.match(eg.problems(), [/container typo \(cccccccccccc\): label egress-guard.profile="wbe" names no profile: held to DNS to the sinkhole only/])
  t.match(hits, [{ action: 'deny', name: 'wbe', qtype: 'profile', answer: 'missing-profile', container: { name: 'typo' } }])
  t.equal(hits.length, 1)
  t.equal(eg.stats().missingProfiles, 1)
  t.same(enforcer.decide({ src: '172.17.0.4', dst: '172.17.0.1', proto: 'udp', port: 53 }), { verdict: 'accept' })
  t.same(enforcer.decide({ src: '172.17.0.4', dst: '198.51.100.4', proto: 'tcp', port: 443 }), { verdict: 'reject', seen: 'refused' })
  await eg.pollSeen()
  t.match(hits[1], { action: 'deny', entry: { value: 'missing profile wbe' } })
  // The profile appears: held to it, the problem goes.
  await eg.setProfiles([web, { ...web, name: 'wbe' }])
  t.same(eg.problems(), [])
  t.same(enforcer.decide({ src: '172.17.0.4', dst: '198.51.100.4', proto: 'tcp', port: 443 }), { verdict: 'accept' })
})

t.test('edge: quarantine hook holds any container to DNS only and cuts it once', async (t) => {
  const lines: string[] = []
  const enforcer = createContainerDryRun((l) => lines.push(l))
  const b = rec('b', 'plain', '172.17.0.3')
  const eg = createContainerEgress({ enforcer, containers: fakeDocker([b]), sinkhole: () => sink, log: silentLogger, seenIntervalMs: 60_000 })
  await eg.start()
  t.teardown(() => eg.stop())
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' })
  await eg.setQuarantines([id('b')])
  await eg.setQuarantines([id('b')])
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80, established: true }), { verdict: 'reject', seen: 'quarantine' })
  t.equal(lines.filter((l) => l.startsWith('conntrack: delete flows from and to 172.17.0.3')).length, 1)
  await eg.setQuarantines([])
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' })
})

t.test('edge: the policy quarantine list matches by name on this host, follows restarts, ignores other hosts and expired ones', async (t) => {
  const lines: string[] = []
  const enforcer = createContainerDryRun((l) => lines.push(l))
  const b = rec('b', 'web', '172.17.0.3')
  const c = rec('c', 'db', '172.17.0.4')
  const docker = fakeDocker([b, c])
  const eg = createContainerEgress({ enforcer, containers: docker, sinkhole: () => sink, log: silentLogger, seenIntervalMs: 60_000, host: 'web1' })
  await eg.start()
  t.teardown(() => eg.stop())
  const q = { id: 'q-000000000001', container: 'web', reason: 'miner', added: '2026-12-07T00:00:00Z', actor: 'ops' }
  await eg.setQuarantineList([{ ...q, host: 'other-host' }])
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' }, 'a quarantine for another host holds nothing here')
  await eg.setQuarantineList([{ ...q, expires: '2020-01-01T00:00:00Z' }])
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' }, 'an expired quarantine holds nothing')
  await eg.setQuarantineList([{ ...q, host: 'WEB1' }])
  t.same(enforcer.decide({ src: '172.17.0.3', dst: '203.0.113.9', proto: 'tcp', port: 80, established: true }), { verdict: 'reject', seen: 'quarantine' }, 'web is quarantined by name')
  t.same(enforcer.decide({ src: '172.17.0.4', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' }, 'db is not')
  t.equal(lines.filter((l) => l.startsWith('conntrack: delete flows from and to 172.17.0.3')).length, 1, 'its connections are cut once')
  // docker restart: the same container comes back with a new address; it is still held.
  const moved = rec('b', 'web', '172.17.0.9')
  docker.set([moved, c], { type: 'updated', record: moved, previous: b })
  await eg.sync()
  t.same(enforcer.decide({ src: '172.17.0.9', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'reject', seen: 'quarantine' }, 'held at its new address')
  await eg.setQuarantineList(undefined)
  t.same(enforcer.decide({ src: '172.17.0.9', dst: '203.0.113.9', proto: 'tcp', port: 80 }), { verdict: 'pass' }, 'lifted')
})
