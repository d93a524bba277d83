// The policy matcher: which entry decides for a DNS name or an IP address. The DNS sinkhole calls
// matchName for every query, so lookups hash label suffixes and walk a prefix trie (never scan
// entries), allocate nothing except the first time an entry decides (its Verdict is then reused),
// and the whole structure stays compact (about 105 bytes per listed domain with a typical share of
// networks, the verdict cache's slots included; see bench/matcher.ts).
import { domainToASCII } from 'node:url'
import type { Entry, Matcher, Verdict } from './types.js'
import { parseCidr } from './net.js'
import { parseV4, parseV6Into } from './ip-parse.js'
import { EntryTable, expiryMs, F_ALERT, F_ALLOW, F_NET, F_SUB, STRIDE, W_META, W_NEXT } from './entry-table.js'
import { DomainTable, FNV_PRIME, HASH_START, MULTI } from './domain-table.js'
import { CidrTrie, type ChainSink } from './cidr-trie.js'

export { parseV4 }

export interface MatcherOptions {
  /**
   * A fixed clock (tests). Without it, entries expired when the matcher is built are
   * dropped, and expiry is checked against the current time at each lookup, so a long-lived matcher
   * stops matching an entry the moment it expires.
   */
  now?: Date
}

/** Lookup statistics for benchmarks and `doctor`-style reports. */
export interface MatcherStats {
  domainEntries: number
  domainKeys: number
  netEntries: number
  trieNodes: number
  /** Bytes held in typed arrays (outside the JS heap). */
  typedBytes: number
}

const DOT = 46

/**
 * Collects, for one lookup, the deciding entry per action. Chains arrive from least to most
 * specific, so a later chain overrides an earlier one; within one chain (same value) the first
 * entry in input order is kept. Precedence between actions is applied at the end.
 */
class Selector implements ChainSink {
  allow = -1
  block = -1
  alert = -1
  /** Lazily read clock: NaN until an entry with an expiry is met. */
  private now = NaN

  constructor(
    private readonly t: EntryTable,
    private readonly clock: () => number,
  ) {}

  reset(): void {
    this.allow = -1
    this.block = -1
    this.alert = -1
    this.now = NaN
  }

  /** consider() for a chain of one entry, i, whose meta word the caller already has. */
  considerOne(i: number, meta: number, exact: boolean): void {
    const f = meta & 0xff
    if (exact && f & F_SUB) return
    const x = meta >>> 8
    if (x !== 0) {
      if (this.now !== this.now) this.now = this.clock()
      if (this.t.expiresAt[x]! <= this.now) return
    }
    if (f & F_ALLOW) this.allow = i
    else if (f & F_ALERT) this.alert = i
    else this.block = i
  }

  consider(head: number, exact: boolean): void {
    const t = this.t
    const cols = t.cols
    let a = -1
    let b = -1
    let c = -1
    for (let i = head; i >= 0; i = cols[i * STRIDE + W_NEXT]!) {
      const meta = cols[i * STRIDE + W_META]!
      const f = meta & 0xff
      // `*.name` matches names under it, never the name itself.
      if (exact && f & F_SUB) continue
      const x = meta >>> 8
      if (x !== 0) {
        if (this.now !== this.now) this.now = this.clock()
        if (t.expiresAt[x]! <= this.now) continue
      }
      if (f & F_ALLOW) {
        if (a < 0) a = i
      } else if (f & F_ALERT) {
        if (c < 0) c = i
      } else if (b < 0) b = i
    }
    if (a >= 0) this.allow = a
    if (b >= 0) this.block = b
    if (c >= 0) this.alert = c
  }
}

/** `::ffff:a.b.c.d` (RFC 4291 2.5.5.2): the IPv4 address it carries, else -1. */
function v4Mapped(b: Uint8Array): number {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return -1
  if (b[10] !== 0xff || b[11] !== 0xff) return -1
  return b[12]! * 0x1000000 + ((b[13]! << 16) | (b[14]! << 8) | b[15]!)
}

/**
 * Entry value -> the key text the table stores: lower case, no trailing dot, punycode. Entries are
 * normalised by the parser already; this only guards against hand-built or API entries that are not.
 */
function normaliseName(v: string): string | undefined {
  let clean = true
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if ((c >= 65 && c <= 90) || c > 127) {
      clean = false
      break
    }
  }
  let s = clean ? v : v.toLowerCase()
  if (s.endsWith('.')) s = s.slice(0, -1)
  if (!clean && /[^\x00-\x7f]/.test(s)) s = domainToASCII(s)
  return s === '' ? undefined : s
}

export class CompactMatcher implements Matcher {
  private readonly sel: Selector
  /** Scratch for the IPv6 address being looked up (lookups are synchronous, so one is enough). */
  private readonly v6buf = new Uint8Array(16)
  private readonly domainValue = (k: number): string => this.domains.value(k)
  /**
   * Entry index -> its Verdict, undefined until its first hit. Filled with undefined up front so V8
   * keeps a flat element array (a `new Array(n)` this large would be a slow dictionary): one load per
   * hit, where an Int32Array index into a dense array cost a second cache miss.
   */
  private readonly verdicts: (Verdict | undefined)[]

  constructor(
    private readonly table: EntryTable,
    private readonly domains: DomainTable,
    private readonly v4: CidrTrie,
    private readonly v6: CidrTrie,
    clock: () => number,
  ) {
    this.sel = new Selector(table, clock)
    this.verdicts = new Array<Verdict | undefined>(table.size).fill(undefined)
  }

  matchName(name: string): Verdict | undefined {
    let end = name.length
    if (end > 0 && name.charCodeAt(end - 1) === DOT) end--
    if (end === 0 || this.domains.size === 0) return undefined
    const sel = this.sel
    const domains = this.domains
    sel.reset()
    const mask = domains.labelMask
    // Right to left: at each dot, `h` is the hash of the suffix after it (least specific first) and
    // `labels` its label count; suffixes with a label count no key has are not probed.
    let h = HASH_START
    let labels = 0
    for (let i = end - 1; i >= 0; i--) {
      const c = name.charCodeAt(i)
      if (c === DOT) {
        labels++
        if (mask & (1 << (labels < 31 ? labels : 31))) {
          const k = domains.find(name, i + 1, end, h)
          if (k >= 0) {
            const solo = domains.soloMeta(k)
            if (solo === MULTI) sel.consider(domains.head(k), false)
            else sel.considerOne(domains.head(k), solo, false)
          }
        }
      } else if (c > 127) return this.matchUnicode(name)
      // hashStep(h, lowerAscii(c)), written out: this line runs for every character of every query.
      h = Math.imul(h ^ (c >= 65 && c <= 90 ? c | 32 : c), FNV_PRIME)
    }
    labels++
    if (mask & (1 << (labels < 31 ? labels : 31))) {
      const k = domains.find(name, 0, end, h)
      if (k >= 0) {
        const solo = domains.soloMeta(k)
        if (solo === MULTI) sel.consider(domains.head(k), true)
        else sel.considerOne(domains.head(k), solo, true)
      }
    }
    return this.verdict()
  }

  /** Non-ASCII input (not what DNS carries, but what a person types): compare in punycode. */
  private matchUnicode(name: string): Verdict | undefined {
    const a = domainToASCII(name)
    if (a === '' || /[^\x00-\x7f]/.test(a)) return undefined
    return this.matchName(a)
  }

  matchIp(ip: string): Verdict | undefined {
    const sel = this.sel
    const a = parseV4(ip)
    if (a >= 0) {
      sel.reset()
      this.v4.walk32(a, sel)
      return this.verdict()
    }
    if (ip.indexOf(':') < 0) return undefined
    const b = this.v6buf
    if (!parseV6Into(ip, b)) return undefined
    sel.reset()
    const m = v4Mapped(b)
    if (m >= 0) this.v4.walk32(m, sel)
    else this.v6.walkBytes(b, sel)
    return this.verdict()
  }

  private verdict(): Verdict | undefined {
    const s = this.sel
    if (s.allow >= 0) return this.cached(s.allow, 'allow')
    if (s.block >= 0) return this.cached(s.block, 'block')
    if (s.alert >= 0) return this.cached(s.alert, 'alert')
    return undefined
  }

  /**
   * The Verdict for entry i, built on its first hit and reused afterwards: rebuilding the Entry
   * (strings for value, source and id) on every hit cost about a third of a lookup, mostly in GC.
   * An entry always yields the same action (it is fixed by its flags), so one Verdict per entry is
   * enough. Frozen, because every caller of this entry shares it. Memory: one 8-byte slot per entry,
   * plus one Verdict per distinct entry that has ever matched (a sinkhole sees a small share).
   */
  private cached(i: number, action: Verdict['action']): Verdict {
    const hit = this.verdicts[i]
    if (hit !== undefined) return hit
    const v: Verdict = Object.freeze({ action, entry: Object.freeze(this.table.materialise(i, this.domainValue)) })
    this.verdicts[i] = v
    return v
  }

  stats(): MatcherStats {
    let nets = 0
    let doms = 0
    for (let i = 0; i < this.table.size; i++) (this.table.flagsOf(i) & F_NET ? nets++ : doms++)
    return {
      domainEntries: doms,
      domainKeys: this.domains.size,
      netEntries: nets,
      trieNodes: this.v4.nodeCount + this.v6.nodeCount,
      typedBytes: this.domains.byteSize + this.v4.byteSize + this.v6.byteSize + this.table.byteSize,
    }
  }
}

/**
 * Build a matcher over `entries` (any order; ties between equally specific entries of the same
 * action go to the earlier one). Entries that cannot match (bad CIDR, empty name) are skipped: the
 * parser reports those. The Entry array is not retained.
 */
export function buildMatcher(entries: readonly Entry[], opts: MatcherOptions = {}): CompactMatcher {
  const fixed = opts.now?.getTime()
  const buildNow = fixed ?? Date.now()
  const live = (e: Entry): boolean => e.expires === undefined || !(expiryMs(e.expires) <= buildNow)

  let count = 0
  let domainCount = 0
  let domainBytes = 0
  for (const e of entries) {
    if (!live(e)) continue
    count++
    if (e.kind === 'domain') {
      domainCount++
      domainBytes += e.value.length
    }
  }

  const table = new EntryTable(count)
  const domains = new DomainTable(domainCount, domainBytes)
  const v4 = new CidrTrie(32)
  const v6 = new CidrTrie(128)
  // Backwards, pushing onto chain heads, so every chain ends up in input order.
  for (let j = entries.length - 1; j >= 0; j--) {
    const e = entries[j]!
    if (!live(e)) continue
    if (e.kind === 'domain') {
      const name = normaliseName(e.value)
      if (name === undefined) continue
      const k = domains.intern(name)
      const i = table.add(e, k)
      table.setNext(i, domains.head(k))
      domains.setHead(k, i, table.cols[i * STRIDE + W_META]!)
    } else {
      const p = parseCidr(e.value)
      if (!p.ok) continue
      const c = p.cidr
      const i = table.add(e, -1)
      if (c.family === 6 && c.prefix >= 96 && v4Mapped(c.bytes) >= 0) {
        // An IPv4-mapped network is the IPv4 network: queries in either form find it.
        table.setNext(i, v4.insert(c.bytes.subarray(12), c.prefix - 96, i))
      } else if (c.family === 4) table.setNext(i, v4.insert(c.bytes, c.prefix, i))
      else table.setNext(i, v6.insert(c.bytes, c.prefix, i))
    }
  }
  table.seal()
  domains.seal()
  v4.seal()
  v6.seal()
  return new CompactMatcher(table, domains, v4, v6, fixed !== undefined ? () => fixed : Date.now)
}
