// Container identity from the Docker API: client address -> container, so every hit names the
// container that asked, and a record per running container (labels, every address on every network)
// with change notifications, which profile enforcement and quarantine follow. A full listing at
// (re)connect plus the engine's /events stream keep it current; byIp() on the hot path is a Map get.
import type { Logger } from '../log.js'
import type { SinkholeMetrics } from '../metrics.js'
import { formatIp, parseIp } from '../policy/net.js'
import { createDockerTransport, type DockerTransport } from './docker-api.js'
import { PROFILE_LABEL, type ContainerChange, type ContainerInfo, type ContainerLookup, type ContainerNetwork, type ContainerRecord } from './types.js'

export interface DockerContainersOptions {
  /** The engine's API socket, e.g. /var/run/docker.sock. */
  socketPath: string
  log: Logger
  /** Transport override (tests); default: node:http over `socketPath`. */
  fetchImpl?: DockerTransport
  metrics?: SinkholeMetrics
  /**
   * Removal and reuse (the rule): byIp() answers only with the container holding the address now, so a
   * new container whose first query beats its own `start` event is never named after the container that
   * held the address before. byIpAt(ip, t) (the hit log's late look-up) also names a container removed
   * at most `graceMs` before t (default 5 s): a dropper that exits right after its lookup, or an alert hit
   * recorded after the upstream answered, is still attributed. A new holder of the address wins at once.
   */
  graceMs?: number
  /** Reconnect backoff for the events stream (default 250 ms doubling to 30 s). */
  backoffMs?: { min: number; max: number }
  now?: () => number
}

export interface DockerContainers extends ContainerLookup {
  /** Connect, list containers, follow events. Resolves after the first attempt (it never rejects). */
  start(): Promise<void>
  stop(): void
  /** Re-list every running container and rebuild the map (also done on every reconnect). */
  refresh(): Promise<void>
  /** Known addresses (for tests and `doctor`). */
  size(): number
  byIpAt(ip: string, timeMs: number): ContainerInfo | undefined
  /** The running containers' records (a snapshot). */
  list(): ContainerRecord[]
  /** A running container's record by its full id. */
  get(id: string): ContainerRecord | undefined
  /** The record of the running container holding `ip` now (any spelling Docker or a socket uses). */
  recordByIp(ip: string): ContainerRecord | undefined
  /**
   * Call `fn` after every change (see ContainerChange), in the order they happen, synchronously after
   * the lookups reflect it. A listener that throws is logged and does not stop the others. Returns
   * the function that unsubscribes. Subscribe before start() to see the first listing as `added`.
   */
  onChange(fn: (change: ContainerChange) => void): () => void
}

interface Held {
  info: ContainerInfo
  ips: Set<string>
  record: ContainerRecord
}

/**
 * The events that can change which container holds which address, or its record: container start,
 * unpause, restart, rename, die and destroy; network connect and disconnect. (stop and kill are
 * followed by die; a restart is die then start.)
 */
const EVENTS_PATH = '/events?filters=' + encodeURIComponent(JSON.stringify({ type: ['container', 'network'] }))

function canonical(ip: string): string | undefined {
  let s = ip
  // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; Docker reports a.b.c.d.
  if (s.startsWith('::ffff:') && s.includes('.')) s = s.slice(7)
  const p = parseIp(s)
  return p ? formatIp(p) : undefined
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined
}

function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
}

/** Every network a container is attached to and the addresses it holds there (IPv4 and global IPv6). */
function networksOf(networkSettings: unknown): ContainerNetwork[] {
  const out: ContainerNetwork[] = []
  for (const [name, n] of Object.entries(obj(obj(networkSettings).Networks))) {
    const net: ContainerNetwork = { name }
    const v4 = str(obj(n).IPAddress)
    const v6 = str(obj(n).GlobalIPv6Address)
    const c4 = v4 ? canonical(v4) : undefined
    const c6 = v6 ? canonical(v6) : undefined
    if (c4) net.ipv4 = c4
    if (c6) net.ipv6 = c6
    out.push(net)
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Labels with string values only (the API promises strings; anything else is dropped, never coerced). */
function labelsOf(v: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, x] of Object.entries(obj(v))) if (typeof x === 'string') out[k] = x
  return out
}

function held(id: string, name: string | undefined, image: string | undefined, rawLabels: unknown, networkSettings: unknown, networkMode: unknown): Held {
  const labels = labelsOf(rawLabels)
  const info: ContainerInfo = { id, name: (name ?? '').replace(/^\//, ''), image: image ?? '' }
  const service = str(labels['com.docker.compose.service'])
  const project = str(labels['com.docker.compose.project'])
  if (service) info.service = service
  if (project) info.project = project
  const networks = networksOf(networkSettings)
  const ips = new Set<string>()
  for (const n of networks) {
    if (n.ipv4) ips.add(n.ipv4)
    if (n.ipv6) ips.add(n.ipv6)
  }
  const record: ContainerRecord = { ...info, labels: Object.freeze(labels), addresses: [...ips].sort(), networks }
  // Present even when empty: a label that names nothing still asks for a profile (fail closed).
  if (Object.hasOwn(labels, PROFILE_LABEL)) record.profile = labels[PROFILE_LABEL]
  const mode = str(networkMode)
  if (mode) record.networkMode = mode
  return { info, ips, record: freezeRecord(record) }
}

function freezeRecord(r: ContainerRecord): ContainerRecord {
  for (const n of r.networks) Object.freeze(n)
  Object.freeze(r.networks)
  Object.freeze(r.addresses)
  return Object.freeze(r)
}

/** A `/containers/json` element. */
function fromListItem(c: unknown): Held | undefined {
  const o = obj(c)
  const id = str(o.Id)
  if (!id) return undefined
  const names = Array.isArray(o.Names) ? o.Names : []
  return held(id, str(names[0]), str(o.Image), o.Labels, o.NetworkSettings, obj(o.HostConfig).NetworkMode)
}

/** A `/containers/{id}/json` document. */
function fromInspect(c: unknown): Held | undefined {
  const o = obj(c)
  const id = str(o.Id)
  if (!id) return undefined
  const config = obj(o.Config)
  return held(id, str(o.Name), str(config.Image), config.Labels, o.NetworkSettings, obj(o.HostConfig).NetworkMode)
}

/** Same content (records are built in a fixed key order from sorted parts, so JSON compares them). */
function sameRecord(a: ContainerRecord, b: ContainerRecord): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** `r` without the addresses in `gone` (another container took them over). */
function withoutAddresses(r: ContainerRecord, gone: ReadonlySet<string>): ContainerRecord {
  const networks = r.networks.map((n) => {
    const m: ContainerNetwork = { name: n.name }
    if (n.ipv4 && !gone.has(n.ipv4)) m.ipv4 = n.ipv4
    if (n.ipv6 && !gone.has(n.ipv6)) m.ipv6 = n.ipv6
    return m
  })
  return freezeRecord({ ...r, addresses: r.addresses.filter((a) => !gone.has(a)), networks })
}

export function createDockerContainers(opts: DockerContainersOptions): DockerContainers {
  const log = opts.log.child({ component: 'containers' })
  const api = opts.fetchImpl ?? createDockerTransport({ socketPath: opts.socketPath })
  const now = opts.now ?? Date.now
  const graceMs = opts.graceMs ?? 5_000
  /** Removed holders are forgotten after this (they can no longer match any hit worth attributing). */
  const keepMs = Math.max(graceMs, 60_000)
  const backoff = opts.backoffMs ?? { min: 250, max: 30_000 }

  const live = new Map<string, ContainerInfo>() // address -> container holding it now
  const owner = new Map<string, string>() // address -> container id (to know whose address it is)
  const byId = new Map<string, Held>()
  const recent = new Map<string, { info: ContainerInfo; removedAt: number }>() // released addresses, briefly

  let stopped = false
  let abort = new AbortController()
  let loopDone: Promise<void> | undefined
  let reportedDown = false
  const listeners = new Set<(c: ContainerChange) => void>()

  function emit(change: ContainerChange): void {
    for (const fn of listeners) {
      try {
        fn(change)
      } catch (e) {
        log.error({ err: (e as Error).message, container: change.record.id.slice(0, 12), change: change.type }, 'container change listener failed')
      }
    }
  }

  // Events are applied one at a time, in arrival order: an inspect for an older event must never land
  // after a newer one (start -> die -> start of a reused address would otherwise flap).
  let chain: Promise<void> = Promise.resolve()
  function enqueue(fn: () => Promise<void> | void): Promise<void> {
    const p = chain.then(fn).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'docker update failed'))
    chain = p
    return p
  }

  function publish(): void {
    opts.metrics?.containerAddresses(live.size)
  }

  function release(ip: string, id: string, info: ContainerInfo): void {
    if (owner.get(ip) !== id) return
    live.delete(ip)
    owner.delete(ip)
    if (graceMs > 0) recent.set(ip, { info, removedAt: now() })
  }

  function sweepRecent(): void {
    const t = now()
    for (const [ip, r] of recent) if (t - r.removedAt > keepMs) recent.delete(ip)
  }

  function setContainer(h: Held): void {
    const id = h.info.id
    const old = byId.get(id)
    if (old) for (const ip of old.ips) if (!h.ips.has(ip)) release(ip, id, old.info)
    const taken = new Map<string, Set<string>>() // previous holder -> addresses it lost to this one
    for (const ip of h.ips) {
      const prev = owner.get(ip)
      if (prev !== undefined && prev !== id) {
        // Two live containers cannot hold one address: the newer event wins, the older record is stale.
        byId.get(prev)?.ips.delete(ip)
        let s = taken.get(prev)
        if (!s) taken.set(prev, (s = new Set()))
        s.add(ip)
        log.debug({ ip, container: id, previous: prev }, 'address reassigned')
      }
      live.set(ip, h.info)
      owner.set(ip, id)
      recent.delete(ip) // a new holder ends the grace period of the one that left
    }
    byId.set(id, h)
    publish()
    for (const [prev, ips] of taken) {
      const p = byId.get(prev)
      if (!p) continue
      const previous = p.record
      p.record = withoutAddresses(previous, ips)
      emit({ type: 'updated', record: p.record, previous })
    }
    if (!old) emit({ type: 'added', record: h.record })
    else if (!sameRecord(old.record, h.record)) emit({ type: 'updated', record: h.record, previous: old.record })
  }

  function removeContainer(id: string): void {
    const old = byId.get(id)
    if (!old) return
    for (const ip of old.ips) release(ip, id, old.info)
    byId.delete(id)
    if (recent.size > 4096) sweepRecent()
    publish()
    emit({ type: 'removed', record: old.record })
  }

  async function inspect(id: string): Promise<void> {
    // Only ids from the engine's own events get here; still, never let one change the URL's shape.
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) return
    const r = await api.getJson(`/containers/${id}/json`)
    if (r.status === 404) return removeContainer(id)
    if (r.status !== 200) throw new Error(`inspect ${id.slice(0, 12)}: HTTP ${r.status}`)
    const h = fromInspect(r.body)
    if (!h) return
    const state = obj(obj(r.body).State)
    // A container that is neither running nor being started holds no address worth attributing.
    if (state.Running === false && state.Status !== 'created' && state.Status !== 'restarting') return removeContainer(id)
    setContainer(h)
  }

  async function refresh(): Promise<void> {
    const r = await api.getJson('/containers/json')
    if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`list containers: HTTP ${r.status}`)
    const listed: Held[] = []
    for (const c of r.body) {
      const h = fromListItem(c)
      if (h) listed.push(h)
    }
    // Gone ones first: an address that moved to a new container while we were not listening is then
    // reported once (removed with the old holder, added with the new), not also as an update of a
    // container that is about to be removed.
    const seen = new Set(listed.map((h) => h.info.id))
    for (const id of [...byId.keys()]) if (!seen.has(id)) removeContainer(id)
    for (const h of listed) setContainer(h)
    sweepRecent()
    log.debug({ containers: byId.size, addresses: live.size }, 'containers listed')
  }

  function onEvent(ev: unknown): void {
    const e = obj(ev)
    const type = str(e.Type)
    const action = str(e.Action) ?? str(e.status) ?? ''
    const actor = obj(e.Actor)
    if (type === 'container') {
      const id = str(actor.ID) ?? str(e.id)
      if (!id) return
      // die covers stop/kill/crash; destroy covers `rm -f` of a running container; both free the address.
      // restart follows a start (already inspected; harmless); rename changes the record's name.
      if (action === 'start' || action === 'unpause' || action === 'restart' || action === 'rename') void enqueue(() => inspect(id))
      else if (action === 'die' || action === 'destroy') void enqueue(() => removeContainer(id))
    } else if (type === 'network') {
      const id = str(obj(actor.Attributes).container)
      if (!id) return
      // connect comes before start, so the address is known before the container's first query.
      if (action === 'connect' || action === 'disconnect') void enqueue(() => inspect(id))
    }
  }

  function sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal.addEventListener('abort', done, { once: true })
    })
  }

  async function loop(firstAttempt: () => void): Promise<void> {
    let delay = backoff.min
    // A stop() then start() makes a new controller: this loop ends with its own, never runs twice.
    const mine = abort
    while (!stopped && !mine.signal.aborted) {
      let opened = false
      try {
        await api.stream(EVENTS_PATH, {
          signal: mine.signal,
          // Subscribe first, then list: an event during the listing is applied after it, never lost.
          onOpen: () => {
            opened = true
            void enqueue(refresh).then(() => {
              if (reportedDown) log.info({ socket: opts.socketPath, addresses: live.size }, 'docker attribution connected')
              else log.debug({ socket: opts.socketPath, addresses: live.size }, 'docker attribution connected')
              reportedDown = false
              delay = backoff.min
              firstAttempt()
            })
          },
          onLine: onEvent,
        })
        if (mine.signal.aborted) break
        log.warn({ socket: opts.socketPath }, 'docker events stream ended, reconnecting')
      } catch (e) {
        if (mine.signal.aborted) break
        if (!reportedDown) {
          // Logged once per outage: a host without Docker is normal, hits then carry only the address.
          log.warn({ socket: opts.socketPath, err: (e as Error).message }, 'docker API unavailable: hits carry only the client address')
          reportedDown = true
        } else log.debug({ err: (e as Error).message }, 'docker API still unavailable')
      }
      if (!opened) firstAttempt()
      await sleep(delay, mine.signal)
      delay = Math.min(backoff.max, delay * 2)
    }
  }

  return {
    byIp(ip) {
      // Hot path: one Map get for the usual (already canonical) address.
      const hit = live.get(ip)
      if (hit) return hit
      // Sockets report IPv4 clients in canonical dotted form: a miss is final (host processes, no parse).
      if (!ip.includes(':')) return undefined
      const c = canonical(ip)
      return c === undefined || c === ip ? undefined : live.get(c)
    },
    byIpAt(ip, timeMs) {
      const c = canonical(ip)
      if (c === undefined) return undefined
      const holder = live.get(c)
      if (holder) return holder
      const r = recent.get(c)
      if (r === undefined) return undefined
      // Hits stamped before the removal, or within the grace after it, belong to the removed container.
      return timeMs <= r.removedAt + graceMs ? r.info : undefined
    },
    start() {
      if (loopDone) return Promise.resolve()
      stopped = false
      abort = new AbortController()
      return new Promise<void>((resolve) => {
        let done = false
        loopDone = loop(() => {
          if (!done) {
            done = true
            resolve()
          }
        })
      })
    },
    stop() {
      stopped = true
      abort.abort()
      loopDone = undefined
    },
    refresh: () => enqueue(refresh),
    size: () => live.size,
    list: () => [...byId.values()].map((h) => h.record),
    get: (id) => byId.get(id)?.record,
    recordByIp(ip) {
      const c = live.has(ip) ? ip : canonical(ip)
      const id = c === undefined ? undefined : owner.get(c)
      return id === undefined ? undefined : byId.get(id)?.record
    },
    onChange(fn) {
      listeners.add(fn)
      return () => void listeners.delete(fn)
    },
  }
}
