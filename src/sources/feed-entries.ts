// A feed's values into entries (`source: feed:NAME`), validated like blocklist lines and then
// stricter: a feed never blocks a reserved range, a private range, a public resolver or a protected
// address (loopback, the upstreams, the server: `protect`), and never a network broader than /8
// (v4) or /32 (v6), since `force` cannot be given per line of someone else's list.
import type { Entry } from '../policy/types.js'
import { entryFromFields } from '../policy/parse.js'
import { PRIVATE, PUBLIC_RESOLVERS, cidrOverlaps, parseCidr } from '../policy/net.js'
import { HOSTS_LOCAL_NAMES } from '../policy/names.js'

export interface FeedEntries {
  entries: Entry[]
  /** Values refused as entries, with why (the first few are kept for the report). */
  refused: number
  refusedExamples: string[]
}

export function feedEntries(name: string, values: readonly string[], mode: 'block' | 'alert', protect: readonly string[] = []): FeedEntries {
  const guard = [...PRIVATE, ...[...PUBLIC_RESOLVERS, ...protect].map((p) => parseCidr(p)).flatMap((r) => (r.ok ? [r.cidr] : []))]
  const out: FeedEntries = { entries: [], refused: 0, refusedExamples: [] }
  const seen = new Set<string>()
  const refuse = (why: string): void => {
    out.refused++
    if (out.refusedExamples.length < 20) out.refusedExamples.push(why)
  }
  for (const v of values) {
    if (HOSTS_LOCAL_NAMES.has(v.toLowerCase())) continue
    if (v.startsWith('@@')) {
      refuse(`${v}: a feed cannot allow`)
      continue
    }
    const r = entryFromFields({ value: v, mode }, `feed:${name}`)
    if (!r.entry) {
      refuse(`${v}: ${r.problems[0]?.message ?? 'invalid'}`)
      continue
    }
    const e = r.entry
    if (e.kind === 'net') {
      const c = parseCidr(e.value)
      const hit = c.ok ? guard.find((g) => cidrOverlaps(g, c.cidr)) : undefined
      if (hit) {
        refuse(`${e.value}: covers a protected address; a feed never blocks it`)
        continue
      }
    }
    const k = `${e.kind} ${e.value} ${e.subdomainsOnly ? 1 : 0}`
    if (seen.has(k)) continue
    seen.add(k)
    out.entries.push(e)
  }
  return out
}
