// IP address and CIDR arithmetic shared by the parser, the matcher, the resolver and the enforcers:
// strict parsing, canonical text (RFC 5952 for IPv6), containment, and the ranges that are never blocked.
import { isIPv4, isIPv6 } from 'node:net'

export type Family = 4 | 6

export interface Ip {
  family: Family
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array
}

export interface Cidr extends Ip {
  prefix: number
}

/** Strict: dotted quad without leading zeros, or IPv6 (embedded IPv4 allowed), no zone id. */
export function parseIp(text: string): Ip | undefined {
  if (isIPv4(text)) {
    const parts = text.split('.')
    if (parts.some((p) => p.length > 1 && p.startsWith('0'))) return undefined
    return { family: 4, bytes: Uint8Array.from(parts.map(Number)) }
  }
  if (isIPv6(text) && !text.includes('%')) return { family: 6, bytes: parseV6(text) }
  return undefined
}

function parseV6(text: string): Uint8Array {
  const out = new Uint8Array(16)
  let s = text.toLowerCase()
  // Embedded IPv4 tail (::ffff:1.2.3.4) -> two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (v4) {
    const b = v4[1]!.split('.').map(Number)
    s = s.slice(0, v4.index) + ((b[0]! << 8) | b[1]!).toString(16) + ':' + ((b[2]! << 8) | b[3]!).toString(16)
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined]
  const h = head ? head.split(':') : []
  const t = tail !== undefined && tail !== '' ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  groups.forEach((g, i) => {
    const v = parseInt(g, 16)
    out[i * 2] = v >> 8
    out[i * 2 + 1] = v & 0xff
  })
  return out
}

/** Canonical text: dotted quad, or RFC 5952 (lower case, longest zero run compressed). */
export function formatIp(ip: Ip): string {
  const b = ip.bytes
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  const g: number[] = []
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!)
  // Find the longest run of zero groups (length >= 2), first one on ties (RFC 5952 4.2.3).
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (best < 0) return hex.join(':')
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':')
}

export type CidrParse =
  | { ok: true; cidr: Cidr; canonical: string; /** input had host bits set or non-canonical text */ exact: boolean }
  | { ok: false; message: string }

/** Parse `addr` or `addr/prefix`. A bare address becomes /32 or /128. */
export function parseCidr(text: string): CidrParse {
  const slash = text.indexOf('/')
  const addr = slash < 0 ? text : text.slice(0, slash)
  const ip = parseIp(addr)
  if (!ip) return { ok: false, message: `invalid IP address ${JSON.stringify(addr)}` }
  const max = ip.family === 4 ? 32 : 128
  let prefix = max
  if (slash >= 0) {
    const p = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p) || Number(p) > max || (p.length > 1 && p.startsWith('0'))) {
      return { ok: false, message: `invalid prefix length ${JSON.stringify(p)} (0..${max})` }
    }
    prefix = Number(p)
  }
  const masked = maskBytes(ip.bytes, prefix)
  const cidr: Cidr = { family: ip.family, bytes: masked, prefix }
  const canonical = formatCidr(cidr)
  const given = slash < 0 ? `${text}/${max}` : text
  return { ok: true, cidr, canonical, exact: given === canonical }
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c)}/${c.prefix}`
}

export function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes)
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8))
    out[i]! &= bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff
  }
  return out
}

/** Does network `c` contain address (or network) `x` of the same family? */
export function cidrContains(c: Cidr, x: Ip & { prefix?: number }): boolean {
  if (c.family !== x.family) return false
  const xp = x.prefix ?? (x.family === 4 ? 32 : 128)
  if (xp < c.prefix) return false
  const m = maskBytes(x.bytes, c.prefix)
  for (let i = 0; i < m.length; i++) if (m[i] !== c.bytes[i]) return false
  return true
}

/** Do two networks share any address? (One must contain the other.) */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a)
}

function cidrs(list: string[]): Cidr[] {
  return list.map((s) => {
    const r = parseCidr(s)
    if (!r.ok) throw new Error(`bad built-in range ${s}`)
    return r.cidr
  })
}

/** Ranges a blocklist entry may never cover: blocking them breaks the host itself. */
export const RESERVED: ReadonlyArray<{ name: string; cidr: Cidr }> = [
  ['loopback', '127.0.0.0/8'],
  ['loopback', '::1/128'],
  ['link-local', '169.254.0.0/16'],
  ['link-local', 'fe80::/10'],
  ['multicast', '224.0.0.0/4'],
  ['multicast', 'ff00::/8'],
  ['unspecified', '0.0.0.0/32'],
  ['unspecified', '::/128'],
  ['broadcast', '255.255.255.255/32'],
  // The same ranges written as IPv4-mapped IPv6 (::ffff:a.b.c.d): a v6 entry must not sneak them in.
  ['loopback', '::ffff:7f00:0/104'],
  ['link-local', '::ffff:a9fe:0/112'],
  ['multicast', '::ffff:e000:0/100'],
  ['unspecified', '::ffff:0:0/128'],
  ['broadcast', '::ffff:ffff:ffff/128'],
].map(([name, c]) => ({ name: name!, cidr: cidrs([c!])[0]! }))

/** The reserved range a network overlaps, if any. */
export function reservedOverlap(c: Cidr): string | undefined {
  for (const r of RESERVED) if (cidrOverlaps(c, r.cidr)) return r.name
  return undefined
}

/** Private and shared ranges: never blocked because a blocked *domain* resolved to them. */
export const PRIVATE: readonly Cidr[] = cidrs([
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  'fc00::/7',
  '0.0.0.0/8',
])

/** Well-known public resolvers: a bad name pointing at one must not cut the fleet off DNS. */
export const PUBLIC_RESOLVERS: readonly string[] = [
  '8.8.8.8', '8.8.4.4', '1.1.1.1', '1.0.0.1', '9.9.9.9', '149.112.112.112', '208.67.222.222', '208.67.220.220',
  '94.140.14.14', '94.140.15.15', '2001:4860:4860::8888', '2001:4860:4860::8844', '2606:4700:4700::1111',
  '2606:4700:4700::1001', '2620:fe::fe', '2620:fe::9', '2620:119:35::35', '2620:119:53::53',
]

/**
 * Why an address that a blocked domain resolved to must not go into the kernel, or undefined when it
 * may. `extra` holds the configured upstreams, the server's addresses and other addresses to protect.
 */
export function protectedReason(ipText: string, extra: readonly string[] = []): string | undefined {
  const ip = parseIp(ipText)
  if (!ip) return 'not an IP address'
  for (const r of RESERVED) if (cidrContains(r.cidr, ip)) return r.name
  for (const p of PRIVATE) if (cidrContains(p, ip)) return 'private range'
  const canon = formatIp(ip)
  if (PUBLIC_RESOLVERS.includes(canon)) return 'public resolver'
  for (const e of extra) {
    const c = parseCidr(e)
    if (c.ok && cidrContains(c.cidr, ip)) return `protected address ${e}`
  }
  return undefined
}
