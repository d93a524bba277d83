// The enforcement controller the agent embeds: policy -> resolve -> desired state -> kernel + hosts
// file, then keeps it true over time (TTL re-resolution, periodic verify + repair). One operation
// runs at a time, so a reconcile never interleaves with an apply.
import type { Logger } from '../log.js'
import type { Policy } from '../policy/types.js'
import type { AddressBook } from '../resolve/address-book.js'
import type { ApplyReport, DesiredState, Drift, Enforcer, FamilySets } from './types.js'
import type { HostsFile } from './hosts-file.js'
import { desiredState, domainsToResolve, hostsFileNames, type SkippedAddress } from './desired.js'

export interface ControllerDeps {
  enforcer: Enforcer
  hosts?: HostsFile
  book: AddressBook
  /**
   * Addresses/CIDRs never blocked because a domain resolved to them (upstreams, the server...). Read
   * on every apply: the agent passes getters here and calls reapply() when the server re-resolves.
   */
  protect: string[]
  /** Control-plane endpoints kept reachable ahead of every policy set (control-plane.ts). */
  exempt?: FamilySets
  log: Logger
  /** How often verify() runs (default 30 s). */
  reconcileIntervalMs?: number
}

export interface SetPolicyResult {
  report: ApplyReport
  /** Present when a hosts file is managed. */
  hosts?: { changed: boolean; names: number }
  /** Protected addresses left out, resolution failures: human-readable, one per line. */
  warnings: string[]
}

export interface ControllerStats {
  version?: number
  etag?: string
  appliedAt?: string
  /** Members per kernel set, names in the hosts block, domains tracked by the resolver. */
  entries: { block4: number; block6: number; alert4: number; alert6: number; allow4: number; allow6: number; hostsNames: number; domains: number }
  applies: number
  reconciles: number
  /** Drift items found and re-applied. */
  repairs: number
  resolveErrors: number
  warnings: number
  lastError?: string
  lastErrorAt?: string
  nextRefreshAt?: string
}

export interface EnforcementController {
  setPolicy(policy: Policy): Promise<SetPolicyResult>
  /** Re-resolve names whose TTL ran out; re-apply when an address set changed. */
  refreshOnce(): Promise<{ changed: boolean; errors: Array<{ domain: string; message: string }> }>
  /** The control plane (protect / exempt) changed: recompute and apply the current policy. */
  reapply(): Promise<SetPolicyResult | undefined>
  /** Verify kernel + hosts file against the last applied state; on drift re-apply. */
  reconcileOnce(): Promise<{ drift: Drift[]; repaired: boolean }>
  start(): void
  stop(): Promise<void>
  stats(): ControllerStats
}

/** Never re-arm a timer sooner than this (a lookup that keeps failing must not spin). */
const MIN_TIMER_MS = 1000
/** With nothing to resolve, still look again this often (a policy may arrive). */
const IDLE_REFRESH_MS = 60_000

export function createEnforcementController(deps: ControllerDeps): EnforcementController {
  const log = deps.log.child({ component: 'enforce' })
  const interval = deps.reconcileIntervalMs ?? 30_000
  let policy: Policy | undefined
  let state: DesiredState | undefined
  let names: string[] = []
  let domains: string[] = []
  let inited = false
  let running = false
  let refreshTimer: NodeJS.Timeout | undefined
  let reconcileTimer: NodeJS.Timeout | undefined
  const loggedWarnings = new Set<string>()
  const s = { applies: 0, reconciles: 0, repairs: 0, resolveErrors: 0, warnings: 0 }
  let appliedAt: string | undefined
  let lastError: { message: string; at: string } | undefined

  // One operation at a time: apply, refresh and reconcile all read and write the same kernel state.
  let queue: Promise<unknown> = Promise.resolve()
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = queue.then(fn, fn)
    queue = p.catch(() => undefined)
    return p
  }

  function fail(e: unknown, what: string): never {
    const message = `${what}: ${(e as Error)?.message ?? String(e)}`
    lastError = { message, at: new Date().toISOString() }
    log.error({ err: e }, message)
    throw e
  }

  /** Each distinct warning is logged once, not on every recompute. */
  function noteWarnings(list: string[], skipped: SkippedAddress[] = [], alreadyLogged: readonly string[] = []): void {
    s.warnings = list.length
    const structured = new Set<string>(alreadyLogged)
    for (const k of skipped) {
      const text = `${k.domain} resolved to ${k.ip}, not blocked: ${k.reason}`
      structured.add(text)
      if (loggedWarnings.has(text)) continue
      loggedWarnings.add(text)
      log.warn({ domain: k.domain, ip: k.ip, reason: k.reason }, 'resolved address not blocked')
    }
    for (const w of list) {
      if (structured.has(w) || loggedWarnings.has(w)) continue
      loggedWarnings.add(w)
      log.warn(w)
    }
    // Bounded: rotating answers could otherwise grow this forever.
    if (loggedWarnings.size > 100_000) loggedWarnings.clear()
  }

  /** Compute the desired state from the policy and the address book, then write kernel + hosts. */
  async function applyCurrent(resolveWarnings: string[]): Promise<SetPolicyResult> {
    const p = policy!
    const computed = desiredState(p, (d) => deps.book.addresses(d), { protect: deps.protect, ...(deps.exempt ? { exempt: deps.exempt } : {}) })
    const warnings = [...resolveWarnings, ...computed.warnings]
    // Resolution failures were logged (with fields) when they happened; the rest once each.
    noteWarnings(warnings, computed.skipped, resolveWarnings)
    let report: ApplyReport
    try {
      if (!inited) {
        await deps.enforcer.init()
        inited = true
      }
      report = await deps.enforcer.apply(computed.state)
    } catch (e) {
      fail(e, `${deps.enforcer.name}: apply failed`)
    }
    state = computed.state
    let hosts: SetPolicyResult['hosts']
    if (deps.hosts) {
      names = hostsFileNames(p)
      let r: { changed: boolean }
      try {
        r = await deps.hosts.apply(names)
      } catch (e) {
        fail(e, `hosts file ${deps.hosts.path}`)
      }
      hosts = { changed: r.changed, names: names.length }
      if (r.changed) report.actions.push(`${deps.hosts.path}: managed block now lists ${names.length} names`)
    }
    s.applies++
    appliedAt = new Date().toISOString()
    log.info({ version: p.version, backend: report.backend, changed: report.changed, added: report.added, removed: report.removed, ms: Math.round(report.ms), hostsChanged: hosts?.changed ?? false }, 'applied')
    return { report, ...(hosts ? { hosts } : {}), warnings }
  }

  function resolveWarnings(errs: Array<{ domain: string; message: string }>): string[] {
    s.resolveErrors += errs.length
    for (const e of errs) log.warn({ domain: e.domain, err: e.message }, 'could not resolve; keeping the addresses already known')
    return errs.map((e) => `${e.domain}: could not resolve (kept the addresses already known): ${e.message}`)
  }

  async function verifyAll(): Promise<Drift[]> {
    const drift = await deps.enforcer.verify()
    if (deps.hosts) drift.push(...(await deps.hosts.verify(names)))
    return drift
  }

  function armRefresh(): void {
    if (!running) return
    if (refreshTimer) clearTimeout(refreshTimer)
    const next = deps.book.nextRefreshAt()
    const delay = Number.isFinite(next) ? Math.max(MIN_TIMER_MS, next - Date.now()) : IDLE_REFRESH_MS
    // setTimeout holds 32-bit milliseconds; longer waits are simply re-armed.
    refreshTimer = setTimeout(() => {
      api.refreshOnce().catch(() => undefined).finally(armRefresh)
    }, Math.min(delay, 2 ** 31 - 1))
    refreshTimer.unref()
  }

  const api: EnforcementController = {
    setPolicy: (p) =>
      serial(async () => {
        policy = p
        domains = domainsToResolve(p)
        const r = await deps.book.refresh(domains)
        const out = await applyCurrent(resolveWarnings(r.errors))
        armRefresh()
        return out
      }),

    refreshOnce: () =>
      serial(async () => {
        if (!policy) return { changed: false, errors: [] }
        const r = await deps.book.refresh(domains)
        if (r.changed) {
          log.info({ domains: domains.length }, 'resolved addresses changed: re-applying')
          await applyCurrent(resolveWarnings(r.errors))
        } else resolveWarnings(r.errors)
        return r
      }),

    reapply: () => serial(async () => (policy ? applyCurrent([]) : undefined)),

    reconcileOnce: () =>
      serial(async () => {
        if (!state) return { drift: [], repaired: false }
        s.reconciles++
        let drift: Drift[]
        try {
          drift = await verifyAll()
        } catch (e) {
          fail(e, 'verify failed')
        }
        if (drift.length === 0) return { drift, repaired: false }
        for (const d of drift) log.warn({ kind: d.kind, detail: d.detail }, 'drift: repairing')
        try {
          if (!inited) {
            await deps.enforcer.init()
            inited = true
          }
          // The backend re-reads the kernel and writes only what is missing; the hosts file likewise.
          await deps.enforcer.apply(state)
          if (deps.hosts) await deps.hosts.apply(names)
        } catch (e) {
          fail(e, 'repair failed')
        }
        s.repairs += drift.length
        const left = await verifyAll()
        if (left.length > 0) lastError = { message: `drift remains after repair: ${left.map((d) => d.detail).join('; ')}`, at: new Date().toISOString() }
        log.info({ repaired: drift.length, remaining: left.length, repairsTotal: s.repairs }, 'drift repaired')
        return { drift, repaired: left.length === 0 }
      }),

    start() {
      if (running) return
      running = true
      armRefresh()
      reconcileTimer = setInterval(() => void api.reconcileOnce().catch(() => undefined), interval)
      reconcileTimer.unref()
    },

    async stop() {
      running = false
      if (refreshTimer) clearTimeout(refreshTimer)
      if (reconcileTimer) clearInterval(reconcileTimer)
      refreshTimer = reconcileTimer = undefined
      await queue
    },

    stats() {
      const next = deps.book.nextRefreshAt()
      return {
        ...(policy ? { version: policy.version, etag: policy.etag } : {}),
        ...(appliedAt ? { appliedAt } : {}),
        entries: {
          block4: state?.block.v4.length ?? 0,
          block6: state?.block.v6.length ?? 0,
          alert4: state?.alert.v4.length ?? 0,
          alert6: state?.alert.v6.length ?? 0,
          allow4: state?.allow.v4.length ?? 0,
          allow6: state?.allow.v6.length ?? 0,
          hostsNames: deps.hosts ? names.length : 0,
          domains: domains.length,
        },
        ...s,
        ...(lastError ? { lastError: lastError.message, lastErrorAt: lastError.at } : {}),
        ...(Number.isFinite(next) ? { nextRefreshAt: new Date(next).toISOString() } : {}),
      }
    },
  }
  return api
}
