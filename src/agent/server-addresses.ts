// The policy server's addresses as this agent's HTTP client reaches them, kept current so the kernel's
// control-plane exemption follows a server that moves. The host name is resolved the way fetch
// resolves it (dns.lookup: getaddrinfo, so the hosts file and the system resolver), at start, every
// minute and soon after a failed request. An address stays for a grace period after it was last seen
// (round-robin answers, connections in flight), and a failed lookup keeps everything known: losing the
// exemption because DNS hiccupped would be the failure this exists to prevent.
import { lookup as dnsLookup } from 'node:dns/promises'
import type { Logger } from '../log.js'
import { formatIp, parseIp } from '../policy/net.js'

/** host name -> addresses (throws when it cannot be resolved). */
export type Lookup = (host: string) => Promise<string[]>

/** What fetch (undici) does: dns.lookup with every address, in the resolver's order. */
export const systemLookup: Lookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address)

export interface ServerAddressOptions {
  /** The server URL's host: a name, or an IP literal (then nothing is ever looked up). */
  host: string
  lookup?: Lookup
  /** Periodic re-resolution (default 60 s). */
  intervalMs?: number
  /** An address not seen for this long is dropped (default 1 h). */
  graceMs?: number
  /** refreshSoon() runs at most this often (default 5 s): a failing server must not flood DNS. */
  minGapMs?: number
  /** Called after a refresh changed the address list. */
  onChange?: (addresses: string[]) => void
  log: Logger
  now?: () => number
}

export interface ServerAddresses {
  /** Known addresses, canonical, sorted. */
  current(): string[]
  /** Resolve now; true when the list changed. Never throws. */
  refresh(): Promise<boolean>
  /** After a failed request: refresh unless one ran within minGapMs. */
  refreshSoon(): void
  start(): void
  stop(): void
}

/** The unspecified address is what a hosts-file block answers: never the server. */
const UNSPECIFIED = new Set(['0.0.0.0', '::'])

export function createServerAddresses(o: ServerAddressOptions): ServerAddresses {
  const log = o.log.child({ component: 'server-addresses' })
  const now = o.now ?? Date.now
  const lookup = o.lookup ?? systemLookup
  const graceMs = o.graceMs ?? 3_600_000
  const minGap = o.minGapMs ?? 5000
  const literal = parseIp(o.host)
  /** address -> when a lookup last returned it. */
  const seen = new Map<string, number>()
  if (literal) seen.set(formatIp(literal), Infinity)
  let timer: NodeJS.Timeout | undefined
  let inflight: Promise<boolean> | undefined
  let lastRun = -Infinity
  let lastFailure: string | undefined

  const list = (): string[] => [...seen.keys()].sort()

  async function resolveOnce(): Promise<boolean> {
    lastRun = now()
    const before = list().join(',')
    let got: string[]
    try {
      got = await lookup(o.host)
    } catch (e) {
      const msg = (e as Error).message
      if (msg !== lastFailure) log.warn({ host: o.host, err: msg, kept: list() }, 'cannot resolve the server; keeping its known addresses')
      lastFailure = msg
      return false
    }
    lastFailure = undefined
    const t = now()
    for (const a of got) {
      const ip = parseIp(a)
      if (!ip) continue
      const c = formatIp(ip)
      if (!UNSPECIFIED.has(c)) seen.set(c, t)
    }
    for (const [a, at] of seen) if (t - at > graceMs) seen.delete(a)
    const after = list()
    if (after.join(',') === before) return false
    log.info({ host: o.host, addresses: after }, 'server addresses changed')
    o.onChange?.(after)
    return true
  }

  const api: ServerAddresses = {
    current: list,
    refresh() {
      if (literal) return Promise.resolve(false)
      inflight ??= resolveOnce().finally(() => (inflight = undefined))
      return inflight
    },
    refreshSoon() {
      if (literal || inflight || now() - lastRun < minGap) return
      void api.refresh()
    },
    start() {
      if (literal || timer) return
      timer = setInterval(() => void api.refresh(), o.intervalMs ?? 60_000)
      timer.unref()
    },
    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
    },
  }
  return api
}
