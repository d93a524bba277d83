// The DNS side of a profile: may a container held to this profile look this name up, and which line
// allowed it (its ports limit what the learned addresses may be reached on). Pure. Compiled once per
// profile into the policy matcher's tables (src/policy/matcher.ts), so `name`, `*.name`, case, a
// trailing dot and punycode mean exactly what they mean in a blocklist, and a lookup costs the same.
import type { Entry } from '../policy/types.js'
import { buildMatcher, type CompactMatcher } from '../policy/matcher.js'
import type { Profile, ProfileRule } from './types.js'

/**
 * Whether the profile allows a destination. The profile's mode is the caller's to apply (learn and
 * alert block nothing), and so is the fleet policy: a fleet-wide block wins over an `allow` here.
 */
export type ProfileDecision = { action: 'allow'; rule: ProfileRule } | { action: 'deny'; rule?: undefined }

export interface CompiledProfile {
  readonly profile: Profile
  /** A query name (any case, trailing dot or not, Unicode or punycode). The most specific line wins. */
  decideName(name: string): ProfileDecision
  /** An address (IPv4, IPv6, IPv4-mapped IPv6) against the profile's address and network lines. */
  decideIp(ip: string): ProfileDecision
}

const DENY: ProfileDecision = Object.freeze({ action: 'deny' })

/**
 * Every rule becomes a matcher entry whose id is its index (`p<i>`): an id that is not the derived one
 * keeps each entry in the matcher's table, whose verdicts are built once and shared, so a decision
 * allocates nothing. Rules are distinct destinations (the parser merges duplicates), so each key has
 * one entry and "most specific" is the only tie-break that matters.
 */
export function compileProfile(profile: Profile): CompiledProfile {
  const entries: Entry[] = profile.rules.map((r, i) => {
    const e: Entry = { kind: r.kind, value: r.value, allow: false, mode: 'block', source: r.source, id: `p${i}` }
    if (r.subdomainsOnly) e.subdomainsOnly = true
    if (r.force) e.force = true
    return e
  })
  const m: CompactMatcher = buildMatcher(entries)
  const decisions: ProfileDecision[] = profile.rules.map((rule) => Object.freeze({ action: 'allow' as const, rule }))
  const decide = (v: ReturnType<CompactMatcher['matchName']>): ProfileDecision => {
    if (v === undefined) return DENY
    const id = v.entry.id
    const d = id !== undefined ? decisions[Number(id.slice(1))] : undefined
    // Unreachable: every entry was given its index above. Deny rather than guess.
    return d ?? DENY
  }
  return {
    profile,
    decideName: (name) => decide(m.matchName(name)),
    decideIp: (ip) => decide(m.matchIp(ip)),
  }
}

/** Every profile of a policy, compiled, by name (what a container's `egress-guard.profile` label looks up). */
export function compileProfiles(profiles: readonly Profile[] | undefined): Map<string, CompiledProfile> {
  return new Map((profiles ?? []).map((p) => [p.name, compileProfile(p)]))
}
