// The policy matcher: which entry decides for a DNS name or an IP address. The DNS sinkhole calls
// matchName for every query, so lookups hash label suffixes and walk a prefix trie (never scan
// entries), allocate at most a small Verdict per hit (see InlineVerdict), and the whole structure
// stays compact (about 55 bytes per listed domain with a typical share of networks; see
// bench/matcher.ts).
import { domainToASCII } from 'node:url'
import type { Action, Entry, Matcher, Verdict } from './types.js'
import { parseCidr } from './net.js'
import { parseV4, parseV6Into } from './ip-parse.js'
import { EntryTable, expiryMs, lineNumberAt, F_ALERT, F_ALLOW, F_NET, F_SUB, STRIDE, W_META, W_NEXT } from './entry-table.js'
import {
  DomainTable, FNV_PRIME, HASH_START, INLINE_MAX_FILE, INLINE_MAX_LINE, NO_REF, inlineFile, inlineFlags, inlineLine, inlineRef, isInline,
} from './domain-table.js'
import { CidrTrie, type ChainSink } from './cidr-trie.js'
import type { EntrySink } from './entry-sink.js'
import { entryId } from './merge.js'

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
// Local copies of constants the lookup loop reads on every query: under tsx (the benchmarks, the tests)
// an imported binding is a getter call, which showed up as ~10 % of a lookup. Checked against the
// exporting modules' values at load (below).
const FNV = 0x01000193
const HASH0 = 0x811c9dc5 | 0
const NONE = -1
const SUB = 1
const ALLOW = 2
const ALERT = 4
if (FNV !== FNV_PRIME || HASH0 !== HASH_START || NONE !== NO_REF || SUB !== F_SUB || ALLOW !== F_ALLOW || ALERT !== F_ALERT) {
  throw new Error('matcher.ts: local constants out of step with domain-table.ts / entry-table.ts')
}

/**
 * Collects, for one lookup, the deciding entry per action. Chains arrive from least to most
 * specific, so a later chain overrides an earlier one; within one chain (same value) the entry that
 * came first in the input wins, which is the lowest entry index (entries are numbered in input order;
 * chains themselves are in no particular order). A deciding entry is a ref: an entry-table index
 * (>= 0), or -2 - slot for an inline entry (domain-table.ts) whose key sits in that slot; -1 is none.
 * Precedence between actions is applied at the end.
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

  /** An inline entry (flags in its ref word) of the key found in `slot`. It never expires. */
  considerInline(slot: number, ref: number, exact: boolean): void {
    const f = (ref >>> 28) & 7 // inlineFlags(ref)
    // `*.name` matches names under it, never the name itself.
    if (exact && f & SUB) return
    if (f & ALLOW) this.allow = -2 - slot
    else if (f & ALERT) this.alert = -2 - slot
    else this.block = -2 - slot
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
      if (exact && f & SUB) continue
      const x = meta >>> 8
      if (x !== 0) {
        if (this.now !== this.now) this.now = this.clock()
        if (t.expiresAt[x]! <= this.now) continue
      }
      if (f & ALLOW) {
        if (a < 0 || i < a) a = i
      } else if (f & ALERT) {
        if (c < 0 || i < c) c = i
      } else if (b < 0 || i < b) b = i
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

/**
 * The Verdict of an inline entry (most entries of a big list): the action at once, the Entry when it
 * is first read, built from the name table then (and kept by this Verdict only). Two costs avoided:
 * - fetching a cached Entry per hit was a third dependent cache miss on a million-name list (slot,
 *   name record, then the cache), about a third of a lookup; a caller that only needs the action
 *   never pays for the Entry at all;
 * - keeping every Entry ever built (one per distinct blocked name) made the sinkhole's memory grow
 *   with the names it saw, and promoting them out of the young generation made its p99 latency
 *   several times worse while a new set of names arrived (bench/sinkhole.ts). Built on demand, an
 *   Entry dies young with its Verdict.
 * A new Verdict per lookup is a young-generation allocation (cache-hot), not a miss. The matcher and
 * slot are private fields, so spreading, comparing or logging a verdict sees `action` only, and JSON
 * gets `entry` too (toJSON).
 */
class InlineVerdict implements Verdict {
  readonly #matcher: CompactMatcher
  readonly #slot: number
  #entry: Entry | undefined
  constructor(
    readonly action: Action,
    matcher: CompactMatcher,
    slot: number,
  ) {
    this.#matcher = matcher
    this.#slot = slot
  }

  get entry(): Entry {
    return (this.#entry ??= this.#matcher.inlineEntry(this.#slot))
  }

  toJSON(): { action: Action; entry: Entry } {
    return { action: this.action, entry: this.entry }
  }
}

export class CompactMatcher implements Matcher {
  private readonly sel: Selector
  /** Scratch for the IPv6 address being looked up (lookups are synchronous, so one is enough). */
  private readonly v6buf = new Uint8Array(16)
  private readonly domainValue = (k: number): string => this.domains.value(k)
  /**
   * Entry-table index -> its Verdict, undefined until its first hit. Filled with undefined up front so
   * V8 keeps a flat element array (a `new Array(n)` this large would be a slow dictionary).
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
    let h = HASH0
    let labels = 0
    for (let i = end - 1; i >= 0; i--) {
      const c = name.charCodeAt(i)
      if (c === DOT) {
        labels++
        if (mask & (1 << (labels < 31 ? labels : 31))) {
          const k = domains.find(name, i + 1, end, h)
          if (k >= 0) {
            const ref = domains.ref(k)
            if (ref >= 0) sel.consider(ref, false)
            else if (ref !== NONE) sel.considerInline(domains.foundSlot, ref, false)
          }
        }
      } else if (c > 127) return this.matchUnicode(name)
      // hashStep(h, lowerAscii(c)), written out: this line runs for every character of every query.
      h = Math.imul(h ^ (c >= 65 && c <= 90 ? c | 32 : c), FNV)
    }
    labels++
    if (mask & (1 << (labels < 31 ? labels : 31))) {
      const k = domains.find(name, 0, end, h)
      if (k >= 0) {
        const ref = domains.ref(k)
        if (ref >= 0) sel.consider(ref, true)
        else if (ref !== NONE) sel.considerInline(domains.foundSlot, ref, true)
      }
    }
    return this.verdict()
  }

  /**
   * Non-ASCII input. What a person types (`bücher.example`) is compared in punycode. What is no valid
   * IDN, such as a DNS name read byte by byte with a C1 byte in a label (`\x9b31m.evil.example`),
   * still falls under the names above it: its non-ASCII characters become `?`, which no entry holds,
   * so those labels match nothing and the suffixes decide (else the name would be forwarded upstream).
   */
  private matchUnicode(name: string): Verdict | undefined {
    const a = domainToASCII(name)
    if (a !== '' && !/[^\x00-\x7f]/.test(a)) return this.matchName(a)
    return this.matchName(name.replace(/[^\x00-\x7f]/g, '?'))
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
    if (s.allow !== -1) return this.cached(s.allow, 'allow')
    if (s.block !== -1) return this.cached(s.block, 'block')
    if (s.alert !== -1) return this.cached(s.alert, 'alert')
    return undefined
  }

  /**
   * The Verdict for the entry `ref` (see Selector). A table entry's is built on its first hit and
   * reused afterwards: rebuilding the Entry (strings for value, source and id) on every hit cost about
   * a third of a lookup, mostly in GC; an entry always yields the same action (fixed by its flags), so
   * one Verdict per entry is enough, frozen because every caller shares it. An inline entry's is an
   * InlineVerdict (see there).
   */
  private cached(ref: number, action: Verdict['action']): Verdict {
    if (ref >= 0) {
      const hit = this.verdicts[ref]
      if (hit !== undefined) return hit
      const v: Verdict = Object.freeze({ action, entry: Object.freeze(this.table.materialise(ref, this.domainValue)) })
      this.verdicts[ref] = v
      return v
    }
    return new InlineVerdict(action, this, -2 - ref)
  }

  /** A new Entry (frozen) for the inline entry whose key is in `slot`. */
  inlineEntry(slot: number): Entry {
    const k = this.domains.keyAt(slot)
    const r = this.domains.ref(k)
    return Object.freeze(this.table.materialiseInline(inlineFlags(r), inlineFile(r), inlineLine(r), this.domains.value(k)))
  }

  stats(): MatcherStats {
    let nets = 0
    let doms = 0
    for (let i = 0; i < this.table.size; i++) (this.table.flagsOf(i) & F_NET ? nets++ : doms++)
    return {
      domainEntries: doms + this.inlineCount,
      domainKeys: this.domains.size,
      netEntries: nets,
      trieNodes: this.v4.nodeCount + this.v6.nodeCount,
      typedBytes: this.domains.byteSize + this.v4.byteSize + this.v6.byteSize + this.table.byteSize,
    }
  }

  /** Set by the builder: entries kept inline in the domain table (not in the entry table). */
  inlineCount = 0
}

/** `file:123` -> [file, 123] when the line is 1..INLINE_MAX_LINE without a leading zero, else undefined. */
function fileLine(source: string): [string, number] | undefined {
  const colon = source.lastIndexOf(':')
  const line = colon > 0 ? lineNumberAt(source, colon + 1) : 0
  return line >= 1 && line <= INLINE_MAX_LINE ? [source.slice(0, colon), line] : undefined
}

/**
 * Builds a CompactMatcher from entries in input order: from Entry objects (add), or straight from a
 * blocklist's bytes (as an EntrySink for loadBlocklists), so a million-line list never becomes a
 * million objects. Ties between equally specific entries of the same action go to the earlier one.
 * Entries that cannot match (bad CIDR, empty name) are skipped: the parser reports those.
 */
export class MatcherBuilder implements EntrySink {
  private readonly table: EntryTable
  private readonly domains: DomainTable
  private readonly v4 = new CidrTrie(32)
  private readonly v6 = new CidrTrie(128)
  private readonly fixed: number | undefined
  private readonly buildNow: number
  private inline = 0
  /** Entries added (expired ones and ones that cannot match are not counted). */
  count = 0

  /** `names`/`nameBytes`/`entries`: expected sizes (the tables grow past them when needed). */
  constructor(opts: MatcherOptions & { names?: number; nameBytes?: number; entries?: number } = {}) {
    this.fixed = opts.now?.getTime()
    this.buildNow = this.fixed ?? Date.now()
    this.table = new EntryTable(opts.entries ?? 16)
    this.domains = new DomainTable(opts.names ?? 16, opts.nameBytes ?? 256)
  }

  /** Room for `names` more names of `bytes` bytes in all (see DomainTable.reserve). */
  reserve(names: number, bytes: number): void {
    this.domains.reserve(names, bytes)
  }

  add(e: Entry): void {
    if (e.expires !== undefined && expiryMs(e.expires) <= this.buildNow) return
    const table = this.table
    if (e.kind === 'domain') {
      const name = normaliseName(e.value)
      if (name === undefined) return
      this.count++
      const k = this.domains.intern(name)
      if (this.domains.ref(k) === NO_REF) {
        const inl = this.inlineOf(e)
        if (inl !== NO_REF) {
          this.domains.setRef(k, inl)
          this.inline++
          return
        }
      }
      this.spill(k)
      this.chain(k, table.add(e, k))
      return
    }
    const p = parseCidr(e.value)
    if (!p.ok) return
    this.count++
    const c = p.cidr
    const i = table.add(e, -1)
    if (c.family === 6 && c.prefix >= 96 && v4Mapped(c.bytes) >= 0) {
      // An IPv4-mapped network is the IPv4 network: queries in either form find it.
      table.setNext(i, this.v4.insert(c.bytes.subarray(12), c.prefix - 96, i))
    } else if (c.family === 4) table.setNext(i, this.v4.insert(c.bytes, c.prefix, i))
    else table.setNext(i, this.v6.insert(c.bytes, c.prefix, i))
  }

  entry(e: Entry): void {
    this.add(e)
  }

  /** EntrySink: a plain blocked name from a file (no Entry made; see entry-sink.ts). */
  name(bytes: Uint8Array, start: number, end: number, subdomainsOnly: boolean, file: string, line: number): void {
    this.count++
    const k = this.domains.internBytes(bytes, start, end)
    const f = this.table.fileIndex(file)
    const flags = subdomainsOnly ? F_SUB : 0
    if (this.domains.ref(k) === NO_REF && f <= INLINE_MAX_FILE && line >= 1 && line <= INLINE_MAX_LINE) {
      this.domains.setRef(k, inlineRef(flags, f, line))
      this.inline++
      return
    }
    this.spill(k)
    this.chain(k, this.table.addPlain(flags, k, f, line))
  }

  /**
   * The inline form of e (domain-table.ts inlineRef), or NO_REF when e needs a table row: a reason,
   * an expiry, force, API fields, an id that is not entryId(e), or a source that is not `file:line`.
   */
  private inlineOf(e: Entry): number {
    if (e.reason !== undefined || e.expires !== undefined || e.force || e.added !== undefined || e.actor !== undefined) return NO_REF
    if (e.allow && e.mode === 'alert') return NO_REF
    if (e.id === undefined || e.id !== entryId(e)) return NO_REF
    const fl = fileLine(e.source)
    if (fl === undefined) return NO_REF
    const f = this.table.fileIndex(fl[0])
    if (f > INLINE_MAX_FILE) return NO_REF
    const flags = (e.subdomainsOnly ? F_SUB : 0) | (e.allow ? F_ALLOW : 0) | (e.mode === 'alert' ? F_ALERT : 0)
    return inlineRef(flags, f, fl[1])
  }

  /**
   * Key k is about to get another entry: an inline entry it holds moves into the table first, so that
   * its row gets the lower index (it came first in the input, and the lowest index wins a chain).
   */
  private spill(k: number): void {
    const r = this.domains.ref(k)
    if (!isInline(r)) return
    this.domains.setRef(k, this.table.addPlain(inlineFlags(r), k, inlineFile(r), inlineLine(r)))
    this.inline--
  }

  /** Push table entry i onto key k's chain (chain order does not matter: see Selector). */
  private chain(k: number, i: number): void {
    this.table.setNext(i, this.domains.ref(k))
    this.domains.setRef(k, i)
  }

  build(): CompactMatcher {
    this.table.seal()
    this.domains.seal()
    this.v4.seal()
    this.v6.seal()
    const fixed = this.fixed
    const m = new CompactMatcher(this.table, this.domains, this.v4, this.v6, fixed !== undefined ? () => fixed : Date.now)
    m.inlineCount = this.inline
    return m
  }
}

/**
 * Build a matcher over `entries` (input order decides ties; see MatcherBuilder). The Entry array is
 * not retained.
 */
export function buildMatcher(entries: readonly Entry[], opts: MatcherOptions = {}): CompactMatcher {
  let names = 0
  let nameBytes = 0
  for (const e of entries) {
    if (e.kind === 'domain') {
      names++
      nameBytes += e.value.length
    }
  }
  const b = new MatcherBuilder({ ...opts, names, nameBytes, entries: entries.length - names })
  for (const e of entries) b.add(e)
  return b.build()
}
