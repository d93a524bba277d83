// The sinkhole's decision, pure: a query packet and the policy in, a reply (or "forward this") out.
// Also the check of a forwarded answer: a CNAME chain or an address that leads somewhere blocked is
// answered as blocked too. No I/O here; sockets, upstreams and hits live in sinkhole.ts.
import { errors } from '../errors.js'
import { parseIp } from '../policy/net.js'
import type { Matcher, Verdict } from '../policy/types.js'
import { CLASS_IN, RCODE, RecordWalker, SECTION, TYPE, addressText, buildError, buildReply, parseQuery, readName, skipName, typeName, type Query, type Rdata } from './wire.js'

/** What a blocked name is told. Custom addresses answer A and/or AAAA; other types get NODATA. */
export type BlockMode = 'null' | 'nxdomain' | 'refused' | { a?: string; aaaa?: string }

/** A block mode compiled once (addresses pre-encoded) so the hot path only copies bytes. */
export interface BlockPlan {
  kind: 'null' | 'nxdomain' | 'refused' | 'custom'
  ttl: number
  a?: Buffer
  aaaa?: Buffer
  /** Hit `answer` labels per query type. */
  labelA: string
  labelAAAA: string
  labelOther: string
}

export const DEFAULT_BLOCK_TTL = 60

/** Validate and pre-encode a block mode. Throws EG_CONFIG on a bad address or TTL. */
export function compileBlockMode(mode: BlockMode = 'null', ttl = DEFAULT_BLOCK_TTL): BlockPlan {
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 86400) throw errors.config(`block TTL must be a whole number of seconds 0..86400, got ${ttl}`)
  if (mode === 'null') return { kind: 'null', ttl, a: Buffer.alloc(4), aaaa: Buffer.alloc(16), labelA: 'null', labelAAAA: 'null', labelOther: 'null' }
  if (mode === 'nxdomain' || mode === 'refused') return { kind: mode, ttl, labelA: mode, labelAAAA: mode, labelOther: mode }
  if (typeof mode !== 'object' || mode === null || (!mode.a && !mode.aaaa)) throw errors.config(`block mode must be null, nxdomain, refused or an address, got ${JSON.stringify(mode)}`)
  const plan: BlockPlan = { kind: 'custom', ttl, labelA: 'custom:nodata', labelAAAA: 'custom:nodata', labelOther: 'custom:nodata' }
  if (mode.a) {
    const ip = parseIp(mode.a)
    if (!ip || ip.family !== 4) throw errors.config(`block mode address ${JSON.stringify(mode.a)} is not an IPv4 address`)
    plan.a = Buffer.from(ip.bytes)
    plan.labelA = `custom:${mode.a}`
  }
  if (mode.aaaa) {
    const ip = parseIp(mode.aaaa)
    if (!ip || ip.family !== 6) throw errors.config(`block mode address ${JSON.stringify(mode.aaaa)} is not an IPv6 address`)
    plan.aaaa = Buffer.from(ip.bytes)
    plan.labelAAAA = `custom:${mode.aaaa}`
  }
  return plan
}

/** Parse the `--block-mode` text: null | nxdomain | refused | IP[,IP] (one v4 and/or one v6). */
export function parseBlockMode(text: string): BlockMode {
  if (text === 'null' || text === 'nxdomain' || text === 'refused') return text
  const out: { a?: string; aaaa?: string } = {}
  for (const part of text.split(',')) {
    const ip = parseIp(part.trim())
    if (!ip) throw errors.config(`--block-mode must be null, nxdomain, refused or IP[,IP], got ${JSON.stringify(text)}`)
    if (ip.family === 4) out.a = part.trim()
    else out.aaaa = part.trim()
  }
  return out
}

/** A blocked or alert lookup, for the hit log. */
export interface HitInfo {
  /** `deny`: outside the asking container's profile (enforce); `alert` also for a profile in alert mode. */
  action: 'block' | 'alert' | 'deny'
  /** The asking container's profile, when it decided. */
  profile?: string
  verdict: Verdict
  name: string
  qtype: string
  /** 'null' | 'nxdomain' | 'refused' | 'custom:<ip>' | 'forwarded' */
  answer: string
}

export type Decision =
  /** A reply made here: a sinkhole answer or an error (FORMERR, NOTIMP, REFUSED, BADVERS). */
  | { kind: 'reply'; packet: Buffer; rcode: number; hit?: HitInfo; query?: Query }
  /** Say nothing (not a query, or too short to reply to). */
  | { kind: 'drop' }
  /** Send upstream. `check`: whether the answer must go through checkForwarded (not for `@@` names). */
  | { kind: 'forward'; query: Query; check: boolean; hit?: HitInfo }

/** RFC 8914 4.16: INFO-CODE 15 "Blocked". */
export const EDE_BLOCKED = 15

function edeText(v: Verdict): string {
  const why = v.entry.reason ? `${v.entry.reason} (${v.entry.source})` : v.entry.source
  return `blocked by egress-guard: ${v.entry.value}: ${why}`.slice(0, 160)
}

/** The configured sinkhole answer for a blocked name. */
export function blockedReply(buf: Buffer, q: Query, v: Verdict, plan: BlockPlan): { packet: Buffer; label: string; rcode: number } {
  // Only clients that sent EDNS can receive the option: skip building its text for the others.
  const ede = q.edns ? { code: EDE_BLOCKED, text: edeText(v) } : undefined
  const ttl = plan.ttl
  switch (plan.kind) {
    case 'nxdomain':
      return { packet: buildReply(buf, q, { rcode: RCODE.NXDOMAIN, aa: true, ttl, soa: true, ede }), label: plan.labelA, rcode: RCODE.NXDOMAIN }
    case 'refused':
      return { packet: buildReply(buf, q, { rcode: RCODE.REFUSED, ttl, ede }), label: plan.labelA, rcode: RCODE.REFUSED }
    default: {
      let rd: Rdata | undefined
      let label = plan.labelOther
      if (q.qtype === TYPE.A && plan.a) {
        rd = { type: TYPE.A, data: plan.a }
        label = plan.labelA
      } else if (q.qtype === TYPE.AAAA && plan.aaaa) {
        rd = { type: TYPE.AAAA, data: plan.aaaa }
        label = plan.labelAAAA
      }
      // Other types (and a custom mode without that family) get NODATA: NOERROR, no answer, and a
      // synthetic SOA so the negative answer is cached for the block TTL (RFC 2308 5).
      const packet = rd
        ? buildReply(buf, q, { rcode: RCODE.NOERROR, aa: true, ttl, answers: [rd], ede })
        : buildReply(buf, q, { rcode: RCODE.NOERROR, aa: true, ttl, soa: true, ede })
      return { packet, label, rcode: RCODE.NOERROR }
    }
  }
}

/**
 * Decide for one query packet. Cost on the hot path: one header+question parse and one matcher
 * lookup (O(labels)); a blocked answer is written straight into one buffer.
 *
 * Decisions where RFCs leave room:
 * - class other than IN (CHAOS `version.bind`, HS, ANY): REFUSED, never forwarded: the sinkhole only
 *   speaks for the Internet class and does not leak the upstream's identity;
 * - AXFR/IXFR: REFUSED (zone transfers are not ours to give);
 * - EDNS version other than 0: BADVERS (RFC 6891 6.1.3);
 * - a query that is really a response (QR set), or shorter than a header: silence.
 */
export function answer(buf: Buffer, matcher: Matcher, plan: BlockPlan): Decision {
  const p = parseQuery(buf)
  if (!p.ok) {
    if (p.drop) return { kind: 'drop' }
    return { kind: 'reply', packet: buildError(buf, p.rcode, p.qEnd), rcode: p.rcode }
  }
  const q = p.query
  if (q.edns && q.edns.version !== 0) return { kind: 'reply', packet: buildError(buf, 0, q.qEnd, { do: q.edns.do, extRcode: 1 }), rcode: 16 }
  if (q.qclass !== CLASS_IN || q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR || q.qtype === TYPE.OPT) {
    return { kind: 'reply', packet: buildError(buf, RCODE.REFUSED, q.qEnd, q.edns ? { do: q.edns.do } : undefined), rcode: RCODE.REFUSED }
  }
  const v = matcher.matchName(q.qname)
  if (v === undefined) return { kind: 'forward', query: q, check: true }
  if (v.action === 'allow') return { kind: 'forward', query: q, check: false }
  if (v.action === 'alert') return { kind: 'forward', query: q, check: true, hit: { action: 'alert', verdict: v, name: q.qname, qtype: typeName(q.qtype), answer: 'forwarded' } }
  const r = blockedReply(buf, q, v, plan)
  return { kind: 'reply', packet: r.packet, rcode: r.rcode, query: q, hit: { action: 'block', verdict: v, name: q.qname, qtype: typeName(q.qtype), answer: r.label } }
}

export type ForwardCheck =
  | { kind: 'ok' }
  /** The upstream's answer is not well-formed enough to check: answer SERVFAIL, do not pass it on. */
  | { kind: 'malformed' }
  /** `via`: what led to the verdict, e.g. `cname:bad.example` or `ip:203.0.113.7`. */
  | { kind: 'block' | 'alert'; verdict: Verdict; via: string }

/**
 * Check a forwarded answer: every CNAME target and every A/AAAA address in the answer section is
 * looked up; the first `block` verdict wins, else the first `alert`. Explicitly allowed targets
 * (`@@`) pass. Only the answer section counts: authority/additional data is not what the client uses.
 */
export function checkForwarded(resp: Buffer, matcher: Matcher): ForwardCheck {
  const w = walker
  if (!w.reset(resp)) return MALFORMED
  let alert: ForwardCheck | undefined
  while (w.next()) {
    if (w.section !== SECTION.answer || w.klass !== CLASS_IN) continue
    let v: Verdict | undefined
    // `via` is put together only for a verdict that is reported (most answers match nothing).
    let via: string
    if (w.type === TYPE.CNAME) {
      const target = readName(resp, w.rdOff)
      if (target === undefined) return MALFORMED
      v = matcher.matchName(target)
      if (!v || v.action === 'allow') continue
      via = `cname:${target}`
    } else if (w.type === TYPE.A || w.type === TYPE.AAAA) {
      const ip = addressText(resp, w.rdOff, w.rdLen)
      if (ip === undefined) return MALFORMED
      v = matcher.matchIp(ip)
      if (!v || v.action === 'allow') continue
      via = `ip:${ip}`
    } else if (w.type === TYPE.SVCB || w.type === TYPE.HTTPS) {
      const r = checkSvcb(resp, w.rdOff, w.rdLen, matcher)
      if (r === undefined) return MALFORMED
      if (r === null) continue
      ;[v, via] = r
    } else continue
    if (!v || v.action === 'allow') continue
    if (v.action === 'block') return { kind: 'block', verdict: v, via }
    alert ??= { kind: 'alert', verdict: v, via }
  }
  if (w.malformed) return MALFORMED
  return alert ?? OK
}

/**
 * Every A/AAAA address in an answer's answer section with its TTL: with a CNAME chain these are the
 * chain's targets' addresses, which is what the client will connect to. undefined when malformed.
 */
export function answerAddresses(resp: Buffer): Array<{ ip: string; ttl: number }> | undefined {
  const w = walker
  if (!w.reset(resp)) return undefined
  const out: Array<{ ip: string; ttl: number }> = []
  while (w.next()) {
    if (w.section !== SECTION.answer || w.klass !== CLASS_IN || (w.type !== TYPE.A && w.type !== TYPE.AAAA)) continue
    const ip = addressText(resp, w.rdOff, w.rdLen)
    if (ip === undefined) return undefined
    out.push({ ip, ttl: w.ttl })
  }
  return w.malformed ? undefined : out
}

const OK: ForwardCheck = Object.freeze({ kind: 'ok' })
const MALFORMED: ForwardCheck = Object.freeze({ kind: 'malformed' })
/** Shared: checkForwarded is synchronous and not re-entrant (the matcher never calls back). */
const walker = new RecordWalker()

/**
 * SVCB/HTTPS (RFC 9460): browsers connect to the TargetName and to the ipv4hint/ipv6hint addresses
 * without another A/AAAA lookup, so those are checked too. Returns the first non-allow verdict
 * (a block before an alert), null when nothing matched, undefined when malformed.
 */
function checkSvcb(buf: Buffer, off: number, len: number, matcher: Matcher): [Verdict, string] | null | undefined {
  const end = off + len
  if (len < 3) return undefined
  const target = readName(buf, off + 2) // RFC 9460 2.2: not compressed, but readName copes either way
  if (target === undefined) return undefined
  let found: [Verdict, string] | null = null
  const note = (v: Verdict | undefined, via: string): boolean => {
    if (!v || v.action === 'allow') return false
    if (v.action === 'block') {
      found = [v, via]
      return true
    }
    found ??= [v, via]
    return false
  }
  if (target !== '' && note(matcher.matchName(target), `svcb:${target}`)) return found
  let p = skipName(buf, off + 2)
  if (p < 0 || p > end) return undefined
  while (p < end) {
    if (p + 4 > end) return undefined
    const key = buf.readUInt16BE(p)
    const vlen = buf.readUInt16BE(p + 2)
    p += 4
    if (p + vlen > end) return undefined
    const step = key === 4 ? 4 : key === 6 ? 16 : 0 // ipv4hint, ipv6hint
    if (step) {
      if (vlen % step !== 0) return undefined
      for (let a = p; a < p + vlen; a += step) {
        const ip = addressText(buf, a, step)!
        if (note(matcher.matchIp(ip), `svcb-hint:${ip}`)) return found
      }
    }
    p += vlen
  }
  return found
}
