// Forwarding to the real resolvers: random query IDs, answers checked against the question, the ID
// and the server they came from (anything else is ignored as spoofed), per-try timeout with retry
// across upstreams, TCP when a UDP answer is truncated. A small shared pool of UDP sockets with a Map
// of in-flight IDs per socket serves every query (no socket per query).
import dgram from 'node:dgram'
import net from 'node:net'
import { randomFillSync } from 'node:crypto'
import { errors } from '../errors.js'
import type { Logger } from '../log.js'
import { HEADER, QR, RCODE, TC, rcodeOf, readName, skipName } from './wire.js'

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

export interface Upstream {
  /**
   * Forward a query (the client's bytes; copied, never modified) and resolve to the upstream's full
   * answer with the ID still random (callers put the client's back). Rejects with EG_UPSTREAM when
   * every try failed; an upstream SERVFAIL/REFUSED is retried on the next server and returned when
   * it is the last word.
   */
  query(packet: Buffer, q: Question): Promise<Buffer>
  stats(): UpstreamStats
  close(): Promise<void>
}

interface Pending {
  server: UpstreamServer
  q: Question
  resolve: (b: Buffer) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
}

interface Pool {
  socks: PoolSocket[]
  /** Resolves once every socket is connected; `connected` saves the await on the hot path. */
  ready: Promise<void>
  connected: boolean
}

interface PoolSocket {
  sock: dgram.Socket
  pending: Map<number, Pending>
}

/** Does this answer belong to that question (name compared case-insensitively, RFC 4343)? */
export function matchesQuestion(resp: Buffer, q: Question): boolean {
  if (resp.length < HEADER || !(resp.readUInt16BE(2) & QR) || resp.readUInt16BE(4) !== 1) return false
  const end = skipName(resp, HEADER)
  if (end < 0 || end + 4 > resp.length) return false
  if (resp.readUInt16BE(end) !== q.qtype || resp.readUInt16BE(end + 2) !== q.qclass) return false
  return readName(resp, HEADER) === q.qname
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
  const tcpSockets = new Set<net.Socket>()
  const st: UpstreamStats = { sent: 0, answered: 0, timeouts: 0, mismatched: 0, tcpFallbacks: 0, failures: 0 }
  let closed = false
  let rr = 0

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

  function pool(server: UpstreamServer): Pool {
    let p = pools.get(server)
    if (!p) {
      const socks: PoolSocket[] = []
      const waits: Promise<void>[] = []
      for (let i = 0; i < poolSize; i++) {
        const sock = dgram.createSocket(net.isIPv6(server.address) ? 'udp6' : 'udp4')
        const ps: PoolSocket = { sock, pending: new Map() }
        sock.on('message', (msg, rinfo) => onMessage(ps, msg, rinfo))
        // ICMP "port unreachable" on a connected socket shows up here; the pending query times out.
        sock.on('error', (e) => log.debug({ err: e.message }, 'upstream socket error'))
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
    const p = ps.pending.get(id)
    if (!p || rinfo.port !== p.server.port || rinfo.address !== p.server.address || !matchesQuestion(msg, p.q)) {
      st.mismatched++
      return
    }
    ps.pending.delete(id)
    clearTimeout(p.timer)
    st.answered++
    p.resolve(msg)
  }

  async function udpOnce(server: UpstreamServer, packet: Buffer, q: Question): Promise<Buffer> {
    const p = pool(server)
    if (!p.connected) await p.ready.catch(() => undefined)
    const ps = p.socks[rr++ % p.socks.length]!
    let id = randomId()
    for (let i = 0; ps.pending.has(id) && i < 16; i++) id = randomId()
    if (ps.pending.has(id)) throw errors.upstream('too many queries in flight')
    const out = Buffer.from(packet)
    out.writeUInt16BE(id, 0)
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        ps.pending.delete(id)
        st.timeouts++
        reject(errors.upstream(`${server.address}:${server.port}: timed out after ${timeoutMs} ms`))
      }, timeoutMs)
      ps.pending.set(id, { server, q, resolve, reject, timer })
      st.sent++
      const fail = (err: Error): void => {
        if (ps.pending.get(id)?.timer === timer) {
          ps.pending.delete(id)
          clearTimeout(timer)
          reject(errors.upstream(`${server.address}:${server.port}: ${err.message}`))
        }
      }
      try {
        ps.sock.send(out, (err) => err && fail(err))
      } catch (e) {
        fail(e as Error) // not connected (connect failed) or closed
      }
    })
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

  return {
    async query(packet, q) {
      if (closed) throw errors.upstream('upstream forwarder is closed')
      let lastErr: Error | undefined
      let lastAnswer: Buffer | undefined
      for (let i = 0; i < attempts; i++) {
        const server = opts.servers[i % opts.servers.length]!
        try {
          let resp = await udpOnce(server, packet, q)
          if (resp.readUInt16BE(2) & TC) resp = await tcpOnce(server, packet, q)
          const rcode = rcodeOf(resp)
          if ((rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) && i < attempts - 1) {
            lastAnswer = resp
            continue
          }
          return resp
        } catch (e) {
          lastErr = e as Error
          log.debug({ domain: q.qname, err: lastErr.message }, 'upstream try failed')
        }
      }
      if (lastAnswer) return lastAnswer
      st.failures++
      throw lastErr ?? errors.upstream('every upstream failed')
    },
    stats: () => ({ ...st }),
    async close() {
      closed = true
      const socks: dgram.Socket[] = []
      for (const p of pools.values()) {
        for (const ps of p.socks) {
          for (const pend of ps.pending.values()) {
            clearTimeout(pend.timer)
            pend.reject(errors.upstream('upstream forwarder closed'))
          }
          ps.pending.clear()
          socks.push(ps.sock)
        }
      }
      pools.clear()
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
