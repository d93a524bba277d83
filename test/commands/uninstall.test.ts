// uninstall: after both backends and the hosts-file block were applied in a throwaway namespace (and
// a temporary hosts file), `egress-guard uninstall` leaves iptables -S, ip6tables -S, ipset list,
// nft list ruleset and the hosts file exactly as they were, foreign rules included.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs } from '../helpers/netns.js'
import { runCli } from '../helpers/cli.js'
import { createEnforcer } from '../../src/enforce/factory.js'
import { createContainerEnforcer } from '../../src/enforce/container-factory.js'
import type { ContainerState } from '../../src/enforce/container-types.js'
import { createHostsFile } from '../../src/enforce/hosts-file.js'
import type { DesiredState } from '../../src/enforce/types.js'

const POLICY: DesiredState = {
  version: 3,
  block: { v4: ['192.0.2.0/24'], v6: ['2001:db8:b::/48'] },
  alert: { v4: ['198.51.100.0/24'], v6: [] },
  allow: { v4: ['192.0.2.10/32'], v6: [] },
}
// Container egress (issue 16): an enforced and a quarantined container with a learned pair each.
const CONTAINERS: ContainerState = {
  containers: [
    { id: 'a'.repeat(64), addresses: ['172.30.0.2', 'fd00:30::2'], mode: 'enforce', nets: [{ cidr: '198.51.100.16/28', ports: [443] }] },
    { id: 'b'.repeat(64), addresses: ['172.30.0.3'], mode: 'quarantine', nets: [] },
  ],
  sinkhole: { v4: ['172.30.0.1'], v6: ['fd00:30::1'], port: 53 },
}
const LEARN = [
  { container: '172.30.0.2', dst: '198.51.100.10', ttlSec: 600 },
  { container: '172.30.0.2', dst: '198.51.100.11', proto: 'tcp' as const, port: 443, ttlSec: 600 },
  { container: 'fd00:30::2', dst: '2001:db8:1::10', ttlSec: 600 },
]
const HOSTS = '127.0.0.1 localhost\n::1 localhost\n# keep me\n203.0.113.5 intranet.example\n'

function foreign(ns: string): void {
  inNs(ns, 'iptables', ['-A', 'OUTPUT', '-d', '203.0.113.250', '-j', 'ACCEPT'])
  inNs(ns, 'ip6tables', ['-A', 'FORWARD', '-d', '2001:db8:ffff::251', '-j', 'DROP'])
  inNs(ns, 'iptables', ['-N', 'DOCKER-USER'])
  inNs(ns, 'iptables', ['-A', 'DOCKER-USER', '-j', 'RETURN'])
  inNs(ns, 'iptables', ['-A', 'FORWARD', '-j', 'DOCKER-USER'])
  inNs(ns, 'ipset', ['create', 'someone-elses', 'hash:ip'])
  inNs(ns, 'nft', ['add', 'table', 'inet', 'someone_else'])
}

function snapshot(ns: string): string {
  return [inNs(ns, 'iptables', ['-S']), inNs(ns, 'ip6tables', ['-S']), inNs(ns, 'ipset', ['list']), inNs(ns, 'nft', ['list', 'ruleset'])]
    .join('\n----\n')
    .replace(/packets \d+ bytes \d+/g, 'packets N bytes N')
}

const needs = (): (string | null)[] => [capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables-restore'), capabilities.tool('nft')]

t.test('uninstall removes exactly what egress-guard made', async (t) => {
  if (!requires(t, ...needs())) return
  const ns = makeNs(t, 'un')
  const dir = mkdtempSync(join(tmpdir(), 'eg-uninstall-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const hosts = join(dir, 'hosts')
  writeFileSync(hosts, HOSTS)
  foreign(ns)
  const before = snapshot(ns)

  await createEnforcer('iptables', { netns: ns }).apply(POLICY)
  await createEnforcer('nftables', { netns: ns }).apply(POLICY)
  for (const kind of ['iptables', 'nftables'] as const) {
    const ce = createContainerEnforcer(kind, { netns: ns })
    await ce.init()
    await ce.apply(CONTAINERS)
    await ce.learn(LEARN)
    await ce.close()
  }
  await createHostsFile(hosts).apply(['evil.example'])
  t.not(snapshot(ns), before)
  t.match(inNs(ns, 'iptables', ['-S', 'DOCKER-USER']), /-A DOCKER-USER -j EGRESS-GUARD-CT/)
  t.match(inNs(ns, 'ipset', ['list', '-n']), /egress-guard-ct-l-/)
  t.match(inNs(ns, 'nft', ['list', 'tables']), /egress_guard_ct/)
  t.match(inNs(ns, 'iptables', ['-S', 'DOCKER-USER']), /-A DOCKER-USER -j EGRESS-GUARD/)
  t.match(readFileSync(hosts, 'utf8'), /evil\.example/)

  const r = await runCli(['uninstall', '--netns', ns, '--hosts-file', hosts, '--json'])
  t.equal(r.code, 0, r.stderr)
  t.match(JSON.parse(r.stdout), { ok: true, steps: [
      { what: 'iptables containers', status: 'removed' }, { what: 'iptables', status: 'removed' },
      { what: 'nftables containers', status: 'removed' }, { what: 'nftables', status: 'removed' },
      { what: `hosts file ${hosts}`, status: 'removed' },
    ],
  })
  t.equal(snapshot(ns), before, 'rules, sets and tables as before (foreign ones kept)')
  t.equal(readFileSync(hosts, 'utf8'), HOSTS, 'hosts file as before')

  const again = await runCli(['uninstall', '--netns', ns, '--hosts-file', hosts])
  t.equal(again.code, 0, 'uninstall on a clean host is a no-op')
  t.equal(snapshot(ns), before)
})

t.test('--backend nftables removes only the nftables table', async (t) => {
  if (!requires(t, ...needs())) return
  const ns = makeNs(t, 'un')
  foreign(ns)
  await createEnforcer('iptables', { netns: ns }).apply(POLICY)
  await createEnforcer('nftables', { netns: ns }).apply(POLICY)
  const ci = createContainerEnforcer('iptables', { netns: ns })
  await ci.apply(CONTAINERS)
  await ci.close()
  await createContainerEnforcer('nftables', { netns: ns }).apply(CONTAINERS)
  const r = await runCli(['uninstall', '--netns', ns, '--backend', 'nftables', '--no-hosts-file'])
  t.equal(r.code, 0, r.stderr)
  t.notMatch(inNs(ns, 'nft', ['list', 'tables']), /egress_guard/)
  t.match(inNs(ns, 'iptables', ['-S']), /EGRESS-GUARD/, 'iptables side untouched')
  t.match(inNs(ns, 'iptables', ['-S']), /EGRESS-GUARD-CT/, 'iptables container side untouched')
  t.match(inNs(ns, 'ipset', ['list', '-n']), /egress-guard-block4/)
})

t.test('bad input changes nothing', async (t) => {
  if (!requires(t, ...needs())) return
  const ns = makeNs(t, 'un')
  await createEnforcer('iptables', { netns: ns }).apply(POLICY)
  const mid = snapshot(ns)
  const bad = await runCli(['uninstall', '--netns', ns, '--backend', 'pf', '--no-hosts-file'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--backend must be iptables, nftables or all/)
  const badNs = await runCli(['uninstall', '--netns', 'bad name;rm', '--no-hosts-file'])
  t.equal(badNs.code, 2)
  t.match(badNs.stderr, /invalid network namespace name/)
  t.equal(snapshot(ns), mid)
})
