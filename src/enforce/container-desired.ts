// Pure core of the container-egress seam: validate and normalise a ContainerState into one entry per
// held address (the unit every backend builds its sets and rules from), validate learned pairs, keep
// pairs for not-yet-applied addresses, and the decision model the rules implement (used by dry-run).
import { createHash } from 'node:crypto'
import { isIPv4 } from 'node:net'
import { errors } from '../errors.js'
import { cidrContains, formatIp, parseCidr, parseIp, type Family } from '../policy/net.js'
import type { ContainerMode, ContainerState, LearnPair, SeenKind } from './container-types.js'

/** One address of one held container: the kernel's unit (its learned sets are named by `key`). */
export interface HeldAddress {
  /** Canonical address text. */
  ip: string
  family: Family
  id: string
  /** 10 hex characters of sha256(id/ip): names its learned sets and (nft) its chain. */
  key: string
  mode: ContainerMode
  /** Profile nets of this address's family: canonical, de-duplicated, sorted; ports sorted. */
  nets: NormalNet[]
}

export interface NormalNet {
  cidr: string
  ports?: number[]
}

export interface NormalState {
  /** Sorted by family, then address text: the order rules are written in. */
  held: HeldAddress[]
  sinkhole: { v4: string[]; v6: string[]; port: number }
}

export interface NormalPair {
  /** The container's canonical address. */
  ip: string
  family: Family
  dst: string
  proto?: 'tcp' | 'udp'
  port?: number
  ttl: number
}

/** ipset's largest timeout (seconds); nft takes the same bound so both backends agree. */
export const MAX_TTL = 2_147_483
const ID_RE = /^[0-9a-f]{12,64}$/

export function addressKey(id: string, ip: string): string {
  return createHash('sha256').update(`${id}/${ip}`).digest('hex').slice(0, 10)
}

function canonicalIp(text: unknown): { ip: string; family: Family } | undefined {
  if (typeof text !== 'string') return undefined
  // Fast path for the common case (learn() sees many): a strict dotted quad is already canonical.
  if (isIPv4(text) && !/(^|\.)0\d/.test(text)) return { ip: text, family: 4 }
  const p = parseIp(text)
  return p ? { ip: formatIp(p), family: p.family } : undefined
}

function validPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535
}

/** Validate a ContainerState; every problem is reported at once (EG_BAD_INPUT) and nothing is built. */
export function normalizeState(s: ContainerState): NormalState {
  const problems: string[] = []
  const held: HeldAddress[] = []
  const owner = new Map<string, string>()
  for (const [i, c] of (s.containers ?? []).entries()) {
    const where = `containers[${i}]`
    if (typeof c.id !== 'string' || !ID_RE.test(c.id)) problems.push(`${where}: id must be 12 to 64 lower-case hex characters`)
    if (!['enforce', 'alert', 'quarantine'].includes(c.mode)) problems.push(`${where}: mode must be enforce, alert or quarantine`)
    const nets: { cidr: string; family: Family; ports?: number[] }[] = []
    for (const [j, n] of (c.nets ?? []).entries()) {
      const r = parseCidr(String(n.cidr))
      if (!r.ok) {
        problems.push(`${where}.nets[${j}]: ${r.message}`)
        continue
      }
      if (n.ports !== undefined && (!Array.isArray(n.ports) || n.ports.length === 0 || !n.ports.every(validPort))) {
        problems.push(`${where}.nets[${j}]: ports must be a non-empty list of integers 1..65535`)
        continue
      }
      nets.push({ cidr: r.canonical, family: r.cidr.family, ...(n.ports ? { ports: [...new Set(n.ports)].sort((a, b) => a - b) } : {}) })
    }
    for (const a of c.addresses ?? []) {
      const ip = canonicalIp(a)
      if (!ip) {
        problems.push(`${where}: invalid address ${JSON.stringify(a)}`)
        continue
      }
      const prev = owner.get(ip.ip)
      if (prev !== undefined && prev !== c.id) problems.push(`${where}: address ${ip.ip} also belongs to container ${prev}`)
      if (prev !== undefined) continue
      owner.set(ip.ip, c.id)
      const mine = new Map<string, NormalNet>()
      for (const n of nets) {
        if (n.family !== ip.family) continue
        const k = `${n.cidr}|${n.ports?.join(',') ?? ''}`
        if (!mine.has(k)) mine.set(k, { cidr: n.cidr, ...(n.ports ? { ports: n.ports } : {}) })
      }
      held.push({ ip: ip.ip, family: ip.family, id: c.id, key: addressKey(c.id, ip.ip), mode: c.mode, nets: [...mine.values()].sort((x, y) => (x.cidr < y.cidr ? -1 : x.cidr > y.cidr ? 1 : (x.ports?.join(',') ?? '') < (y.ports?.join(',') ?? '') ? -1 : 1)) })
    }
  }
  const sink = { v4: [] as string[], v6: [] as string[], port: s.sinkhole?.port }
  for (const a of [...(s.sinkhole?.v4 ?? []), ...(s.sinkhole?.v6 ?? [])]) {
    const ip = canonicalIp(a)
    if (!ip) problems.push(`sinkhole: invalid address ${JSON.stringify(a)}`)
    else if (!(ip.family === 4 ? sink.v4 : sink.v6).includes(ip.ip)) (ip.family === 4 ? sink.v4 : sink.v6).push(ip.ip)
  }
  if (!validPort(sink.port)) problems.push('sinkhole: port must be an integer 1..65535')
  if (problems.length > 0) throw errors.badInput(`invalid container state: ${problems.slice(0, 20).join('; ')}`, { problems })
  held.sort((a, b) => a.family - b.family || (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))
  sink.v4.sort()
  sink.v6.sort()
  return { held, sinkhole: { v4: sink.v4, v6: sink.v6, port: sink.port as number } }
}

/**
 * Validate learned pairs (EG_BAD_INPUT naming the first problems; nothing is written then). Every
 * address is checked to be an address, never a name: ipset and nft would resolve a host name.
 * A port without a proto becomes a TCP and a UDP pair; ttl is rounded up and capped at MAX_TTL.
 */
export function normalizePairs(pairs: readonly LearnPair[]): NormalPair[] {
  const out: NormalPair[] = []
  const problems: string[] = []
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!
    const c = canonicalIp(p.container)
    const d = canonicalIp(p.dst)
    if (!c || !d) {
      problems.push(`pairs[${i}]: invalid ${!c ? 'container' : 'dst'} address`)
      continue
    }
    if (c.family !== d.family) {
      problems.push(`pairs[${i}]: container ${c.ip} and dst ${d.ip} are of different families`)
      continue
    }
    if (typeof p.ttlSec !== 'number' || !(p.ttlSec > 0)) {
      problems.push(`pairs[${i}]: ttlSec must be a positive number`)
      continue
    }
    const ttl = Math.min(MAX_TTL, Math.ceil(p.ttlSec))
    if (p.port === undefined) {
      if (p.proto !== undefined) {
        problems.push(`pairs[${i}]: proto without port`)
        continue
      }
      out.push({ ip: c.ip, family: c.family, dst: d.ip, ttl })
      continue
    }
    if (!validPort(p.port) || (p.proto !== undefined && p.proto !== 'tcp' && p.proto !== 'udp')) {
      problems.push(`pairs[${i}]: port must be 1..65535 and proto tcp or udp`)
      continue
    }
    for (const proto of p.proto ? [p.proto] : (['tcp', 'udp'] as const)) out.push({ ip: c.ip, family: c.family, dst: d.ip, proto, port: p.port, ttl })
  }
  if (problems.length > 0) throw errors.badInput(`invalid learned pairs: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`, { problems })
  return out
}

/** Canonical form of a container address given to forget()/cut() (EG_BAD_INPUT when not an address). */
export function containerAddress(text: string): { ip: string; family: Family } {
  const c = canonicalIp(text)
  if (!c) throw errors.badInput(`invalid container address ${JSON.stringify(text)}`)
  return c
}

/**
 * Pairs learned for an address that no applied state holds yet, with their absolute expiry. Bounded:
 * past `max` pairs the oldest are dropped (counted in `dropped`), so a flood of lookups from
 * unknown addresses cannot grow the agent's memory.
 */
export class PendingPairs {
  private readonly byIp = new Map<string, { pair: NormalPair; expiresAt: number }[]>()
  private size = 0
  dropped = 0
  constructor(private readonly max = 20_000) {}

  add(p: NormalPair, now: number): void {
    let list = this.byIp.get(p.ip)
    if (!list) this.byIp.set(p.ip, (list = []))
    list.push({ pair: p, expiresAt: now + p.ttl * 1000 })
    this.size++
    while (this.size > this.max) {
      // Map iteration order is insertion order: the first address holds the oldest pairs.
      const [ip, first] = this.byIp.entries().next().value as [string, { pair: NormalPair; expiresAt: number }[]]
      first.shift()
      this.size--
      this.dropped++
      if (first.length === 0) this.byIp.delete(ip)
    }
  }

  /** Remove and return the unexpired pairs of `ip`, their ttl cut to what is left. */
  take(ip: string, now: number): NormalPair[] {
    const list = this.byIp.get(ip)
    if (!list) return []
    this.byIp.delete(ip)
    this.size -= list.length
    const out: NormalPair[] = []
    for (const { pair, expiresAt } of list) {
      const left = Math.ceil((expiresAt - now) / 1000)
      if (left > 0) out.push({ ...pair, ttl: Math.min(pair.ttl, left) })
    }
    return out
  }

  drop(ip: string): void {
    const list = this.byIp.get(ip)
    if (!list) return
    this.size -= list.length
    this.byIp.delete(ip)
  }

  get count(): number {
    return this.size
  }
}

export interface Packet {
  src: string
  dst: string
  proto: 'tcp' | 'udp' | 'icmp'
  port?: number
  /** Part of a connection the kernel already tracks (established/related). */
  established?: boolean
}

export type Decision =
  | { verdict: 'pass' } // not a held source: these rules do not touch it
  | { verdict: 'accept' }
  | { verdict: 'accept'; seen: 'alerted' }
  | { verdict: 'reject'; seen: Exclude<SeenKind, 'alerted'> }

/**
 * What the rules do with one packet, in their order (both kernel backends implement exactly this):
 * 1. quarantine: only DNS to the sinkhole; everything else refused, even established traffic;
 * 2. enforce/alert: established/related accepted;
 * 3. DNS to the sinkhole accepted; DNS (53) anywhere else and DNS-over-TLS (TCP 853) refused;
 * 4. a learned pair (any port, or the pair's proto:port) or a profile net (optionally port-limited) accepted;
 * 5. otherwise enforce refuses, alert accepts and reports.
 */
export function decide(state: NormalState, learned: (ip: string, dst: string, proto: string, port: number | undefined) => boolean, p: Packet): Decision {
  const src = canonicalIp(p.src)?.ip
  const dst = canonicalIp(p.dst)
  const h = state.held.find((x) => x.ip === src)
  if (!h || !dst) return { verdict: 'pass' }
  const ported = p.proto === 'tcp' || p.proto === 'udp'
  const sink = (dst.family === 4 ? state.sinkhole.v4 : state.sinkhole.v6).includes(dst.ip) && ported && p.port === state.sinkhole.port
  if (h.mode === 'quarantine') return sink ? { verdict: 'accept' } : { verdict: 'reject', seen: 'quarantine' }
  if (p.established) return { verdict: 'accept' }
  if (sink) return { verdict: 'accept' }
  const no = (): Decision => (h.mode === 'alert' ? { verdict: 'accept', seen: 'alerted' } : { verdict: 'reject', seen: 'refused' })
  if ((ported && p.port === 53) || (p.proto === 'tcp' && p.port === 853)) return no()
  if (learned(h.ip, dst.ip, p.proto, p.port)) return { verdict: 'accept' }
  const addr = parseIp(dst.ip)!
  for (const n of h.nets) {
    const r = parseCidr(n.cidr)
    if (!r.ok || !cidrContains(r.cidr, addr)) continue
    if (!n.ports || (ported && p.port !== undefined && n.ports.includes(p.port))) return { verdict: 'accept' }
  }
  return no()
}
