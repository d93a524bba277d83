// Pure: turns a policy plus what its domains resolved to into the kernel's desired sets, and picks
// the names the hosts block and the resolver need. No I/O, so every rule here is unit-tested.
import type { Entry, Policy } from '../policy/types.js'
import type { DesiredState, FamilySets } from './types.js'
import { formatCidr, maskBytes, parseCidr, protectedReason, type Cidr } from '../policy/net.js'
import { isExpired } from '../policy/expiry.js'

export interface DesiredOptions {
  /** Extra addresses/CIDRs never blocked because a *domain* resolved to them (upstreams, the server). */
  protect: string[]
  /**
   * The control-plane endpoints (control-plane.ts `exempt`): copied into the state so the backends
   * keep them reachable ahead of every policy set.
   */
  exempt?: FamilySets
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

/**
 * Is `name` allowed? `@@x` covers x and the names under it; `@@*.x` only the names under it. Walks the
 * name's suffixes (one map lookup per label) rather than scanning every allow entry per name.
 */
function allowedBy(allows: Map<string, boolean>, name: string): boolean {
  // allows: value -> true when some allow entry for it covers the name itself (not `*.` only).
  if (allows.get(name) === true) return true
  for (let i = name.indexOf('.'); i >= 0; i = name.indexOf('.', i + 1)) {
    if (allows.has(name.slice(i + 1))) return true
  }
  return false
}

/**
 * Names for the hosts block: block-mode domain entries only. Alert entries must keep working, allow
 * entries win, and `*.name` entries are left out because a hosts file maps exact names only (it has
 * no wildcard syntax); the DNS sinkhole enforces those.
 */
export function hostsFileNames(policy: Policy, now = Date.now()): string[] {
  const entries = live(policy, now)
  const allows = new Map<string, boolean>()
  for (const e of entries) if (e.kind === 'domain' && e.allow) allows.set(e.value, allows.get(e.value) === true || !e.subdomainsOnly)
  const out = new Set<string>()
  for (const e of entries) {
    if (e.kind !== 'domain' || e.allow || e.mode !== 'block' || e.subdomainsOnly) continue
    if (allowedBy(allows, e.value)) continue
    out.add(e.value)
  }
  return [...out].sort()
}

interface Member {
  cidr: Cidr
  canonical: string
  /** Address bytes as hex, then the prefix length: sorting by it is numeric order. */
  key: string
}

function member(cidr: Cidr): Member {
  return { cidr, canonical: formatCidr(cidr), key: Buffer.from(cidr.bytes).toString('hex') + String(cidr.prefix).padStart(3, '0') }
}

const byKey = (a: Member, b: Member): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

/**
 * "Is this contained in a member?" in one hash lookup per distinct prefix length (at most 33 for
 * IPv4, 129 for IPv6), not one comparison per member: policies hold 100,000 networks.
 */
class CoverIndex {
  private nets = new Set<string>()
  private lens = { 4: [] as number[], 6: [] as number[] }
  constructor(members: readonly Member[]) {
    for (const m of members) {
      this.nets.add(m.canonical)
      const l = this.lens[m.cidr.family]
      if (!l.includes(m.cidr.prefix)) l.push(m.cidr.prefix)
    }
    this.lens[4].sort((a, b) => a - b)
    this.lens[6].sort((a, b) => a - b)
  }
  /** Strictly broader members only when `strict` (used to collapse a set against itself). */
  covers(c: Cidr, strict = false): boolean {
    for (const len of this.lens[c.family]) {
      if (len > c.prefix || (strict && len === c.prefix)) break
      if (this.nets.has(formatCidr({ family: c.family, bytes: maskBytes(c.bytes, len), prefix: len }))) return true
    }
    return false
  }
}

/**
 * Sorted, without members that a broader member of the same set already covers: nft interval sets
 * reject overlapping elements, and ipset would only spend memory on them.
 */
function collapse(list: Member[]): Member[] {
  const uniq = new Map(list.map((m) => [m.canonical, m]))
  const idx = new CoverIndex([...uniq.values()])
  return [...uniq.values()].filter((m) => !idx.covers(m.cidr, true)).sort(byKey)
}

/** Merge two lists sorted by key (disjoint by construction). */
function mergeSorted(a: readonly Member[], b: readonly Member[]): string[] {
  const out: string[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]!.key <= b[j]!.key)) out.push(a[i++]!.canonical)
    else out.push(b[j++]!.canonical)
  }
  return out
}

type Fam = 'v4' | 'v6'
const famOf = (c: Cidr): Fam => (c.family === 4 ? 'v4' : 'v6')

/** The explicit-network half of the desired state: depends only on the policy's live entries. */
interface Compiled {
  liveCount: number
  block: Record<Fam, Member[]>
  alert: Record<Fam, Member[]>
  allow: Record<Fam, Member[]>
  /** Explicit block and alert networks: a resolved address inside one is already enforced. */
  cover: CoverIndex
  warnings: string[]
}

/**
 * Parsing and collapsing 100,000 networks costs about a second; the controller recomputes the
 * desired state whenever a DNS answer changes, so the network half is kept per policy object (and
 * per number of live entries: expiry only ever removes entries, so the count identifies the subset).
 */
const compiledCache = new WeakMap<Policy, Compiled>()

function compile(policy: Policy, entries: readonly Entry[]): Compiled {
  const cached = compiledCache.get(policy)
  if (cached && cached.liveCount === entries.length) return cached
  const lists = { block: { v4: [], v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] } } as Record<'block' | 'alert' | 'allow', Record<Fam, Member[]>>
  const warnings: string[] = []
  for (const e of entries) {
    if (e.kind !== 'net') continue
    const r = parseCidr(e.value)
    if (!r.ok) {
      warnings.push(`${e.source}: ${e.value}: ${r.message} (not applied)`)
      continue
    }
    lists[e.allow ? 'allow' : e.mode === 'alert' ? 'alert' : 'block'][famOf(r.cidr)].push(member(r.cidr))
  }
  const out: Compiled = { liveCount: entries.length, block: { v4: [], v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] }, cover: new CoverIndex([]), warnings }
  for (const fam of ['v4', 'v6'] as const) {
    out.block[fam] = collapse(lists.block[fam])
    out.allow[fam] = collapse(lists.allow[fam])
    // Block wins over alert: an alert network inside a block network adds nothing.
    const blockIdx = new CoverIndex(out.block[fam])
    out.alert[fam] = collapse(lists.alert[fam]).filter((m) => !blockIdx.covers(m.cidr))
  }
  out.cover = new CoverIndex([...out.block.v4, ...out.block.v6, ...out.alert.v4, ...out.alert.v6])
  compiledCache.set(policy, out)
  return out
}

/** A resolved address kept out of the kernel, for structured logs (`domain`, `ip`). */
export interface SkippedAddress {
  domain: string
  ip: string
  reason: string
}

/**
 * protectedReason() parses every protected CIDR on each call; the controller asks about the same
 * addresses on every recompute, so answers are remembered per protect list (bounded: cleared when big).
 */
const protectedMemo = new WeakMap<readonly string[], Map<string, string | undefined>>()
function protectedCached(canonical: string, ip: string, protect: readonly string[]): string | undefined {
  let m = protectedMemo.get(protect)
  if (!m) protectedMemo.set(protect, (m = new Map()))
  if (m.has(canonical)) return m.get(canonical)
  if (m.size > 200_000) m.clear()
  const why = protectedReason(ip, protect)
  m.set(canonical, why)
  return why
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
 * - Expired entries are ignored. Members covered by a broader member of the same set are dropped.
 */
export function desiredState(policy: Policy, resolved: (domain: string) => string[], opts: DesiredOptions): { state: DesiredState; warnings: string[]; skipped: SkippedAddress[] } {
  const now = opts.now ?? Date.now()
  const entries = live(policy, now)
  const c = compile(policy, entries)
  const warnings = [...c.warnings]
  const skipped: SkippedAddress[] = []

  // Addresses of allowed names: kept out of the block/alert sets.
  const allowedAddr = new Map<string, string>()
  for (const e of entries) {
    if (e.kind !== 'domain' || !e.allow || e.subdomainsOnly) continue
    for (const ip of resolved(e.value)) {
      const r = parseCidr(ip)
      if (r.ok && !allowedAddr.has(r.canonical)) allowedAddr.set(r.canonical, e.value)
    }
  }

  const hosts = { block: new Map<string, Member>(), alert: new Map<string, Member>() }
  // Block-mode domains first, so that a name both blocked and alerted lands in the block set.
  const domains = entries.filter((e) => e.kind === 'domain' && !e.allow && !e.subdomainsOnly)
  domains.sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'block' ? -1 : 1))
  for (const e of domains) {
    const target = e.mode === 'alert' ? hosts.alert : hosts.block
    for (const ip of resolved(e.value)) {
      const r = ip.includes('/') ? undefined : parseCidr(ip)
      if (!r || !r.ok) {
        warnings.push(`${e.value}: resolved to ${JSON.stringify(ip)}, not an IP address (ignored)`)
        continue
      }
      if (target.has(r.canonical) || hosts.block.has(r.canonical)) continue
      if (c.cover.covers(r.cidr)) continue // an explicit net entry already covers it, protected or not
      const why = protectedCached(r.canonical, ip, opts.protect)
      if (why) {
        warnings.push(`${e.value} resolved to ${ip}, not blocked: ${why}`)
        skipped.push({ domain: e.value, ip, reason: why })
        continue
      }
      const shared = allowedAddr.get(r.canonical)
      if (shared) {
        warnings.push(`${e.value} resolved to ${ip}, not blocked: allowed name ${shared} resolves to it too`)
        skipped.push({ domain: e.value, ip, reason: `allowed name ${shared} resolves to it too` })
        continue
      }
      target.set(r.canonical, member(r.cidr))
    }
  }

  const fam = (m: Map<string, Member>, f: Fam): Member[] => [...m.values()].filter((x) => famOf(x.cidr) === f).sort(byKey)
  const state: DesiredState = {
    block: { v4: mergeSorted(c.block.v4, fam(hosts.block, 'v4')), v6: mergeSorted(c.block.v6, fam(hosts.block, 'v6')) },
    alert: { v4: mergeSorted(c.alert.v4, fam(hosts.alert, 'v4')), v6: mergeSorted(c.alert.v6, fam(hosts.alert, 'v6')) },
    allow: { v4: c.allow.v4.map((m) => m.canonical), v6: c.allow.v6.map((m) => m.canonical) },
    ...(opts.exempt ? { exempt: { v4: [...opts.exempt.v4], v6: [...opts.exempt.v6] } } : {}),
    version: policy.version,
  }
  return { state, warnings, skipped }
}
