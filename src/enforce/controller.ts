// The enforcement controller the agent embeds: policy -> resolve -> desired state -> kernel + hosts
// file, then keeps it true over time (TTL re-resolution, periodic verify + repair). Kernel and hosts
// writes run one at a time, so a reconcile never interleaves with an apply. DNS lookups never hold
// that line: in the agent's mode a new policy's explicit networks, known addresses and hosts block
// are written at once, and the addresses of its names follow in batches as their answers land.
import type { Logger } from '../log.js'
import type { Policy } from '../policy/types.js'
import type { AddressBook, AddressStore, RefreshResult } from '../resolve/address-book.js'
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
  /** Answers arriving within this window go to the kernel in one write (default 100 ms). */
  batchMs?: number
  /** Changed addresses are saved to the address store at most this often (default 10 s). */
  saveIntervalMs?: number
}

export interface SetPolicyOptions {
  /**
   * 'wait' (default, `apply --once`): resolve every name first, then write kernel and hosts once.
   * 'background' (the agent): write everything that needs no lookup now (explicit networks, the
   * addresses already known, the hosts block) and return; lookups follow, and their addresses are
   * written in batches as answers land, so an upstream that never answers delays nothing else.
   */
  resolution?: 'wait' | 'background'
}

export interface SetPolicyResult {
  report: ApplyReport
  /** Present when a hosts file is managed. */
  hosts?: { changed: boolean; names: number }
  /** Protected addresses left out, resolution failures: human-readable, one per line. */
  warnings: string[]
  /** Lookups still running when this returned (background mode; 0 otherwise). */
  resolving: number
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
  /** Lookups queued or running. */
  resolving: number
  lastError?: string
  lastErrorAt?: string
  nextRefreshAt?: string
  /** Conditions that hold until fixed (a corrupt address cache whose names are not all resolved yet...): reported as errors. */
  problems: string[]
  /** The resolved-address cache, when one is used. */
  addressCache?: { file: string; restored: number; writes: number; writeErrors: number; corrupt: number }
}

export interface EnforcementController {
  setPolicy(policy: Policy, opts?: SetPolicyOptions): Promise<SetPolicyResult>
  /** Re-resolve names whose TTL ran out; re-apply when an address set changed. */
  refreshOnce(): Promise<RefreshResult>
  /** The control plane (protect / exempt) changed: recompute and apply the current policy. */
  reapply(): Promise<SetPolicyResult | undefined>
  /** Verify kernel + hosts file against the last applied state; on drift re-apply. */
  reconcileOnce(): Promise<{ drift: Drift[]; repaired: boolean }>
  /**
   * Load the addresses `store` kept from an earlier run into the resolver (call before the first
   * setPolicy), then save them there after each resolution round and at stop(). A missing or corrupt
   * store never throws: enforcement goes on, the problem is logged and shown in stats().problems.
   */
  persistAddresses(store: AddressStore): Promise<{ restored: number; problem?: string }>
  /** Resolves when no lookup round or batched write is pending (tests; `apply`-like callers). */
  idle(): Promise<void>
  start(): void
  stop(): Promise<void>
  stats(): ControllerStats
}

/** Never re-arm a timer sooner than this (a lookup that keeps failing must not spin). */
const MIN_TIMER_MS = 1000
/** With nothing to resolve, still look again this often (a policy may arrive). */
const IDLE_REFRESH_MS = 60_000
/** Rounds that only moved TTLs (no address changed) save the address cache at most this often. */
const SAVE_UNCHANGED_MS = 300_000
/**
 * Changed addresses are saved at most this often by default (the file holds every name: with rotating
 * answers a save per round could mean megabytes a second). A crash loses at most this much of what
 * was learned, and that only matters if DNS is down at the next start too.
 */
const SAVE_CHANGED_MS = 10_000

function sameState(a: DesiredState, b: DesiredState): boolean {
  const same = (x: readonly string[], y: readonly string[]): boolean => x.length === y.length && x.every((v, i) => v === y[i])
  return a.version === b.version && (['block', 'alert', 'allow'] as const).every((r) => same(a[r].v4, b[r].v4) && same(a[r].v6, b[r].v6))
}

export function createEnforcementController(deps: ControllerDeps): EnforcementController {
  const log = deps.log.child({ component: 'enforce' })
  const interval = deps.reconcileIntervalMs ?? 30_000
  const batchMs = deps.batchMs ?? 100
  const saveChangedMs = deps.saveIntervalMs ?? SAVE_CHANGED_MS
  let policy: Policy | undefined
  let state: DesiredState | undefined
  let names: string[] = []
  let domains: string[] = []
  let inited = false
  let running = false
  /** Set by stop(): answers that land afterwards are recorded but not written to the kernel. */
  let closed = false
  let refreshTimer: NodeJS.Timeout | undefined
  let reconcileTimer: NodeJS.Timeout | undefined
  const loggedWarnings = new Set<string>()
  const s = { applies: 0, reconciles: 0, repairs: 0, resolveErrors: 0, warnings: 0 }
  let appliedAt: string | undefined
  let lastError: { message: string; at: string } | undefined
  /** Resolution failures of the last finished round: repeated as warnings by the applies after it. */
  let resolveWarningList: string[] = []

  // One write at a time: apply, batched re-apply and reconcile all read and write the same kernel state.
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

  async function initOnce(): Promise<void> {
    if (inited) return
    await deps.enforcer.init()
    inited = true
  }

  /**
   * Compute the desired state from the policy and what the address book knows now, then write the
   * kernel and (withHosts) the hosts block. The two are independent and written side by side: a
   * failing kernel never holds back the hosts block, and the reverse. The first failure is rethrown.
   */
  async function applyCurrent(p: Policy, withHosts: boolean, why: 'policy' | 'resolved'): Promise<SetPolicyResult> {
    const computed = desiredState(p, (d) => deps.book.addresses(d), { protect: deps.protect, ...(deps.exempt ? { exempt: deps.exempt } : {}) })
    const warnings = [...resolveWarningList, ...computed.warnings]
    // Resolution failures were logged (with fields) when they happened; the rest once each.
    noteWarnings(warnings, computed.skipped, resolveWarningList)
    const kernel = (async () => {
      await initOnce()
      return deps.enforcer.apply(computed.state)
    })()
    const hostsNames = withHosts && deps.hosts ? hostsFileNames(p) : undefined
    const hostsStep = hostsNames && deps.hosts ? deps.hosts.apply(hostsNames) : Promise.resolve(undefined)
    const [k, h] = await Promise.allSettled([kernel, hostsStep])
    let hosts: SetPolicyResult['hosts']
    if (h.status === 'fulfilled' && h.value && hostsNames) {
      names = hostsNames
      hosts = { changed: h.value.changed, names: names.length }
    }
    if (k.status === 'rejected') fail(k.reason, `${deps.enforcer.name}: apply failed`)
    // The kernel holds it even if the hosts file failed: repairs and batches compare with this.
    state = computed.state
    if (h.status === 'rejected') fail(h.reason, `hosts file ${deps.hosts!.path}`)
    const report = k.value
    if (hosts?.changed) report.actions.push(`${deps.hosts!.path}: managed block now lists ${names.length} names`)
    s.applies++
    appliedAt = new Date().toISOString()
    log.info({ version: p.version, why, backend: report.backend, changed: report.changed, added: report.added, removed: report.removed, ms: Math.round(report.ms), hostsChanged: hosts?.changed ?? false }, 'applied')
    return { report, ...(hosts ? { hosts } : {}), warnings, resolving: 0 }
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

  // --- batched writes of resolved addresses ---------------------------------------------------------
  let dirty = false
  let batchTimer: NodeJS.Timeout | undefined

  /** An answer changed some name's addresses: write them with whatever else lands in the next batchMs. */
  function markDirty(): void {
    dirty = true
    if (batchTimer || closed) return
    batchTimer = setTimeout(() => {
      batchTimer = undefined
      void flush()
    }, batchMs)
    batchTimer.unref()
  }

  /** Write the addresses known now to the kernel (one apply), if anything changed since the last one. */
  async function flush(): Promise<void> {
    if (batchTimer) clearTimeout(batchTimer)
    batchTimer = undefined
    if (!dirty || closed) return
    dirty = false
    await serial(async () => {
      if (!policy || closed) return
      // A round's end reports every name that changed since the last round, though the batches
      // already wrote most of them: skip the write when the kernel would get what it holds.
      if (state && sameState(desiredState(policy, (d) => deps.book.addresses(d), { protect: deps.protect }).state, state)) return
      await applyCurrent(policy, false, 'resolved')
    }).catch(() => {
      // Recorded in lastError by fail(); the next answer or the end of the next round tries again.
      dirty = true
    })
  }

  // --- the resolved-address cache -------------------------------------------------------------------
  let store: AddressStore | undefined
  const cacheStats = { restored: 0, writes: 0, writeErrors: 0, corrupt: 0 }
  /** A corrupt cache: shown until every name of the policy has been answered again. */
  let corruptProblem: string | undefined
  let writeProblem: string | undefined
  let lastSave = 0
  let saving: Promise<void> = Promise.resolve()
  let saveTimer: NodeJS.Timeout | undefined

  /** Save after a round: at once when the last save is old enough, else once the interval is over. */
  function scheduleSave(changed: boolean): Promise<void> {
    if (!store || closed) return saving
    const wait = (changed ? saveChangedMs : SAVE_UNCHANGED_MS) - (Date.now() - lastSave)
    if (wait <= 0) return save()
    if (changed && !saveTimer) {
      saveTimer = setTimeout(() => {
        saveTimer = undefined
        void save()
      }, wait)
      saveTimer.unref()
    }
    return saving
  }

  /** After stop() only stop's own save runs: a round that ends later must not write behind its back. */
  function save(final = false): Promise<void> {
    if (!store || (closed && !final)) return saving
    const st = store
    // Chained: two saves never race on the same file; each writes the book as it is when it runs.
    saving = saving.then(async () => {
      try {
        await st.write(deps.book.snapshot())
        cacheStats.writes++
        lastSave = Date.now()
        writeProblem = undefined
      } catch (e) {
        cacheStats.writeErrors++
        writeProblem = `${st.file}: cannot save resolved addresses: ${(e as Error).message}`
        log.warn({ file: st.file, err: (e as Error).message }, 'cannot save resolved addresses; a restart while DNS is down would not block them')
      }
    })
    return saving
  }

  function checkCorruptHealed(): void {
    if (!corruptProblem || !policy) return
    if (!domains.every((d) => deps.book.answered(d))) return
    log.info({ domains: domains.length }, 'every blocked name answered again since the corrupt resolved-address cache')
    corruptProblem = undefined
  }

  /**
   * One lookup round for `list` (outside the write queue): answers that change addresses are written
   * in batches while it runs, whatever remains at its end is written before it resolves.
   */
  const rounds = new Set<Promise<unknown>>()
  function resolveRound(list: string[]): Promise<RefreshResult> {
    const p = (async () => {
      const r = await deps.book.refresh(list, { onChange: markDirty })
      resolveWarningList = resolveWarnings(r.errors)
      if (r.changed) dirty = true
      await flush()
      checkCorruptHealed()
      await scheduleSave(r.changed)
      armRefresh()
      return r
    })()
    rounds.add(p)
    void p.catch(() => undefined).finally(() => rounds.delete(p))
    return p
  }

  const api: EnforcementController = {
    setPolicy(p, opts = {}) {
      if (opts.resolution !== 'background') {
        return serial(async () => {
          policy = p
          domains = domainsToResolve(p)
          const r = await deps.book.refresh(domains)
          resolveWarningList = resolveWarnings(r.errors)
          const out = await applyCurrent(p, true, 'policy')
          checkCorruptHealed()
          await scheduleSave(r.changed)
          armRefresh()
          return out
        })
      }
      closed = false
      // Every write from now on (this one, batches of answers) is computed from the new policy.
      policy = p
      domains = domainsToResolve(p)
      // Lookups start now, beside the write below; batches of their answers queue behind it.
      resolveRound(domains).catch((e: unknown) => log.error({ err: (e as Error).message }, 'resolution round failed'))
      return serial(async () => {
        const out = await applyCurrent(p, true, 'policy')
        armRefresh()
        return { ...out, resolving: deps.book.inFlight() }
      })
    },

    async refreshOnce() {
      if (!policy) return { changed: false, errors: [] }
      return resolveRound(domains)
    },

    // The kernel only: the control plane changes what is exempt and protected, not the hosts block.
    reapply: () => serial(async () => (policy ? applyCurrent(policy, false, 'policy') : undefined)),

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
          await initOnce()
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

    async persistAddresses(st) {
      store = st
      let r: Awaited<ReturnType<AddressStore['read']>>
      try {
        r = await st.read()
      } catch (e) {
        r = { problem: `cannot read: ${(e as Error).message}` }
      }
      if (r === undefined) {
        log.info({ file: st.file }, 'no resolved-address cache yet')
        return { restored: 0 }
      }
      if ('problem' in r) {
        cacheStats.corrupt++
        corruptProblem =
          `resolved-address cache ${st.file} unusable (${r.problem})${r.aside ? `, moved to ${r.aside}` : ''}: ` +
          'blocked names are resolved again; until each answers, its addresses are not in the kernel'
        log.warn({ file: st.file, aside: r.aside, problem: r.problem }, 'resolved-address cache unusable: ignored, names are resolved again')
        return { restored: 0, problem: r.problem }
      }
      cacheStats.restored = deps.book.restore(r.snapshot)
      log.info({ file: st.file, domains: cacheStats.restored }, 'resolved addresses restored')
      return { restored: cacheStats.restored }
    },

    async idle() {
      while (rounds.size > 0) await Promise.allSettled([...rounds])
      await flush()
      await queue
      await saving
    },

    start() {
      if (running) return
      running = true
      closed = false
      armRefresh()
      reconcileTimer = setInterval(() => void api.reconcileOnce().catch(() => undefined), interval)
      reconcileTimer.unref()
    },

    async stop() {
      running = false
      closed = true
      if (refreshTimer) clearTimeout(refreshTimer)
      if (reconcileTimer) clearInterval(reconcileTimer)
      if (batchTimer) clearTimeout(batchTimer)
      if (saveTimer) clearTimeout(saveTimer)
      refreshTimer = reconcileTimer = batchTimer = saveTimer = undefined
      await queue
      // Lookups still running are not waited for (an upstream that is down would hold stop up to its
      // timeout); what is known now is saved for the next start.
      if (store) await save(true)
    },

    stats() {
      const next = deps.book.nextRefreshAt()
      const problems = [corruptProblem, writeProblem].filter((x): x is string => x !== undefined)
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
        resolving: deps.book.inFlight(),
        ...(lastError ? { lastError: lastError.message, lastErrorAt: lastError.at } : {}),
        ...(Number.isFinite(next) ? { nextRefreshAt: new Date(next).toISOString() } : {}),
        problems,
        ...(store ? { addressCache: { file: store.file, ...cacheStats } } : {}),
      }
    },
  }
  return api
}
