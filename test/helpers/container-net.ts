// A Docker-like topology in throwaway namespaces for the container-egress tests, without dockerd:
// two "container" namespaces on a bridge in a "host" namespace (which forwards, and runs the
// sinkhole's port 53 on the bridge address), and a "remote" namespace with the destinations.
// Everything is torn down with the test.
import { inNs, makeNs, sh } from './netns.js'
import { startEchoServer } from './traffic.js'

type T = { teardown: (fn: () => unknown) => void }

export const CT = {
  bridge4: '172.30.0.1',
  bridge6: 'fd00:30::1',
  c1: { v4: '172.30.0.2', v6: 'fd00:30::2' },
  c2: { v4: '172.30.0.3', v6: 'fd00:30::3' },
  /** Remote destinations (documentation ranges). */
  dstA4: '198.51.100.10',
  dstB4: '198.51.100.11',
  /** Inside the profile net 198.51.100.16/28. */
  net4: '198.51.100.20',
  netCidr4: '198.51.100.16/28',
  /** Another DNS server (UDP/TCP 53, TCP 853): the one a container must not reach. */
  dns4: '198.51.100.53',
  dstA6: '2001:db8:1::10',
  dns6: '2001:db8:1::53',
  /** TCP+UDP echo on the remote addresses. */
  port: 8080,
  otherPort: 8081,
} as const

export interface CtNet {
  host: string
  c1: string
  c2: string
  remote: string
}

let n = 0

export interface CtNetOptions {
  /** Create a DOCKER-USER chain jumped to from FORWARD, as Docker does (with these binaries). */
  dockerUser?: { ipt: string; ip6t: string }
  /** Start the echo servers (default true). */
  servers?: boolean
}

export async function makeContainerNet(t: T, opts: CtNetOptions = {}): Promise<CtNet> {
  const host = makeNs(t, 'h')
  const c1 = makeNs(t, 'c')
  const c2 = makeNs(t, 'c')
  const remote = makeNs(t, 'r')
  const id = `${process.pid % 1000}${n++}`
  inNs(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
  sh('ip', ['-n', host, 'link', 'add', 'egbr0', 'type', 'bridge'])
  sh('ip', ['-n', host, 'addr', 'add', `${CT.bridge4}/24`, 'dev', 'egbr0'])
  sh('ip', ['-n', host, 'addr', 'add', `${CT.bridge6}/64`, 'dev', 'egbr0', 'nodad'])
  sh('ip', ['-n', host, 'link', 'set', 'egbr0', 'up'])
  for (const [i, [ns, a]] of ([[c1, CT.c1], [c2, CT.c2]] as const).entries()) {
    const ci = `vc${id}${i}`.slice(0, 15)
    const hi = `vh${id}${i}`.slice(0, 15)
    sh('ip', ['link', 'add', ci, 'netns', ns, 'type', 'veth', 'peer', 'name', hi, 'netns', host])
    sh('ip', ['-n', host, 'link', 'set', hi, 'master', 'egbr0', 'up'])
    sh('ip', ['-n', ns, 'addr', 'add', `${a.v4}/24`, 'dev', ci])
    sh('ip', ['-n', ns, 'addr', 'add', `${a.v6}/64`, 'dev', ci, 'nodad'])
    sh('ip', ['-n', ns, 'link', 'set', ci, 'up'])
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', CT.bridge4])
    sh('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', CT.bridge6])
  }
  const hr = `vr${id}h`.slice(0, 15)
  const rr = `vr${id}r`.slice(0, 15)
  sh('ip', ['link', 'add', hr, 'netns', host, 'type', 'veth', 'peer', 'name', rr, 'netns', remote])
  sh('ip', ['-n', host, 'addr', 'add', '203.0.113.1/24', 'dev', hr])
  sh('ip', ['-n', host, 'addr', 'add', '2001:db8:ffff::1/64', 'dev', hr, 'nodad'])
  sh('ip', ['-n', remote, 'addr', 'add', '203.0.113.2/24', 'dev', rr])
  sh('ip', ['-n', remote, 'addr', 'add', '2001:db8:ffff::2/64', 'dev', rr, 'nodad'])
  const remote4 = [CT.dstA4, CT.dstB4, CT.net4, CT.dns4]
  const remote6 = [CT.dstA6, CT.dns6]
  for (const a of remote4) sh('ip', ['-n', remote, 'addr', 'add', `${a}/32`, 'dev', rr])
  for (const a of remote6) sh('ip', ['-n', remote, 'addr', 'add', `${a}/128`, 'dev', rr, 'nodad'])
  for (const [ns, i] of [[host, hr], [remote, rr]] as const) sh('ip', ['-n', ns, 'link', 'set', i, 'up'])
  sh('ip', ['-n', host, 'route', 'add', '198.51.100.0/24', 'via', '203.0.113.2'])
  sh('ip', ['-n', host, '-6', 'route', 'add', '2001:db8:1::/64', 'via', '2001:db8:ffff::2'])
  sh('ip', ['-n', remote, 'route', 'add', '172.30.0.0/24', 'via', '203.0.113.1'])
  sh('ip', ['-n', remote, '-6', 'route', 'add', 'fd00:30::/64', 'via', '2001:db8:ffff::1'])
  if (opts.dockerUser) {
    for (const bin of [opts.dockerUser.ipt, opts.dockerUser.ip6t]) {
      inNs(host, bin, ['-N', 'DOCKER-USER'])
      inNs(host, bin, ['-A', 'DOCKER-USER', '-j', 'RETURN'])
      inNs(host, bin, ['-I', 'FORWARD', '1', '-j', 'DOCKER-USER'])
    }
  }
  if (opts.servers !== false) {
    await Promise.all([
      // The sinkhole's port on the bridge addresses (TCP on all host addresses).
      startEchoServer(t, host, 53, [CT.bridge4, CT.bridge6]),
      startEchoServer(t, remote, CT.port, [...remote4, ...remote6]),
      startEchoServer(t, remote, CT.otherPort, [...remote4, ...remote6]),
      startEchoServer(t, remote, 53, [CT.dns4, CT.dns6]),
      startEchoServer(t, remote, 853, [CT.dns4]),
    ])
  }
  return { host, c1, c2, remote }
}
