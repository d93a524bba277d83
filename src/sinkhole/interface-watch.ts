// Follows this host's interface addresses for the sinkhole: docker0 appearing after egress-guard started
// (Docker started later), a re-created bridge with another address, the host's own addresses changing.
// Polls the cheap /proc fingerprint every couple of seconds and reads the full list (`ip -j addr`) only
// when it changed; `ip monitor` would need a long-lived child process and its restarts for little gain.
import type { Logger } from '../log.js'
import { addressFingerprint, readLinks, type Link } from './interfaces.js'

export interface InterfaceWatchOptions {
  /** Called with the current list after every change (and once at start); undefined + error when it cannot be read. Never concurrently. */
  onChange: (links: Link[] | undefined, error?: string) => Promise<void> | void
  log: Logger
  /** Fingerprint poll period (default 2 s). */
  intervalMs?: number
  /** After a failed read, or without a fingerprint, the full list is read this often (default 30 s). */
  slowIntervalMs?: number
  readLinks?: () => Promise<Link[]>
  fingerprint?: () => Promise<string | undefined>
}

export interface InterfaceWatch {
  /** Reads the list once (onChange has run when this resolves), then polls. */
  start(): Promise<void>
  stop(): void
  /** Call onChange again after the slow interval even if nothing changed (a bind to retry). */
  again(): void
}

export function createInterfaceWatch(opts: InterfaceWatchOptions): InterfaceWatch {
  const log = opts.log.child({ component: 'interfaces' })
  const interval = opts.intervalMs ?? 2000
  const slow = opts.slowIntervalMs ?? 30_000
  const read = opts.readLinks ?? (() => readLinks())
  const fingerprint = opts.fingerprint ?? (() => addressFingerprint())
  let timer: NodeJS.Timeout | undefined
  let running = false
  /** Fingerprint the last successful read was made under; undefined forces a read when it is due. */
  let seen: string | undefined
  let nextFullRead = 0
  let lastError: string | undefined

  async function tick(): Promise<void> {
    const fp = await fingerprint()
    const now = Date.now()
    if (fp !== undefined && fp === seen) return
    // No fingerprint (no /proc), or the last read failed: read no more often than `slow`.
    if ((fp === undefined || seen === undefined) && now < nextFullRead) return
    nextFullRead = now + slow
    let links: Link[]
    try {
      links = await read()
    } catch (e) {
      const msg = (e as Error).message
      seen = undefined
      if (msg !== lastError) log.warn({ err: msg }, 'cannot read the interface addresses; retrying')
      lastError = msg
      await opts.onChange(undefined, msg)
      return
    }
    seen = fp
    lastError = undefined
    await opts.onChange(links)
  }

  function schedule(): void {
    if (!running) return
    timer = setTimeout(() => {
      tick()
        .catch((e: unknown) => log.error({ err: (e as Error).message }, 'interface watch failed'))
        .finally(schedule)
    }, interval)
    timer.unref()
  }

  return {
    async start() {
      if (running) return
      running = true
      seen = undefined
      nextFullRead = 0
      await tick()
      schedule()
    },
    stop() {
      running = false
      clearTimeout(timer)
      timer = undefined
    },
    again() {
      seen = undefined
      nextFullRead = Date.now() + slow
    },
  }
}
