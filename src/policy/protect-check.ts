// Does a policy entry cut the fleet off its own infrastructure? The server refuses (API) or skips
// (blocklist files) a block-mode network that overlaps an address it knows must stay reachable (its
// own addresses, its resolvers, --protect) unless the entry says `force`. Agents stay safe either way
// (the kernel exempts their control plane), but one agent reaching the server is not the fleet
// reaching its DNS or a shared database, and the operator should hear it at the source. Pure.
import { cidrOverlaps, parseCidr, reservedOverlap, type Cidr } from './net.js'
import type { Entry } from './types.js'

export interface ProtectedNet {
  cidr: Cidr
  /** Canonical text, for messages. */
  text: string
  /** Why it is protected: `this server's address`, `resolver of this server`, `--protect`. */
  why: string
}

/**
 * Canonical protected networks. Values that are not addresses or CIDRs are dropped, and so are
 * loopback, link-local and the like: no entry may cover those anyway (parse.ts refuses them).
 */
export function protectedNets(list: ReadonlyArray<{ value: string; why: string }>): ProtectedNet[] {
  const out: ProtectedNet[] = []
  const seen = new Set<string>()
  for (const { value, why } of list) {
    const r = parseCidr(value)
    if (!r.ok || seen.has(r.canonical) || reservedOverlap(r.cidr)) continue
    seen.add(r.canonical)
    out.push({ cidr: r.cidr, text: r.canonical, why })
  }
  return out
}

/**
 * The first protected network a block-mode network entry overlaps (contains or lies inside).
 * Allow and alert entries never cut anything; names are left to the agents, which resolve them.
 */
export function coveredProtected(e: Entry, nets: readonly ProtectedNet[]): ProtectedNet | undefined {
  if (nets.length === 0 || e.kind !== 'net' || e.allow || e.mode !== 'block') return undefined
  const r = parseCidr(e.value)
  if (!r.ok) return undefined
  return nets.find((p) => cidrOverlaps(r.cidr, p.cidr))
}

export const COVERS_PROTECTED = 'covers-protected'

/** The message for an entry that covers `p`: refused without force, a warning with it. */
export function protectedMessage(e: Entry, p: ProtectedNet): string {
  return e.force
    ? `${e.value} covers ${p.text} (${p.why}); applied because of force (agents keep their own server, resolvers and sinkhole reachable)`
    : `${e.value} covers ${p.text} (${p.why}); add "force" if you really mean to block it`
}
