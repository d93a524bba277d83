// Turns entries from every source (files, API) into one Policy: expired entries out, duplicates
// merged, a stable order and a content hash, so every host can tell "same policy" from one string.
import { createHash } from 'node:crypto'
import type { Entry, Policy } from './types.js'
import { isExpired } from './expiry.js'

/** Identity of an entry for de-duplication and diffs: what it matches and what it does. */
export function entryKey(e: Pick<Entry, 'kind' | 'value' | 'subdomainsOnly' | 'allow' | 'mode'>): string {
  return `${e.kind} ${e.allow ? '@@' : ''}${e.subdomainsOnly ? '*.' : ''}${e.value} ${e.mode}`
}

/**
 * cyrb53 (a public-domain 53-bit string hash): file entries need a short id that is the same on every
 * host and every run. It is not a security boundary; at a million entries a collision is ~1e-4 likely,
 * and ids are only used to name entries to people (`block rm ID`).
 */
function hash53(s: string): number {
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 2654435761)
    h2 = Math.imul(h2 ^ c, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return 4294967296 * (2097151 & h2) + (h1 >>> 0)
}

/** Stable id derived from the entry's identity (`f` + 11 base-36 digits; API ids come from the store). */
export function entryId(e: Pick<Entry, 'kind' | 'value' | 'subdomainsOnly' | 'allow' | 'mode'>): string {
  return 'f' + hash53(entryKey(e)).toString(36).padStart(11, '0')
}

/** Sort order of a policy: kind, then value, then the flags (code-unit order, locale independent). */
function sortKey(e: Entry): string {
  return `${e.kind === 'domain' ? 0 : 1}${e.value}\u0000${e.subdomainsOnly ? 1 : 0}${e.allow ? 1 : 0}${e.mode === 'alert' ? 1 : 0}`
}

/** The later of two expiries, where "no expiry" is latest of all: a twice-listed entry applies while either does. */
function laterExpiry(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined || b === undefined) return undefined
  return Date.parse(a) >= Date.parse(b) ? a : b
}

function mergeReasons(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined || a === b) return b ?? a
  if (b === undefined) return a
  // Sorted so the merged text (and so the etag) does not depend on the order of the sources.
  const parts = new Set([...a.split('; '), ...b.split('; ')])
  return [...parts].sort().join('; ')
}

/**
 * Drop expired entries, merge duplicates (same entryKey: the first source, id and actor win; reasons
 * are kept, the latest expiry wins, `force` if any had it), sort, hash. Input entries are not mutated;
 * entries without duplicates are shared with the input, not copied.
 *
 * The etag covers what enforcement and reporting depend on (identity, expiry, force, reason) but not
 * `source`, `id`, `added` or `actor`: moving a line or re-ordering files does not make a new policy.
 */
export function buildPolicy(entries: readonly Entry[], opts: { version?: number; now?: Date } = {}): Policy {
  const now = opts.now ?? new Date()
  const byKey = new Map<string, Entry>()
  for (const e of entries) {
    if (e.expires !== undefined && isExpired(e, now)) continue
    const k = entryKey(e)
    const prev = byKey.get(k)
    if (prev === undefined) {
      byKey.set(k, e)
      continue
    }
    const merged: Entry = { ...prev }
    const reason = mergeReasons(prev.reason, e.reason)
    if (reason === undefined) delete merged.reason
    else merged.reason = reason
    const expires = laterExpiry(prev.expires, e.expires)
    if (expires === undefined) delete merged.expires
    else merged.expires = expires
    if (prev.force || e.force) merged.force = true
    byKey.set(k, merged)
  }
  const keyed = Array.from(byKey.values(), (e) => ({ k: sortKey(e), e }))
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
  const sorted = keyed.map((x) => x.e)
  const etag = hashEntries(sorted)
  return {
    version: opts.version ?? parseInt(etag.slice(0, 12), 16),
    etag,
    entries: sorted,
    generatedAt: now.toISOString(),
  }
}

/** sha256 over one canonical line per entry; fed in ~1 MiB pieces to keep update() calls few. */
function hashEntries(sorted: readonly Entry[]): string {
  const h = createHash('sha256')
  let buf = ''
  for (const e of sorted) {
    buf += `${entryKey(e)}\t${e.expires ?? ''}\t${e.force ? 'force' : ''}\t${e.reason ?? ''}\n`
    if (buf.length > 1 << 20) {
      h.update(buf)
      buf = ''
    }
  }
  h.update(buf)
  return h.digest('hex')
}
