// The sinkhole component: sockets (server.ts) + the pure decision (answer.ts) + forwarding, cache,
// client ACL, per-client rate limit and hit recording. The `sinkhole` command and the agent both
// build it with createSinkhole and swap policies in with setMatcher.
import type { Logger } from '../log.js'
import type { SinkholeMetrics } from '../metrics.js'
import type { Matcher } from '../policy/types.js'
import type { ContainerLookup, HitSink } from './types.js'
import { answer, blockedReply, checkForwarded, compileBlockMode, type BlockMode, type HitInfo } from './answer.js'
import { createAcl, DEFAULT_ALLOW_CLIENTS } from './acl.js'
import { cacheKey, createCache, type DnsCache } from './cache.js'
import { createRateLimiter, type RateLimiter } from './rate-limit.js'
import { LATER, createDnsServer, type ClientInfo } from './server.js'
import { createUpstream } from './upstream.js'
import { HEADER, RCODE, buildError, parseQuery, truncateReply, typeName, withoutEdnsOptions, type Query } from './wire.js'

export type { BlockMode }

/** RFC 8914 4.23. */
const EDE_NO_REACHABLE_AUTHORITY = 22

export interface SinkholeOptions {
  listen: Array<{ address: string; port: number }>
  upstreams: Array<{ address: string; port: number }>
  matcher: Matcher
  /** Default 'null'. */
  blockMode?: BlockMode
  /** Seconds, default 60. */
  blockTtl?: number
  /** CIDRs; default loopback + 172.16.0.0/12 (Docker bridges). */
  allowClients?: string[]
  /** Per client; default none. */
  rateLimit?: { qps: number; burst: number }
  /** Default { maxEntries: 10000 }; false disables. */
  cache?: { maxEntries: number } | false
  hits?: HitSink
  containers?: ContainerLookup
  log: Logger
  tcpIdleMs?: number
  maxTcpClients?: number
  /** Upstream per-try timeout, ms (default 2000). */
  upstreamTimeoutMs?: number
  /** Upstream tries in all (default max(2, upstreams)). */
  upstreamAttempts?: number
  /** Prometheus counters (query results, cache, upstream latency); hits are counted by the hit log. */
  metrics?: SinkholeMetrics
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
  addresses(): Array<{ address: string; port: number; proto: 'udp' | 'tcp' }>
  stats(): SinkholeStats
}

export function createSinkhole(opts: SinkholeOptions): Sinkhole {
  const log = opts.log.child({ component: 'sinkhole' })
  const plan = compileBlockMode(opts.blockMode ?? 'null', opts.blockTtl ?? 60)
  const acl = createAcl(opts.allowClients ?? [...DEFAULT_ALLOW_CLIENTS])
  const limiter: RateLimiter | undefined = opts.rateLimit ? createRateLimiter(opts.rateLimit) : undefined
  const cache: DnsCache | undefined = opts.cache === false ? undefined : createCache({ maxEntries: opts.cache?.maxEntries ?? 10_000 })
  const newUpstream = () => createUpstream({ servers: opts.upstreams, log: opts.log, timeoutMs: opts.upstreamTimeoutMs, attempts: opts.upstreamAttempts })
  let upstream = newUpstream()
  let upstreamClosed = false
  let matcher = opts.matcher
  const m = opts.metrics
  const st = { queries: 0, blocked: 0, alerted: 0, forwarded: 0, coalesced: 0, cacheHits: 0, blockedByAnswer: 0, refusedClients: 0, rateLimited: 0, formErr: 0, servFail: 0, dropped: 0 }

  function record(h: HitInfo, client: ClientInfo): void {
    if (h.action === 'block') st.blocked++
    else st.alerted++
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
      return reply(fit(checked(cached, msg, q, check, alertHit, client), q, client))
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
        out = fit(checked(resp, w.msg, q, w.check, w.alertHit, w.client), q, w.client)
      }
    } catch (e) {
      log.error({ err: (e as Error).message, domain: w.q.qname }, 'answering a forwarded query failed')
      out = undefined
    }
    w.reply(out)
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
      case 'forward':
        forward(msg, d.query, d.check, d.hit, client, reply)
        return LATER
    }
  }

  const server = createDnsServer({ listen: opts.listen, handler: handle, log: opts.log, tcpIdleMs: opts.tcpIdleMs, maxTcpClients: opts.maxTcpClients })

  return {
    async start() {
      // start() after stop() works: the forwarder's sockets are made anew.
      if (upstreamClosed) {
        upstream = newUpstream()
        upstreamClosed = false
      }
      try {
        await server.start()
      } catch (e) {
        await server.stop()
        await upstream.close()
        upstreamClosed = true
        throw e
      }
      log.info({ addresses: server.addresses() }, 'sinkhole listening')
    },
    async stop() {
      await server.stop()
      await upstream.close()
      upstreamClosed = true
      cache?.clear()
    },
    setMatcher(m) {
      matcher = m
    },
    addresses: () => server.addresses(),
    stats: () => ({ ...st, cacheSize: cache?.size ?? 0, server: server.stats(), upstream: upstream.stats() }),
  }
}
