// The host's control plane, computed once for every command that enforces (agent, apply, plan, up):
// what the agent must always reach (its policy server, its DNS upstreams, its own sinkhole) as
// exact address+protocol+port endpoints for the kernel's exempt set, and the addresses a blocked
// *name* may never put into a block set. Pure: the resolving of the server's host name lives with
// its callers (src/agent/server-addresses.ts for the agent, apply.ts for one-shot runs).
import { errors } from '../errors.js'
import { cidrContains, formatIp, parseCidr, parseIp } from '../policy/net.js'
import type { Entry } from '../policy/types.js'
import type { FamilySets } from './types.js'

export type Proto = 'tcp' | 'udp'

/** One destination the host must always reach. */
export interface ControlEndpoint {
  /** Canonical address (no prefix). */
  address: string
  proto: Proto
  port: number
  /** What it is, for warnings: `server`, `upstream` (blocked names are resolved there), `resolver` (the system's, which resolves the server's name), `sinkhole`. */
  role: 'server' | 'upstream' | 'resolver' | 'sinkhole'
}

export interface ControlPlaneInput {
  /** The policy server: its addresses (an IP literal, or what its host name resolved to) and port. */
  server?: { addresses: readonly string[]; port: number }
  upstreams?: ReadonlyArray<{ address: string; port: number }>
  /** The system resolver's nameservers (resolv.conf), when the server is known by name: port 53. */
  resolvers?: readonly string[]
  /** The embedded sinkhole's listen addresses (a wildcard address is the host itself: skipped). */
  sinkhole?: ReadonlyArray<{ address: string; port: number }>
  /** Docker bridge gateways: the host's own address on the bridge (protected from resolved names). */
  bridges?: readonly string[]
  /** --protect CIDRs (validated by the caller). */
  protect?: readonly string[]
}

export interface ControlPlane {
  endpoints: ControlEndpoint[]
  /** Addresses/CIDRs never blocked because a blocked name resolved to them (desired.ts `protect`). */
  protect: string[]
  /** The exempt set's members per family (`IP,PROTO:PORT`, sorted, de-duplicated). */
  exempt: FamilySets
}

/** `198.51.100.1,tcp:8787`: the member text `ipset save` prints for hash:ip,port (the nft key too). */
export function endpointMember(e: { address: string; proto: Proto; port: number }): string {
  return `${e.address},${e.proto}:${e.port}`
}

/** Inverse of endpointMember; undefined for anything else. */
export function parseEndpointMember(m: string): { address: string; proto: Proto; port: number } | undefined {
  const r = /^(.+),(tcp|udp):(\d{1,5})$/.exec(m)
  if (!r) return undefined
  const port = Number(r[3])
  if (port < 1 || port > 65535 || !parseIp(r[1]!)) return undefined
  return { address: r[1]!, proto: r[2] as Proto, port }
}

function canonical(address: string): string | undefined {
  const ip = parseIp(address)
  return ip ? formatIp(ip) : undefined
}

const WILDCARD = new Set(['0.0.0.0', '::'])

export function controlPlane(input: ControlPlaneInput): ControlPlane {
  const endpoints: ControlEndpoint[] = []
  const protect = new Set<string>(input.protect ?? [])
  const add = (address: string, protos: readonly Proto[], port: number, role: ControlEndpoint['role']): void => {
    const a = canonical(address)
    if (!a || WILDCARD.has(a)) return
    protect.add(a)
    for (const proto of protos) endpoints.push({ address: a, proto, port, role })
  }
  for (const a of input.server?.addresses ?? []) add(a, ['tcp'], input.server!.port, 'server')
  // DNS falls back to TCP for truncated answers: both protocols, on the upstream's own port.
  for (const u of input.upstreams ?? []) add(u.address, ['udp', 'tcp'], u.port, 'upstream')
  for (const r of input.resolvers ?? []) add(r, ['udp', 'tcp'], 53, 'resolver')
  for (const s of input.sinkhole ?? []) add(s.address, ['udp', 'tcp'], s.port, 'sinkhole')
  for (const b of input.bridges ?? []) {
    const a = canonical(b)
    if (a) protect.add(a)
  }
  const v4 = new Set<string>()
  const v6 = new Set<string>()
  for (const e of endpoints) (e.address.includes(':') ? v6 : v4).add(endpointMember(e))
  return { endpoints, protect: [...protect], exempt: { v4: [...v4].sort(), v6: [...v6].sort() } }
}

/**
 * The server URL's host and port (default 443 for https, 80 for http) and, when the host is an IP
 * literal, that address. Coded error for something that is not an http(s) URL.
 */
export function serverTarget(url: string): { host: string; port: number; ip?: string } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw errors.config(`--server ${JSON.stringify(url)} is not a URL (e.g. https://guard.internal:8443)`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw errors.config(`--server ${JSON.stringify(url)}: only http:// and https:// are supported`)
  const host = u.hostname.replace(/^\[|\]$/g, '')
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
  const ip = canonical(host)
  return { host, port, ...(ip ? { ip } : {}) }
}

/**
 * The control-plane endpoints a block-mode network entry covers: traffic to them stays exempt in the
 * kernel, but the operator should know that the entry would have cut this host off.
 */
export function coveredEndpoints(e: Entry, endpoints: readonly ControlEndpoint[]): ControlEndpoint[] {
  if (e.kind !== 'net' || e.allow || e.mode !== 'block') return []
  const r = parseCidr(e.value)
  if (!r.ok) return []
  const out: ControlEndpoint[] = []
  for (const ep of endpoints) {
    const ip = parseIp(ep.address)
    if (ip && cidrContains(r.cidr, ip)) out.push(ep)
  }
  return out
}

/** One warning per entry that covers control-plane endpoints (bounded: a huge policy lists 20). */
export function coverWarnings(entries: readonly Entry[], endpoints: readonly ControlEndpoint[], max = 20): string[] {
  if (endpoints.length === 0) return []
  const out: string[] = []
  let more = 0
  for (const e of entries) {
    const eps = coveredEndpoints(e, endpoints)
    if (eps.length === 0) continue
    if (out.length >= max) {
      more++
      continue
    }
    const what = [...new Set(eps.map((x) => `${x.role} ${x.address} ${x.proto}/${x.port}`))].join(', ')
    // Bounded: report errors are at most 2048 characters each.
    out.push(`${e.value} (${e.source.slice(0, 300)}${e.force ? ', force' : ''}) covers this host's control plane (${what.slice(0, 1000)}): that traffic stays exempt`)
  }
  if (more > 0) out.push(`${more} more entries cover this host's control plane`)
  return out
}
