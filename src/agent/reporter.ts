// Tells the server what this host enforces: applied version/etag, entry counts, drift repairs, errors,
// agent version. Sent every interval and right after each apply, so `egress-guard hosts` shows who is
// behind, silent or drifting. A failed report is logged and retried at the next tick, never fatal.
import type { Logger } from '../log.js'
import type { Entry, Policy } from '../policy/types.js'
import type { ReportBody, ReportCounts } from '../client/api-types.js'
import { apiText } from './api-text.js'

export interface ReportClient {
  report(body: ReportBody, signal?: AbortSignal): Promise<void>
}

/** What the agent knows at report time (everything but host and agent version). */
export type ReportState = Omit<ReportBody, 'host' | 'agentVersion'>

export interface ReporterOptions {
  client: ReportClient
  host: string
  agentVersion: string
  /** Default 10 s. */
  intervalMs?: number
  state: () => ReportState
  log: Logger
}

export interface Reporter {
  /** Send one report now; resolves false when it failed. Concurrent calls share one request. */
  reportNow(): Promise<boolean>
  start(): void
  stop(): void
  stats(): { sent: number; failures: number; lastError?: string; last?: ReportBody }
}

/** Entry counts of a policy as the report shows them (blocks and allows alike). */
export function countEntries(entries: readonly Entry[]): ReportCounts {
  const c: ReportCounts = { entries: entries.length, domains: 0, nets: 0, v4: 0, v6: 0 }
  for (const e of entries) {
    if (e.kind === 'domain') c.domains++
    else {
      c.nets++
      if (e.value.includes(':')) c.v6++
      else c.v4++
    }
  }
  return c
}

export function emptyState(p?: Policy): ReportState {
  return {
    version: p?.version ?? 0,
    etag: p?.etag ?? '',
    counts: countEntries(p?.entries ?? []),
    repairs: 0,
    drift: [],
    errors: [],
  }
}

export function createReporter(opts: ReporterOptions): Reporter {
  const log = opts.log.child({ component: 'reporter' })
  let timer: NodeJS.Timeout | undefined
  let inflight: Promise<boolean> | undefined
  let again = false
  let sent = 0
  let failures = 0
  let lastError: string | undefined
  let last: ReportBody | undefined

  async function once(): Promise<boolean> {
    const body: ReportBody = { host: opts.host, agentVersion: opts.agentVersion, ...opts.state() }
    // The API takes short lists; a host in trouble must not send megabytes. Escaped: the API refuses
    // control characters, and an error may quote what a container or a tool printed.
    body.drift = body.drift.slice(0, 100).map((s) => apiText(s, 500))
    body.errors = body.errors.slice(0, 100).map((s) => apiText(s, 500))
    // dockerd's command line and daemon.json are quoted in the Docker API verdict: escaped the same way.
    if (body.dockerApi) {
      body.dockerApi = {
        ...body.dockerApi,
        listeners: body.dockerApi.listeners.slice(0, 64).map((s) => apiText(s, 64)),
        detail: apiText(body.dockerApi.detail, 1024),
      }
    }
    // The API takes at most 4096 held containers a report; a compose label is free text: escaped.
    if (body.containers) {
      body.containers = body.containers.slice(0, 4096).map((c) => ({
        ...c,
        name: apiText(c.name, 256),
        ...(c.profile !== undefined ? { profile: apiText(c.profile, 256) } : {}),
      }))
    }
    try {
      await opts.client.report(body, AbortSignal.timeout(15_000))
      sent++
      last = body
      lastError = undefined
      return true
    } catch (e) {
      failures++
      lastError = (e as Error).message
      log.warn({ err: lastError }, 'status report failed')
      return false
    }
  }

  function reportNow(): Promise<boolean> {
    // A report requested while one is in flight runs once more after it, with the newer state.
    if (inflight) {
      again = true
      return inflight
    }
    inflight = (async () => {
      let ok = await once()
      while (again) {
        again = false
        ok = await once()
      }
      return ok
    })().finally(() => {
      inflight = undefined
    })
    return inflight
  }

  return {
    reportNow,
    start() {
      if (timer) return
      timer = setInterval(() => void reportNow(), opts.intervalMs ?? 10_000)
      timer.unref()
    },
    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
    },
    stats: () => ({ sent, failures, ...(lastError ? { lastError } : {}), ...(last ? { last } : {}) }),
  }
}
