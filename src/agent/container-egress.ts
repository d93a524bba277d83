// The agent's edge for default-deny containers (issue 16): keeps the ContainerEnforcer's kernel state
// equal to planContainers(profiles, running containers, quarantines) as any of them changes, forgets
// the learned pairs of addresses that left, and turns what the kernel refused (its seen sets, polled)
// into hits naming the container and its profile. Applies are serialised and coalesced.
import { quarantineActive, quarantineFor } from '../quarantine/match.js'
import type { Quarantine } from '../quarantine/types.js'
import type { Logger } from '../log.js'
import type { ContainerChange, ContainerInfo, ContainerRecord } from '../docker/types.js'
import type { ContainerEnforcer, ContainerState, SeenEvent } from '../enforce/container-types.js'
import type { Profile } from '../profiles/types.js'
import type { HitSink } from '../sinkhole/types.js'
import { compileProfiles, type CompiledProfile } from '../profiles/decide.js'
import type { ClientProfile } from '../sinkhole/client-profiles.js'
import { leftAddresses, missingProfileText, planContainers, type MissingProfile } from './container-state.js'

export interface ContainerSource {
  list(): ContainerRecord[]
  onChange(fn: (c: ContainerChange) => void): () => void
  byIp(ip: string): ContainerInfo | undefined
  recordByIp(ip: string): ContainerRecord | undefined
}

export interface ContainerEgressOptions {
  enforcer: ContainerEnforcer
  containers: ContainerSource
  /** The sinkhole's addresses as containers reach it (read at every apply: an interface listen binds late). */
  sinkhole: () => ContainerState['sinkhole']
  hits?: HitSink
  log: Logger
  /** Gets the client address -> profile map for the sinkhole at every plan (before the kernel apply). */
  onClientProfiles?: (m: Map<string, ClientProfile>) => void
  /** How often the kernel's seen sets are drained into hits (default 3 s). */
  seenIntervalMs?: number
  /** This host's name, as the policy's quarantines name it (`--host`). */
  host?: string
}

export interface ContainerEgressStats {
  applies: number
  applyErrors: number
  lastError?: string
  held: number
  missingProfiles: number
  seen: number
}

export interface ContainerEgress {
  /** init() the seam, apply, follow container changes, poll the seen sets. */
  start(): Promise<void>
  stop(): Promise<void>
  /** The policy's profiles (the agent calls this on every policy). Resolves after the apply. */
  setProfiles(profiles: readonly Profile[] | undefined): Promise<void>
  /** Hook for quarantine: the container ids quarantined on this host (from the policy). Resolves after the apply; new ones' connections are cut. */
  setQuarantines(ids: readonly string[]): Promise<void>
  /**
   * The policy's quarantines: matched against the running containers at every apply (a name, an id
   * prefix or a compose service; this host or every host), so a container started or restarted later
   * is held too. Expired ones are ignored (an agent on a cached policy may hold one past its expiry).
   */
  setQuarantineList(list: readonly Quarantine[] | undefined): Promise<void>
  /** The profile a container address is held to now (undefined: unlabelled, or its label names no profile). */
  profileOf(ip: string): Profile | undefined
  /** Report errors: labels naming no profile, a failed apply. */
  problems(): string[]
  /** Drain the seen sets now (tests; the timer does it every seenIntervalMs). */
  pollSeen(): Promise<number>
  /** Apply now and wait (tests). */
  sync(): Promise<void>
  stats(): ContainerEgressStats
}

/** What a kernel refusal looks like in the hit log: the destination as the name, proto/port as the type. */
export function seenToHit(e: SeenEvent, container: ContainerInfo | undefined, profile: Profile | undefined, time: string, label?: string): Parameters<HitSink['record']>[0] {
  const action = e.kind === 'refused' ? 'deny' : e.kind === 'alerted' ? 'alert' : 'quarantine'
  const qtype = e.proto ? (e.port !== undefined ? `${e.proto}/${e.port}` : e.proto) : 'ip'
  const value = e.kind === 'quarantine' ? 'quarantine' : (profile?.name ?? (label !== undefined ? `missing profile ${label}` : 'missing profile'))
  const hit: Parameters<HitSink['record']>[0] = {
    time,
    client: e.src,
    name: e.dst,
    qtype,
    action,
    entry: { value, source: profile?.source ?? 'egress-guard', mode: action === 'alert' ? 'alert' : 'block' },
    answer: action === 'alert' ? 'passed' : 'rejected',
  }
  if (container) hit.container = container
  if (profile) hit.profile = profile.name
  return hit
}

export function createContainerEgress(opts: ContainerEgressOptions): ContainerEgress {
  const log = opts.log.child({ component: 'container-egress' })
  let profiles: readonly Profile[] | undefined
  let compiled = new Map<string, CompiledProfile>()
  let quarantined = new Set<string>()
  let quarantineList: readonly Quarantine[] = []
  /** The ids held in quarantine: given by id (setQuarantines) or matched from the policy's list. */
  const quarantinedNow = (records: readonly ContainerRecord[]): Set<string> => {
    if (quarantineList.length === 0) return quarantined
    const out = new Set(quarantined)
    const live = quarantineList.filter((q) => quarantineActive(q, new Date()))
    for (const r of records) if (quarantineFor(live, r, opts.host ?? '')) out.add(r.id)
    return out
  }
  let applied: ContainerState | undefined
  let missing: MissingProfile[] = []
  let held = new Map<string, Profile>()
  const st: ContainerEgressStats = { applies: 0, applyErrors: 0, held: 0, missingProfiles: 0, seen: 0 }
  let running: Promise<void> | undefined
  let again = false
  let started = false
  let unsubscribe: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  let polling: Promise<number> | undefined
  let policySeen = false
  const reported = new Set<string>()

  async function applyOnce(): Promise<void> {
    const records = opts.containers.list()
    const plan = planContainers(records, profiles, quarantinedNow(records), opts.sinkhole())
    const before = applied
    if (opts.onClientProfiles) {
      // Every address of a container held to an existing profile (learn included: the sinkhole records
      // its lookups); quarantined ones are the kernel's business only.
      const byIp = new Map<string, ClientProfile>()
      const q = new Set(plan.state.containers.filter((c) => c.mode === 'quarantine').map((c) => c.id))
      for (const r of opts.containers.list()) {
        const p = plan.held.get(r.id)
        const c = p ? compiled.get(p.name) : undefined
        if (!c || q.has(r.id)) continue
        const info = { id: r.id, name: r.name, image: r.image, ...(r.service ? { service: r.service } : {}), ...(r.project ? { project: r.project } : {}) }
        for (const ip of r.addresses) byIp.set(ip, { compiled: c, container: info })
      }
      opts.onClientProfiles(byIp)
    }
    const wasQuarantined = new Set(before?.containers.filter((c) => c.mode === 'quarantine').flatMap((c) => c.addresses) ?? [])
    try {
      await opts.enforcer.apply(plan.state)
      st.applies++
      st.lastError = undefined
    } catch (e) {
      st.applyErrors++
      st.lastError = `container egress apply: ${(e as Error).message}`
      log.error({ err: (e as Error).message }, 'container egress apply failed; retried at the next change or poll')
      return
    }
    applied = plan.state
    missing = plan.missing
    held = plan.held
    st.held = plan.state.containers.length
    st.missingProfiles = missing.length
    // Once per container and label, and only once a policy is known (before it, every label names no profile).
    if (policySeen) {
      for (const m of plan.missing) {
        const key = `${m.id}\u0000${m.profile}`
        if (reported.has(key)) continue
        reported.add(key)
        log.warn({ container: m.name, profile: m.profile }, 'label names no profile: container held to DNS only')
        const rec = opts.containers.list().find((r) => r.id === m.id)
        try {
          opts.hits?.record({
            time: new Date().toISOString(),
            client: rec?.addresses[0] ?? '',
            ...(rec ? { container: { id: rec.id, name: rec.name, image: rec.image, ...(rec.service ? { service: rec.service } : {}), ...(rec.project ? { project: rec.project } : {}) } } : {}),
            name: m.profile,
            qtype: 'profile',
            action: 'deny',
            entry: { value: `missing profile ${m.profile}`, source: 'egress-guard.profile label', mode: 'block' },
            answer: 'missing-profile',
          })
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'hit sink failed')
        }
      }
    }
    // apply() drops the learned sets of addresses that left; forget() also drops what the writer kept
    // in memory for them (a pair deferred for an address not yet applied).
    for (const ip of leftAddresses(before, plan.state)) {
      await opts.enforcer.forget(ip).catch((e: Error) => log.warn({ ip, err: e.message }, 'forget failed'))
    }
    // Newly quarantined: established connections are cut after the rules are in (their order keeps them cut).
    for (const c of plan.state.containers) {
      if (c.mode !== 'quarantine') continue
      for (const ip of c.addresses) {
        if (wasQuarantined.has(ip)) continue
        await opts.enforcer.cut(ip).catch((e: Error) => log.warn({ ip, err: e.message }, 'conntrack cut failed'))
      }
    }
  }

  /** Serialise applies; changes arriving during one make exactly one more. */
  function schedule(): Promise<void> {
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        await applyOnce()
      } while (again)
    })().finally(() => {
      running = undefined
    })
    return running
  }

  async function pollSeen(): Promise<number> {
    if (polling) return polling
    polling = (async () => {
      let events: SeenEvent[]
      try {
        events = await opts.enforcer.seen()
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'reading the seen sets failed')
        return 0
      }
      const time = new Date().toISOString()
      for (const e of events) {
        const rec = opts.containers.recordByIp(e.src)
        const profile = rec ? held.get(rec.id) : undefined
        try {
          opts.hits?.record(seenToHit(e, opts.containers.byIp(e.src), profile, time, rec?.profile))
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'hit sink failed')
        }
      }
      st.seen += events.length
      return events.length
    })().finally(() => {
      polling = undefined
    })
    return polling
  }

  return {
    async start() {
      if (started) return
      started = true
      await opts.enforcer.init()
      unsubscribe = opts.containers.onChange(() => void schedule())
      await schedule()
      timer = setInterval(() => {
        void pollSeen()
        // A failed apply is retried here too (the kernel or a tool may have been busy), and the sinkhole's
        // addresses are followed (an interface listen binds when docker0 gets its address).
        if (st.lastError || (applied && JSON.stringify(opts.sinkhole()) !== JSON.stringify(applied.sinkhole))) void schedule()
      }, opts.seenIntervalMs ?? 3000)
      timer.unref()
    },
    async stop() {
      if (!started) return
      started = false
      unsubscribe?.()
      clearInterval(timer)
      await running
      await pollSeen()
      await opts.enforcer.close()
    },
    setProfiles(p) {
      profiles = p
      compiled = compileProfiles(p)
      policySeen = true
      return started ? schedule() : Promise.resolve()
    },
    setQuarantines(ids) {
      quarantined = new Set(ids)
      return started ? schedule() : Promise.resolve()
    },
    setQuarantineList(list) {
      quarantineList = list ?? []
      return started ? schedule() : Promise.resolve()
    },
    profileOf(ip) {
      const rec = opts.containers.recordByIp(ip)
      return rec ? held.get(rec.id) : undefined
    },
    problems() {
      const out = policySeen ? missing.map(missingProfileText) : []
      if (st.lastError) out.push(st.lastError)
      return out
    },
    pollSeen,
    sync: () => schedule(),
    stats: () => ({ ...st }),
  }
}
