// Who may use the sinkhole: it must never be an open resolver (a reflection amplifier for anyone who
// can reach the bridge address). Clients are matched against configured networks, and `host` stands
// for this host's own addresses: Docker masquerades the host's own query to its bridge address
// (`-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`), so it arrives from the host's routable address.
import { errors } from '../errors.js'
import { cidrContains, parseCidr, parseIp, type Cidr, type Ip } from '../policy/net.js'

/** The keyword for this host's own addresses (all of them; the sinkhole re-reads them as they change). */
export const HOST_ADDRESSES = 'host'

/** Loopback, the range Docker carves its bridges from, and this host's own addresses. */
export const DEFAULT_ALLOW_CLIENTS: readonly string[] = ['127.0.0.0/8', '::1/128', '172.16.0.0/12', HOST_ADDRESSES]

export type Acl = (address: string) => boolean

/**
 * Compile the networks once; throws EG_CONFIG naming a bad one. `host` in `specs` admits each of
 * `hostAddresses` (the sinkhole builds a new Acl when they change). Results are memoised per address.
 */
export function createAcl(specs: readonly string[], hostAddresses: readonly string[] = []): Acl {
  const nets: Cidr[] = []
  for (const c of specs) {
    if (c.trim() === HOST_ADDRESSES) {
      for (const a of hostAddresses) {
        const ip = parseIp(a)
        if (ip) nets.push({ ...ip, prefix: ip.family === 4 ? 32 : 128 })
      }
      continue
    }
    const r = parseCidr(c.trim())
    if (!r.ok) throw errors.config(`allowed client network ${JSON.stringify(c)}: ${r.message} (or ${HOST_ADDRESSES}: this host's own addresses)`)
    nets.push(r.cidr)
  }
  const memo = new Map<string, boolean>()
  return (address) => {
    let ok = memo.get(address)
    if (ok !== undefined) return ok
    ok = false
    const ip = toIp(address)
    if (ip) for (const n of nets) if (cidrContains(n, ip)) { ok = true; break }
    if (memo.size > 65536) memo.clear() // bounded: a spoofed flood must not grow it forever
    memo.set(address, ok)
    return ok
  }
}

/** True when the client networks name this host's own addresses (they must then be read and followed). */
export function admitsHostAddresses(specs: readonly string[]): boolean {
  return specs.some((c) => c.trim() === HOST_ADDRESSES)
}

/**
 * Client address as the socket reports it; IPv4-mapped IPv6 (dual-stack `::` sockets) becomes IPv4, and
 * a link-local address's zone (`fe80::1%eth0`) is dropped: the kernel lists the address without it.
 */
function toIp(address: string): Ip | undefined {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  const pct = address.indexOf('%')
  return parseIp(m ? m[1]! : pct > 0 ? address.slice(0, pct) : address)
}
