// A small answer cache for forwarded queries so a container that retries every second does not cost
// an upstream round trip each time. Honours TTLs (the minimum of the records), caches negative
// answers per RFC 2308 (SOA TTL capped by its MINIMUM), bounded LRU. Stores upstream bytes as-is and
// patches ID, question case and decremented TTLs into a copy on the way out.
import { HEADER, RCODE, RecordWalker, SECTION, TC, TYPE, rcodeOf } from './wire.js'
import type { Query } from './wire.js'

export interface CacheOptions {
  maxEntries: number
  /** Upper bound on any cached lifetime, seconds (default 3600). */
  maxTtl?: number
  /** Clock in ms (tests). */
  now?: () => number
}

interface Item {
  buf: Buffer
  /** Offsets of every TTL field except OPT's (whose "TTL" is flags) and their stored values. */
  ttlOffs: readonly number[]
  ttls: readonly number[]
  stored: number
  expires: number
}

export interface DnsCache {
  /** A ready-to-send copy for this query (ID and question bytes from `query`), or undefined. */
  get(key: string, query: Buffer, q: Query): Buffer | undefined
  /** Offer an upstream answer; stored only when cacheable. Returns the lifetime used (0 = not stored). */
  set(key: string, resp: Buffer): number
  clear(): void
  readonly size: number
}

/** Seconds an answer may be cached, and where its TTL fields are (with their stored values). */
export interface Lifetime {
  ttl: number
  ttlOffs: readonly number[]
  ttls: readonly number[]
}

/** Everything that changes the upstream's answer: name, type, class, and the EDNS/DO/CD bits. */
export function cacheKey(q: Query): string {
  const bits = (q.edns ? 1 : 0) | (q.edns?.do ? 2 : 0) | (q.flags & 0x0010 ? 4 : 0)
  return `${q.qname}\u0000${q.qtype}\u0000${q.qclass}\u0000${bits}`
}

/**
 * How long an answer may be cached, seconds; 0 when it must not be: truncated, an rcode other than
 * NOERROR/NXDOMAIN, malformed, or negative without a SOA (RFC 2308 5: no SOA, no negative caching).
 */
export function cacheLifetime(resp: Buffer): Lifetime {
  if (resp.length < HEADER || resp.readUInt16BE(2) & TC) return NOT_CACHEABLE
  const rcode = rcodeOf(resp)
  if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) return NOT_CACHEABLE
  // Two walks, the second only for what will be stored: most forwarded answers are looked at here
  // and never cached (TTL 0, errors), and those should allocate nothing.
  const w = walker
  if (!w.reset(resp)) return NOT_CACHEABLE
  let min = Infinity
  let answers = 0
  let negative = Infinity
  while (w.next()) {
    if (w.type === TYPE.OPT) continue
    if (w.section === SECTION.answer) answers++
    if (w.section !== SECTION.additional) min = Math.min(min, w.ttl)
    if (w.section === SECTION.authority && w.type === TYPE.SOA && w.rdLen >= 22) {
      negative = Math.min(w.ttl, resp.readUInt32BE(w.rdOff + w.rdLen - 4))
    }
  }
  if (w.malformed) return NOT_CACHEABLE
  const ttl = rcode === RCODE.NXDOMAIN || answers === 0 ? negative : min
  if (!Number.isFinite(ttl) || ttl <= 0) return NOT_CACHEABLE
  const ttlOffs: number[] = []
  const ttls: number[] = []
  w.reset(resp)
  while (w.next()) {
    if (w.type === TYPE.OPT) continue
    ttlOffs.push(w.ttlOff)
    ttls.push(w.ttl)
  }
  return { ttl, ttlOffs, ttls }
}

const NOT_CACHEABLE: Lifetime = Object.freeze({ ttl: 0, ttlOffs: Object.freeze([]), ttls: Object.freeze([]) })
/** Shared: cacheLifetime is synchronous and not re-entrant. */
const walker = new RecordWalker()

export function createCache(opts: CacheOptions): DnsCache {
  const max = Math.max(1, opts.maxEntries)
  const maxTtl = opts.maxTtl ?? 3600
  const now = opts.now ?? Date.now
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the LRU one.
  const map = new Map<string, Item>()
  return {
    get(key, query, q) {
      const it = map.get(key)
      if (!it) return undefined
      const t = now()
      if (t >= it.expires) {
        map.delete(key)
        return undefined
      }
      map.delete(key)
      map.set(key, it)
      const out = Buffer.from(it.buf)
      out.writeUInt16BE(q.id, 0)
      // Echo the client's question bytes (its 0x20 case) when the stored one has the same length.
      if (it.buf.length >= q.qEnd && it.buf.readUInt16BE(4) === 1) query.copy(out, HEADER, HEADER, q.qEnd)
      const age = Math.floor((t - it.stored) / 1000)
      if (age > 0) for (let i = 0; i < it.ttlOffs.length; i++) out.writeUInt32BE(Math.max(0, it.ttls[i]! - age), it.ttlOffs[i]!)
      return out
    },
    set(key, resp) {
      const life = cacheLifetime(resp)
      const ttl = Math.min(life.ttl, maxTtl)
      if (ttl <= 0) return 0
      const t = now()
      map.delete(key)
      map.set(key, { buf: Buffer.from(resp), ttlOffs: life.ttlOffs, ttls: life.ttls, stored: t, expires: t + ttl * 1000 })
      while (map.size > max) map.delete(map.keys().next().value as string)
      return ttl
    },
    clear() {
      map.clear()
    },
    get size() {
      return map.size
    },
  }
}
