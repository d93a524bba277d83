// Turns every blocked/alert lookup into hit records without flooding: the first lookup of a
// (client, name, type, action) is emitted at once, repeats are folded into one record per interval.
// Records go to listeners (the agent's uploader) and to an append-only JSON-lines file.
import { appendFile } from 'node:fs/promises'
import type { Logger } from '../log.js'
import type { SinkholeMetrics } from '../metrics.js'
import type { ContainerLookup, Hit, HitSink } from './types.js'

export interface HitLogOptions {
  /** JSON-lines file, appended to (one record a line). Omit to keep records in memory/listeners only. */
  file?: string
  /** Aggregation interval: repeats are flushed as one record at the end of each interval. */
  intervalMs: number
  log: Logger
  metrics?: SinkholeMetrics
  /** Most distinct keys held between flushes (default 10,000); a new key beyond it flushes early. */
  maxKeys?: number
  /**
   * Clock (ms) that decides when an interval ends; checked by a timer and on every record(), so a test
   * that injects a clock and advances it sees the interval end on its next record() without sleeping.
   */
  now?: () => number
  /** Lines waiting for the file beyond this are dropped and counted as write errors (default 100,000). */
  maxPendingLines?: number
  /**
   * Late attribution. A container's first lookup usually races Docker's `start` event (the engine
   * reports the start after the process already runs), so the sinkhole sees it before the address is
   * known. With this set, a hit that arrives without a container is held for `attributionDelayMs`
   * and looked up again before it is aggregated and emitted.
   */
  containers?: ContainerLookup
  /** How long an unattributed hit waits for its container (default 500 ms; 0 disables). */
  attributionDelayMs?: number
}

export interface HitLog extends HitSink {
  /** Subscribe to every emitted record (first occurrences and aggregates). Returns an unsubscribe. */
  onHit(cb: (h: Hit) => void): () => void
  /** End the current interval now (emit folded repeats) and wait until the file has every line. */
  flush(): Promise<void>
  /** Flush, stop the timer and the writer. Later record() calls are counted but not logged. */
  close(): Promise<void>
}

type Incoming = Omit<Hit, 'count' | 'lastTime'>

interface Slot {
  /** Folded repeats since the last emit; undefined when there is nothing to flush. */
  pending?: Hit
  /** Seen during the current interval (a key idle for a whole interval is forgotten, so it is "new" again). */
  seen: boolean
}

/**
 * Key choice: client + container + name + qtype + action. An A and an AAAA lookup are separate records
 * (both are informative: which families the dropper tried); an alert and a block of the same name never
 * fold together (a policy change between them matters); and a container that reuses a removed one's
 * address starts its own record instead of being folded into the old container's.
 */
function keyOf(h: Incoming): string {
  return `${h.client}\u0000${h.container?.id ?? ''}\u0000${h.name}\u0000${h.qtype}\u0000${h.action}`
}

const WRITE_DELAY_MS = 20

/**
 * A record with one fixed property order (also the JSON order). Built field by field rather than with
 * `{ ...hit }`: on the hot path a spread of a foreign-shaped object is several times slower.
 */
function toRecord(h: Incoming, container = h.container): Hit {
  const r: Hit = { time: h.time, lastTime: h.time, count: 1, client: h.client, name: h.name, qtype: h.qtype, action: h.action, entry: h.entry, answer: h.answer }
  if (h.profile !== undefined) r.profile = h.profile
  if (container) r.container = container
  if (h.host) r.host = h.host
  return r
}

function modeOf(answer: string): string {
  return answer.startsWith('custom') ? 'custom' : answer
}

export function createHitLog(opts: HitLogOptions): HitLog {
  const log = opts.log.child({ component: 'hit-log' })
  const maxKeys = Math.max(1, opts.maxKeys ?? 10_000)
  const maxPending = Math.max(1, opts.maxPendingLines ?? 100_000)
  const now = opts.now ?? Date.now
  const slots = new Map<string, Slot>()
  const listeners = new Set<(h: Hit) => void>()
  let closed = false
  const delayMs = opts.containers ? Math.max(0, opts.attributionDelayMs ?? 500) : 0
  /** Unattributed hits waiting for their container, oldest first. */
  let deferred: Array<{ hit: Incoming; due: number }> = []
  let deferTimer: NodeJS.Timeout | undefined

  // File writer: lines queue up and one appendFile at a time drains them in a batch. appendFile opens
  // the path each time, so a rotated (renamed) log is followed without a reopen signal.
  let queue: string[] = []
  let writing: Promise<void> | undefined
  let failures = 0
  // Lines emitted within WRITE_DELAY_MS share one write: under a flood of distinct names that is one
  // appendFile per few hundred lines instead of one per line; an operator still sees a hit at once.
  let writeTimer: NodeJS.Timeout | undefined
  function scheduleDrain(): void {
    if (writeTimer || writing) return
    writeTimer = setTimeout(() => {
      writeTimer = undefined
      void drain()
    }, WRITE_DELAY_MS)
  }

  function drain(): Promise<void> {
    if (writeTimer) {
      clearTimeout(writeTimer)
      writeTimer = undefined
    }
    if (writing) return writing
    if (queue.length === 0 || !opts.file) return Promise.resolve()
    const file = opts.file
    writing = (async () => {
      while (queue.length > 0) {
        const batch = queue
        queue = []
        try {
          await appendFile(file, batch.join('\n') + '\n')
          if (failures > 0) log.info({ file, failed: failures }, 'hit log writable again')
          failures = 0
        } catch (e) {
          // Lose this batch rather than grow without bound; log the first failure of a run and then every 100th.
          if (failures % 100 === 0) log.error({ file, err: (e as Error).message, lines: batch.length }, 'cannot write hit log')
          failures++
          opts.metrics?.hitLogWriteError(batch.length)
        }
      }
    })().finally(() => {
      writing = undefined
      if (queue.length > 0) scheduleDrain() // lines queued while the last write was finishing
    })
    return writing
  }

  function emit(h: Hit): void {
    for (const cb of listeners) {
      try {
        cb(h)
      } catch (e) {
        log.error({ err: (e as Error).message }, 'hit listener failed')
      }
    }
    if (opts.file && !closed) {
      if (queue.length >= maxPending) {
        opts.metrics?.hitLogWriteError(1)
      } else {
        queue.push(JSON.stringify(h)) // newlines are added by the batch join (one copy less per line)
        scheduleDrain()
      }
    }
  }

  /** End of an interval: emit folded repeats; forget keys that stayed idle for the whole interval. */
  function endInterval(): void {
    for (const [key, slot] of slots) {
      if (slot.pending) {
        const p = slot.pending
        slot.pending = undefined
        emit(p)
      }
      if (!slot.seen) slots.delete(key)
      else slot.seen = false
    }
  }

  const intervalMs = Math.max(1, opts.intervalMs)
  let intervalStart = now()
  let warnedFull = false
  let earlyFlushes = 0
  function maybeEndInterval(): void {
    const t = now()
    if (t - intervalStart < intervalMs) return
    endInterval()
    intervalStart = t
    if (earlyFlushes > 1) log.warn({ times: earlyFlushes }, 'hit aggregation was full several times in the last interval')
    warnedFull = false
    earlyFlushes = 0
  }
  // Tick a few times per interval so an interval ends at most a quarter late; unref: never keeps the process up.
  const timer = setInterval(maybeEndInterval, Math.min(1000, Math.max(10, Math.floor(intervalMs / 4))))
  timer.unref()

  /** Release deferred hits that are due (all of them when `all`), attributing what can be now. */
  function releaseDeferred(all: boolean): void {
    if (deferTimer) {
      clearTimeout(deferTimer)
      deferTimer = undefined
    }
    const t = Date.now()
    let i = 0
    while (i < deferred.length && (all || deferred[i]!.due <= t)) {
      const { hit } = deferred[i]!
      const c = opts.containers
      const container = c?.byIpAt ? c.byIpAt(hit.client, Date.parse(hit.time)) : c?.byIp(hit.client)
      aggregate(container ? toRecord(hit, container) : hit)
      i++
    }
    deferred = i === deferred.length ? [] : deferred.slice(i)
    if (deferred.length > 0) {
      deferTimer = setTimeout(() => releaseDeferred(false), Math.max(1, deferred[0]!.due - t))
      deferTimer.unref()
    }
  }

  function aggregate(hit: Incoming): void {
    maybeEndInterval()
    const key = keyOf(hit)
    const slot = slots.get(key)
    if (slot === undefined) {
      if (slots.size >= maxKeys) {
        // Bounded memory: emit everything folded so far and start over rather than evict silently.
        // Logged once per interval: a flood of distinct names would otherwise log several times a second.
        earlyFlushes++
        if (!warnedFull) log.warn({ keys: slots.size }, 'hit aggregation full, flushing early')
        warnedFull = true
        endInterval()
        slots.clear()
      }
      slots.set(key, { seen: true })
      // A first occurrence is news: the operator sees it now, not at the interval's end.
      emit(toRecord(hit))
      return
    }
    slot.seen = true
    const p = slot.pending
    if (p === undefined) {
      slot.pending = toRecord(hit)
    } else {
      p.count++
      p.lastTime = hit.time
      // Keep the latest view of what decided and what was answered (the policy may change mid-interval).
      p.entry = hit.entry
      p.answer = hit.answer
    }
  }

  return {
    record(hit) {
      opts.metrics?.hit(hit.action, modeOf(hit.answer))
      if (closed) return
      if (hit.container === undefined && delayMs > 0) {
        // Wall time, not the injected clock: this is a real wait for a real Docker event.
        deferred.push({ hit, due: Date.now() + delayMs })
        if (deferred.length > maxKeys) releaseDeferred(true)
        else if (!deferTimer) {
          deferTimer = setTimeout(() => releaseDeferred(false), delayMs)
          deferTimer.unref()
        }
        return
      }
      aggregate(hit)
    },
    onHit(cb) {
      listeners.add(cb)
      return () => listeners.delete(cb)
    },
    async flush() {
      releaseDeferred(true)
      endInterval()
      intervalStart = now()
      await drain()
    },
    async close() {
      clearInterval(timer)
      releaseDeferred(true)
      endInterval()
      closed = true
      await drain()
    },
  }
}
