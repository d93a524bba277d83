// Holds a million parsed file entries in a few typed columns instead of a million Entry objects, so the
// sinkhole's load peaks at a fraction of the memory; buildMatcher reads them through an array view.
import type { Entry } from './types.js'
// Detached copies: a reason sliced from a list's text would otherwise keep the whole text alive.
import { Interner } from './entry-table.js'

const F_NET = 1
const F_ALLOW = 2
const F_SUB = 4
const F_ALERT = 8
const F_FORCE = 16

const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'

/** Value of `n` base-36 digits of `s` from `at`, or -1 if one is not a lower-case base-36 digit. */
function base36(s: string, at: number, n: number): number {
  let v = 0
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i)
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1
    if (d < 0) return -1
    v = v * 36 + d
  }
  return v
}

const idCodes = new Array<number>(12)
/** Inverse of base36() for a file id: `f` + 5 digits of hi + 6 digits of lo. */
function fileId(hi: number, lo: number): string {
  idCodes[0] = 102 // f
  for (let i = 5; i >= 1; i--, hi = Math.floor(hi / 36)) idCodes[i] = DIGITS.charCodeAt(hi % 36)
  for (let i = 11; i >= 6; i--, lo = Math.floor(lo / 36)) idCodes[i] = DIGITS.charCodeAt(lo % 36)
  return String.fromCharCode(...idCodes)
}


/**
 * Append-only columns of file entries (what BlocklistParser makes: `source` is `file:line`, `id` is
 * entryId(), no API fields). Each Entry handed to add() can be garbage right away: it dies young,
 * which the collector reclaims almost for free, instead of a million objects surviving to old space.
 * Anything else (API fields, a `source` without a line) is kept whole, in a sparse side table.
 *
 * Limits: `value` strings are kept as given (the parser's are slices of the decoded text, so that text
 * stays alive: about as many bytes as the file, far less than the objects); an id is kept as two
 * numbers when it has the file-id shape (`f` + 11 base-36 digits), otherwise the entry is kept whole.
 */
export class CompactEntries {
  private flags = new Uint8Array(1024)
  private lines = new Int32Array(1024)
  private fileIdx = new Int32Array(1024)
  private reasonIdx = new Int32Array(1024)
  private expiresIdx = new Int32Array(1024)
  /** The id's 5 + 6 base-36 digits as numbers (36^6 > 2^31: lo needs unsigned). */
  private idHi = new Int32Array(1024)
  private idLo = new Uint32Array(1024)
  private readonly values: string[] = []
  private readonly files = new Interner()
  private readonly reasons = new Interner()
  private readonly expiries = new Interner()
  private readonly whole = new Map<number, Entry>()
  /** Last file seen: consecutive entries nearly always come from the same file (one string, compared by pointer first). */
  private lastFileName: string | undefined
  private lastFile = 0
  length = 0

  /**
   * Append `e`. `file` and `line` (what the parser knows anyway) spare taking `source` apart; without
   * them it is split at its last `:`. Must be `${file}:${line}` when given.
   */
  add(e: Entry, file?: string, line?: number): void {
    const i = this.length++
    if (i === this.flags.length) this.grow()
    this.values.push(e.value)
    if (file === undefined || line === undefined) {
      const colon = e.source.lastIndexOf(':')
      file = colon > 0 ? e.source.slice(0, colon) : ''
      line = colon > 0 ? Number(e.source.slice(colon + 1)) : NaN
    }
    const id = e.id
    const hi = id !== undefined && id.length === 12 && id.charCodeAt(0) === 102 ? base36(id, 1, 5) : -1
    const lo = hi >= 0 ? base36(id!, 6, 6) : -1
    if (lo < 0 || e.added !== undefined || e.actor !== undefined || file === '' || !Number.isSafeInteger(line) || line < 0 || line > 0x7fffffff) {
      this.whole.set(i, e)
      return
    }
    let f = 0
    if (e.kind === 'net') f |= F_NET
    if (e.allow) f |= F_ALLOW
    if (e.subdomainsOnly) f |= F_SUB
    if (e.mode === 'alert') f |= F_ALERT
    if (e.force) f |= F_FORCE
    this.flags[i] = f
    this.idHi[i] = hi
    this.idLo[i] = lo
    this.lines[i] = line
    if (file !== this.lastFileName) {
      this.lastFileName = file
      this.lastFile = this.files.add(file)
    }
    this.fileIdx[i] = this.lastFile
    this.reasonIdx[i] = this.reasons.add(e.reason)
    this.expiresIdx[i] = this.expiries.add(e.expires)
  }

  private grow(): void {
    const n = this.flags.length * 2
    const g = <T extends Uint8Array | Int32Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(n)
      b.set(a)
      return b
    }
    this.flags = g(this.flags, (n) => new Uint8Array(n))
    this.lines = g(this.lines, (n) => new Int32Array(n))
    this.fileIdx = g(this.fileIdx, (n) => new Int32Array(n))
    this.reasonIdx = g(this.reasonIdx, (n) => new Int32Array(n))
    this.expiresIdx = g(this.expiresIdx, (n) => new Int32Array(n))
    this.idHi = g(this.idHi, (n) => new Int32Array(n))
    this.idLo = g(this.idLo, (n) => new Uint32Array(n))
  }

  /** A fresh Entry equal (deep) to the one added at `i`; same property order as the parser's. */
  get(i: number): Entry {
    const w = this.whole.get(i)
    if (w !== undefined) return w
    const f = this.flags[i]!
    const e: Entry = {
      kind: f & F_NET ? 'net' : 'domain',
      value: this.values[i]!,
      allow: (f & F_ALLOW) !== 0,
      mode: f & F_ALERT ? 'alert' : 'block',
      source: this.files.values[this.fileIdx[i]!] + ':' + this.lines[i],
      id: fileId(this.idHi[i]!, this.idLo[i]!),
    }
    if (f & F_SUB) e.subdomainsOnly = true
    const reason = this.reasons.values[this.reasonIdx[i]!]
    if (reason !== undefined) e.reason = reason
    const expires = this.expiries.values[this.expiresIdx[i]!]
    if (expires !== undefined) e.expires = expires
    if (f & F_FORCE) e.force = true
    return e
  }

  /**
   * A read-only array view (for buildMatcher, which takes `readonly Entry[]`): indexing, `length` and
   * iteration materialise entries on demand. Every read makes a new object, so identity is not stable;
   * generic Array methods work because they go through the same index reads.
   */
  view(): readonly Entry[] {
    const self = this
    return new Proxy([] as Entry[], {
      get(target, prop, receiver) {
        if (typeof prop === 'string') {
          if (prop === 'length') return self.length
          const c = prop.charCodeAt(0)
          if (c >= 48 && c <= 57) {
            const i = Number(prop)
            return Number.isInteger(i) && i < self.length ? self.get(i) : undefined
          }
        }
        return Reflect.get(target, prop, receiver)
      },
      has(target, prop) {
        if (typeof prop === 'string' && prop !== '' && prop.charCodeAt(0) >= 48 && prop.charCodeAt(0) <= 57) {
          const i = Number(prop)
          return Number.isInteger(i) && i < self.length
        }
        return Reflect.has(target, prop)
      },
    })
  }
}
