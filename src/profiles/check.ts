// Structural validation of profiles that came from outside the process (the server, the agent's
// cache): every field, every rule in normal form, as the parser would have made it. The agent
// applies no policy whose profiles fail this (src/agent/policy-check.ts).
import { normalizeName } from '../policy/names.js'
import { parseCidr, reservedOverlap } from '../policy/net.js'
import { MAX_PORTS, isProfileName } from './parse.js'
import { PROFILE_MODES, type Profile, type ProfileRule } from './types.js'

function ruleProblem(x: unknown): string | undefined {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'not an object'
  const r = x as ProfileRule
  if (r.kind !== 'domain' && r.kind !== 'net') return 'kind must be domain or net'
  if (typeof r.value !== 'string') return 'value must be a string'
  if (typeof r.source !== 'string') return 'source must be a string'
  if (r.reason !== undefined && typeof r.reason !== 'string') return 'reason must be a string'
  if (r.subdomainsOnly !== undefined && typeof r.subdomainsOnly !== 'boolean') return 'subdomainsOnly must be a boolean'
  if (r.force !== undefined && typeof r.force !== 'boolean') return 'force must be a boolean'
  if (r.ports !== undefined) {
    if (!Array.isArray(r.ports) || r.ports.length === 0 || r.ports.length > MAX_PORTS) return `ports must be a list of 1..${MAX_PORTS} ports`
    for (let i = 0; i < r.ports.length; i++) {
      const p = r.ports[i]
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) return 'ports must be whole numbers 1..65535'
      if (i > 0 && p <= r.ports[i - 1]!) return 'ports must be sorted and unique'
    }
  }
  if (r.kind === 'domain') {
    const n = normalizeName(r.value)
    if (!n.ok) return n.message
    if (n.name !== r.value || n.subdomainsOnly) return `not in normal form (expected ${JSON.stringify(n.name)})`
    return undefined
  }
  if (r.subdomainsOnly) return 'subdomainsOnly on a network'
  const c = parseCidr(r.value)
  if (!c.ok) return c.message
  if (c.canonical !== r.value) return `not canonical (expected ${c.canonical})`
  if (c.cidr.prefix === 0) return 'covers every address'
  const reserved = reservedOverlap(c.cidr)
  if (reserved) return `covers ${reserved}`
  const broad = c.cidr.family === 4 ? c.cidr.prefix < 8 : c.cidr.prefix < 32
  if (broad && !r.force) return 'broader than /8 (IPv4) or /32 (IPv6) without force'
  return undefined
}

/** A list of profiles: the problems found (empty when it may be applied). */
export function profilesProblems(x: unknown): string[] {
  if (x === undefined) return []
  if (!Array.isArray(x)) return ['profiles must be a list']
  const out: string[] = []
  const names = new Set<string>()
  x.forEach((p: unknown, i) => {
    const at = `profiles[${i}]`
    if (p === null || typeof p !== 'object' || Array.isArray(p)) return void out.push(`${at}: not an object`)
    const o = p as Profile
    if (typeof o.name !== 'string' || !isProfileName(o.name)) return void out.push(`${at}: name must match [a-z0-9][a-z0-9_-]* (at most 63 characters)`)
    const label = `${at} ${JSON.stringify(o.name)}`
    if (names.has(o.name)) out.push(`${label}: name given twice`)
    names.add(o.name)
    if (!(PROFILE_MODES as readonly unknown[]).includes(o.mode)) out.push(`${label}: mode must be learn, alert or enforce`)
    if (typeof o.source !== 'string') out.push(`${label}: source must be a string`)
    if (o.modeSource !== undefined && typeof o.modeSource !== 'string') out.push(`${label}: modeSource must be a string`)
    if (!Array.isArray(o.rules)) return void out.push(`${label}: rules must be a list`)
    o.rules.forEach((r, j) => {
      const why = ruleProblem(r)
      if (why) out.push(`${label} rules[${j}] ${JSON.stringify(String((r as ProfileRule)?.value ?? '').slice(0, 80))}: ${why}`)
    })
  })
  return out
}

/** Only the documented fields, so nothing unexpected from the wire travels further. */
export function cleanProfiles(profiles: readonly Profile[]): Profile[] {
  return profiles.map((p) => {
    const out: Profile = {
      name: p.name,
      mode: p.mode,
      source: p.source,
      rules: p.rules.map((r) => {
        const c: ProfileRule = { kind: r.kind, value: r.value, source: r.source }
        if (r.subdomainsOnly) c.subdomainsOnly = true
        if (r.ports !== undefined) c.ports = [...r.ports]
        if (r.reason !== undefined) c.reason = r.reason
        if (r.force) c.force = true
        return c
      }),
    }
    if (p.modeSource !== undefined) out.modeSource = p.modeSource
    return out
  })
}
