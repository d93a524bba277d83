// Client address -> Docker container, so every hit names the container that asked. A full listing at
// (re)connect plus the engine's /events stream keep one Map current; byIp() on the hot path is a Map get.
import type { Logger } from '../log.js'
import type { SinkholeMetrics } from '../metrics.js'
import { formatIp, parseIp } from '../policy/net.js'
import { createDockerTransport, type DockerTransport } from './docker-api.js'
import type { ContainerInfo, ContainerLookup } from './types.js'

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
}

interface Held {
  info: ContainerInfo
  ips: Set<string>
}

/** The events that can change which container holds which address. */
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

/** Every address a container holds, across all its networks (IPv4 and global IPv6). */
function addressesOf(networkSettings: unknown): Set<string> {
  const out = new Set<string>()
  for (const n of Object.values(obj(obj(networkSettings).Networks))) {
    for (const k of ['IPAddress', 'GlobalIPv6Address']) {
      const a = str(obj(n)[k])
      const c = a ? canonical(a) : undefined
      if (c) out.add(c)
    }
  }
  return out
}

function infoFrom(id: string, name: string | undefined, image: string | undefined, labels: unknown): ContainerInfo {
  const l = obj(labels)
  const info: ContainerInfo = { id, name: (name ?? '').replace(/^\//, ''), image: image ?? '' }
  const service = str(l['com.docker.compose.service'])
  const project = str(l['com.docker.compose.project'])
  if (service) info.service = service
  if (project) info.project = project
  return info
}

/** A `/containers/json` element. */
function fromListItem(c: unknown): Held | undefined {
  const o = obj(c)
  const id = str(o.Id)
  if (!id) return undefined
  const names = Array.isArray(o.Names) ? o.Names : []
  return { info: infoFrom(id, str(names[0]), str(o.Image), o.Labels), ips: addressesOf(o.NetworkSettings) }
}

/** A `/containers/{id}/json` document. */
function fromInspect(c: unknown): Held | undefined {
  const o = obj(c)
  const id = str(o.Id)
  if (!id) return undefined
  const config = obj(o.Config)
  return { info: infoFrom(id, str(o.Name), str(config.Image), config.Labels), ips: addressesOf(o.NetworkSettings) }
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
    for (const ip of h.ips) {
      const prev = owner.get(ip)
      if (prev !== undefined && prev !== id) {
        // Two live containers cannot hold one address: the newer event wins, the older record is stale.
        byId.get(prev)?.ips.delete(ip)
        log.debug({ ip, container: id, previous: prev }, 'address reassigned')
      }
      live.set(ip, h.info)
      owner.set(ip, id)
      recent.delete(ip) // a new holder ends the grace period of the one that left
    }
    byId.set(id, h)
    publish()
  }

  function removeContainer(id: string): void {
    const old = byId.get(id)
    if (!old) return
    for (const ip of old.ips) release(ip, id, old.info)
    byId.delete(id)
    if (recent.size > 4096) sweepRecent()
    publish()
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
    const seen = new Set<string>()
    for (const c of r.body) {
      const h = fromListItem(c)
      if (!h) continue
      seen.add(h.info.id)
      setContainer(h)
    }
    for (const id of [...byId.keys()]) if (!seen.has(id)) removeContainer(id)
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
      if (action === 'start' || action === 'unpause') void enqueue(() => inspect(id))
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
  }
}
