// Reproducible, realistic blocklist text for benchmarks (lint, matcher, enforcement): a seeded PRNG
// so every run and every helper measures the same list. All lines it writes are valid entries.
import { formatCidr, maskBytes } from '../../src/policy/net.js'
import { prng } from '../../test/helpers/prng.js'
export { prng }

export interface GenOptions {
  /** How many domain entries (each hosts-file line carries exactly one name, so this is exact). */
  domains: number
  /** How many network entries (about 90 % IPv4, 10 % IPv6), all in public, non-reserved space. */
  cidrs: number
  seed?: number
}

export interface GeneratedList {
  text: string
  /** Every domain as written to the list, normalised (no `*.`, no hosts/adblock syntax). */
  domains: string[]
  /** The subset of `domains` written as `*.name` (names under it only). */
  subdomainsOnly: string[]
  /** Every network in canonical CIDR form. */
  cidrs: string[]
}


const SYLLABLES = ['ab', 'ka', 'lo', 'mi', 'net', 'cdn', 'zor', 'pix', 'tra', 'ck', 'ad', 'ser', 've', 'x', 'qu',
  'ri', 'on', 'data', 'up', 'mx', 'stat', 'gw', 'ba', 'te', 'ny', 'ro', 'fi', 'lu', 'mo', 'sy', 'ze', 'do']
const TLDS = ['com', 'net', 'org', 'io', 'ru', 'cn', 'xyz', 'top', 'info', 'biz', 'de', 'co.uk', 'online', 'site',
  'club', 'su', 'tk', 'pw', 'cc', 'me']

function label(r: () => number): string {
  const n = 1 + Math.floor(r() * 4)
  let s = ''
  for (let i = 0; i < n; i++) s += SYLLABLES[Math.floor(r() * SYLLABLES.length)]
  // Digits and the odd hyphen, as in real tracker/dropper names.
  if (r() < 0.3) s += String(Math.floor(r() * 1000))
  if (r() < 0.1) s += '-' + SYLLABLES[Math.floor(r() * SYLLABLES.length)]
  return s
}

function domain(r: () => number): string {
  // 2-4 labels including the TLD (a two-label TLD like co.uk counts as its labels).
  const total = 2 + Math.floor(r() * 3)
  const tld = TLDS[Math.floor(r() * TLDS.length)]!
  const parts: string[] = []
  for (let i = tld.split('.').length; i < total; i++) parts.push(label(r))
  if (parts.length === 0) parts.push(label(r))
  return parts.join('.') + '.' + tld
}

/** First octets that are public, unicast and outside the private/shared ranges (10, 100, 127, 169, 172, 192 skipped). */
const V4_FIRST: number[] = []
for (let o = 1; o <= 223; o++) if (![10, 100, 127, 169, 172, 192].includes(o)) V4_FIRST.push(o)

function cidr(r: () => number): string {
  if (r() < 0.9) {
    const bytes = Uint8Array.from([V4_FIRST[Math.floor(r() * V4_FIRST.length)]!, r() * 256, r() * 256, r() * 256])
    // Mostly single addresses and /24s, as in DROP-style lists and threat feeds.
    const x = r()
    const prefix = x < 0.5 ? 32 : x < 0.85 ? 24 : 16 + Math.floor(r() * 16)
    return formatCidr({ family: 4, bytes: maskBytes(bytes, prefix), prefix })
  }
  // IPv6 in 2000::/3 global unicast, prefixes /32../128.
  const bytes = new Uint8Array(16)
  for (let i = 0; i < 16; i++) bytes[i] = Math.floor(r() * 256)
  bytes[0] = 0x20 | (bytes[0]! & 0x0f) // 0x20..0x2f: inside 2000::/3, clear of fe80::/10 and ff00::/8
  const x = r()
  const prefix = x < 0.4 ? 128 : x < 0.8 ? 48 : 32 + Math.floor(r() * 33)
  return formatCidr({ family: 6, bytes: maskBytes(bytes, prefix), prefix })
}

/** The list plus the values in it (so a benchmark can query names that are, and are not, listed). */
export function generateListParts(opts: GenOptions): GeneratedList {
  const r = prng(opts.seed ?? 1)
  const lines: string[] = ['# generated benchmark list', '']
  const domains = new Set<string>()
  const sub: string[] = []
  while (domains.size < opts.domains) {
    const d = domain(r)
    if (domains.has(d)) continue
    domains.add(d)
    const x = r()
    if (x < 0.05) {
      lines.push(`*.${d}`)
      sub.push(d)
    } else if (x < 0.12) lines.push(`0.0.0.0 ${d}`)
    else if (x < 0.17) lines.push(`||${d}^`)
    else if (x < 0.2) lines.push(`${d} # tracker seen ${Math.floor(r() * 28) + 1} Nov`)
    else if (x < 0.21) lines.push(`# campaign ${Math.floor(r() * 10000)}`, d)
    else lines.push(d)
  }
  const nets = new Set<string>()
  while (nets.size < opts.cidrs) {
    const c = cidr(r)
    if (nets.has(c)) continue
    nets.add(c)
    // Write bare addresses for host routes half the time (the parser canonicalises to /32 or /128).
    const bare = (c.endsWith('/32') && !c.includes(':')) || c.endsWith('/128') ? r() < 0.5 : false
    const text = bare ? c.slice(0, c.lastIndexOf('/')) : c
    lines.push(r() < 0.2 ? `${text} ; SBL${Math.floor(r() * 700000)}` : text)
  }
  return { text: lines.join('\n') + '\n', domains: [...domains], subdomainsOnly: sub, cidrs: [...nets] }
}

export function generateList(opts: GenOptions): string {
  return generateListParts(opts).text
}
