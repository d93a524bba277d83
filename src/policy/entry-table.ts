// Compact column store for matcher entries: a million Entry objects would cost far more heap than the
// 120 B/domain budget, so the matcher keeps per-entry flags and small integer indexes into interned
// tables, and rebuilds an Entry object only when a verdict is returned.
import type { Action, Entry } from './types.js'
import { isRelativeExpiry, parseExpires } from './expiry.js'
import { entryId } from './merge.js'

/** Flag bits in `flags`. */
export const F_SUB = 1 // domain: `*.name` (names under it only)
export const F_ALLOW = 2
export const F_ALERT = 4
export const F_FORCE = 8
export const F_NET = 16
/** The id is entryId() of the entry itself (every file entry's is): recomputed when materialised, not stored. */
export const F_DERIVED_ID = 32

/** Action classes, in precedence order (lower wins): allow > block > alert. */
export const A_ALLOW = 0
export const A_BLOCK = 1
export const A_ALERT = 2
export const ACTIONS: readonly Action[] = ['allow', 'block', 'alert']

/**
 * The instant an entry stops applying, in ms since the epoch, read the way the parser reads it
 * (expiry.ts: a bare date `2026-12-31` means 23:59:59Z that day). Unparseable or relative text
 * yields NaN, which never compares as expired: the parser reports bad expiries, the matcher does
 * not guess.
 */
export function expiryMs(expires: string): number {
  if (isRelativeExpiry(expires)) return NaN
  const canonical = parseExpires(expires)
  return canonical === undefined ? NaN : Date.parse(canonical)
}

/** The line number at the end of `file:123` (1..999999999, no leading zero), or 0 when there is none. */
export function lineNumberAt(s: string, from: number): number {
  const n = s.length - from
  if (n < 1 || n > 9 || s.charCodeAt(from) === 48) return 0
  let v = 0
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i) - 48
    if (c < 0 || c > 9) return 0
    v = v * 10 + c
  }
  return v
}

/**
 * A standalone copy of `s`. Parser output is often a V8 "sliced string" that points into the whole
 * list text: keeping one such reason alive would keep the entire file (tens of MB) alive with it.
 */
function detach(s: string): string {
  // UTF-8 round trip is the fast copy; it would mangle a lone surrogate, which split/join keeps.
  return /[\ud800-\udfff]/.test(s) ? s.split('').join('') : Buffer.from(s, 'utf8').toString('utf8')
}

/** Interns strings into a table; index 0 is reserved for "none". Stored strings are detached copies. */
export class Interner {
  readonly values: (string | undefined)[] = [undefined]
  private readonly index = new Map<string, number>()
  add(s: string | undefined): number {
    if (s === undefined) return 0
    let i = this.index.get(s)
    if (i === undefined) {
      i = this.values.length
      const own = detach(s)
      this.values.push(own)
      this.index.set(own, i)
    }
    return i
  }
  /** Drop the lookup map once building is done; only `values` is needed afterwards. */
  seal(): void {
    this.index.clear()
  }
}

/** Entries that carry API-only fields (few); kept sparse so file entries pay nothing for them. */
type Extras = Pick<Entry, 'id' | 'added' | 'actor'>

/**
 * Column layout: one Int32Array, STRIDE words (24 bytes) per entry, so the words a lookup reads for one entry
 * sit in one or two cache lines instead of one line per column.
 */
export const STRIDE = 6
/** flags (bits 0-7) | expiry index << 8 (index 0: never expires; up to 2^24 - 1 distinct instants). */
export const W_META = 0
/** Next entry with the same key (or the same trie node), in input order; -1 ends the chain. */
export const W_NEXT = 1
/** domain: key handle in the DomainTable; net: index into `netValues`. */
const W_KEY = 2
const W_SOURCE = 3
const W_LINE = 4
const W_REASON = 5
const MAX_EXPIRIES = (1 << 24) - 1

export class EntryTable {
  /** Grows while building (the streaming build does not know the count); trimmed by seal(). */
  cols: Int32Array
  /** Expiry instants in ms, indexed by the expiry index in W_META (slot 0 unused). */
  expiresAt: Float64Array = new Float64Array(1)
  private readonly sources = new Interner()
  private readonly reasons = new Interner()
  private readonly expiries = new Interner()
  private readonly extras = new Map<number, Extras>()
  readonly netValues: string[] = []
  private count = 0

  constructor(capacity: number) {
    this.cols = new Int32Array(Math.max(16, capacity) * STRIDE)
  }

  get size(): number {
    return this.count
  }

  flagsOf(i: number): number {
    return this.cols[i * STRIDE + W_META]! & 0xff
  }

  setNext(i: number, next: number): void {
    this.cols[i * STRIDE + W_NEXT] = next
  }

  private next(): number {
    const i = this.count++
    if ((i + 1) * STRIDE > this.cols.length) {
      const c = new Int32Array(this.cols.length * 2)
      c.set(this.cols)
      this.cols = c
    }
    return i
  }

  /** Index of a file name in the source table (what an inline entry stores instead of its source). */
  fileIndex(file: string): number {
    if (file === this.lastFile) return this.lastFileIndex
    this.lastFile = file
    this.lastFileIndex = this.sources.add(file)
    return this.lastFileIndex
  }

  /** The file name of a fileIndex(). */
  fileName(index: number): string {
    return this.sources.values[index]!
  }

  /**
   * Append a plain file entry given as parts (a streamed line, or an inline entry moved into the table
   * because its key got a second entry): domain, flags F_SUB/F_ALLOW/F_ALERT, source `file:line`, no
   * reason or expiry, the derived id.
   */
  addPlain(flags: number, key: number, file: number, line: number): number {
    const i = this.next()
    const o = i * STRIDE
    const cols = this.cols
    cols[o + W_META] = (flags & (F_SUB | F_ALLOW | F_ALERT)) | F_DERIVED_ID
    cols[o + W_NEXT] = -1
    cols[o + W_KEY] = key
    cols[o + W_SOURCE] = file
    cols[o + W_LINE] = line
    cols[o + W_REASON] = 0
    return i
  }

  /** Append an entry; `key` is the domain key handle, or -1 for a net (its value is kept as text). */
  add(e: Entry, key: number): number {
    const i = this.next()
    const o = i * STRIDE
    const cols = this.cols
    let f = 0
    if (e.subdomainsOnly) f |= F_SUB
    if (e.allow) f |= F_ALLOW
    if (e.mode === 'alert') f |= F_ALERT
    if (e.force) f |= F_FORCE
    if (e.kind === 'net') {
      f |= F_NET
      cols[o + W_KEY] = this.netValues.length
      this.netValues.push(detach(e.value))
    } else cols[o + W_KEY] = key
    this.addSource(o, e.source)
    cols[o + W_REASON] = this.reasons.add(e.reason)
    // Every file entry's id is entryId() of the entry: recompute it when needed instead of storing it.
    let id = e.id
    if (id !== undefined && id === entryId(e)) {
      f |= F_DERIVED_ID
      id = undefined
    }
    const x = this.expiries.add(e.expires)
    if (x > MAX_EXPIRIES) throw new RangeError(`more than ${MAX_EXPIRIES} distinct expiry times in one matcher`)
    cols[o + W_META] = f | (x << 8)
    cols[o + W_NEXT] = -1
    if (id !== undefined || e.added !== undefined || e.actor !== undefined) {
      const x: Extras = {}
      if (id !== undefined) x.id = id
      if (e.added !== undefined) x.added = e.added
      if (e.actor !== undefined) x.actor = e.actor
      this.extras.set(i, x)
    }
    return i
  }

  /** Last file name seen: consecutive entries nearly always come from the same file. */
  private lastFile = ''
  private lastFileIndex = 0

  /** `file:line` is stored as an interned file name plus an integer line; anything else whole. */
  private addSource(o: number, src: string): void {
    const cols = this.cols
    const colon = src.lastIndexOf(':')
    const line = colon > 0 ? lineNumberAt(src, colon + 1) : 0
    if (line === 0) {
      cols[o + W_SOURCE] = this.sources.add(src)
      cols[o + W_LINE] = 0
      return
    }
    cols[o + W_LINE] = line
    cols[o + W_SOURCE] = colon === this.lastFile.length && src.startsWith(this.lastFile) ? this.lastFileIndex : this.fileIndex(src.slice(0, colon))
  }

  /** Finish building: trim the columns, compute expiry instants and drop the build-time maps. */
  seal(): void {
    if (this.cols.length > this.count * STRIDE) this.cols = this.cols.slice(0, Math.max(1, this.count) * STRIDE)
    const ex = this.expiries.values
    this.expiresAt = new Float64Array(ex.length)
    for (let i = 1; i < ex.length; i++) this.expiresAt[i] = expiryMs(ex[i]!)
    this.sources.seal()
    this.reasons.seal()
    this.expiries.seal()
  }

  /** Bytes held by the typed arrays. */
  get byteSize(): number {
    return this.cols.byteLength + this.expiresAt.byteLength
  }

  /** Action class of entry i: A_ALLOW, A_BLOCK or A_ALERT. An allow is an allow whatever its mode. */
  actionOf(i: number): number {
    const f = this.flagsOf(i)
    return f & F_ALLOW ? A_ALLOW : f & F_ALERT ? A_ALERT : A_BLOCK
  }

  /** Rebuild the Entry for index i; `domainValue` supplies the text of a domain key. */
  materialise(i: number, domainValue: (key: number) => string): Entry {
    const cols = this.cols
    const o = i * STRIDE
    const meta = cols[o + W_META]!
    const f = meta & 0xff
    const net = (f & F_NET) !== 0
    const key = cols[o + W_KEY]!
    const line = cols[o + W_LINE]!
    const file = this.sources.values[cols[o + W_SOURCE]!]!
    const e: Entry = {
      kind: net ? 'net' : 'domain',
      value: net ? this.netValues[key]! : domainValue(key),
      allow: (f & F_ALLOW) !== 0,
      mode: f & F_ALERT ? 'alert' : 'block',
      source: line ? `${file}:${line}` : file,
    }
    if (f & F_SUB) e.subdomainsOnly = true
    const r = this.reasons.values[cols[o + W_REASON]!]
    if (r !== undefined) e.reason = r
    const x = this.expiries.values[meta >>> 8]
    if (x !== undefined) e.expires = x
    if (f & F_FORCE) e.force = true
    if (f & F_DERIVED_ID) e.id = entryId(e)
    const extra = this.extras.get(i)
    if (extra) Object.assign(e, extra)
    return e
  }

  /** The Entry of an inline entry (domain-table.ts inlineRef) of the name `value`. */
  materialiseInline(flags: number, file: number, line: number, value: string): Entry {
    const e: Entry = {
      kind: 'domain',
      value,
      allow: (flags & F_ALLOW) !== 0,
      mode: flags & F_ALERT ? 'alert' : 'block',
      source: `${this.sources.values[file]!}:${line}`,
    }
    if (flags & F_SUB) e.subdomainsOnly = true
    e.id = entryId(e)
    return e
  }
}
