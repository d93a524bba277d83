// Structural validation of a policy that came from outside the process (the server, the cache file):
// the agent never applies a policy it cannot parse and check entry by entry.
import type { Entry, Policy } from '../policy/types.js'
import { parseCidr, reservedOverlap } from '../policy/net.js'
import { normalizeName } from '../policy/names.js'
import { cleanProfiles, profilesProblems } from '../profiles/check.js'
import { cleanQuarantines, quarantinesProblems } from '../quarantine/check.js'

/** The policy core's own name rules (normalizeName), so the agent and the server agree on what a name is. */
function checkName(v: string): string | undefined {
  const r = normalizeName(v)
  if (!r.ok) return r.message
  if (r.name !== v || r.subdomainsOnly) return `not in normal form (expected ${JSON.stringify(r.name)})`
  return undefined
}

function checkNet(e: Entry): string | undefined {
  const r = parseCidr(e.value)
  if (!r.ok) return r.message
  if (r.canonical !== e.value) return `not canonical (expected ${r.canonical})`
  const reserved = reservedOverlap(r.cidr)
  if (reserved) return `covers ${reserved}`
  const broad = r.cidr.family === 4 ? r.cidr.prefix < 8 : r.cidr.prefix < 32
  if (broad && !e.force) return 'broader than /8 (IPv4) or /32 (IPv6) without force'
  return undefined
}

/** One entry: undefined when valid, else why not. */
export function entryProblem(x: unknown): string | undefined {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'not an object'
  const e = x as Entry
  if (e.kind !== 'domain' && e.kind !== 'net') return 'kind must be domain or net'
  if (typeof e.value !== 'string') return 'value must be a string'
  // Booleans must be booleans: `force: "no"` is truthy and would let a /4 through.
  if (typeof e.allow !== 'boolean') return 'allow must be a boolean'
  for (const k of ['subdomainsOnly', 'force'] as const) {
    if (e[k] !== undefined && typeof e[k] !== 'boolean') return `${k} must be a boolean`
  }
  if (e.mode !== 'block' && e.mode !== 'alert') return 'mode must be block or alert'
  if (typeof e.source !== 'string') return 'source must be a string'
  for (const k of ['reason', 'expires', 'id', 'added', 'actor'] as const) {
    if (e[k] !== undefined && typeof e[k] !== 'string') return `${k} must be a string`
  }
  if (e.expires !== undefined && Number.isNaN(Date.parse(e.expires))) return 'expires is not a date'
  return e.kind === 'domain' ? checkName(e.value) : checkNet(e)
}

/**
 * A whole policy: returns the list of problems (empty when it may be applied). One bad entry
 * rejects the whole policy: the agent keeps enforcing its last good one rather than guess.
 */
export function policyProblems(x: unknown): string[] {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return ['policy is not an object']
  const p = x as Policy
  const out: string[] = []
  if (typeof p.version !== 'number' || !Number.isInteger(p.version) || p.version < 0) out.push('version must be a whole number')
  if (typeof p.etag !== 'string' || p.etag.length === 0) out.push('etag must be a non-empty string')
  if (typeof p.generatedAt !== 'string') out.push('generatedAt must be a string')
  if (!Array.isArray(p.entries)) return [...out, 'entries must be a list']
  p.entries.forEach((e, i) => {
    const why = entryProblem(e)
    if (why) out.push(`entries[${i}] ${JSON.stringify(String((e as Entry)?.value ?? '').slice(0, 80))}: ${why}`)
  })
  // A bad profile rejects the policy as a bad entry does: enforcing half a profile could cut off a service.
  for (const why of profilesProblems(p.profiles)) out.push(why)
  // A quarantine it cannot read rejects it too: dropping it would let a cut-off container out again.
  for (const why of quarantinesProblems(p.quarantines)) out.push(why)
  return out
}

/** Only the documented fields, so nothing unexpected from the wire travels further. */
export function cleanPolicy(p: Policy): Policy {
  const out: Policy = { version: p.version, etag: p.etag, generatedAt: p.generatedAt, entries: p.entries }
  // Only when there are some: a policy without profiles stays byte-identical (cache checksums, etags).
  if (p.profiles !== undefined && p.profiles.length > 0) out.profiles = cleanProfiles(p.profiles)
  if (p.quarantines !== undefined && p.quarantines.length > 0) out.quarantines = cleanQuarantines(p.quarantines)
  return out
}
