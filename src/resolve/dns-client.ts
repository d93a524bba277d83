// A minimal stub resolver for A/AAAA that asks the configured upstream(s) directly with dns-packet:
// the host's resolver cannot be used because the managed hosts block points blocked names at 0.0.0.0.
import { createSocket, type Socket } from 'node:dgram'
import { connect } from 'node:net'
import { randomInt } from 'node:crypto'
import { isIPv6 } from 'node:net'
import * as dnsPacket from 'dns-packet'
import { errors } from '../errors.js'
import { formatIp, parseIp } from '../policy/net.js'

export interface Upstream {
  address: string
  port: number
}

export interface ResolvedAddr {
  ip: string
  family: 4 | 6
  /** Seconds: the smallest TTL along the CNAME chain that led to this address. */
  ttl: number
}

export interface ResolveResult {
  addrs: ResolvedAddr[]
  /** Every CNAME target met on the way, in order. */
  cnames: string[]
  /** NOERROR when either the A or the AAAA lookup succeeded; otherwise the A lookup's rcode. */
  rcode: string
  /** Families whose lookup failed (timeout, loop) while the other one answered: their addresses are unknown, not gone. */
  failed?: Array<4 | 6>
}

export interface ResolveOptions {
  upstreams: Upstream[]
  /** Per attempt (default 2000 ms). */
  timeoutMs?: number
  /** Attempts per question, rotating through the upstreams (default 2 per upstream, at least 2). */
  attempts?: number
}

/** CNAME hops followed in total (within answers and by re-querying) before giving up: loops end here. */
export const MAX_CNAME_HOPS = 8

type QType = 'A' | 'AAAA'

/** The fields we read from an answer record (dns-packet decodes A/AAAA/CNAME data to strings). */
interface Rec {
  name: string
  type: string
  ttl?: number
  data?: unknown
}

interface RawAnswer {
  rcode: string
  answers: Rec[]
}

/** Resolve A and AAAA for `name`, following CNAME chains. Never consults /etc/hosts or the system resolver. */
export async function resolveName(name: string, opts: ResolveOptions): Promise<ResolveResult> {
  if (opts.upstreams.length === 0) throw errors.config('no DNS upstream configured')
  const qname = normalise(name)
  const [a, aaaa] = await Promise.allSettled([resolveType(qname, 'A', opts), resolveType(qname, 'AAAA', opts)])
  if (a.status === 'rejected' && aaaa.status === 'rejected') throw a.reason
  const parts = [a, aaaa].filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<ResolveResult>).value)
  const cnames: string[] = []
  for (const p of parts) for (const c of p.cnames) if (!cnames.includes(c)) cnames.push(c)
  const rcode = parts.some((p) => p.rcode === 'NOERROR') ? 'NOERROR' : parts[0]!.rcode
  const failed: Array<4 | 6> = []
  if (a.status === 'rejected') failed.push(4)
  if (aaaa.status === 'rejected') failed.push(6)
  return { addrs: parts.flatMap((p) => p.addrs), cnames, rcode, ...(failed.length > 0 ? { failed } : {}) }
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

/** One record type, following the CNAME chain; re-queries the chain's tail when the answer stops short. */
async function resolveType(qname: string, type: QType, opts: ResolveOptions): Promise<ResolveResult> {
  const cnames: string[] = []
  const addrs: ResolvedAddr[] = []
  let current = qname
  let chainTtl = Infinity
  let hops = 0
  for (let query = 0; query <= MAX_CNAME_HOPS; query++) {
    const raw = await exchange(current, type, opts)
    if (raw.rcode !== 'NOERROR') return { addrs, cnames, rcode: raw.rcode }
    // Walk the chain inside this answer: name -> CNAME -> ... -> records of `type`.
    const startedAt = current
    for (;;) {
      const here = raw.answers.filter((r) => normalise(r.name) === current)
      const found = here.filter((r) => r.type === type)
      if (found.length > 0) {
        for (const r of found) {
          const ip = parseIp(String(r.data))
          if (!ip || ip.family !== (type === 'A' ? 4 : 6)) continue
          addrs.push({ ip: formatIp(ip), family: ip.family, ttl: Math.min(chainTtl, r.ttl ?? 0) })
        }
        return { addrs, cnames, rcode: 'NOERROR' }
      }
      const cname = here.find((r) => r.type === 'CNAME')
      if (!cname) break
      if (++hops > MAX_CNAME_HOPS) throw errors.upstream(`${qname}: CNAME chain longer than ${MAX_CNAME_HOPS} hops`)
      const target = normalise(String(cname.data))
      if (cnames.includes(target) || target === qname) throw errors.upstream(`${qname}: CNAME loop at ${target}`)
      cnames.push(target)
      chainTtl = Math.min(chainTtl, cname.ttl ?? 0)
      current = target
    }
    // No records and no further CNAME in this answer. If this answer moved us along the chain, its
    // tail points outside the data the upstream sent (e.g. another zone): ask for the tail itself.
    // Otherwise the name simply has no records of this type (NODATA).
    if (current === startedAt) return { addrs, cnames, rcode: 'NOERROR' }
  }
  throw errors.upstream(`${qname}: CNAME chain longer than ${MAX_CNAME_HOPS} hops`)
}

/** One question, with retries across upstreams; UDP first, TCP when the reply is truncated (TC bit). */
async function exchange(name: string, type: QType, opts: ResolveOptions): Promise<RawAnswer> {
  const timeoutMs = opts.timeoutMs ?? 2000
  const attempts = Math.max(opts.attempts ?? 2 * opts.upstreams.length, 1)
  let last: Error | undefined
  for (let i = 0; i < attempts; i++) {
    const up = opts.upstreams[i % opts.upstreams.length]!
    try {
      const udp = await udpExchange(name, type, up, timeoutMs)
      if (!udp.flag_tc) return toRaw(udp)
      try {
        return toRaw(await tcpExchange(name, type, up, timeoutMs))
      } catch {
        // No DNS over TCP there: the truncated answer's records are a true subset, and for blocking
        // some of a name's addresses beat none (the next refresh tries TCP again).
        return toRaw(udp)
      }
    } catch (e) {
      last = e as Error
    }
  }
  throw errors.upstream(`${name} ${type}: no answer from ${opts.upstreams.map(fmtUp).join(', ')}: ${last?.message ?? 'unknown error'}`)
}

function fmtUp(u: Upstream): string {
  return isIPv6(u.address) ? `[${u.address}]:${u.port}` : `${u.address}:${u.port}`
}

function toRaw(p: dnsPacket.DecodedPacket): RawAnswer {
  return { rcode: (p as unknown as { rcode: string }).rcode, answers: (p.answers ?? []) as Rec[] }
}

function query(id: number, name: string, type: QType): dnsPacket.Packet {
  return { type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] }
}

/**
 * A reply is accepted only when it is a response, carries our random id and echoes our question
 * (RFC 5452 section 9.1: id + question + source address/port); anything else is ignored, not fatal.
 */
function matches(p: dnsPacket.DecodedPacket, id: number, name: string, type: QType): boolean {
  if (p.type !== 'response' || p.id !== id) return false
  const q = p.questions?.[0]
  return p.questions?.length === 1 && q !== undefined && q.type === type && normalise(q.name) === name
}

function udpExchange(name: string, type: QType, up: Upstream, timeoutMs: number): Promise<dnsPacket.DecodedPacket> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536)
    const sock: Socket = createSocket(isIPv6(up.address) ? 'udp6' : 'udp4')
    const done = (err: Error | undefined, p?: dnsPacket.DecodedPacket): void => {
      clearTimeout(timer)
      sock.close()
      if (err) reject(err)
      else resolve(p!)
    }
    const timer = setTimeout(() => done(new Error(`timeout after ${timeoutMs} ms from ${fmtUp(up)}`)), timeoutMs)
    sock.on('error', (e) => done(e))
    sock.on('message', (msg, rinfo) => {
      if (rinfo.port !== up.port || !sameAddr(rinfo.address, up.address)) return
      let p: dnsPacket.DecodedPacket
      try {
        p = dnsPacket.decode(msg)
      } catch {
        return // garbage: keep waiting for the real answer until the timeout
      }
      if (matches(p, id, name, type)) done(undefined, p)
    })
    sock.send(dnsPacket.encode(query(id, name, type)), up.port, up.address, (e) => {
      if (e) done(e)
    })
  })
}

function sameAddr(a: string, b: string): boolean {
  const x = parseIp(a.replace(/^::ffff:(?=\d+\.)/, ''))
  const y = parseIp(b)
  return x !== undefined && y !== undefined && formatIp(x) === formatIp(y)
}

/** DNS over TCP: a two-byte length before each message (RFC 1035 4.2.2). */
function tcpExchange(name: string, type: QType, up: Upstream, timeoutMs: number): Promise<dnsPacket.DecodedPacket> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536)
    const sock = connect({ host: up.address, port: up.port })
    let buf = Buffer.alloc(0)
    let settled = false
    const done = (err: Error | undefined, p?: dnsPacket.DecodedPacket): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(p!)
    }
    const timer = setTimeout(() => done(new Error(`TCP timeout after ${timeoutMs} ms from ${fmtUp(up)}`)), timeoutMs)
    sock.on('error', (e) => done(e))
    sock.on('connect', () => sock.write(dnsPacket.streamEncode(query(id, name, type))))
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0)
        if (buf.length < len + 2) return
        const msg = buf.subarray(2, len + 2)
        buf = buf.subarray(len + 2)
        try {
          const p = dnsPacket.decode(msg)
          if (matches(p, id, name, type)) return done(undefined, p)
        } catch (e) {
          return done(new Error(`malformed TCP reply from ${fmtUp(up)}: ${(e as Error).message}`))
        }
      }
    })
    sock.on('end', () => done(new Error(`connection closed by ${fmtUp(up)} before an answer`)))
  })
}

/** Parse `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 into an upstream (default port 53). */
export function parseUpstream(text: string): Upstream | undefined {
  const t = text.trim()
  let addr = t
  let port = 53
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(t)
  if (br) {
    addr = br[1]!
    if (br[2]) port = Number(br[2])
  } else if (/^[^:]+:\d+$/.test(t)) {
    const i = t.lastIndexOf(':')
    addr = t.slice(0, i)
    port = Number(t.slice(i + 1))
  }
  const ip = parseIp(addr)
  if (!ip || !Number.isInteger(port) || port < 1 || port > 65535) return undefined
  return { address: formatIp(ip), port }
}
