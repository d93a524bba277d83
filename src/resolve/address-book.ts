// Remembers what each blocked domain resolved to, re-resolves when the (clamped) TTL runs out, and
// keeps recently seen addresses for a grace period, so that rotating DNS answers never open a gap.
// Lookups run concurrently (bounded, shared by overlapping refreshes) and report each changed name as
// its answer lands, so one unanswered name never holds back the others. snapshot()/restore() let the
// agent persist what it knows, so a restart while the upstream is down keeps the addresses blocked.
import { isIP } from 'node:net'
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
  /** Lookups in flight at once, over all refreshes together (default 64). */
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

export interface RefreshOptions {
  /** Called as soon as one lookup changed addresses(domain) (before the other lookups finish). */
  onChange?: (domain: string) => void
}

/** What the book knows about one domain, in plain JSON (epoch ms times). */
export interface DomainRecord {
  /** Addresses of the last answers, newest last. */
  answers: string[][]
  /** [address, epoch ms when it left the answers window]: kept until then + grace. */
  gone: Array<[string, number]>
  /** Epoch ms when the clamped TTL runs out (the next lookup is due). */
  expiresAt: number
}

export interface AddressSnapshot {
  domains: Record<string, DomainRecord>
}

/** Where the agent keeps the snapshot between runs (src/agent/address-cache.ts). */
export interface AddressStore {
  readonly file: string
  /** undefined: no file yet. `problem`: unreadable or corrupt (moved to `aside` when it could be). */
  read(): Promise<{ snapshot: AddressSnapshot } | { problem: string; aside?: string } | undefined>
  /** Replace the stored snapshot atomically. */
  write(s: AddressSnapshot): Promise<void>
}

export interface AddressBook {
  /**
   * Resolve new domains and those whose clamped TTL ran out; forget domains not listed. Resolves when
   * every listed domain's lookup (this call's, or one already in flight) has finished.
   */
  refresh(domains: string[], opts?: RefreshOptions): Promise<RefreshResult>
  /** Sorted addresses to block for `domain` right now (answers window + grace). */
  addresses(domain: string): string[]
  /** True once a lookup of `domain` was answered (NOERROR or NXDOMAIN), in this run or a restored one. */
  answered(domain: string): boolean
  /** Epoch ms of the next moment refresh() has work: a TTL running out or a grace period ending. */
  nextRefreshAt(): number
  /** Lookups queued or running. */
  inFlight(): number
  /** Domains known, for stats. */
  size(): number
  /** Everything known, for persisting. */
  snapshot(): AddressSnapshot
  /** Load a snapshot (at start, before the first refresh); domains already known are kept as they are. Returns domains loaded. */
  restore(s: AddressSnapshot): number
}

interface Book {
  /** Addresses of the last `keepAnswers` answers, newest last. */
  answers: string[][]
  /** Address -> epoch ms when it left the answers window (kept until then + grace). */
  gone: Map<string, number>
  /** Epoch ms when the clamped TTL runs out. */
  expiresAt: number
  /** Why the last lookup failed; such a name queues behind the others next time (it may well time out again). */
  error?: string
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
  /** The domains of the latest refresh(): an answer for a name dropped meanwhile is not recorded. */
  let wanted = new Set<string>()
  /** domain -> its lookup (queued or running), shared by overlapping refreshes. */
  const inflight = new Map<string, Promise<void>>()
  /** The slot limiter: names that failed last time wait in `later`, behind everything in `first`. */
  let running = 0
  const first: Array<() => void> = []
  const later: Array<() => void> = []

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
    delete b.error
  }

  async function slot<T>(low: boolean, fn: () => Promise<T>): Promise<T> {
    if (running >= concurrency) await new Promise<void>((go) => (low ? later : first).push(go))
    else running++
    try {
      return await fn()
    } finally {
      // Hand the slot straight to the next waiter (running stays the same), else free it.
      const next = first.shift() ?? later.shift()
      if (next) next()
      else running--
    }
  }

  async function lookup(domain: string, onChange?: (d: string) => void): Promise<void> {
    try {
      const r = await resolve(domain, { upstreams: opts.upstreams, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) })
      // Only NOERROR and NXDOMAIN are answers about the name; SERVFAIL/REFUSED say nothing about it.
      if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') throw new Error(`upstream answered ${r.rcode}`)
      if (!wanted.has(domain)) return // dropped from the policy while the lookup ran
      const b = books.get(domain) ?? { answers: [], gone: new Map(), expiresAt: 0 }
      books.set(domain, b)
      const at = now()
      const before = current(b, at).join(',')
      record(b, r, at)
      if (onChange && current(b, at).join(',') !== before) onChange(domain)
    } catch (e) {
      // A failed lookup never forgets addresses: keep what we had and try again soon.
      if (!wanted.has(domain)) return
      let b = books.get(domain)
      if (!b) {
        b = { answers: [], gone: new Map(), expiresAt: 0 }
        books.set(domain, b)
      }
      b.error = (e as Error).message
      b.expiresAt = now() + Math.max(opts.minTtlSec, Math.min(RETRY_AFTER_FAILURE_SEC, opts.maxTtlSec)) * 1000
    }
  }

  return {
    async refresh(domains, ropts = {}) {
      wanted = new Set(domains)
      let changed = false
      for (const d of [...books.keys()]) {
        if (wanted.has(d)) continue
        books.delete(d)
        if (reported.get(d)) changed = true
        reported.delete(d)
      }
      const at = now()
      const waits: Array<Promise<void>> = []
      const looked: string[] = []
      const due: string[] = []
      const failing: string[] = []
      for (const d of wanted) {
        const already = inflight.get(d)
        if (already) {
          // Already being looked up (an earlier refresh): wait for it, do not ask twice.
          waits.push(already)
          looked.push(d)
          continue
        }
        const b = books.get(d)
        if ((b?.expiresAt ?? 0) > at) continue
        ;(b?.error !== undefined ? failing : due).push(d)
      }
      // Names that answered last time (or are new) take the free slots first.
      for (const d of [...due, ...failing]) {
        const p = slot(books.get(d)?.error !== undefined, () => lookup(d, ropts.onChange)).finally(() => inflight.delete(d))
        inflight.set(d, p)
        waits.push(p)
        looked.push(d)
      }
      await Promise.all(waits)
      const errs: RefreshResult['errors'] = []
      for (const d of looked) {
        const error = books.get(d)?.error
        if (error !== undefined) errs.push({ domain: d, message: error })
      }
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
    answered: (domain) => (books.get(domain)?.answers.length ?? 0) > 0,
    nextRefreshAt() {
      let next = Infinity
      for (const b of books.values()) {
        next = Math.min(next, b.expiresAt)
        for (const leftAt of b.gone.values()) next = Math.min(next, leftAt + graceMs)
      }
      return next
    },
    inFlight: () => inflight.size,
    size: () => books.size,
    snapshot() {
      const domains: Record<string, DomainRecord> = {}
      for (const [d, b] of books) {
        // A name never answered has nothing worth keeping; its next lookup is due at once anyway.
        if (b.answers.length === 0 && b.gone.size === 0) continue
        domains[d] = { answers: b.answers.map((a) => [...a]), gone: [...b.gone], expiresAt: b.expiresAt }
      }
      return { domains }
    },
    restore(s) {
      let n = 0
      const at = now()
      for (const [d, r] of Object.entries(s.domains)) {
        if (books.has(d)) continue
        const ok = (ip: unknown): ip is string => typeof ip === 'string' && isIP(ip) !== 0
        const answers = r.answers.map((a) => a.filter(ok)).slice(-keep)
        const gone = new Map(r.gone.filter(([ip, leftAt]) => ok(ip) && Number.isFinite(leftAt) && at < leftAt + graceMs))
        books.set(d, { answers, gone, expiresAt: Number.isFinite(r.expiresAt) ? r.expiresAt : 0 })
        // What is restored is what the kernel gets at the first apply: the next refresh compares with it.
        reported.set(d, current(books.get(d)!, at).join(','))
        n++
      }
      return n
    },
  }
}
