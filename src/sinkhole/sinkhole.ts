// The sinkhole component: sockets (server.ts) + the pure decision (answer.ts) + forwarding, cache,
// client ACL, per-client rate limit and hit recording. The `sinkhole` command and the agent both
// build it with createSinkhole and swap policies in with setMatcher.
import type { Logger } from '../log.js'
import type { SinkholeMetrics } from '../metrics.js'
import type { Matcher } from '../policy/types.js'
import type { ContainerLookup, HitSink } from './types.js'
import { answer, answerAddresses, blockedReply, checkForwarded, compileBlockMode, type BlockMode, type HitInfo } from './answer.js'
import { NO_CLIENT_PROFILES, type ClientProfile, type ClientProfiles } from './client-profiles.js'
import type { LearnRecorder } from './learn-recorder.js'
import type { LearnPair } from '../enforce/container-types.js'
import type { ProfileRule } from '../profiles/types.js'
import type { Verdict } from '../policy/types.js'
import { admitsHostAddresses, createAcl, DEFAULT_ALLOW_CLIENTS, type Acl } from './acl.js'
import { cacheKey, createCache, type DnsCache } from './cache.js'
import { createRateLimiter, type RateLimiter } from './rate-limit.js'
import { LATER, createDnsServer, type ClientInfo, type ListenAddress } from './server.js'
import { createInterfaceWatch, type InterfaceWatch } from './interface-watch.js'
import { interfaceIPv4, ownAddresses, type Link } from './interfaces.js'
import { FALLBACK_ADDRESS, type ListenSpec } from './listen-spec.js'

export { FALLBACK_ADDRESS, type ListenSpec }
import { createUpstream } from './upstream.js'
import { HEADER, RCODE, buildError, parseQuery, truncateReply, typeName, withoutEdnsOptions, type Query } from './wire.js'

export type { BlockMode }

/** RFC 8914 4.23. */
const EDE_NO_REACHABLE_AUTHORITY = 22

export interface SinkholeOptions {
  listen: ListenSpec[]
  upstreams: Array<{ address: string; port: number }>
  matcher: Matcher
  /** Default 'null'. */
  blockMode?: BlockMode
  /** Seconds, default 60. */
  blockTtl?: number
  /** CIDRs or `host` (this host's own addresses); default loopback + 172.16.0.0/12 (Docker bridges) + host. */
  allowClients?: string[]
  /** Per client; default none. */
  rateLimit?: { qps: number; burst: number }
  /** Default { maxEntries: 10000 }; false disables. */
  cache?: { maxEntries: number } | false
  hits?: HitSink
  containers?: ContainerLookup
  /**
   * enforce/alert: write the (client, address[, port]) pairs of an allowed answer to the kernel; the
   * answer is held until this resolves, at most holdMs (then it goes out and holdExpired counts it).
   */
  learnPairs?: (pairs: LearnPair[]) => Promise<unknown>
  /** Longest hold of an allowed answer for its pairs (default 50 ms). */
  holdMs?: number
  /** Learned pair timeout: max(answer TTL, floor) + grace (defaults 60 s and 30 s). */
  learnTtlFloorSec?: number
  learnGraceSec?: number
  /** Where learn-mode lookups are recorded (names per profile); without it they are only forwarded. */
  learn?: LearnRecorder
  log: Logger
  tcpIdleMs?: number
  maxTcpClients?: number
  /** Upstream per-try timeout, ms (default 2000). */
  upstreamTimeoutMs?: number
  /** Upstream tries in all (default max(2, upstreams)). */
  upstreamAttempts?: number
  /** Prometheus counters (query results, cache, upstream latency); hits are counted by the hit log. */
  metrics?: SinkholeMetrics
  /** How interface addresses are followed (interface listens, `host` clients); tests inject a fake. */
  interfaces?: { intervalMs?: number; slowIntervalMs?: number; readLinks?: () => Promise<Link[]>; fingerprint?: () => Promise<string | undefined> }
}

type Reply = (r: Buffer | undefined) => void

/** Slots of the coalescing table (a power of two): far more than the questions usually in flight. */
const COALESCE_SLOTS = 4096

/** FNV-1a of the cache key, folded to a coalescing slot. */
export function coalesceSlot(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h >>> 0) & (COALESCE_SLOTS - 1)
}

/** A client waiting for a forwarded answer: the one object kept per forwarded query. */
class Waiting {
  /** Clients that asked the same question while this one's upstream query was in flight. */
  joined: Waiting[] | undefined = undefined
  constructor(
    readonly key: string,
    readonly msg: Buffer,
    readonly q: Query,
    readonly check: boolean,
    readonly alertHit: HitInfo | undefined,
    readonly client: ClientInfo,
    readonly reply: Reply,
  ) {}
}

export interface SinkholeStats {
  queries: number
  /** Allowed answers released after holdMs without their pairs acknowledged. */
  holdExpired: number
  /** Pair writes that failed (the answer was released anyway). */
  learnFailed: number
  blocked: number
  alerted: number
  forwarded: number
  /** Forwarded queries that joined an identical one already in flight. */
  coalesced: number
  cacheHits: number
  /** Answers replaced because a CNAME or address in them is blocked. */
  blockedByAnswer: number
  refusedClients: number
  rateLimited: number
  formErr: number
  servFail: number
  dropped: number
  cacheSize: number
  server: ReturnType<ReturnType<typeof createDnsServer>['stats']>
  upstream: ReturnType<ReturnType<typeof createUpstream>['stats']>
}

export interface Sinkhole {
  start(): Promise<void>
  stop(): Promise<void>
  /** Atomic swap: queries after this call see the new policy (cached upstream answers are re-checked). */
  setMatcher(m: Matcher): void
  /** Atomic swap of the client address -> profile map (containers held to a profile); empty: none. */
  setClientProfiles(p: ClientProfiles): void
  addresses(): Array<{ address: string; port: number; proto: 'udp' | 'tcp' }>
  /** What an interface listen is waiting for (one line each), empty when every address is served. */
  waiting(): string[]
  stats(): SinkholeStats
}

const fmtAddr = (a: ListenAddress): string => `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`

/** One `{ interface, port }` listen and what serves it now. */
interface IfaceListen {
  name: string
  port: number
  /** The interface address served. */
  bound?: ListenAddress
  /** Loopback served instead while the interface has no address (shared by listens on one port). */
  fallback?: ListenAddress
  waiting?: string
}

export function createSinkhole(opts: SinkholeOptions): Sinkhole {
  const log = opts.log.child({ component: 'sinkhole' })
  const plan = compileBlockMode(opts.blockMode ?? 'null', opts.blockTtl ?? 60)
  const aclSpecs = opts.allowClients ?? [...DEFAULT_ALLOW_CLIENTS]
  // Until the first read of the interface list, `host` admits nothing more (start() reads it before binding).
  let acl: Acl = createAcl(aclSpecs)
  const followHost = admitsHostAddresses(aclSpecs)
  const limiter: RateLimiter | undefined = opts.rateLimit ? createRateLimiter(opts.rateLimit) : undefined
  const cache: DnsCache | undefined = opts.cache === false ? undefined : createCache({ maxEntries: opts.cache?.maxEntries ?? 10_000 })
  const newUpstream = () => createUpstream({ servers: opts.upstreams, log: opts.log, timeoutMs: opts.upstreamTimeoutMs, attempts: opts.upstreamAttempts })
  let upstream = newUpstream()
  let upstreamClosed = false
  let matcher = opts.matcher
  let clientProfiles: ClientProfiles = NO_CLIENT_PROFILES
  /** The verdict a name outside a profile is answered with (its EDE text names the profile), per profile. */
  const denyVerdicts = new WeakMap<ClientProfile['compiled'], Verdict>()
  const denyVerdict = (c: ClientProfile['compiled']): Verdict => {
    let v = denyVerdicts.get(c)
    if (!v) {
      v = { action: 'block', entry: { kind: 'domain', value: c.profile.name, allow: false, mode: 'block', source: c.profile.source, reason: `not in profile ${c.profile.name}` } }
      denyVerdicts.set(c, v)
    }
    return v
  }
  const m = opts.metrics
  const st = { holdExpired: 0, learnFailed: 0, queries: 0, blocked: 0, alerted: 0, forwarded: 0, coalesced: 0, cacheHits: 0, blockedByAnswer: 0, refusedClients: 0, rateLimited: 0, formErr: 0, servFail: 0, dropped: 0 }

  function record(h: HitInfo, client: ClientInfo): void {
    if (h.action === 'alert') st.alerted++
    else st.blocked++
    if (!opts.hits) return
    try {
      const e = h.verdict.entry
      opts.hits.record({
        time: new Date().toISOString(),
        client: client.address,
        container: opts.containers?.byIp(client.address),
        name: h.name,
        qtype: h.qtype,
        action: h.action,
        entry: { value: e.value, source: e.source, reason: e.reason, id: e.id, mode: e.mode },
        answer: h.answer,
        ...(h.profile !== undefined ? { profile: h.profile } : {}),
      })
    } catch (err) {
      log.warn({ err: (err as Error).message, domain: h.name }, 'hit sink failed')
    }
  }

  /** Fit a reply to the client's transport: UDP is limited to 512 bytes or its EDNS size. */
  function fit(resp: Buffer, q: Query | undefined, client: ClientInfo): Buffer {
    if (client.proto === 'tcp') return resp
    const limit = q?.edns ? Math.min(q.edns.udpSize, 4096) : 512
    return resp.length > limit ? truncateReply(resp) : resp
  }

  // Identical questions in flight share one upstream query (a retrying client, many containers asking
  // for the same name at once): the upstream sees each question once per round trip. A direct-mapped
  // table, not a Map: a slot holds the first asker of a question (the others join it), and a question
  // whose slot is taken by a different one is simply forwarded on its own. A Map with an entry set and
  // deleted per query kept promoting its rehashed tables into the old generation (see id-table.ts).
  const coalescing: Array<Waiting | undefined> = new Array<Waiting | undefined>(COALESCE_SLOTS).fill(undefined)

  function forward(msg: Buffer, q: Query, check: boolean, alertHit: HitInfo | undefined, client: ClientInfo, reply: Reply): void {
    // An alert-mode name is a hit whatever happens next (upstream failure, or a block via the answer):
    // the point of alert mode is to learn what a rule would catch.
    if (alertHit) record(alertHit, client)
    const key = cacheKey(q)
    const cached = cache?.get(key, msg, q)
    if (cached) {
      st.cacheHits++
      m?.cacheHit()
      const out = checked(cached, msg, q, check, alertHit, client)
      if (clientProfiles.size !== 0) noteAnswers(out, q, client)
      return reply(fit(out, q, client))
    }
    if (cache) m?.cacheMiss()
    st.forwarded++
    const w = new Waiting(key, msg, q, check, alertHit, client, reply)
    const slot = coalesceSlot(key)
    const first = coalescing[slot]
    if (first !== undefined && first.key === key) {
      st.coalesced++
      if (first.joined) first.joined.push(w)
      else first.joined = [w]
      return
    }
    if (first === undefined) coalescing[slot] = w
    const t0 = m ? performance.now() : 0
    upstream.forward(withoutEdnsOptions(msg, q), q, (err, shared) => {
      if (coalescing[slot] === w) coalescing[slot] = undefined
      m?.upstreamLatency((performance.now() - t0) / 1000)
      if (!err) cache?.set(key, shared!)
      else log.debug({ domain: q.qname, err: err.message }, 'upstream failed: SERVFAIL')
      settle(w, err, shared)
      if (w.joined) for (const x of w.joined) settle(x, err, shared)
    })
  }

  /** One asker's answer from the shared upstream result. Never throws: a bug here must not take down the upstream socket's handler. */
  function settle(w: Waiting, err: Error | undefined, shared: Buffer | undefined): void {
    let out: Buffer | undefined
    try {
      const q = w.q
      if (err) {
        st.servFail++
        m?.query('servfail')
        // EDE 22 "No Reachable Authority": tells the client (and whoever debugs it) why.
        out = buildError(w.msg, RCODE.SERVFAIL, q.qEnd, q.edns ? { do: q.edns.do, ede: EDE_NO_REACHABLE_AUTHORITY } : undefined)
      } else {
        // Our copy: the client's ID and its question bytes (its case; same name, so same length).
        const resp = Buffer.from(shared!)
        resp.writeUInt16BE(q.id, 0)
        if (resp.length >= q.qEnd) w.msg.copy(resp, HEADER, HEADER, q.qEnd)
        out = checked(resp, w.msg, q, w.check, w.alertHit, w.client)
        if (clientProfiles.size !== 0) noteAnswers(out, q, w.client)
        out = fit(out, q, w.client)
      }
    } catch (e) {
      log.error({ err: (e as Error).message, domain: w.q.qname }, 'answering a forwarded query failed')
      out = undefined
    }
    w.reply(out)
  }

  const holdMs = opts.holdMs ?? 50
  const ttlFloor = opts.learnTtlFloorSec ?? 60
  const grace = opts.learnGraceSec ?? 30

  /** Write the pairs of an allowed answer, then release it (at the latest after holdMs). */
  function holdThenReply(out: Buffer | undefined, client: string, rule: ProfileRule, release: Reply): void {
    const ips = out ? answerAddresses(out) : undefined
    if (!ips || ips.length === 0) return release(out)
    const pairs: LearnPair[] = []
    for (const { ip, ttl } of ips) {
      const ttlSec = Math.max(ttl, ttlFloor) + grace
      if (rule.ports?.length) for (const port of rule.ports) pairs.push({ container: client, dst: ip, port, ttlSec })
      else pairs.push({ container: client, dst: ip, ttlSec })
    }
    let done = false
    const timer = setTimeout(() => {
      if (done) return
      done = true
      st.holdExpired++
      release(out)
    }, holdMs)
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      release(out)
    }
    opts.learnPairs!(pairs).then(finish, (e: Error) => {
      st.learnFailed++
      log.warn({ err: e.message, client }, 'learned pairs not written; answer released')
      finish()
    })
  }

  /** learn mode: the addresses a held container was given for a name it looked up. */
  function noteAnswers(resp: Buffer, q: Query, client: ClientInfo): void {
    const cp = clientProfiles.get(client.address)
    if (!cp || cp.compiled.profile.mode !== 'learn' || !opts.learn) return
    const ips = answerAddresses(resp)
    if (ips?.length) opts.learn.answers(cp.compiled.profile.name, q.qname, ips.map((x) => x.ip))
  }

  /** A forwarded (or cached) answer, own copy, checked against the policy as it is now. */
  function checked(resp: Buffer, msg: Buffer, q: Query, check: boolean, alertHit: HitInfo | undefined, client: ClientInfo): Buffer {
    let lastAlert = false
    if (check) {
      // The policy may have changed since the answer was cached: check on every use, not once.
      const r = checkForwarded(resp, matcher)
      if (r.kind === 'malformed') {
        st.servFail++
        m?.query('servfail')
        return buildError(msg, RCODE.SERVFAIL, q.qEnd, q.edns ? { do: q.edns.do } : undefined)
      }
      if (r.kind === 'block') {
        st.blockedByAnswer++
        m?.query('blocked')
        const b = blockedReply(msg, q, r.verdict, plan)
        record({ action: 'block', verdict: r.verdict, name: q.qname, qtype: typeName(q.qtype), answer: b.label }, client)
        log.debug({ domain: q.qname, via: r.via }, 'forwarded answer blocked')
        return b.packet
      }
      lastAlert = r.kind === 'alert'
      if (r.kind === 'alert' && !alertHit) record({ action: 'alert', verdict: r.verdict, name: q.qname, qtype: typeName(q.qtype), answer: 'forwarded' }, client)
    }
    m?.query(alertHit || (check && lastAlert) ? 'alert' : 'forwarded')
    return resp
  }

  function handle(msg: Buffer, client: ClientInfo, reply: Reply): Buffer | undefined | typeof LATER {
    st.queries++
    if (limiter && !limiter.take(client.address)) {
      st.rateLimited++
      m?.query('ratelimited')
      // UDP: silence (answering a flood, possibly from spoofed sources, only helps the flood).
      // TCP: the handshake proves the source, so say REFUSED rather than leave it hanging.
      if (client.proto === 'udp' || msg.length < HEADER) return undefined
      return buildError(msg, RCODE.REFUSED)
    }
    if (!acl(client.address)) {
      st.refusedClients++
      m?.query('refused')
      if (msg.length < HEADER || msg.readUInt16BE(2) & 0x8000) return undefined
      // REFUSED with the question echoed: never bigger than the query, so no amplification.
      const p = parseQuery(msg)
      return buildError(msg, RCODE.REFUSED, p.ok ? p.query.qEnd : undefined)
    }
    const d = answer(msg, matcher, plan)
    switch (d.kind) {
      case 'drop':
        st.dropped++
        m?.query('formerr')
        return undefined
      case 'reply':
        if (d.rcode === RCODE.FORMERR) st.formErr++
        m?.query(d.hit ? 'blocked' : d.rcode === RCODE.REFUSED ? 'refused' : 'formerr')
        if (d.hit) record(d.hit, client)
        return fit(d.packet, d.query, client)
      case 'forward': {
        // A name the fleet blocks was answered above (a fleet-wide block wins); a fleet `@@` allow
        // does not open a container held to a profile. One Map lookup, none while no profile is held.
        const cp = clientProfiles.size === 0 ? undefined : clientProfiles.get(client.address)
        if (cp !== undefined) {
          const c = cp.compiled
          const mode = c.profile.mode
          const dec = mode === 'learn' ? undefined : c.decideName(d.query.qname)
          if (dec === undefined) opts.learn?.record(c.profile.name, d.query.qname, cp.container?.name)
          else if (dec.action === 'allow') {
            // The answer's addresses become this container's pairs before it sees them.
            if (opts.learnPairs) {
              const release = reply
              const rule = dec.rule
              reply = (out) => holdThenReply(out, client.address, rule, release)
            }
          } else {
            const v = denyVerdict(c)
            if (mode === 'enforce') {
              m?.query('blocked')
              const b = blockedReply(msg, d.query, v, plan)
              record({ action: 'deny', verdict: v, name: d.query.qname, qtype: typeName(d.query.qtype), answer: b.label, profile: c.profile.name }, client)
              return fit(b.packet, d.query, client)
            }
            record({ action: 'alert', verdict: { action: 'alert', entry: { ...v.entry, mode: 'alert' } }, name: d.query.qname, qtype: typeName(d.query.qtype), answer: 'forwarded', profile: c.profile.name }, client)
          }
        }
        forward(msg, d.query, d.check, d.hit, client, reply)
        return LATER
      }
    }
  }

  const fixed = opts.listen.filter((l): l is ListenAddress => 'address' in l)
  const ifaces: IfaceListen[] = opts.listen.filter((l): l is { interface: string; port: number } => 'interface' in l).map((l) => ({ name: l.interface, port: l.port }))
  const server = createDnsServer({ listen: fixed, handler: handle, log: opts.log, tcpIdleMs: opts.tcpIdleMs, maxTcpClients: opts.maxTcpClients })
  /** Loopback fallbacks by port, with the interface listens holding each. */
  const fallbacks = new Map<number, { addr: ListenAddress; holders: Set<IfaceListen> }>()
  let starting = false
  /** Between start() and stop(): a watch tick that ends after stop() must not bind anything. */
  let active = false

  /** Loopback already served on this port by a fixed listen: no fallback of our own needed there. */
  const loopbackServed = (port: number): boolean => fixed.some((l) => l.port === port && (l.address === FALLBACK_ADDRESS || l.address === '0.0.0.0'))

  async function holdFallback(d: IfaceListen): Promise<void> {
    if (d.fallback || loopbackServed(d.port)) return
    let f = fallbacks.get(d.port)
    if (!f) {
      const addr = { address: FALLBACK_ADDRESS, port: d.port }
      try {
        await server.add(addr)
      } catch (e) {
        // Not fatal: the interface may appear later; the waiting line says loopback is not served either.
        d.waiting += `; ${fmtAddr(addr)} cannot be served meanwhile either (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`
        watch?.again()
        return
      }
      if (!active) return void (await server.remove(addr))
      f = { addr, holders: new Set() }
      fallbacks.set(d.port, f)
    }
    f.holders.add(d)
    d.fallback = f.addr
  }

  async function releaseFallback(d: IfaceListen): Promise<void> {
    const f = d.fallback ? fallbacks.get(d.port) : undefined
    d.fallback = undefined
    if (!f) return
    f.holders.delete(d)
    if (f.holders.size === 0) {
      fallbacks.delete(d.port)
      await server.remove(f.addr)
    }
  }

  /**
   * Bring the served addresses in line with the interface list: bind an interface's address when it has
   * one (rebind when it changed; a re-created interface with the same address keeps its sockets, the
   * kernel matches them by address), else serve loopback meanwhile and say what is awaited. During
   * start() a failed interface bind throws, as a fixed address would; later it is logged and retried.
   */
  async function follow(links: Link[] | undefined, error?: string): Promise<void> {
    if (!active) return
    if (followHost && links) acl = createAcl(aclSpecs, ownAddresses(links))
    for (const d of ifaces) {
      const want = links ? interfaceIPv4(links, d.name) : undefined
      if (want !== undefined && d.bound?.address === want) continue
      if (d.bound) {
        await server.remove(d.bound)
        log.warn({ interface: d.name, address: fmtAddr(d.bound) }, `sinkhole: ${d.name} no longer has ${d.bound.address}: stopped serving it`)
        d.bound = undefined
      }
      if (want !== undefined) {
        const addr = { address: want, port: d.port }
        try {
          await server.add(addr)
        } catch (e) {
          if (starting) throw e
          const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message
          d.waiting = `sinkhole: cannot listen on ${d.name} ${fmtAddr(addr)} (${why}); retrying`
          log.warn({ interface: d.name, err: why }, d.waiting)
          watch?.again()
          await holdFallback(d)
          continue
        }
        if (!active) return void (await server.remove(addr))
        d.bound = addr
        const was = d.waiting
        d.waiting = undefined
        await releaseFallback(d)
        // At warn when it ends a wait that was logged at warn: whoever saw the one should see the other.
        if (was) log.warn({ interface: d.name, address: fmtAddr(addr) }, `sinkhole: now listening on ${d.name} ${fmtAddr(addr)}`)
        else log.info({ interface: d.name, address: fmtAddr(addr) }, `sinkhole listening on ${d.name} ${fmtAddr(addr)}`)
        continue
      }
      const before = d.waiting
      d.waiting = error
        ? `sinkhole: cannot read this host's interface addresses (${error}) to find ${d.name}`
        : `sinkhole: waiting for ${d.name} to have an IPv4 address (Docker not started yet?)`
      await holdFallback(d)
      if (d.fallback) d.waiting += `; answering on ${fmtAddr(d.fallback)} meanwhile`
      if (d.waiting !== before) log.warn({ interface: d.name }, d.waiting)
    }
  }

  const watch: InterfaceWatch | undefined =
    ifaces.length > 0 || followHost
      ? createInterfaceWatch({
          onChange: follow,
          log: opts.log,
          ...(opts.interfaces?.intervalMs !== undefined ? { intervalMs: opts.interfaces.intervalMs } : {}),
          ...(opts.interfaces?.slowIntervalMs !== undefined ? { slowIntervalMs: opts.interfaces.slowIntervalMs } : {}),
          ...(opts.interfaces?.readLinks ? { readLinks: opts.interfaces.readLinks } : {}),
          ...(opts.interfaces?.fingerprint ? { fingerprint: opts.interfaces.fingerprint } : {}),
        })
      : undefined

  /** Forget what the interface listens held (the server's stop closes the sockets): start() begins afresh. */
  function resetListens(): void {
    for (const d of ifaces) {
      d.bound = undefined
      d.fallback = undefined
      d.waiting = undefined
    }
    fallbacks.clear()
  }

  return {
    async start() {
      // start() after stop() works: the forwarder's sockets are made anew.
      if (upstreamClosed) {
        upstream = newUpstream()
        upstreamClosed = false
      }
      try {
        await server.start()
        starting = true
        active = true
        await watch?.start()
      } catch (e) {
        starting = false
        active = false
        watch?.stop()
        resetListens()
        await server.stop()
        await upstream.close()
        upstreamClosed = true
        throw e
      }
      starting = false
      log.info({ addresses: server.addresses() }, 'sinkhole listening')
    },
    async stop() {
      active = false
      watch?.stop()
      resetListens()
      await server.stop()
      await upstream.close()
      upstreamClosed = true
      cache?.clear()
    },
    setClientProfiles(p) {
      clientProfiles = p
    },
    setMatcher(m) {
      matcher = m
    },
    addresses: () => server.addresses(),
    waiting: () => ifaces.flatMap((d) => (d.waiting ? [d.waiting] : [])),
    stats: () => ({ ...st, cacheSize: cache?.size ?? 0, server: server.stats(), upstream: upstream.stats() }),
  }
}
