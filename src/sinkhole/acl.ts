// Who may use the sinkhole: it must never be an open resolver (a reflection amplifier for anyone who
// can reach the bridge address). Clients are matched against configured networks.
import { errors } from '../errors.js'
import { cidrContains, parseCidr, parseIp, type Cidr, type Ip } from '../policy/net.js'

/** Loopback and the range Docker carves its bridges from. */
export const DEFAULT_ALLOW_CLIENTS: readonly string[] = ['127.0.0.0/8', '::1/128', '172.16.0.0/12']

export type Acl = (address: string) => boolean

/** Compile CIDRs once; throws EG_CONFIG naming the bad one. Results are memoised per address. */
export function createAcl(cidrs: readonly string[]): Acl {
  const nets: Cidr[] = cidrs.map((c) => {
    const r = parseCidr(c.trim())
    if (!r.ok) throw errors.config(`allowed client network ${JSON.stringify(c)}: ${r.message}`)
    return r.cidr
  })
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

/** Client address as the socket reports it; IPv4-mapped IPv6 (dual-stack `::` sockets) becomes IPv4. */
function toIp(address: string): Ip | undefined {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return parseIp(m ? m[1]! : address)
}
