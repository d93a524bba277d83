// Sends the sinkhole's hits to the server in batches. While the server is unreachable the hits wait in
// a JSON-lines spool file (bounded by count and bytes, oldest dropped first, drops counted), so an
// outage or an agent restart loses nothing until the bound is reached; the spool drains when the server returns.
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, appendFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from '../log.js'
import type { Hit } from '../sinkhole/types.js'
import { hitForUpload } from './api-text.js'

/** The part of the API client the uploader uses. */
export interface HitClient {
  uploadHits(host: string, hits: Hit[], signal?: AbortSignal): Promise<{ accepted: number }>
}

export interface HitUploaderOptions {
  client: HitClient
  host: string
  /** JSON-lines spool (one hit per line), e.g. `<state-dir>/hits-spool.jsonl`. */
  spoolFile: string
  /** Hits per request; the API accepts at most 1000 (default 500). */
  batchSize?: number
  /** Upload period (default 2 s). A full batch is sent at once without waiting. */
  intervalMs?: number
  /** Spool bounds (defaults 100,000 hits, 32 MiB); beyond them the oldest hits are dropped. */
  maxSpoolHits?: number
  maxSpoolBytes?: number
  log: Logger
}

export interface HitUploaderStats {
  /** Hits waiting (memory + spool). */
  pending: number
  spooled: number
  uploaded: number
  /** Dropped because the spool was full (oldest first). */
  dropped: number
  failures: number
  lastError?: string
}

export interface HitUploader {
  /** Queue one hit (the hit log's onHit callback). */
  add(hit: Hit): void
  /** Send everything pending; on failure the rest goes to the spool. Resolves true when nothing is left. */
  flush(): Promise<boolean>
  /** Load the spool left by a previous run (call once before start). */
  load(): Promise<void>
  start(): void
  /** Stop the timer and spool what could not be sent (no network call). */
  stop(): Promise<void>
  stats(): HitUploaderStats
}

const MAX_BATCH = 1000

export function createHitUploader(opts: HitUploaderOptions): HitUploader {
  const log = opts.log.child({ component: 'hit-uploader' })
  const batchSize = Math.max(1, Math.min(MAX_BATCH, opts.batchSize ?? 500))
  const intervalMs = opts.intervalMs ?? 2000
  const maxHits = opts.maxSpoolHits ?? 100_000
  const maxBytes = opts.maxSpoolBytes ?? 32 * 1024 * 1024
  // Spooled hits are kept in memory as their JSON lines (the file mirrors this list), oldest first.
  let spool: string[] = []
  let spoolBytes = 0
  let memory: Hit[] = []
  let uploaded = 0
  let dropped = 0
  let failures = 0
  let lastError: string | undefined
  let timer: NodeJS.Timeout | undefined
  let busy: Promise<boolean> | undefined
  let stopped = false

  /** Drop the oldest lines until both bounds hold; returns how many were dropped. */
  function enforceBounds(): number {
    let n = 0
    while (spool.length > 0 && (spool.length > maxHits || spoolBytes > maxBytes)) {
      spoolBytes -= Buffer.byteLength(spool[0]!) + 1
      spool.shift()
      n++
    }
    if (n > 0) {
      dropped += n
      log.warn({ dropped: n, total: dropped }, 'hit spool full: oldest hits dropped')
    }
    return n
  }

  /** Rewrite the spool file from memory (atomic: temp + rename). */
  async function rewrite(): Promise<void> {
    await mkdir(dirname(opts.spoolFile), { recursive: true, mode: 0o700 })
    if (spool.length === 0) {
      await rm(opts.spoolFile, { force: true })
      return
    }
    const tmp = `${opts.spoolFile}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
    const fh = await open(tmp, 'wx', 0o600)
    try {
      await fh.writeFile(spool.join('\n') + '\n')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, opts.spoolFile)
  }

  /** Move the in-memory hits to the spool (appending when no drop is needed). */
  async function spoolMemory(): Promise<void> {
    if (memory.length === 0) return
    const lines = memory.map((h) => JSON.stringify(h))
    memory = []
    for (const l of lines) {
      spool.push(l)
      spoolBytes += Buffer.byteLength(l) + 1
    }
    if (enforceBounds() > 0) return rewrite()
    await mkdir(dirname(opts.spoolFile), { recursive: true, mode: 0o700 })
    await appendFile(opts.spoolFile, lines.join('\n') + '\n', { mode: 0o600 })
  }

  async function send(hits: Hit[]): Promise<void> {
    const r = await opts.client.uploadHits(opts.host, hits.map(hitForUpload))
    uploaded += hits.length
    if (r.accepted !== hits.length) log.warn({ sent: hits.length, accepted: r.accepted }, 'server accepted fewer hits than sent')
  }

  async function doFlush(): Promise<boolean> {
    // The file is rewritten once the spool drained (or on failure), not per batch: a crash mid-drain
    // re-sends some hits (at-least-once) instead of rewriting a large file after every batch.
    let spoolChanged = false
    try {
      // Oldest first: the spool, then what arrived since.
      while (spool.length > 0) {
        const n = Math.min(batchSize, spool.length)
        const batch = spool.slice(0, n).map((l) => JSON.parse(l) as Hit)
        await send(batch)
        for (const l of spool.splice(0, n)) spoolBytes -= Buffer.byteLength(l) + 1
        spoolChanged = true
      }
      if (spoolChanged) await rewrite()
      while (memory.length > 0) {
        const batch = memory.slice(0, batchSize)
        await send(batch)
        memory.splice(0, batch.length)
      }
      failures = 0
      lastError = undefined
      return true
    } catch (e) {
      failures++
      lastError = (e as Error).message
      log.warn({ err: lastError, pending: spool.length + memory.length }, 'hit upload failed; spooling')
      try {
        if (spoolChanged) await rewrite()
        await spoolMemory()
      } catch (e2) {
        log.error({ err: (e2 as Error).message, file: opts.spoolFile }, 'cannot write the hit spool')
      }
      return false
    }
  }

  function flush(): Promise<boolean> {
    // One flush at a time; a caller arriving mid-flush waits for it and then runs its own.
    const prev = busy ?? Promise.resolve(true)
    const p = prev.then(doFlush, doFlush)
    busy = p
    void p.finally(() => {
      if (busy === p) busy = undefined
    })
    return p
  }

  return {
    add(hit) {
      memory.push({ ...hit, host: hit.host ?? opts.host })
      if (memory.length >= batchSize && !stopped && !busy) void flush()
      // Memory only grows while a flush is in flight; keep it within the same bound regardless.
      if (memory.length > maxHits) {
        memory.shift()
        dropped++
      }
    },
    flush,
    async load() {
      let text: string
      try {
        text = await readFile(opts.spoolFile, 'utf8')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
        throw e
      }
      let bad = 0
      for (const line of text.split('\n')) {
        if (!line) continue
        try {
          JSON.parse(line)
          spool.push(line)
          spoolBytes += Buffer.byteLength(line) + 1
        } catch {
          bad++ // a torn last line after a crash
        }
      }
      const cut = enforceBounds()
      if (bad > 0 || cut > 0) await rewrite()
      if (spool.length) log.info({ spooled: spool.length, bad }, 'hit spool loaded')
    },
    start() {
      stopped = false
      if (!timer) {
        timer = setInterval(() => void flush(), intervalMs)
        timer.unref()
      }
    },
    async stop() {
      stopped = true
      if (timer) clearInterval(timer)
      timer = undefined
      await busy
      await spoolMemory()
    },
    stats() {
      return { pending: spool.length + memory.length, spooled: spool.length, uploaded, dropped, failures, ...(lastError ? { lastError } : {}) }
    },
  }
}
