// Per-client token bucket: a looping or malicious client cannot take the sinkhole (or the upstream
// behind it) down for everyone else. `qps` tokens per second refill, up to `burst`.
export interface RateLimitOptions {
  qps: number
  burst: number
  /** Clock in ms (tests). */
  now?: () => number
  /** Tracked clients before idle (full) buckets are swept (default 100,000). */
  maxClients?: number
}

export interface RateLimiter {
  /** Take one token for `client`; false when over the limit. */
  take(client: string): boolean
  readonly size: number
}

export function createRateLimiter(opts: RateLimitOptions): RateLimiter {
  const now = opts.now ?? Date.now
  const rate = opts.qps / 1000
  const burst = Math.max(1, opts.burst)
  const maxClients = opts.maxClients ?? 100_000
  const buckets = new Map<string, { tokens: number; last: number }>()
  function sweep(t: number): void {
    // Drop buckets that would be full by now: forgetting them changes nothing.
    for (const [k, b] of buckets) if (b.tokens + (t - b.last) * rate >= burst) buckets.delete(k)
    // Still too many (a spoofed-source flood): start over rather than grow without bound.
    if (buckets.size >= maxClients) buckets.clear()
  }
  return {
    take(client) {
      const t = now()
      let b = buckets.get(client)
      if (!b) {
        if (buckets.size >= maxClients) sweep(t)
        b = { tokens: burst, last: t }
        buckets.set(client, b)
      } else {
        b.tokens = Math.min(burst, b.tokens + (t - b.last) * rate)
        b.last = t
      }
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },
    get size() {
      return buckets.size
    },
  }
}
