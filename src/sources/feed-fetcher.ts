// Fetches one feed with a conditional GET (ETag, If-Modified-Since) and keeps its last good copy on
// disk (DIR/NAME.json, replaced atomically), so a restart serves it without fetching. A refresh only
// replaces the copy when it is a list: HTML, binary, empty, truncated, an HTTP error, a timeout, over
// the size cap, over `max`, under `min`, or shrinking by more than the shrink limit against the last
// good copy are each refused with the reason, and the last good copy stays.
import { join } from 'node:path'
import { mkdir, readFile } from 'node:fs/promises'
import { writeFileAtomic } from '../store/atomic-file.js'
import type { Entry } from '../policy/types.js'
import type { FeedSpec } from './feed-config.js'
import { notAList, parseFeed } from './feed-parse.js'
import { feedEntries } from './feed-entries.js'

export interface FeedCopy {
  url: string
  etag?: string
  lastModified?: string
  fetchedAt: string
  /** The accepted values (entry values, `*.name` for subdomain-only ones). */
  values: string[]
}

export type RefreshResult =
  | { status: 'unchanged' }
  | { status: 'updated'; count: number; refused: number; refusedExamples: string[] }
  | { status: 'rejected'; reason: string }

export interface FeedFetcherOptions {
  dir: string
  /** Body size cap in bytes (default 64 MiB). */
  maxBytes?: number
  timeoutMs?: number
  /** Refuse a refresh with fewer than (1 - limit) x the last good count (default 0.5). */
  shrinkLimit?: number
  /** Addresses a feed may never cover (the server, the upstreams). */
  protect?: readonly string[]
}

const valueOf = (e: Entry): string => (e.kind === 'domain' && e.subdomainsOnly ? '*.' : '') + e.value

export class FeedFetcher {
  #o: FeedFetcherOptions
  constructor(o: FeedFetcherOptions) {
    this.#o = o
  }

  #file(name: string): string {
    return join(this.#o.dir, `${name}.json`)
  }

  /** The last good copy on disk, if any. */
  async load(name: string): Promise<FeedCopy | undefined> {
    try {
      const v = JSON.parse(await readFile(this.#file(name), 'utf8')) as FeedCopy
      return Array.isArray(v.values) ? v : undefined
    } catch {
      return undefined
    }
  }

  /** The entries of a feed's last good copy. */
  async entries(feed: FeedSpec): Promise<Entry[]> {
    const copy = await this.load(feed.name)
    return copy ? feedEntries(feed.name, copy.values, feed.mode, this.#o.protect).entries : []
  }

  async refresh(feed: FeedSpec): Promise<RefreshResult> {
    const reject = (reason: string): RefreshResult => ({ status: 'rejected', reason })
    const last = await this.load(feed.name)
    const same = last && last.url === feed.url
    const headers: Record<string, string> = { 'user-agent': 'egress-guard feed fetcher', accept: 'text/plain, text/csv, application/json, */*;q=0.5' }
    if (same && last.etag) headers['if-none-match'] = last.etag
    if (same && last.lastModified) headers['if-modified-since'] = last.lastModified
    const timeoutMs = this.#o.timeoutMs ?? 60_000
    const maxBytes = this.#o.maxBytes ?? 64 * 1024 * 1024
    let text: string
    let res: Response
    try {
      res = await fetch(feed.url, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' })
      if (res.status === 304) {
        await res.body?.cancel()
        return same ? { status: 'unchanged' } : reject('304 Not Modified without a stored copy')
      }
      if (!res.ok) {
        await res.body?.cancel()
        return reject(`HTTP ${res.status}`)
      }
      const declared = Number(res.headers.get('content-length') ?? NaN)
      if (declared > maxBytes) {
        await res.body?.cancel()
        return reject(`body of ${declared} bytes is over the ${maxBytes}-byte cap`)
      }
      const chunks: Uint8Array[] = []
      let size = 0
      for await (const c of res.body ?? []) {
        size += c.byteLength
        if (size > maxBytes) return reject(`body is over the ${maxBytes}-byte cap`)
        chunks.push(c)
      }
      text = new TextDecoder('utf-8').decode(Buffer.concat(chunks))
    } catch (e) {
      const err = e as Error & { cause?: Error }
      if (err.name === 'TimeoutError' || err.name === 'AbortError') return reject(`timed out after ${timeoutMs} ms`)
      return reject(`fetch failed: ${err.cause?.message ?? err.message} (truncated or refused)`)
    }
    const notList = notAList(text)
    if (notList) return reject(notList)
    const parsed = parseFeed(text, feed.format)
    const got = feedEntries(feed.name, parsed.values, feed.mode, this.#o.protect)
    const n = got.entries.length
    if (n === 0) return reject(`no entries (${text.length === 0 ? 'empty body' : `${parsed.skipped} lines without one`})`)
    if (n < feed.min) return reject(`${n} entries, fewer than min=${feed.min}`)
    if (n > feed.max) return reject(`${n} entries, more than max=${feed.max}`)
    const limit = this.#o.shrinkLimit ?? 0.5
    if (last && last.values.length > 0 && n < last.values.length * (1 - limit)) {
      return reject(`${n} entries against ${last.values.length} in the last good copy: shrinks by more than ${Math.round(limit * 100)}% (--feed-shrink-limit)`)
    }
    const etag = res.headers.get('etag')
    const lastModified = res.headers.get('last-modified')
    const copy: FeedCopy = { url: feed.url, ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}), fetchedAt: new Date().toISOString(), values: got.entries.map(valueOf) }
    await mkdir(this.#o.dir, { recursive: true })
    await writeFileAtomic(this.#file(feed.name), JSON.stringify(copy))
    return { status: 'updated', count: n, refused: got.refused, refusedExamples: got.refusedExamples }
  }
}
