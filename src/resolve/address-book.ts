// Remembers what each blocked domain resolved to, re-resolves when the (clamped) TTL runs out, and
// keeps recently seen addresses for a grace period, so that rotating DNS answers never open a gap.
import { resolveName, type ResolveResult, type Upstream } from './dns-client.js'

export interface AddressBookOptions {
  upstreams: Upstream[]
  /** TTLs are clamped into [minTtlSec, maxTtlSec] before scheduling the next lookup. */
  minTtlSec: number
  maxTtlSec: number
  /** An address that drops out of the last `keepAnswers` answers is still kept this long. */
  graceSec: number
  /** Addresses of the last N answers are all kept (N >= 1). */
  keepAnswers: number
  /** Lookups in flight at once (default 64). */
  concurrency?: number
  /** Per-attempt DNS timeout (default 2000 ms). */
  timeoutMs?: number
  now?: () => number
  resolve?: typeof resolveName
}

export interface RefreshResult {
  /** True when addresses(d) differs, for any domain, from what the previous refresh reported. */
  changed: boolean
  errors: Array<{ domain: string; message: string }>
}

export interface AddressBook {
  /** Resolve new domains and those whose clamped TTL ran out; forget domains not listed. */
  refresh(domains: string[]): Promise<RefreshResult>
  /** Sorted addresses to block for `domain` right now (answers window + grace). */
  addresses(domain: string): string[]
  /** Epoch ms of the next moment refresh() has work: a TTL running out or a grace period ending. */
  nextRefreshAt(): number
  /** Domains known, for stats. */
  size(): number
}

interface Book {
  /** Addresses of the last `keepAnswers` answers, newest last. */
  answers: string[][]
  /** Address -> epoch ms when it left the answers window (kept until then + grace). */
  gone: Map<string, number>
  /** Epoch ms when the clamped TTL runs out. */
  expiresAt: number
}

/** After a failed lookup, try again this soon (seconds), but never sooner than minTtlSec. */
const RETRY_AFTER_FAILURE_SEC = 30

export function createAddressBook(opts: AddressBookOptions): AddressBook {
  const now = opts.now ?? Date.now
  const resolve = opts.resolve ?? resolveName
  const keep = Math.max(1, Math.floor(opts.keepAnswers))
  const concurrency = Math.max(1, opts.concurrency ?? 64)
  const graceMs = opts.graceSec * 1000
  const books = new Map<string, Book>()
  /** What the last refresh() reported per domain (joined address list), to compute `changed`. */
  const reported = new Map<string, string>()

  const clampTtl = (sec: number): number => Math.min(opts.maxTtlSec, Math.max(opts.minTtlSec, sec))

  function current(b: Book, at: number): string[] {
    const out = new Set<string>()
    for (const a of b.answers) for (const ip of a) out.add(ip)
    for (const [ip, leftAt] of b.gone) if (at < leftAt + graceMs) out.add(ip)
    return [...out].sort()
  }

  function record(b: Book, r: ResolveResult, at: number): void {
    const before = new Set(b.answers.flat())
    const ips = [...new Set(r.addrs.map((a) => a.ip))]
    // A family whose lookup failed is unknown, not empty: carry its addresses over from the last answer.
    const last = b.answers[b.answers.length - 1] ?? []
    for (const fam of r.failed ?? []) for (const ip of last) if (ip.includes(':') === (fam === 6) && !ips.includes(ip)) ips.push(ip)
    b.answers.push(ips)
    while (b.answers.length > keep) b.answers.shift()
    const after = new Set(b.answers.flat())
    for (const ip of before) if (!after.has(ip)) b.gone.set(ip, at)
    for (const ip of after) b.gone.delete(ip)
    for (const [ip, leftAt] of b.gone) if (at >= leftAt + graceMs) b.gone.delete(ip)
    // NXDOMAIN / NODATA carry no address TTL: wait the minimum (the name may come back soon).
    const ttl = r.addrs.length > 0 ? Math.min(...r.addrs.map((a) => a.ttl)) : opts.minTtlSec
    b.expiresAt = at + clampTtl(ttl) * 1000
  }

  async function lookup(domain: string, errs: RefreshResult['errors']): Promise<void> {
    let b = books.get(domain)
    try {
      const r = await resolve(domain, { upstreams: opts.upstreams, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) })
      // Only NOERROR and NXDOMAIN are answers about the name; SERVFAIL/REFUSED say nothing about it.
      if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') throw new Error(`upstream answered ${r.rcode}`)
      b = books.get(domain) ?? { answers: [], gone: new Map(), expiresAt: 0 }
      books.set(domain, b)
      record(b, r, now())
    } catch (e) {
      // A failed lookup never forgets addresses: keep what we had and try again soon.
      errs.push({ domain, message: (e as Error).message })
      if (!b) {
        b = { answers: [], gone: new Map(), expiresAt: 0 }
        books.set(domain, b)
      }
      b.expiresAt = now() + Math.max(opts.minTtlSec, Math.min(RETRY_AFTER_FAILURE_SEC, opts.maxTtlSec)) * 1000
    }
  }

  return {
    async refresh(domains) {
      const wanted = new Set(domains)
      let changed = false
      for (const d of [...books.keys()]) {
        if (wanted.has(d)) continue
        books.delete(d)
        if (reported.get(d)) changed = true
        reported.delete(d)
      }
      const at = now()
      const due = [...wanted].filter((d) => (books.get(d)?.expiresAt ?? 0) <= at)
      const errs: RefreshResult['errors'] = []
      // Bounded concurrency: a fixed number of workers pull from one queue.
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < due.length) await lookup(due[next++]!, errs)
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, due.length) }, worker))
      const after = now()
      for (const d of wanted) {
        const b = books.get(d)
        // Grace periods that ended are dropped here so nextRefreshAt() only names future work.
        if (b) for (const [ip, leftAt] of b.gone) if (after >= leftAt + graceMs) b.gone.delete(ip)
        const list = b ? current(b, after).join(',') : ''
        if ((reported.get(d) ?? '') !== list) changed = true
        reported.set(d, list)
      }
      return { changed, errors: errs }
    },
    addresses(domain) {
      const b = books.get(domain)
      return b ? current(b, now()) : []
    },
    nextRefreshAt() {
      let next = Infinity
      for (const b of books.values()) {
        next = Math.min(next, b.expiresAt)
        for (const leftAt of b.gone.values()) next = Math.min(next, leftAt + graceMs)
      }
      return next
    },
    size: () => books.size,
  }
}
