// The per-host agent: composes the policy sync, the enforcement controller (resolve + kernel + hosts
// block + reconcile), the embedded sinkhole, status reports and hit upload. Order matters at start:
// the addresses resolved by the previous run and the cached policy are enforced before the server is
// asked, so a reboot during an outage (of the server or of DNS) stays protected.
import type { Logger } from '../log.js'
import type { Entry, Matcher, Policy } from '../policy/types.js'
import type { Hit } from '../sinkhole/types.js'
import type { DockerApiReport, ReportBody } from '../client/api-types.js'
import { createPolicySync, type BackoffOptions, type LocalSource, type PolicyClient, type PolicySync, type PolicySyncOptions, type SyncStatus } from './sync.js'
import type { PolicyCache } from './policy-cache.js'
import { countEntries, createReporter, type Reporter } from './reporter.js'
import { createHitUploader, type HitClient, type HitUploader } from './hit-uploader.js'
import { createAddressCache } from './address-cache.js'
import type { AddressStore } from '../resolve/address-book.js'

/** What the agent needs from the enforcement controller (src/enforce/controller.ts). */
export interface AgentController {
  /** The agent asks for 'background': what needs no DNS lookup is in place when this resolves. */
  setPolicy(p: Policy, opts?: { resolution?: 'wait' | 'background' }): Promise<{ warnings?: readonly unknown[]; resolving?: number } | unknown>
  /** Restore the addresses an earlier run resolved, and keep saving them to `store`. */
  persistAddresses?(store: AddressStore): Promise<unknown>
  /** Recompute and apply the current policy after the control plane changed (controller.ts). */
  reapply?(): Promise<unknown>
  reconcileOnce(): Promise<unknown>
  start(): void
  stop(): Promise<void> | void
  stats(): unknown
}

/** What the agent needs from the embedded sinkhole (src/sinkhole/sinkhole.ts). */
export interface AgentSinkhole {
  start(): Promise<unknown>
  stop(): Promise<unknown>
  setMatcher(m: Matcher): void
  /** What an interface listen waits for (docker0 without an address yet): reported with the errors. */
  waiting?(): string[]
}

export interface AgentHitSource {
  onHit(cb: (h: Hit) => void): () => void
  flush?(): Promise<void>
  close?(): Promise<void>
}

/** Default-deny containers (src/agent/container-egress.ts): profiles in, kernel state and hits out. */
export interface AgentContainerEgress {
  start(): Promise<void>
  stop(): Promise<void>
  setProfiles(profiles: Policy['profiles']): Promise<void>
  setQuarantineList?(list: Policy['quarantines']): Promise<void>
  problems(): string[]
  stats(): unknown
}

export interface AgentConfig {
  host: string
  agentVersion: string
  /** Directory for the policy cache and the hit spool. */
  stateDir: string
  /** Long-poll wait in seconds (default 30); 0 = plain polling every pollIntervalMs. */
  waitSec?: number
  pollIntervalMs?: number
  reportIntervalMs?: number
  hitUploadIntervalMs?: number
  /** The report after an apply is sent within a random delay up to this (default 1000 ms). */
  reportJitterMs?: number
  /** `remove`: take rules and the hosts block away on stop. Default `keep`. */
  onExit?: 'keep' | 'remove'
  backoff?: BackoffOptions
}

export interface AgentDeps {
  log: Logger
  cache: PolicyCache
  controller: AgentController
  /** The server; absent for a directory-only agent. */
  client?: PolicyClient & { report(body: ReportBody, signal?: AbortSignal): Promise<void> } & HitClient
  /** A local blocklist directory merged with the server policy by `combine`. */
  local?: LocalSource
  combine?: PolicySyncOptions['combine']
  etagOf?: PolicySyncOptions['etagOf']
  sinkhole?: AgentSinkhole
  buildMatcher?: (entries: Entry[]) => Matcher
  hits?: AgentHitSource
  /**
   * Policy entries that cover this host's control plane (its server, upstreams, sinkhole): the kernel
   * keeps that traffic exempt, and the operator is told, in the log and in every report's errors.
   */
  controlPlaneNotices?: (p: Policy) => string[]
  /** Called on stop when onExit is `remove`: the enforcer's remove() and the hosts block's. */
  remove?: () => Promise<void>
  /** Where resolved addresses are kept between runs; default `<stateDir>/resolved-addresses.json`. */
  addressCache?: AddressStore
  /** For tests: replaces the sync's sleep. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  /** The last look at this host's Docker API exposure (src/docker/api-exposure.ts), reported as is. */
  dockerApi?: () => DockerApiReport | undefined
  containerEgress?: AgentContainerEgress
}

export interface AgentStatus {
  sync: SyncStatus
  applied?: { version: number; etag: string; entries: number; at: string }
  applies: number
  applyErrors: number
  warnings: string[]
  reports?: ReturnType<Reporter['stats']>
  hits?: ReturnType<HitUploader['stats']>
  controller: unknown
  containerEgress?: unknown
}

export interface Agent {
  /** Enforce the cached policy, then start syncing, reconciling, reporting. Throws on a corrupt cache. */
  start(): Promise<void>
  stop(): Promise<void>
  /** Await one sync round (tests). */
  syncOnce(): ReturnType<PolicySync['syncOnce']>
  /** Run a sync round now (SIGHUP, a local blocklist file changed). */
  wake(): void
  reportNow(): Promise<boolean>
  /** The control plane changed (the server re-resolved): re-apply, refresh the notices, report. */
  controlPlaneChanged(): Promise<void>
  status(): AgentStatus
}

/** Pull repairs/drift out of whatever stats() the controller gives, without depending on its exact shape. */
function controllerFacts(stats: unknown): { repairs: number; drift: string[]; error?: string; problems: string[] } {
  const s = (stats ?? {}) as Record<string, unknown>
  const repairs = typeof s.repairs === 'number' ? s.repairs : 0
  const raw = Array.isArray(s.drift) ? s.drift : Array.isArray(s.lastDrift) ? s.lastDrift : []
  const drift = raw.map((d) => (typeof d === 'string' ? d : d && typeof d === 'object' && 'kind' in d ? `${String((d as { kind: unknown }).kind)}: ${String((d as { detail?: unknown }).detail ?? '')}` : JSON.stringify(d)))
  // The controller repairs drift as it finds it; what it could not repair shows up as its lastError.
  // It never clears lastError, so only one newer than its last successful apply still counts.
  const fresh = typeof s.lastErrorAt !== 'string' || typeof s.appliedAt !== 'string' || s.lastErrorAt >= s.appliedAt
  const lastError = typeof s.lastError === 'string' && fresh ? s.lastError : undefined
  if (lastError && /^drift remains/.test(lastError)) drift.push(lastError)
  // Standing conditions (a corrupt address cache not yet healed by fresh answers...): errors until fixed.
  const problems = Array.isArray(s.problems) ? s.problems.filter((x): x is string => typeof x === 'string') : []
  return { repairs, drift, problems, ...(lastError && !/^drift remains/.test(lastError) ? { error: lastError } : {}) }
}

function warningText(w: unknown): string {
  if (typeof w === 'string') return w
  if (w && typeof w === 'object' && 'message' in w) return String((w as { message: unknown }).message)
  return JSON.stringify(w)
}

export function createAgent(config: AgentConfig, deps: AgentDeps): Agent {
  const log = deps.log.child({ component: 'agent' })
  let applied: AgentStatus['applied']
  let appliedPolicy: Policy | undefined
  let applies = 0
  let applyErrors = 0
  let lastApplyError: string | undefined
  let warnings: string[] = []
  let notices: string[] = []
  const loggedNotices = new Set<string>()

  function updateNotices(p: Policy | undefined): void {
    notices = p && deps.controlPlaneNotices ? deps.controlPlaneNotices(p) : []
    for (const n of notices) {
      if (loggedNotices.has(n)) continue
      loggedNotices.add(n)
      log.warn({ notice: n }, 'a policy entry covers this host\'s control plane')
    }
    if (loggedNotices.size > 1000) loggedNotices.clear()
  }
  let unsubscribe: (() => void) | undefined
  let started = false

  const uploader: HitUploader | undefined =
    deps.client && deps.hits
      ? createHitUploader({
          client: deps.client,
          host: config.host,
          spoolFile: `${config.stateDir}/hits-spool.jsonl`,
          ...(config.hitUploadIntervalMs ? { intervalMs: config.hitUploadIntervalMs } : {}),
          log: deps.log,
        })
      : undefined

  let reporter: Reporter | undefined

  async function onPolicy(p: Policy): Promise<void> {
    const t0 = Date.now()
    // The sinkhole needs no addresses: it takes the policy at once, before the kernel write and long
    // before the lookups (an upstream that is down costs its timeout). If the kernel write then fails,
    // the sinkhole keeps the new policy: each layer enforces what it can, and the retry rewrites it.
    if (deps.sinkhole && deps.buildMatcher) deps.sinkhole.setMatcher(deps.buildMatcher(p.entries))
    // Containers held to a profile follow the new profiles whatever becomes of the fleet apply below
    // (its failures are its own; the container seam reports its own in problems()).
    // Quarantines first: the apply that setProfiles schedules then holds both.
    void deps.containerEgress?.setQuarantineList?.(p.quarantines)
    const containersDone = deps.containerEgress?.setProfiles(p.profiles)
    let resolving = 0
    try {
      // 'background': explicit networks, addresses already known and the hosts block are in place when
      // this returns; names still being resolved follow by themselves (their failures are warnings).
      const r = (await deps.controller.setPolicy(p, { resolution: 'background' })) as { warnings?: readonly unknown[]; resolving?: number } | undefined
      warnings = (r?.warnings ?? []).map(warningText)
      resolving = r?.resolving ?? 0
    } catch (e) {
      applyErrors++
      lastApplyError = `apply of version ${p.version}: ${(e as Error).message}`
      void reporter?.reportNow()
      throw e
    }
    await containersDone
    updateNotices(p)
    warnings.push(...notices)
    applies++
    lastApplyError = undefined
    appliedPolicy = p
    applied = { version: p.version, etag: p.etag, entries: p.entries.length, at: new Date().toISOString() }
    log.info({ version: p.version, entries: p.entries.length, ms: Date.now() - t0, warnings: warnings.length, resolving }, 'policy enforced')
    // Right after each apply, so the fleet view shows the new version without waiting a tick; spread
    // over up to reportJitterMs so a push does not make every agent of the fleet POST in the same
    // instant (and compete with the other agents' kernel applies for CPU).
    const jitter = config.reportJitterMs ?? 1000
    if (jitter <= 0) void reporter?.reportNow()
    else setTimeout(() => void reporter?.reportNow(), Math.floor(Math.random() * jitter)).unref()
  }

  const sync = createPolicySync({
    ...(deps.client ? { client: deps.client } : {}),
    cache: deps.cache,
    onPolicy,
    log: deps.log,
    ...(config.waitSec !== undefined ? { waitSec: config.waitSec } : {}),
    ...(config.pollIntervalMs !== undefined ? { pollIntervalMs: config.pollIntervalMs } : {}),
    ...(config.backoff ? { backoff: config.backoff } : {}),
    ...(deps.local ? { local: deps.local } : {}),
    ...(deps.combine ? { combine: deps.combine } : {}),
    ...(deps.etagOf ? { etagOf: deps.etagOf } : {}),
    ...(deps.sleep ? { sleep: deps.sleep } : {}),
  })

  function reportState(): Omit<ReportBody, 'host' | 'agentVersion'> {
    const s = sync.status()
    const c = controllerFacts(deps.controller.stats())
    const errs: string[] = []
    if (lastApplyError) errs.push(lastApplyError)
    if (c.error && !errs.some((x) => x.includes(c.error!))) errs.push(c.error)
    errs.push(...c.problems)
    if (s.lastError && s.lastError !== lastApplyError) errs.push(s.lastError)
    const hs = uploader?.stats()
    if (hs && hs.dropped > 0) errs.push(`hit spool full: ${hs.dropped} hits dropped`)
    errs.push(...notices)
    errs.push(...(deps.sinkhole?.waiting?.() ?? []))
    errs.push(...(deps.containerEgress?.problems() ?? []))
    const dockerApi = deps.dockerApi?.()
    // version/etag are the server's (so the fleet view compares like with like); counts are what is enforced.
    return {
      version: s.server?.version ?? appliedPolicy?.version ?? 0,
      etag: s.server?.etag ?? appliedPolicy?.etag ?? '',
      counts: countEntries(appliedPolicy?.entries ?? []),
      repairs: c.repairs,
      drift: c.drift,
      errors: errs,
      ...(dockerApi ? { dockerApi } : {}),
    }
  }

  if (deps.client) {
    reporter = createReporter({
      client: deps.client,
      host: config.host,
      agentVersion: config.agentVersion,
      ...(config.reportIntervalMs ? { intervalMs: config.reportIntervalMs } : {}),
      state: reportState,
      log: deps.log,
    })
  }

  return {
    async start() {
      if (started) return
      started = true
      // 0. What the previous run resolved, so the first apply keeps those addresses even when DNS is
      // down now. Never fatal: a corrupt file is moved aside and reported (see address-cache.ts).
      if (deps.controller.persistAddresses) {
        try {
          await deps.controller.persistAddresses(deps.addressCache ?? createAddressCache({ dir: config.stateDir, log: deps.log }))
        } catch (e) {
          log.error({ err: (e as Error).message }, 'resolved-address cache not used')
        }
      }
      // 1. The cached policy first (a corrupt cache throws here and the agent does not start).
      try {
        await sync.applyCached()
      } catch (e) {
        if ((e as { code?: string }).code === 'EG_CACHE_CORRUPT') {
          started = false
          throw e
        }
        log.error({ err: (e as Error).message }, 'enforcing the cached policy failed; continuing with the server')
      }
      // 2. Containers held to a profile: the cached policy's profiles (set above), or none yet (a
      // labelled container is then held to DNS only: fail closed until the policy arrives).
      if (deps.containerEgress) {
        try {
          await deps.containerEgress.start()
        } catch (e) {
          log.error({ err: (e as Error).message }, 'container egress did not start')
        }
      }
      // 3. The sinkhole answers with whatever matcher it has (the cached policy's, or forwards all).
      if (deps.sinkhole) await deps.sinkhole.start()
      // 4. Hits: spool left by a previous run, then live ones.
      if (uploader && deps.hits) {
        await uploader.load()
        unsubscribe = deps.hits.onHit((h) => uploader.add(h))
        uploader.start()
      }
      deps.controller.start()
      sync.start()
      if (reporter) {
        reporter.start()
        void reporter.reportNow()
      }
      log.info({ cached: applied?.version }, 'agent started')
    },
    async stop() {
      if (!started) return
      started = false
      await sync.stop()
      reporter?.stop()
      await deps.controller.stop()
      if (deps.sinkhole) await deps.sinkhole.stop()
      await deps.containerEgress?.stop()
      // Flush the aggregated hits while still subscribed, so the last interval reaches the uploader.
      await deps.hits?.flush?.()
      unsubscribe?.()
      await deps.hits?.close?.()
      // A last attempt to send hits, bounded: the server may be the reason we are stopping.
      if (uploader) {
        await Promise.race([uploader.flush(), new Promise((r) => setTimeout(r, 2000).unref())])
        await uploader.stop()
      }
      if (config.onExit === 'remove' && deps.remove) {
        await deps.remove()
        log.info('rules and hosts block removed (--on-exit remove)')
      } else {
        log.info({ version: applied?.version }, 'agent stopped; rules stay in place')
      }
    },
    syncOnce: () => sync.syncOnce(),
    wake: () => sync.wake(),
    reportNow: () => reporter?.reportNow() ?? Promise.resolve(false),
    async controlPlaneChanged() {
      try {
        await deps.controller.reapply?.()
      } catch (e) {
        log.error({ err: (e as Error).message }, 'applying the changed control plane failed; the next apply retries')
      }
      updateNotices(appliedPolicy)
      void reporter?.reportNow()
    },
    status() {
      return {
        sync: sync.status(),
        ...(applied ? { applied } : {}),
        applies,
        applyErrors,
        warnings,
        ...(reporter ? { reports: reporter.stats() } : {}),
        ...(uploader ? { hits: uploader.stats() } : {}),
        controller: deps.controller.stats(),
        ...(deps.containerEgress ? { containerEgress: deps.containerEgress.stats() } : {}),
      }
    },
  }
}
