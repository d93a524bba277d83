// Pure: turns a policy plus what its domains resolved to into the kernel's desired sets, and picks
// the names the hosts block and the resolver need. No I/O, so every rule here is unit-tested.
import type { Entry, Policy } from '../policy/types.js'
import type { DesiredState, FamilySets } from './types.js'
import { cidrContains, parseCidr, protectedReason, type Cidr } from '../policy/net.js'
import { isExpired } from '../policy/expiry.js'

export interface DesiredOptions {
  /** Extra addresses/CIDRs never blocked because a *domain* resolved to them (upstreams, the server). */
  protect: string[]
  /** Epoch ms used to drop expired entries (default Date.now()). */
  now?: number
}

function live(policy: Policy, now: number): Entry[] {
  const at = new Date(now)
  return policy.entries.filter((e) => !isExpired(e, at))
}

/**
 * Domains whose addresses the controller resolves: blocked and alert names (their addresses go in the
 * kernel) and allowed names (their addresses are kept OUT of the block sets, see desiredState).
 * `*.name` entries are skipped: the names under a domain cannot be enumerated; the sinkhole covers them.
 */
export function domainsToResolve(policy: Policy, now = Date.now()): string[] {
  const out = new Set<string>()
  for (const e of live(policy, now)) if (e.kind === 'domain' && !e.subdomainsOnly) out.add(e.value)
  return [...out].sort()
}

/** Does allow entry `a` cover `name`? (`@@x` covers x and names under it; `@@*.x` only names under it.) */
function allowCovers(a: Entry, name: string): boolean {
  if (name.endsWith('.' + a.value)) return true
  return !a.subdomainsOnly && name === a.value
}

/**
 * Names for the hosts block: block-mode domain entries only. Alert entries must keep working, allow
 * entries win, and `*.name` entries are left out because a hosts file maps exact names only (it has
 * no wildcard syntax); the DNS sinkhole enforces those.
 */
export function hostsFileNames(policy: Policy, now = Date.now()): string[] {
  const entries = live(policy, now)
  const allows = entries.filter((e) => e.kind === 'domain' && e.allow)
  const out = new Set<string>()
  for (const e of entries) {
    if (e.kind !== 'domain' || e.allow || e.mode !== 'block' || e.subdomainsOnly) continue
    if (allows.some((a) => allowCovers(a, e.value))) continue
    out.add(e.value)
  }
  return [...out].sort()
}

/** Sets under construction: canonical CIDR strings per family. */
class Sets {
  v4 = new Set<string>()
  v6 = new Set<string>()
  add(cidr: string): void {
    ;(cidr.includes(':') ? this.v6 : this.v4).add(cidr)
  }
  has(cidr: string): boolean {
    return (cidr.includes(':') ? this.v6 : this.v4).has(cidr)
  }
  delete(cidr: string): void {
    ;(cidr.includes(':') ? this.v6 : this.v4).delete(cidr)
  }
  done(): FamilySets {
    return { v4: collapse([...this.v4]), v6: collapse([...this.v6]) }
  }
}

/**
 * Sorted, without members that a broader member of the same set already covers: nft interval sets
 * reject overlapping elements, and ipset would only spend memory on them. Cost: one lookup per
 * distinct prefix length present, per member.
 */
function collapse(list: string[]): string[] {
  const parsed: Array<{ cidr: Cidr; canonical: string; key: string }> = []
  for (const s of list) {
    const r = parseCidr(s)
    // Sort key: address bytes as hex, then the prefix length, so the order is numeric.
    if (r.ok) parsed.push({ cidr: r.cidr, canonical: r.canonical, key: Buffer.from(r.cidr.bytes).toString('hex') + String(r.cidr.prefix).padStart(3, '0') })
  }
  const byCanonical = new Set(parsed.map((p) => p.canonical))
  const prefixes = [...new Set(parsed.map((p) => p.cidr.prefix))].sort((a, b) => a - b)
  const out: typeof parsed = []
  for (const p of parsed) {
    let covered = false
    const addr = p.canonical.slice(0, p.canonical.indexOf('/'))
    for (const len of prefixes) {
      if (len >= p.cidr.prefix) break
      const r = parseCidr(`${addr}/${len}`)
      if (r.ok && byCanonical.has(r.canonical)) {
        covered = true
        break
      }
    }
    if (!covered) out.push(p)
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((p) => p.canonical)
}

function hostCidr(ip: string): string | undefined {
  const r = parseCidr(ip)
  return r.ok ? r.canonical : undefined
}

/**
 * What the kernel should hold.
 * - Explicit `net` entries: allow -> allow set; alert -> alert set; otherwise block set.
 * - Addresses that blocked/alert domains resolved to -> block/alert set as /32 or /128, EXCEPT
 *   (with a warning naming the domain, the address and why) when the address is protected
 *   (`protectedReason`: loopback, private ranges, public resolvers, `opts.protect`) and no explicit
 *   net entry lists it, or when an allowed domain resolved to the same address (a shared CDN or
 *   hosting address: blocking it would break the allowed name).
 * - Allowed domains' addresses are NOT put in the allow sets: a shared address would then open a
 *   hole for every blocked name behind it. Name-level allows are the DNS layer's job.
 * - Precedence allow > block > alert: an address in the block set is dropped from the alert set.
 * - Expired entries are ignored.
 */
export function desiredState(policy: Policy, resolved: (domain: string) => string[], opts: DesiredOptions): { state: DesiredState; warnings: string[] } {
  const now = opts.now ?? Date.now()
  const entries = live(policy, now)
  const block = new Sets()
  const alert = new Sets()
  const allow = new Sets()
  const warnings: string[] = []
  const explicit: Cidr[] = []

  for (const e of entries) {
    if (e.kind !== 'net') continue
    const r = parseCidr(e.value)
    if (!r.ok) {
      warnings.push(`${e.source}: ${e.value}: ${r.message} (not applied)`)
      continue
    }
    if (e.allow) allow.add(r.canonical)
    else {
      ;(e.mode === 'alert' ? alert : block).add(r.canonical)
      explicit.push(r.cidr)
    }
  }

  // Addresses of allowed names: kept out of the block/alert sets.
  const allowedAddr = new Map<string, string>()
  for (const e of entries) {
    if (e.kind !== 'domain' || !e.allow || e.subdomainsOnly) continue
    for (const ip of resolved(e.value)) {
      const c = hostCidr(ip)
      if (c && !allowedAddr.has(c)) allowedAddr.set(c, e.value)
    }
  }

  // Block-mode domains first, so that a name both blocked and alerted lands in the block set.
  const domains = entries.filter((e) => e.kind === 'domain' && !e.allow && !e.subdomainsOnly)
  domains.sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'block' ? -1 : 1))
  for (const e of domains) {
    const target = e.mode === 'alert' ? alert : block
    for (const ip of resolved(e.value)) {
      const c = hostCidr(ip)
      if (!c) {
        warnings.push(`${e.value}: resolved to ${JSON.stringify(ip)}, not an IP address (ignored)`)
        continue
      }
      const p = parseCidr(c)
      const listed = p.ok && explicit.some((x) => cidrContains(x, p.cidr))
      if (listed) continue // an explicit net entry already covers it, protected or not
      const why = protectedReason(ip, opts.protect)
      if (why) {
        warnings.push(`${e.value} resolved to ${ip}, not blocked: ${why}`)
        continue
      }
      const shared = allowedAddr.get(c)
      if (shared) {
        warnings.push(`${e.value} resolved to ${ip}, not blocked: allowed name ${shared} resolves to it too`)
        continue
      }
      target.add(c)
    }
  }

  for (const c of [...alert.v4, ...alert.v6]) if (block.has(c)) alert.delete(c)
  return { state: { block: block.done(), alert: alert.done(), allow: allow.done(), version: policy.version }, warnings }
}
