// Where containers send their DNS, as the container rules need it: the sinkhole's bound addresses
// other than loopback (a container cannot reach the host's loopback), by family, and their port. Pure.
import { parseIp } from '../policy/net.js'
import type { ContainerState } from '../enforce/container-types.js'
import type { ListenSpec } from '../sinkhole/listen-spec.js'

export function sinkholeForContainers(bound: ReadonlyArray<{ address: string; port: number; proto: 'udp' | 'tcp' }>, listens: readonly ListenSpec[]): ContainerState['sinkhole'] {
  const v4 = new Set<string>()
  const v6 = new Set<string>()
  let port: number | undefined
  for (const b of bound) {
    const ip = parseIp(b.address)
    if (!ip || b.address === '127.0.0.1' || b.address === '::1' || b.address.startsWith('127.')) continue
    ;(ip.family === 4 ? v4 : v6).add(b.address)
    port ??= b.port
  }
  // Nothing bound yet (docker0 has no address): the configured port, so the rules still name DNS only.
  port ??= listens.find((l) => l.port > 0)?.port ?? 53
  return { v4: [...v4].sort(), v6: [...v6].sort(), port }
}
