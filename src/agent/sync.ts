// The agent's policy sync: long-polls the server (If-None-Match + wait), applies diffs on top of the
// current policy (verified by etag), merges an optional local blocklist directory, hands each new
// policy to the enforcement callback and caches it once applied. While the server is unreachable it
// retries with exponential backoff and full jitter and keeps what is enforced: it never removes rules.
import type { Logger } from '../log.js'
import type { Entry, Policy, Profile, Quarantine } from '../policy/types.js'
import type { PolicyBody, PolicyDiffBody } from '../client/api-types.js'
import type { PolicyCache } from './policy-cache.js'
import { cleanPolicy, policyProblems } from './policy-check.js'

/** The part of the API client the sync uses (src/client/api-client.ts implements it). */
export interface PolicyClient {
  getPolicy(q: { etag?: string; waitSec?: number; since?: number; signal?: AbortSignal }): Promise<{
    status: 200 | 304
    policy?: PolicyBody
    diff?: PolicyDiffBody
    etag: string
  }>
}

export interface BackoffOptions {
  /** First retry waits up to this long (default 500 ms). */
  baseMs?: number
  /** Cap of the exponential part (default 30 s). */
  maxMs?: number
  /** [0,1) source for full jitter; tests pass a constant. */
  random?: () => number
}

/** A local blocklist directory: entries are merged with the server's (see combine). */
export interface LocalSource {
  load(): Promise<Entry[]>
  /** The profiles (`DIR/profiles/NAME.txt`) read by the last load(); absent: the source has none. */
  profiles?(): Profile[]
  /** Re-read period when there is no server to long-poll (default 5 s). */
  pollMs?: number
}

export interface PolicySyncOptions {
  client?: PolicyClient
  cache: PolicyCache
  /** Resolve + apply + hosts + sinkhole. Throwing means "not applied": nothing is cached. */
  onPolicy: (p: Policy) => Promise<void>
  log: Logger
  /** Long-poll wait (0..60, default 30). 0 turns long-poll off: plain polling every pollIntervalMs. */
  waitSec?: number
  /** Polling period when waitSec is 0 (the CrowdSec bouncer baseline polls every 10 s). */
  pollIntervalMs?: number
  backoff?: BackoffOptions
  local?: LocalSource
  /**
   * Server policy (may be undefined: no server, or none yet) + local entries -> the policy to enforce.
   * Required with `local`. The agent builds it with buildPolicy over the union of both entry lists.
   */
  combine?: (server: Policy | undefined, local: Entry[], localProfiles?: Profile[]) => Policy
  /** etag of an entry list (and profiles, quarantines) as the server computes it; enables `since` diffs (verified against it). */
  etagOf?: (entries: Entry[], profiles?: Profile[], quarantines?: Quarantine[]) => string
  /** Abortable sleep (tests replace it to run without waiting). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

export type SyncResult = 'updated' | 'unchanged' | 'error'

export interface SyncStatus {
  /** The server policy applied and cached (what version/etag reports show). */
  server?: { version: number; etag: string; entries: number }
  /** The policy handed to onPolicy last (server + local). */
  applied?: Policy
  /** Consecutive failed rounds (fetch or apply). */
  failures: number
  /** The last error, cleared by a successful round. */
  lastError?: string
  lastSuccess?: string
  /** Diffs applied vs full fetches after a failed etag check. */
  diffs: number
  diffMismatches: number
}

export interface PolicySync {
  /** Enforce the cached policy (before the server answers). True when one was applied. Throws on a corrupt cache. */
  applyCached(): Promise<boolean>
  /** One round: fetch (long-poll), validate, apply, cache. Never throws. */
  syncOnce(): Promise<SyncResult>
  /** Start a round now (SIGHUP, a blocklist file changed): ends the long-poll wait or the pause. */
  wake(): void
  start(): void
  /** Ends the loop and aborts an in-flight long-poll; resolves when the loop has exited. */
  stop(): Promise<void>
  status(): SyncStatus
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in [0, min(cap, base*2^(n-1))). */
export function backoffDelay(failures: number, o: BackoffOptions = {}): number {
  const base = o.baseMs ?? 500
  const cap = o.maxMs ?? 30_000
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, Math.min(failures - 1, 30)))
  return Math.floor((o.random ?? Math.random)() * ceiling)
}

/** Apply a diff to the policy it was computed from; undefined when it does not fit (unknown ids). */
export function applyDiff(current: Policy, diff: PolicyDiffBody): Entry[] | undefined {
  if (diff.since !== current.version) return undefined
  const removed = new Set(diff.removed)
  // An entry changed in place (new reason, expiry...) keeps its id and comes in `added`: replace by id.
  const replaced = new Set(diff.added.flatMap((e) => (e.id !== undefined ? [e.id] : [])))
  const kept = current.entries.filter((e) => !(e.id !== undefined && (removed.delete(e.id) || replaced.has(e.id))))
  // Every removed id must have matched something we hold, else our copy is not the server's.
  if (removed.size > 0) return undefined
  return [...kept, ...diff.added]
}

export function createPolicySync(opts: PolicySyncOptions): PolicySync {
  const log = opts.log.child({ component: 'sync' })
  const waitSec = Math.max(0, Math.min(60, opts.waitSec ?? 30))
  const sleep = opts.sleep ?? abortableSleep
  if (opts.local && !opts.combine) throw new Error('createPolicySync: local requires combine')
  if (!opts.client && !opts.local) throw new Error('createPolicySync: needs a server client, a local directory, or both')

  let server: Policy | undefined
  let local: Entry[] | undefined
  let localProfiles: Profile[] = []
  let localKey: string | undefined
  let applied: Policy | undefined
  let failures = 0
  let lastError: string | undefined
  let lastSuccess: string | undefined
  let diffs = 0
  let diffMismatches = 0
  let loop: Promise<void> | undefined
  let ac = new AbortController()
  // wake(): aborts the long-poll in flight (or the pause between rounds) so a round starts now.
  let wakeAc = new AbortController()
  let woken = false
  // Serialises syncOnce with applyCached and with itself (tests may call it beside the loop).
  let chain: Promise<unknown> = Promise.resolve()
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = chain.then(fn, fn)
    chain = p.catch(() => undefined)
    return p
  }

  function fail(what: string, e: unknown): 'error' {
    lastError = `${what}: ${(e as Error)?.message ?? String(e)}`
    log.warn({ err: lastError, failures: failures + 1 }, what)
    return 'error'
  }

  function validated(body: PolicyBody): Policy {
    const problems = policyProblems(body)
    if (problems.length) throw new Error(`server sent an invalid policy (not applied): ${problems.slice(0, 3).join('; ')}`)
    return cleanPolicy(body)
  }

  /** Fetch the server's policy: the new one, the same one (304), or throw. */
  async function fetchServer(signal: AbortSignal): Promise<Policy | undefined> {
    const client = opts.client!
    const canDiff = server !== undefined && opts.etagOf !== undefined
    const r = await client.getPolicy({
      ...(server ? { etag: server.etag } : {}),
      ...(server && waitSec > 0 ? { waitSec } : {}),
      ...(canDiff ? { since: server!.version } : {}),
      signal,
    })
    if (r.status === 304) return server
    if (r.diff && server) {
      const entries = applyDiff(server, r.diff)
      // A diff carries every profile and quarantine whole; the etag check covers them with the entries.
      const profiles = r.diff.profiles ?? []
      const quarantines = r.diff.quarantines ?? []
      if (entries && opts.etagOf!(entries, profiles, quarantines) === r.diff.etag) {
        diffs++
        return validated({
          version: r.diff.version,
          etag: r.diff.etag,
          generatedAt: r.diff.generatedAt,
          entries,
          ...(profiles.length > 0 ? { profiles } : {}),
          ...(quarantines.length > 0 ? { quarantines } : {}),
        })
      }
      diffMismatches++
      log.warn({ since: r.diff.since, version: r.diff.version }, 'diff does not reproduce the server etag; fetching the full policy')
      const full = await client.getPolicy({ signal })
      if (!full.policy) throw new Error(`full policy fetch answered ${full.status} without a policy`)
      return validated(full.policy)
    }
    if (!r.policy) throw new Error(`policy fetch answered ${r.status} without a policy`)
    return validated(r.policy)
  }

  async function loadLocal(): Promise<boolean> {
    if (!opts.local) return false
    const entries = await opts.local.load()
    const profiles = opts.local.profiles?.() ?? []
    const key = JSON.stringify(profiles.length > 0 ? [entries, profiles] : entries)
    if (key === localKey) return false
    local = entries
    localProfiles = profiles
    localKey = key
    return true
  }

  function effective(srv: Policy | undefined): Policy | undefined {
    if (!opts.local) return srv
    if (local === undefined) return srv
    return opts.combine!(srv, local, localProfiles)
  }

  async function round(): Promise<SyncResult> {
    let fetchError: unknown
    let next = server
    if (opts.client) {
      try {
        next = await fetchServer(AbortSignal.any([ac.signal, wakeAc.signal]))
      } catch (e) {
        if (ac.signal.aborted) return 'unchanged'
        // Woken up: the server's answer is simply not in yet; go on with the local entries.
        if (wakeAc.signal.aborted) next = server
        else fetchError = e
      }
    }
    // Local files after the (long) fetch: a wake-up during the wait sees the files as they are now.
    if (opts.local) {
      try {
        await loadLocal()
      } catch (e) {
        // A broken local directory keeps its previous entries (a bad file never drops the good policy).
        fetchError = e
      }
    }
    const eff = effective(next)
    if (eff === undefined || (applied !== undefined && eff.etag === applied.etag && next?.etag === server?.etag)) {
      if (fetchError !== undefined) return fail('policy fetch failed; keeping the enforced policy', fetchError)
      lastError = undefined
      lastSuccess = new Date().toISOString()
      return 'unchanged'
    }
    try {
      await opts.onPolicy(eff)
    } catch (e) {
      return fail(`applying policy version ${eff.version} failed; keeping the enforced policy`, e)
    }
    applied = eff
    if (next !== undefined && next !== server) {
      try {
        await opts.cache.write(next)
      } catch (e) {
        log.error({ err: (e as Error).message }, 'policy applied but not cached')
      }
      // After the write: a status showing this version means the cache holds it too.
      server = next
    }
    log.info({ version: eff.version, etag: eff.etag, entries: eff.entries.length }, 'policy applied')
    if (fetchError !== undefined) return fail('policy fetch failed (local entries applied)', fetchError)
    lastError = undefined
    lastSuccess = new Date().toISOString()
    return 'updated'
  }

  async function applyCached(): Promise<boolean> {
    return serial(async () => {
      const cached = await opts.cache.read()
      if (opts.local) {
        try {
          await loadLocal()
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'local blocklists unreadable at start')
        }
      }
      const eff = effective(cached)
      if (!eff) return false
      server = cached
      await opts.onPolicy(eff)
      applied = eff
      log.info({ version: eff.version, etag: eff.etag, entries: eff.entries.length }, cached ? 'cached policy enforced' : 'local blocklists enforced (no cached server policy)')
      return true
    })
  }

  async function syncOnce(): Promise<SyncResult> {
    return serial(async () => {
      const r = await round()
      failures = r === 'error' ? failures + 1 : 0
      return r
    })
  }

  async function run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const t0 = Date.now()
      if (wakeAc.signal.aborted) wakeAc = new AbortController()
      woken = false
      const r = await syncOnce()
      if (signal.aborted) break
      if (woken) continue
      const pause = AbortSignal.any([signal, wakeAc.signal])
      if (r === 'error') {
        await sleep(backoffDelay(failures, opts.backoff), pause)
      } else if (!opts.client) {
        await sleep(opts.local?.pollMs ?? 5000, pause)
      } else if (waitSec === 0) {
        await sleep(opts.pollIntervalMs ?? 10_000, pause)
      } else if (r === 'unchanged' && Date.now() - t0 < 1000) {
        // A 304 that came back at once (a server or proxy that ignores `wait`): do not spin.
        await sleep(1000, pause)
      }
    }
  }

  return {
    applyCached,
    syncOnce,
    wake() {
      if (!loop) return
      woken = true
      wakeAc.abort()
    },
    start() {
      if (loop) return
      ac = new AbortController()
      loop = run(ac.signal)
    },
    async stop() {
      ac.abort()
      await loop
      loop = undefined
      ac = new AbortController()
    },
    status() {
      return {
        ...(server ? { server: { version: server.version, etag: server.etag, entries: server.entries.length } } : {}),
        ...(applied ? { applied } : {}),
        failures,
        ...(lastError ? { lastError } : {}),
        ...(lastSuccess ? { lastSuccess } : {}),
        diffs,
        diffMismatches,
      }
    },
  }
}
