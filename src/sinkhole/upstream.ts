// Forwarding to the real resolvers: random query IDs, answers checked against the question, the ID
// and the server they came from (anything else is ignored as spoofed), per-try timeout with retry
// across upstreams, TCP when a UDP answer is truncated. A small shared pool of UDP sockets with a Map
// of in-flight IDs per socket serves every query (no socket per query), and one deadline queue with a
// single timer serves every timeout (no timer per query).
import dgram from 'node:dgram'
import net from 'node:net'
import { randomFillSync } from 'node:crypto'
import { errors } from '../errors.js'
import type { Logger } from '../log.js'
import { IdTable } from './id-table.js'
import { UDP_RECV_BUFFER } from './server.js'
import { HEADER, QR, RCODE, TC, nameEquals, rcodeOf, skipName } from './wire.js'

export interface UpstreamServer {
  address: string
  port: number
}

export interface UpstreamOptions {
  servers: UpstreamServer[]
  /** Per-try timeout, ms (default 2000). */
  timeoutMs?: number
  /** Tries in all, rotating through the servers (default max(2, servers)). */
  attempts?: number
  /** UDP sockets per address family (default 4): source ports a spoofer would have to guess. */
  poolSize?: number
  log: Logger
}

/** What the answer must match. */
export interface Question {
  qname: string
  qtype: number
  qclass: number
}

export interface UpstreamStats {
  sent: number
  answered: number
  timeouts: number
  /** Datagrams ignored: unknown ID, wrong source, wrong question, not a response. */
  mismatched: number
  tcpFallbacks: number
  failures: number
}

/** Called exactly once per forwarded query: with the answer, or with an EG_UPSTREAM error. */
export type UpstreamCallback = (err: Error | undefined, resp: Buffer | undefined) => void

export interface Upstream {
  /**
   * Forward a query (the client's bytes; copied, never modified) and resolve to the upstream's full
   * answer with the ID still random (callers put the client's back). Rejects with EG_UPSTREAM when
   * every try failed; an upstream SERVFAIL/REFUSED is retried on the next server and returned when
   * it is the last word.
   */
  query(packet: Buffer, q: Question): Promise<Buffer>
  /**
   * query() without a Promise, for the sinkhole's hot path. The callback may run synchronously when
   * the query fails at once (forwarder closed); a callback that throws is logged, not propagated.
   */
  forward(packet: Buffer, q: Question, cb: UpstreamCallback): void
  stats(): UpstreamStats
  close(): Promise<void>
}

/**
 * One forwarded query across its tries: the only per-query object the forwarder keeps, and it lives
 * only while the query is in flight. Retries rewrite the ID in the same copy of the packet.
 */
class Forwarded {
  attempt = 0
  /** Identifies the current UDP try in the deadline queue (an ID alone may be reused later). */
  serial = 0
  server: UpstreamServer | undefined = undefined
  lastAnswer: Buffer | undefined = undefined
  lastErr: Error | undefined = undefined
  done = false
  constructor(
    readonly packet: Buffer,
    readonly q: Question,
    readonly cb: UpstreamCallback,
  ) {}
}

interface Pool {
  socks: PoolSocket[]
  /** Resolves once every socket is connected; `connected` saves the wait on the hot path. */
  ready: Promise<void>
  connected: boolean
}

interface PoolSocket {
  sock: dgram.Socket
  /** Index into the forwarder's socket list (kept in the deadline queue instead of a reference). */
  index: number
  pending: IdTable<Forwarded>
}

/** Does this answer belong to that question (name compared case-insensitively, RFC 4343)? */
export function matchesQuestion(resp: Buffer, q: Question): boolean {
  if (resp.length < HEADER || !(resp.readUInt16BE(2) & QR) || resp.readUInt16BE(4) !== 1) return false
  const end = skipName(resp, HEADER)
  if (end < 0 || end + 4 > resp.length) return false
  if (resp.readUInt16BE(end) !== q.qtype || resp.readUInt16BE(end + 2) !== q.qclass) return false
  return nameEquals(resp, HEADER, q.qname)
}

export function createUpstream(opts: UpstreamOptions): Upstream {
  if (opts.servers.length === 0) throw errors.config('at least one upstream is required')
  const log = opts.log.child({ component: 'upstream' })
  const timeoutMs = opts.timeoutMs ?? 2000
  const attempts = opts.attempts ?? Math.max(2, opts.servers.length)
  const poolSize = opts.poolSize ?? 4
  // One pool of connected UDP sockets per upstream: a connected socket needs no address lookup per
  // send, and the kernel itself drops datagrams from any other source (a first anti-spoofing filter).
  const pools = new Map<UpstreamServer, Pool>()
  const allSocks: PoolSocket[] = []
  const tcpSockets = new Set<net.Socket>()
  const st: UpstreamStats = { sent: 0, answered: 0, timeouts: 0, mismatched: 0, tcpFallbacks: 0, failures: 0 }
  let closed = false
  let rr = 0
  let serial = 0

  // IDs come from the CSPRNG in batches: one syscall per 2048 queries, not one per query.
  const ids = new Uint16Array(2048)
  let idPos = ids.length
  function randomId(): number {
    if (idPos >= ids.length) {
      randomFillSync(ids)
      idPos = 0
    }
    return ids[idPos++]!
  }

  // Per-try timeouts without a timer per try. Every UDP try has the same timeout, so deadlines are
  // queued in the order they are made: a ring of (deadline, socket<<16|id, serial) in typed arrays and
  // one timer for the oldest. An answered try stays queued (nothing to unlink) and is skipped when its
  // deadline passes, because its ID is no longer pending or now belongs to a later try (serial). No
  // per-query Timeout object, closure or Promise: at full forwarding rate those outlived two
  // scavenges and were promoted, and the old generation then needed a mark-compact every second
  // (bench/sinkhole.ts forwarded p99). Timeouts fire up to SWEEP_MS late.
  const SWEEP_MS = 5
  let cap = 1024
  let dDeadline = new Float64Array(cap)
  let dKey = new Int32Array(cap)
  let dSerial = new Uint32Array(cap)
  let dHead = 0
  let dCount = 0
  let sweepTimer: NodeJS.Timeout | undefined

  function enqueueDeadline(deadline: number, key: number, ser: number): void {
    if (dCount === cap) {
      // Grow, unwrapping the ring so the oldest is at 0.
      const n = cap * 2
      const d = new Float64Array(n)
      const k = new Int32Array(n)
      const sr = new Uint32Array(n)
      for (let i = 0; i < dCount; i++) {
        const j = (dHead + i) & (cap - 1)
        d[i] = dDeadline[j]!
        k[i] = dKey[j]!
        sr[i] = dSerial[j]!
      }
      dDeadline = d
      dKey = k
      dSerial = sr
      dHead = 0
      cap = n
    }
    const j = (dHead + dCount) & (cap - 1)
    dDeadline[j] = deadline
    dKey[j] = key
    dSerial[j] = ser
    dCount++
    if (!sweepTimer) armSweep(deadline - performance.now())
  }

  // Unref'd: a try in flight always has its pool socket open, which keeps the process alive anyway.
  function armSweep(ms: number): void {
    sweepTimer = setTimeout(sweep, Math.max(SWEEP_MS, ms))
    sweepTimer.unref()
  }

  function sweep(): void {
    sweepTimer = undefined
    const now = performance.now()
    while (dCount > 0) {
      const j = dHead
      if (dDeadline[j]! > now) break
      dHead = (dHead + 1) & (cap - 1)
      dCount--
      const key = dKey[j]!
      const ps = allSocks[key >>> 16]
      const id = key & 0xffff
      const f = ps?.pending.get(id)
      if (!ps || !f || f.serial !== dSerial[j]) continue
      ps.pending.delete(id)
      st.timeouts++
      const server = f.server!
      tryFailed(f, errors.upstream(`${server.address}:${server.port}: timed out after ${timeoutMs} ms`))
    }
    if (dCount > 0 && !sweepTimer && !closed) armSweep(dDeadline[dHead]! - now)
  }

  function pool(server: UpstreamServer): Pool {
    let p = pools.get(server)
    if (!p) {
      const socks: PoolSocket[] = []
      const waits: Promise<void>[] = []
      for (let i = 0; i < poolSize; i++) {
        const sock = dgram.createSocket({ type: net.isIPv6(server.address) ? 'udp6' : 'udp4', recvBufferSize: UDP_RECV_BUFFER })
        const ps: PoolSocket = { sock, index: allSocks.length, pending: new IdTable<Forwarded>() }
        allSocks.push(ps)
        sock.on('message', (msg, rinfo) => onMessage(ps, msg, rinfo))
        // ICMP "port unreachable" on a connected socket shows up here: nothing listens there, so every
        // try waiting on this socket is lost; fail them now and move on rather than wait out the timeout.
        sock.on('error', (e) => {
          log.debug({ err: e.message }, 'upstream socket error')
          if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') return
          const lost = ps.pending.values() // a copy: retries may land on this socket again
          ps.pending.clear()
          for (const f of lost) tryFailed(f, errors.upstream(`${server.address}:${server.port}: ${e.message}`))
        })
        waits.push(
          new Promise<void>((resolve, reject) => {
            sock.once('error', reject)
            sock.connect(server.port, server.address, () => {
              sock.off('error', reject)
              resolve()
            })
          }),
        )
        socks.push(ps)
      }
      const np: Pool = { socks, connected: false, ready: Promise.all(waits).then(() => void (np.connected = true)) }
      np.ready.catch((e: unknown) => log.warn({ err: (e as Error).message }, 'cannot connect upstream socket'))
      p = np
      pools.set(server, p)
    }
    return p
  }

  function onMessage(ps: PoolSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < HEADER) return void st.mismatched++
    const id = msg.readUInt16BE(0)
    const f = ps.pending.get(id)
    if (!f || rinfo.port !== f.server!.port || rinfo.address !== f.server!.address || !matchesQuestion(msg, f.q)) {
      st.mismatched++
      return
    }
    ps.pending.delete(id)
    st.answered++
    if (msg.readUInt16BE(2) & TC) {
      tcpOnce(f.server!, f.packet, f.q).then(
        (r) => answered(f, r),
        (e: unknown) => tryFailed(f, e as Error),
      )
    } else answered(f, msg)
  }

  /** The next try for `f` (its `attempt` says which), or the end when there are none left. */
  function attempt(f: Forwarded): void {
    if (closed) return finish(f, errors.upstream('upstream forwarder is closed'), undefined)
    const server = opts.servers[f.attempt % opts.servers.length]!
    const p = pool(server)
    if (p.connected) return sendUdp(f, server, p)
    const go = (): void => sendUdp(f, server, p)
    p.ready.then(go, go) // a failed connect shows up as a send error below
  }

  function sendUdp(f: Forwarded, server: UpstreamServer, p: Pool): void {
    if (closed) return finish(f, errors.upstream('upstream forwarder is closed'), undefined)
    const ps = p.socks[rr++ % p.socks.length]!
    let id = randomId()
    for (let i = 0; ps.pending.has(id) && i < 16; i++) id = randomId()
    if (!ps.pending.set(id, f)) return tryFailed(f, errors.upstream('too many queries in flight'))
    f.packet.writeUInt16BE(id, 0)
    f.server = server
    f.serial = serial = (serial + 1) >>> 0
    enqueueDeadline(performance.now() + timeoutMs, (ps.index << 16) | id, f.serial)
    st.sent++
    try {
      // No send callback: with one, Node defers a callback per datagram (process.nextTick). A send
      // that fails later (ICMP) arrives as the socket's 'error'; anything else ends in the timeout.
      ps.sock.send(f.packet)
    } catch (e) {
      // Not connected (connect failed) or closed.
      if (ps.pending.get(id) === f) ps.pending.delete(id)
      tryFailed(f, errors.upstream(`${server.address}:${server.port}: ${(e as Error).message}`))
    }
  }

  function answered(f: Forwarded, resp: Buffer): void {
    const rcode = rcodeOf(resp)
    if ((rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) && f.attempt < attempts - 1) {
      f.lastAnswer = resp
      f.attempt++
      return attempt(f)
    }
    finish(f, undefined, resp)
  }

  function tryFailed(f: Forwarded, err: Error): void {
    if (f.done) return
    f.lastErr = err
    log.debug({ domain: f.q.qname, err: err.message }, 'upstream try failed')
    if (++f.attempt < attempts && !closed) return attempt(f)
    if (f.lastAnswer) return finish(f, undefined, f.lastAnswer)
    if (!closed) st.failures++
    finish(f, closed ? errors.upstream('upstream forwarder closed') : err, undefined)
  }

  function finish(f: Forwarded, err: Error | undefined, resp: Buffer | undefined): void {
    if (f.done) return
    f.done = true
    try {
      f.cb(err, resp)
    } catch (e) {
      log.error({ err: (e as Error).message, domain: f.q.qname }, 'upstream callback threw')
    }
  }

  function tcpOnce(server: UpstreamServer, packet: Buffer, q: Question): Promise<Buffer> {
    st.tcpFallbacks++
    const id = randomId()
    const out = Buffer.allocUnsafe(packet.length + 2)
    out.writeUInt16BE(packet.length, 0)
    packet.copy(out, 2)
    out.writeUInt16BE(id, 2)
    return new Promise<Buffer>((resolve, reject) => {
      const sock = net.connect({ host: server.address, port: server.port })
      tcpSockets.add(sock)
      let buf = Buffer.alloc(0)
      let done = false
      const finish = (e: Error | undefined, b?: Buffer): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        sock.destroy()
        tcpSockets.delete(sock)
        if (e) reject(e)
        else resolve(b!)
      }
      const timer = setTimeout(() => finish(errors.upstream(`${server.address}:${server.port}: TCP timed out after ${timeoutMs * 2} ms`)), timeoutMs * 2)
      sock.on('connect', () => sock.write(out))
      sock.on('error', (e) => finish(errors.upstream(`${server.address}:${server.port}: TCP: ${e.message}`)))
      sock.on('close', () => finish(errors.upstream(`${server.address}:${server.port}: TCP connection closed before an answer`)))
      sock.on('data', (d) => {
        buf = buf.length === 0 ? d : Buffer.concat([buf, d])
        while (buf.length >= 2) {
          const len = buf.readUInt16BE(0)
          if (buf.length < 2 + len) return
          const msg = buf.subarray(2, 2 + len)
          buf = buf.subarray(2 + len)
          if (msg.length >= HEADER && msg.readUInt16BE(0) === id && matchesQuestion(msg, q)) {
            st.answered++
            return finish(undefined, Buffer.from(msg))
          }
          st.mismatched++
        }
      })
    })
  }

  function forward(packet: Buffer, q: Question, cb: UpstreamCallback): void {
    // One copy per query: tries write their own ID into it.
    attempt(new Forwarded(Buffer.from(packet), q, cb))
  }

  return {
    forward,
    query(packet, q) {
      return new Promise<Buffer>((resolve, reject) => forward(packet, q, (err, resp) => (err ? reject(err) : resolve(resp!))))
    },
    stats: () => ({ ...st }),
    async close() {
      closed = true
      if (sweepTimer) clearTimeout(sweepTimer)
      sweepTimer = undefined
      dCount = 0
      const socks: dgram.Socket[] = []
      const waiting: Forwarded[] = []
      for (const p of pools.values()) {
        for (const ps of p.socks) {
          waiting.push(...ps.pending.values())
          ps.pending.clear()
          socks.push(ps.sock)
        }
      }
      pools.clear()
      allSocks.length = 0
      for (const f of waiting) finish(f, errors.upstream('upstream forwarder closed'), undefined)
      for (const s of tcpSockets) s.destroy()
      tcpSockets.clear()
      await Promise.all(socks.map((s) => new Promise<void>((r) => {
        try {
          s.close(() => r())
        } catch {
          r() // already closed
        }
      })))
    },
  }
}
