// The learned-pair writer: ONE long-lived process (`ipset -exist restore` or `nft -i`) fed on
// stdin, so writing a pair costs a pipe write and a kernel call, not a process start. Writes are
// grouped: while a batch is in flight, new writes queue and go out together as the next batch. Each
// batch ends with a command whose output is the acknowledgement: when it arrives, every line before
// it is in the kernel (both tools run their input strictly in order).
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors } from '../errors.js'
import { run, spawnLong, type LongProcess } from './exec.js'

/** How one tool is driven: its command, how a batch is framed, and how its output is read. */
export interface WriterProtocol {
  readonly label: string
  readonly cmd: string
  readonly args: readonly string[]
  /** Written once after every spawn, before the first batch; must produce no stdout. */
  readonly prelude?: string
  /** The stdin text of one batch and how many success markers it must produce. */
  frame(units: readonly string[]): { text: string; expect: number }
  /** Classify one stdout line: the batch's ack, a success marker, or noise. */
  classify(line: string): 'ack' | 'ok' | undefined
  /** A batch of at least `minChars` of text is written by `write` (a one-shot process) instead. */
  readonly bulk?: { minChars: number; write(units: readonly string[]): Promise<void> }
}

/**
 * `ipset -exist restore` under `stdbuf -oL` (ipset's stdout is block-buffered on a pipe, so without
 * it the ack would sit in a buffer). The ack is `save ACKSET` of an empty set: one `create` line.
 * ipset aggregates adds to one set and sends them when the next command names another set, so the
 * save of the ack set flushes them first. Any error ends the process (it is respawned).
 */
export function ipsetProtocol(ackSet: string): WriterProtocol {
  return {
    label: 'ipset',
    cmd: 'stdbuf',
    args: ['-oL', 'ipset', '-exist', 'restore'],
    prelude: `create ${ackSet} hash:ip family inet\n`,
    frame: (units) => ({ text: (units.length > 0 ? units.join('\n') + '\n' : '') + `save ${ackSet}\n`, expect: 0 }),
    classify: (line) => (line.startsWith(`create ${ackSet} `) ? 'ack' : undefined),
  }
}

/**
 * `nft -i`: each input line is one transaction; a failed one prints to stderr and nft carries on.
 * The ack is `list set` of an empty set in a tiny table of its own (`ackTable`, made by the prelude):
 * listing makes nft walk the cache of the table named, so a set in the rules' table would cost more
 * as rules grow. A batch succeeded when nothing reached stderr before the ack's closing `}`.
 * Measured with nft 1.0.6 (libedit): it reads stdin one byte per read(2), ~2.7 us of CPU per input
 * character, so commands are kept short and consecutive adds are merged (mergeAdds); each line also
 * costs a cache walk of the rules' table. With -e (echo) a commit would print a marker line, but nft
 * then spends ~3 ms of CPU per element (100,000 took 5 minutes). A large batch goes to a one-shot
 * `nft -f -` (`bulk`: one transaction, ~7 us per element), in the same queue order.
 */
export function nftProtocol(ackTable: string, netns?: string, perLine = 64): WriterProtocol {
  return {
    label: 'nft',
    cmd: 'nft',
    args: ['-i'],
    prelude: `add table inet ${ackTable}; add set inet ${ackTable} ack { type ipv4_addr; }\n`,
    frame: (units) => {
      const cmds = mergeAdds(units)
      let text = ''
      for (let i = 0; i < cmds.length; i += perLine) text += cmds.slice(i, i + perLine).join('; ') + '\n'
      return { text: text + `list set inet ${ackTable} ack\n`, expect: 0 }
    },
    classify: (line) => (line === '}' ? 'ack' : undefined),
    bulk: {
      minChars: 64 * 1024,
      async write(units) {
        await run('nft', ['-f', '-'], { input: units.map((u) => u + '\n').join(''), timeoutMs: 300_000, ...(netns !== undefined ? { netns } : {}) })
      },
    },
  }
}

const ADD = /^add element (inet \S+ \S+) \{ (.*) \}$/

/**
 * Consecutive single-command `add element` units are merged into one command per set (each command
 * costs nft a cache walk: ~0.1-0.2 ms of CPU); anything else (a flush, a delete, a multi-command
 * unit) ends the run and keeps its place, so the order of effects is unchanged.
 */
export function mergeAdds(units: readonly string[]): string[] {
  const out: string[] = []
  let run = new Map<string, string[]>()
  const flush = (): void => {
    for (const [set, els] of run) out.push(`add element ${set} { ${els.join(', ')} }`)
    run = new Map()
  }
  for (const u of units) {
    const m = u.includes(';') ? null : ADD.exec(u)
    if (!m) {
      flush()
      out.push(u)
      continue
    }
    const list = run.get(m[1]!)
    if (list) list.push(m[2]!)
    else run.set(m[1]!, [m[2]!])
  }
  flush()
  return out
}

interface Job {
  left: number
  failed: boolean
  resolve: () => void
  reject: (e: Error) => void
}
interface Chunk {
  job: Job
  units: readonly string[]
}

export interface WriterStats {
  batches: number
  /** Batches written by the protocol's one-shot bulk path. */
  bulk: number
  units: number
  failedBatches: number
  spawns: number
}

export interface AckedWriter {
  /** Resolves once every unit is in the kernel; rejects (EG_EXEC) when its batch failed. */
  write(units: readonly string[]): Promise<void>
  /** Close stdin and wait for the process to exit (pending writes are failed). */
  close(): Promise<void>
  readonly stats: WriterStats
  /** The running process's pid (tests kill it to check the respawn). */
  readonly pid: number | undefined
}

export interface WriterOptions {
  netns?: string
  logger?: Logger
  /** Most units in one batch (bounded stdin writes and ack latency). */
  maxUnits?: number
  /** Kill the process when an ack takes longer than this (it is respawned for the next batch). */
  ackTimeoutMs?: number
}

export function createAckedWriter(proto: WriterProtocol, opts: WriterOptions = {}): AckedWriter {
  const log = (opts.logger ?? silentLogger).child({ component: `learned-writer-${proto.label}` })
  const maxUnits = opts.maxUnits ?? 4096
  const ackTimeoutMs = opts.ackTimeoutMs ?? 15_000
  const stats: WriterStats = { batches: 0, bulk: 0, units: 0, failedBatches: 0, spawns: 0 }
  const queue: Chunk[] = []
  let proc: LongProcess | undefined
  let inflight: { chunks: Chunk[]; expect: number; ok: number; stderr: string; timer: NodeJS.Timeout } | undefined
  let closed = false

  function fail(chunks: readonly Chunk[], why: string): void {
    const err = errors.exec(`learned-pair writer (${proto.label}): ${why.trim().slice(0, 500)}`)
    for (const c of chunks) {
      if (c.job.failed) continue
      c.job.failed = true
      c.job.reject(err)
    }
  }

  function spawn(): LongProcess {
    const p = spawnLong(proto.cmd, proto.args, opts.netns !== undefined ? { netns: opts.netns } : {})
    stats.spawns++
    let buf = ''
    p.onStdout((text) => {
      buf += text
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        const kind = proto.classify(line)
        if (!inflight || proc !== p) continue
        if (kind === 'ok') inflight.ok++
        else if (kind === 'ack') {
          // An error is written to stderr before the tool reads the ack command, so it is readable
          // no later than the ack: one turn of the event loop lets its 'data' event run first.
          const b = inflight
          setImmediate(() => {
            if (inflight === b) finish(true)
          })
        }
      }
    })
    p.onStderr((text) => {
      if (inflight && proc === p) inflight.stderr += text
      else log.warn({ stderr: text.trim().slice(0, 500) }, 'writer said something between batches')
    })
    p.onExit((code, why) => {
      if (proc === p) proc = undefined
      if (inflight) {
        const b = inflight
        inflight = undefined
        clearTimeout(b.timer)
        stats.failedBatches++
        fail(b.chunks, `${why}${b.stderr ? `: ${b.stderr}` : ''}`)
        log.warn({ code, why, stderr: b.stderr.trim().slice(0, 500) }, 'writer process ended with a batch in flight')
      }
      if (why.includes('not found')) {
        // No tool: fail everything queued now instead of respawning forever.
        const q = queue.splice(0)
        for (const c of q) {
          if (c.job.failed) continue
          c.job.failed = true
          c.job.reject(errors.missingTool(why))
        }
        return
      }
      pump()
    })
    if (proto.prelude) p.write(proto.prelude)
    return p
  }

  function finish(acked: boolean): void {
    const b = inflight!
    inflight = undefined
    clearTimeout(b.timer)
    if (acked && b.ok === b.expect && b.stderr === '') {
      for (const c of b.chunks) {
        if (c.job.failed) continue
        if (--c.job.left === 0) c.job.resolve()
      }
    } else {
      stats.failedBatches++
      fail(b.chunks, b.stderr || `batch not acknowledged (${b.ok} of ${b.expect} transactions committed)`)
    }
    pump()
  }

  function pump(): void {
    if (inflight || closed) return
    // Drop chunks of jobs that already failed (a later chunk of a job whose first chunk failed).
    while (queue.length > 0 && queue[0]!.job.failed) queue.shift()
    if (queue.length === 0) return
    const chunks: Chunk[] = []
    let n = 0
    while (queue.length > 0 && (chunks.length === 0 || n + queue[0]!.units.length <= maxUnits)) {
      const c = queue.shift()!
      if (c.job.failed) continue
      chunks.push(c)
      n += c.units.length
    }
    if (chunks.length === 0) return
    const units: string[] = []
    let chars = 0
    for (const c of chunks) for (const u of c.units) {
      units.push(u)
      chars += u.length
    }
    stats.batches++
    stats.units += n
    if (proto.bulk && chars >= proto.bulk.minChars) {
      // One in flight at a time, like a piped batch: the queue order holds.
      const b = { chunks, expect: 0, ok: 0, stderr: '', timer: setTimeout(() => {}, 0) }
      inflight = b
      stats.bulk++
      proto.bulk.write(units).then(
        () => finish(true),
        (e: Error) => {
          b.stderr = e.message
          finish(false)
        },
      )
      return
    }
    const { text, expect } = proto.frame(units)
    proc ??= spawn()
    const p = proc
    inflight = {
      chunks,
      expect,
      ok: 0,
      stderr: '',
      timer: setTimeout(() => {
        log.warn({ ms: ackTimeoutMs }, 'writer ack timed out: killing the process')
        p.kill()
      }, ackTimeoutMs),
    }
    p.write(text)
  }

  return {
    stats,
    get pid() {
      return proc?.pid
    },
    write(units) {
      if (closed) return Promise.reject(errors.exec(`learned-pair writer (${proto.label}) is closed`))
      return new Promise<void>((resolve, reject) => {
        const job: Job = { left: 0, failed: false, resolve, reject }
        // Split a large write into chunks so a batch stays bounded; the job resolves with its last chunk.
        for (let i = 0; i < units.length || i === 0; i += maxUnits) {
          queue.push({ job, units: units.slice(i, i + maxUnits) })
          job.left++
          if (units.length === 0) break
        }
        pump()
      })
    },
    async close() {
      closed = true
      const q = queue.splice(0)
      fail(q, 'writer closed')
      const p = proc
      if (p) await p.end()
    },
  }
}
