// The sinkhole's sockets: UDP and TCP listeners on each listen address, RFC 1035 4.2.2 / RFC 7766
// length-prefixed TCP framing with several (pipelined) queries per connection, an idle timeout that
// partial frames do not reset (slow and half-open clients are cut), and a cap on connections that
// evicts the longest-idle one first. What to answer is the handler's business.
import dgram from 'node:dgram'
import net from 'node:net'
import { errors } from '../errors.js'
import type { Logger } from '../log.js'

export interface ClientInfo {
  address: string
  port: number
  proto: 'udp' | 'tcp'
}

/** Returned by a handler that answers later, through its `reply` argument (called exactly once). */
export const LATER: unique symbol = Symbol('later')

/**
 * Returns the reply, undefined for silence, or LATER and calls `reply` itself (a callback rather than
 * a Promise: a forwarded query is in flight long enough that per-query Promises get promoted out of
 * V8's young generation). Must not throw (errors are caught and logged anyway).
 */
export type Handler = (msg: Buffer, client: ClientInfo, reply: (r: Buffer | undefined) => void) => Buffer | undefined | typeof LATER

export interface ListenAddress {
  address: string
  port: number
}

export interface ServerOptions {
  listen: ListenAddress[]
  handler: Handler
  log: Logger
  /** A TCP connection with no complete query for this long is closed (default 10 s, RFC 7766 6.2.3). */
  tcpIdleMs?: number
  /** Concurrent TCP connections across all listeners (default 256). */
  maxTcpClients?: number
  /** Queries answered concurrently on one TCP connection before reading pauses (default 32). */
  maxTcpInflight?: number
}

export interface ServerStats {
  udpIn: number
  tcpIn: number
  tcpConnections: number
  tcpAccepted: number
  /** Idle connections closed to make room for a new one. */
  tcpEvicted: number
  /** New connections refused because every slot was busy. */
  tcpRejected: number
  tcpTimedOut: number
  handlerErrors: number
}

export interface DnsServer {
  start(): Promise<void>
  stop(): Promise<void>
  /** Serve one more address (UDP and TCP) while running: an interface address that appeared. */
  add(addr: ListenAddress): Promise<void>
  /** Stop serving an address added before (its TCP connections are closed); unknown: nothing. */
  remove(addr: ListenAddress): Promise<void>
  addresses(): Array<{ address: string; port: number; proto: 'udp' | 'tcp' }>
  stats(): ServerStats
}

interface Conn {
  sock: net.Socket
  /** The listener that accepted it: remove() of that address closes it. */
  srv: net.Server
  inflight: number
  lastActive: number
  timer: NodeJS.Timeout
  ended: boolean
}

/**
 * A dual-stack `::` socket reports IPv4 clients as `::ffff:a.b.c.d`; everything downstream (ACL, rate
 * limit, hits, Docker attribution) wants the plain IPv4 address.
 */
export function clientAddress(a: string): string {
  return a.length > 7 && a.charCodeAt(0) === 58 && a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a
}

/**
 * dgram's `lookup` for sockets that only ever see IP literals (a listen address checked in start(),
 * and the kernel-formatted sender of each datagram we answer). The default, dns.lookup, re-checks the
 * literal with a regex and defers every reply to process.nextTick: measurable per-reply work on the
 * hot path for nothing.
 */
function ipLiteral(address: string, _family: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  cb(null, address, address.includes(':') ? 6 : 4)
}

/**
 * SO_RCVBUF asked for on every UDP socket (listeners and the upstream pool). Linux's default (212,992
 * bytes) holds only ~200 small datagrams at their in-kernel size, so a few milliseconds' stall (a GC
 * pause, the VM descheduled) at tens of thousands of queries per second dropped queries: clients then
 * wait out their whole retry timeout. The kernel caps it at net.core.rmem_max silently; it is a limit,
 * not memory taken up front.
 */
export const UDP_RECV_BUFFER = 4 * 1024 * 1024

export function createDnsServer(opts: ServerOptions): DnsServer {
  const log = opts.log.child({ component: 'dns-server' })
  const idleMs = opts.tcpIdleMs ?? 10_000
  const maxTcp = opts.maxTcpClients ?? 256
  const maxInflight = opts.maxTcpInflight ?? 32
  /** One UDP socket and one TCP listener per address served; `addr` as asked for (port 0 stays 0). */
  const listeners: Array<{ addr: ListenAddress; udp: dgram.Socket; tcp: net.Server }> = []
  const conns = new Set<Conn>()
  const closedUdp = new WeakSet<dgram.Socket>()
  const st: ServerStats = { udpIn: 0, tcpIn: 0, tcpConnections: 0, tcpAccepted: 0, tcpEvicted: 0, tcpRejected: 0, tcpTimedOut: 0, handlerErrors: 0 }
  let stopping = false

  function call(msg: Buffer, client: ClientInfo, done: (r: Buffer | undefined) => void): void {
    let r: Buffer | undefined | typeof LATER
    try {
      r = opts.handler(msg, client, done)
    } catch (e) {
      st.handlerErrors++
      log.error({ err: (e as Error).message, ip: client.address }, 'handler threw')
      return done(undefined)
    }
    if (r !== LATER) done(r)
  }

  function bindUdp(addr: ListenAddress): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket({ type: net.isIPv6(addr.address) ? 'udp6' : 'udp4', lookup: ipLiteral, recvBufferSize: UDP_RECV_BUFFER })
      const onErr = (e: Error): void => {
        sock.close()
        reject(e)
      }
      sock.once('error', onErr)
      sock.bind(addr.port, addr.address, () => {
        sock.off('error', onErr)
        sock.on('error', (e) => log.warn({ err: e.message }, 'udp socket error'))
        sock.on('message', (msg, rinfo) => {
          st.udpIn++
          call(msg, { address: clientAddress(rinfo.address), port: rinfo.port, proto: 'udp' }, (r) => {
            // No callback: lets libuv send synchronously without a completion wrap; errors go to the
            // socket's error handler.
            // A forwarded answer can arrive after its socket was closed (stop, remove): send() would throw.
            if (r && !stopping && !closedUdp.has(sock)) sock.send(r, rinfo.port, rinfo.address)
          })
        })
        resolve(sock)
      })
    })
  }

  function bindTcp(addr: ListenAddress): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const srv: net.Server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => onConnection(sock, srv))
      srv.once('error', reject)
      srv.listen({ port: addr.port, host: addr.address }, () => {
        srv.off('error', reject)
        srv.on('error', (e) => log.warn({ err: e.message }, 'tcp server error'))
        resolve(srv)
      })
    })
  }

  function closeConn(c: Conn): void {
    clearTimeout(c.timer)
    c.sock.destroy()
  }

  function onConnection(sock: net.Socket, srv: net.Server): void {
    if (stopping) return void sock.destroy()
    if (conns.size >= maxTcp) {
      // Full: evict the connection idle the longest (no query in flight). Slow or half-open clients
      // therefore cannot lock out a real one; only when every slot is busy is the newcomer refused.
      let victim: Conn | undefined
      for (const c of conns) if (c.inflight === 0 && (!victim || c.lastActive < victim.lastActive)) victim = c
      if (!victim) {
        st.tcpRejected++
        return void sock.destroy()
      }
      st.tcpEvicted++
      conns.delete(victim)
      closeConn(victim)
    }
    st.tcpAccepted++
    const client: ClientInfo = { address: clientAddress(sock.remoteAddress ?? ''), port: sock.remotePort ?? 0, proto: 'tcp' }
    const c: Conn = {
      sock,
      srv,
      inflight: 0,
      lastActive: Date.now(),
      ended: false,
      // Refreshed only by complete queries and sent answers: dribbling bytes does not keep it alive.
      timer: setTimeout(function onIdle() {
        if (c.inflight > 0) return void c.timer.refresh()
        st.tcpTimedOut++
        closeConn(c)
      }, idleMs),
    }
    conns.add(c)
    st.tcpConnections = conns.size
    let buf: Buffer = Buffer.alloc(0)
    const active = (): void => {
      c.lastActive = Date.now()
      c.timer.refresh()
    }
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0)
        if (len === 0) return closeConn(c) // nothing valid is empty: a broken or hostile client
        if (buf.length < 2 + len) break
        const msg = buf.subarray(2, 2 + len)
        buf = buf.subarray(2 + len)
        st.tcpIn++
        c.inflight++
        active()
        if (c.inflight >= maxInflight) sock.pause()
        call(msg, client, (r) => {
          c.inflight--
          if (sock.destroyed) return
          if (r) {
            const out = Buffer.allocUnsafe(r.length + 2)
            out.writeUInt16BE(r.length, 0)
            r.copy(out, 2)
            // A client that sends queries but never reads its answers: stop reading its queries
            // until the kernel takes our output ('drain'); if it never does, the idle timer ends it.
            if (!sock.write(out)) sock.pause()
            active()
          }
          if (c.inflight < maxInflight && sock.isPaused() && !c.ended && !sock.writableNeedDrain) sock.resume()
          if (c.ended && c.inflight === 0) sock.end()
        })
      }
      // A frame can never exceed 2 + 65535 bytes: the buffer is bounded by construction.
    })
    sock.on('drain', () => {
      if (c.inflight < maxInflight && !c.ended) sock.resume()
    })
    sock.on('end', () => {
      c.ended = true
      if (c.inflight === 0) sock.end()
    })
    sock.on('error', () => undefined)
    sock.on('close', () => {
      clearTimeout(c.timer)
      conns.delete(c)
      st.tcpConnections = conns.size
    })
  }

  /** Bind UDP and TCP on one address. Port 0: the UDP port the OS picks, the same asked for on TCP; retried on a clash. */
  async function bindPair(addr: ListenAddress): Promise<void> {
    // ipLiteral() above relies on this: a host name would never be resolved.
    if (net.isIP(addr.address) === 0) throw errors.config(`listen address ${JSON.stringify(addr.address)} is not an IP address`)
    for (let tryNo = 0; ; tryNo++) {
      const u = await bindUdp(addr)
      const port = u.address().port
      try {
        const t = await bindTcp({ address: addr.address, port })
        listeners.push({ addr, udp: u, tcp: t })
        return
      } catch (e) {
        await new Promise<void>((r) => u.close(() => r()))
        if (addr.port !== 0 || tryNo >= 10) throw e
      }
    }
  }

  function closePair(l: (typeof listeners)[number]): Promise<void[]> {
    for (const c of conns) {
      if (c.srv === l.tcp) {
        conns.delete(c)
        closeConn(c)
      }
    }
    closedUdp.add(l.udp)
    return Promise.all([new Promise<void>((r) => l.udp.close(() => r())), new Promise<void>((r) => l.tcp.close(() => r()))])
  }

  return {
    async start() {
      stopping = false
      for (const addr of opts.listen) if (net.isIP(addr.address) === 0) throw errors.config(`listen address ${JSON.stringify(addr.address)} is not an IP address`)
      for (const addr of opts.listen) await bindPair(addr)
    },
    async stop() {
      stopping = true
      for (const c of conns) closeConn(c)
      conns.clear()
      await Promise.all(listeners.map((l) => closePair(l)))
      listeners.length = 0
    },
    add: (addr) => bindPair(addr),
    async remove(addr) {
      const i = listeners.findIndex((l) => l.addr.address === addr.address && l.addr.port === addr.port)
      if (i < 0) return
      const [l] = listeners.splice(i, 1)
      await closePair(l!)
      st.tcpConnections = conns.size
    },
    addresses() {
      const out: Array<{ address: string; port: number; proto: 'udp' | 'tcp' }> = []
      for (const l of listeners) out.push({ address: l.udp.address().address, port: l.udp.address().port, proto: 'udp' })
      for (const l of listeners) {
        const a = l.tcp.address() as net.AddressInfo
        out.push({ address: a.address, port: a.port, proto: 'tcp' })
      }
      return out
    },
    stats: () => ({ ...st, tcpConnections: conns.size }),
  }
}
