// Runs the feeds of `feeds.txt` on the server: keeps each feed's last good entries in memory (read
// from the copy on disk at start-up, so a restart serves them without fetching), refreshes each on its
// `every`, asks for a policy rebuild when a copy changes, and reports each refused refresh (audit
// log, /metrics, GET /v1/policy/problems) while the last good copy keeps being served.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from '../log.js'
import type { Entry, Problem } from '../policy/types.js'
import type { Store } from '../store/types.js'
import type { FeedSpec } from './feed-config.js'
import type { FeedFetcher } from './feed-fetcher.js'

interface Running {
  spec: FeedSpec
  entries: Entry[]
  timer?: NodeJS.Timeout
  rejected?: { reason: string; at: string }
}

export interface FeedManagerOptions {
  fetcher: FeedFetcher
  store: Store
  log: Logger
  registry?: Registry
  /** A feed's entries changed: rebuild the policy. */
  changed: (why: string) => void
  /** The rejections changed: show them with the policy's problems. */
  problems: (p: Problem[]) => void
}

const same = (a: FeedSpec, b: FeedSpec): boolean => JSON.stringify({ ...a, source: '' }) === JSON.stringify({ ...b, source: '' })

export class FeedManager {
  #o: FeedManagerOptions
  #feeds = new Map<string, Running>()
  #closed = false
  #refreshes?: Counter<'feed' | 'result'>
  #count?: Gauge<'feed'>

  constructor(o: FeedManagerOptions) {
    this.#o = o
    if (o.registry) {
      this.#refreshes = new Counter({ name: 'eg_feed_refreshes_total', help: 'Feed refreshes by result (updated, unchanged, rejected)', labelNames: ['feed', 'result'], registers: [o.registry] })
      this.#count = new Gauge({ name: 'eg_feed_entries', help: 'Entries served from each feed (its last good copy)', labelNames: ['feed'], registers: [o.registry] })
    }
  }

  /** The feeds as now configured (feeds.txt re-read): new ones start, removed ones stop. */
  async configure(specs: readonly FeedSpec[]): Promise<void> {
    const want = new Map(specs.map((s) => [s.name, s]))
    const edited = new Set<string>()
    for (const [name, r] of this.#feeds) {
      const s = want.get(name)
      if (s && same(s, r.spec)) {
        r.spec = s
        continue
      }
      if (s) edited.add(name)
      clearTimeout(r.timer)
      this.#feeds.delete(name)
      this.#count?.remove(name)
    }
    for (const s of specs) {
      if (this.#feeds.has(s.name)) continue
      const copy = await this.#o.fetcher.load(s.name)
      const r: Running = { spec: s, entries: copy && copy.url === s.url ? await this.#o.fetcher.entries(s) : [] }
      this.#feeds.set(s.name, r)
      this.#count?.set({ feed: s.name }, r.entries.length)
      const age = copy && copy.url === s.url ? Date.now() - Date.parse(copy.fetchedAt) : Infinity
      // Due when its copy is `every` old; an edited feed line is fetched at once.
      this.#schedule(r, edited.has(s.name) ? 0 : Math.max(0, Math.min(s.everyMs, s.everyMs - age)))
    }
    this.#report()
  }

  entries(): Entry[] {
    return [...this.#feeds.values()].flatMap((r) => r.entries)
  }

  close(): void {
    this.#closed = true
    for (const r of this.#feeds.values()) clearTimeout(r.timer)
  }

  #schedule(r: Running, ms: number): void {
    if (this.#closed) return
    clearTimeout(r.timer)
    r.timer = setTimeout(() => void this.refresh(r.spec.name).finally(() => this.#feeds.get(r.spec.name) === r && this.#schedule(r, r.spec.everyMs)), ms)
    r.timer.unref()
  }

  /** Fetch one feed now. */
  async refresh(name: string): Promise<void> {
    const r = this.#feeds.get(name)
    if (!r) return
    const res = await this.#o.fetcher.refresh(r.spec).catch((e: Error) => ({ status: 'rejected' as const, reason: e.message }))
    if (this.#feeds.get(name) !== r) return // reconfigured meanwhile
    this.#refreshes?.inc({ feed: name, result: res.status })
    if (res.status === 'rejected') {
      const first = r.rejected?.reason !== res.reason
      r.rejected = { reason: res.reason, at: new Date().toISOString() }
      this.#o.log.error({ feed: name, reason: res.reason, kept: r.entries.length }, 'feed refresh refused; keeping its last good copy')
      if (first) await this.#o.store.appendAudit({ actor: `feed:${name}`, action: 'feed.refused', target: r.spec.url, reason: res.reason, details: { kept: r.entries.length } }).catch(() => {})
      this.#report()
      return
    }
    const had = r.rejected
    r.rejected = undefined
    if (res.status === 'updated') {
      r.entries = await this.#o.fetcher.entries(r.spec)
      this.#count?.set({ feed: name }, r.entries.length)
      await this.#o.store.appendAudit({ actor: `feed:${name}`, action: 'feed.updated', target: r.spec.url, details: { entries: r.entries.length, refused: res.refused, refusedExamples: res.refusedExamples } }).catch(() => {})
      this.#o.changed(`feed ${name}: ${r.entries.length} entries`)
    }
    if (had) this.#report()
  }

  #report(): void {
    const out: Problem[] = []
    for (const r of this.#feeds.values()) {
      if (!r.rejected) continue
      const [file, line] = [r.spec.source.slice(0, r.spec.source.lastIndexOf(':')), Number(r.spec.source.slice(r.spec.source.lastIndexOf(':') + 1))]
      out.push({ file, line, severity: 'error', code: 'feed-rejected', message: `feed ${r.spec.name}: refresh at ${r.rejected.at} refused: ${r.rejected.reason}; serving its last good copy (${r.entries.length} entries)` })
    }
    this.#o.problems(out)
  }
}
