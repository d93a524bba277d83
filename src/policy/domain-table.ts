// Domain-name suffix table for the matcher: every listed name stored once as bytes in one buffer,
// found through an open-addressing hash table whose hash is computed from the RIGHT end of the name.
// Walking a query right to left therefore yields the hash of each label suffix (`example`,
// `evil.example`, `a.evil.example`) in one pass, with no substrings, arrays or per-name objects.

const FNV_OFFSET = 0x811c9dc5 | 0
export const FNV_PRIME = 0x01000193

/** One FNV-1a step; callers feed characters already lower-cased, from the last one backwards. */
export function hashStep(h: number, c: number): number {
  return Math.imul(h ^ c, FNV_PRIME)
}

export const HASH_START = FNV_OFFSET

/** murmur3 finaliser: FNV's low bits are weak, and the table index takes the low bits. */
function mix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h
}

/** Bloom filter word of a mixed hash: the top bits of a second multiplicative hash. */
function filterWord(m: number, shift: number): number {
  return Math.imul(m, 0x9e3779b1) >>> shift
}

/** The key's two bits within its filter word, from low bits of that same hash (disjoint from the index). */
function filterBits(m: number): number {
  const g = Math.imul(m, 0x9e3779b1)
  return (1 << (g & 31)) | (1 << ((g >>> 5) & 31))
}

/** ASCII upper case -> lower case; everything else unchanged (names are punycode by then). */
export function lowerAscii(c: number): number {
  return c >= 65 && c <= 90 ? c | 32 : c
}

const KEY_BITS = 26
const KEY_MASK = (1 << KEY_BITS) - 1
const TAG_MASK = ~KEY_MASK
/**
 * Key handles are record offsets in 4-byte units, so the record store may hold at most this many
 * units (256 MiB: about nine million names of typical length).
 */
const MAX_UNITS = KEY_MASK - 1
/** Record header: the key's ref word (int32) and the name's length (one byte); the name follows. */
const HEADER = 5

/** Ref word of a key with no entry yet. */
export const NO_REF = -1
/**
 * An "inline" entry lives in the key's ref word itself, not in the entry table: the common entry of a
 * big list (one plain file line: no reason, no expiry, the key's only entry) is then 4 bytes instead
 * of a 24-byte table row. Layout: bit 31 set (so the word is negative), flags F_SUB/F_ALLOW/F_ALERT in
 * bits 28-30, the file's index in bits 22-27, the line number in bits 0-21. Allow and alert together
 * never occur (the parser rejects it), so no inline word equals NO_REF (all bits set).
 */
export const INLINE_MAX_FILE = 63
export const INLINE_MAX_LINE = (1 << 22) - 1

export function inlineRef(flags: number, file: number, line: number): number {
  return (1 << 31) | ((flags & 7) << 28) | (file << 22) | line
}
export const inlineFlags = (ref: number): number => (ref >>> 28) & 7
export const inlineFile = (ref: number): number => (ref >>> 22) & 63
export const inlineLine = (ref: number): number => ref & INLINE_MAX_LINE
/** True for a ref word that holds an inline entry (any negative word but NO_REF). */
export const isInline = (ref: number): boolean => ref < NO_REF

/** Home slot of mixed hash m in a table of `cap` slots: its low 24 bits scaled to [0, cap) (cap < 2^27). */
function home(m: number, cap: number): number {
  return Math.floor(((m & 0xffffff) * cap) / 16777216)
}

/** Bytes a record for a name of `len` bytes takes (4-byte aligned). */
const recordSize = (len: number): number => (HEADER + len + 3) & ~3

export class DomainTable {
  /**
   * One record per key, back to back, each starting on a 4-byte boundary: [ref (int32)][name length
   * (one byte)][name bytes (latin1; names are ASCII)]. A key's handle is its record offset / 4, so its
   * ref word is words[handle]. The ref is the first entry of the key's chain in the entry table
   * (>= 0), an inline entry (see inlineRef), or NO_REF. Keeping the ref, the length and the bytes
   * together means a found key costs one cache line (two for long names) after its slot.
   */
  private bytes: Buffer
  /** Int32 view of `bytes` for the ref words (index = byte offset / 4 = handle). */
  private words: Int32Array
  /**
   * Slot -> (key handle + 1) in the low 26 bits, and the top 6 bits of the key's mixed hash above them
   * (0: empty). The tag rejects almost every wrong slot without touching the record, which keeps a
   * miss to about one cache line. Load factor at most 3/4, with any number of slots (not a power of
   * two: for a million names that is 5.3 MiB instead of 8): the home slot is the low 24 bits of the
   * mixed hash scaled to the table size (Lemire's multiply-shift, exact in doubles below 2^53).
   */
  private slots: Int32Array
  private cap: number
  /**
   * A blocked Bloom filter of the keys, 8 bits per key (~1 B per domain): each key sets two bits of
   * one 32-bit word, so a probe reads one word yet gets two hashes' worth of rejection (~5-6 % false
   * positives, where one bit per key gave ~12 %). Small enough to stay in cache when the slot table
   * is not, so most suffixes that are not keys cost no trip to main memory at all.
   */
  private filter: Int32Array
  /** Shift that turns the 32-bit filter hash into a word index (its top bits). */
  private filterShift: number
  private keys = 0
  /** Bytes of `bytes` in use (a multiple of 4). */
  private used = 0
  /** Slot of the key that the last successful find() or intern() returned (an inline verdict's handle). */
  foundSlot = -1
  /**
   * Bit n set when some key has n labels (n >= 31 folded into bit 31). Lookups skip suffixes whose
   * label count no key has: lists rarely hold bare TLDs, so the `com` probe of every query goes away.
   */
  labelMask = 0

  /**
   * `maxKeys` and `maxBytes` (total name length) size the tables; adding more only costs a rehash or
   * a copy. The record store is allocated uninitialised: pages never written are never resident, so
   * a generous upper bound costs address space, not memory.
   */
  constructor(maxKeys: number, maxBytes: number) {
    this.slots = new Int32Array(0)
    this.cap = 0
    this.filter = new Int32Array(0)
    this.filterShift = 0
    this.sizeIndex(maxKeys)
    this.bytes = Buffer.allocUnsafeSlow(Math.max(8, maxKeys * (HEADER + 3) + maxBytes))
    this.words = new Int32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >>> 2)
  }

  get size(): number {
    return this.keys
  }

  /** Hash of a whole name, the same way `find` sees it while walking a query. */
  static hashOf(name: string): number {
    let h = HASH_START
    for (let i = name.length - 1; i >= 0; i--) h = hashStep(h, lowerAscii(name.charCodeAt(i)))
    return h
  }

  private static hashBytes(b: Uint8Array, from: number, to: number): number {
    let h = HASH_START
    for (let i = to - 1; i >= from; i--) h = hashStep(h, lowerAscii(b[i]!))
    return h
  }

  /**
   * Room for `more` keys and `moreBytes` bytes of names beyond those already added: one rehash and one
   * copy now instead of several while adding (the streaming loader knows a file's line count first).
   */
  reserve(more: number, moreBytes: number): void {
    if ((this.keys + more) * 4 > this.cap * 3) this.sizeIndex(this.keys + more)
    const need = this.used + more * (HEADER + 3) + moreBytes
    if (need > this.bytes.length) this.resize(need)
  }

  /** (Re)build the slot table and the filter for `maxKeys` keys, re-inserting the keys already stored. */
  private sizeIndex(maxKeys: number): void {
    const cap = Math.max(16, Math.ceil((maxKeys * 4) / 3))
    if (cap > 1 << 27) throw new RangeError('too many names for one matcher')
    this.slots = new Int32Array(cap)
    this.cap = cap
    // 8 bits per key, rounded up to a power of two.
    let bits = 1024
    while (bits < maxKeys * 8) bits *= 2
    this.filter = new Int32Array(bits >>> 5)
    this.filterShift = 32 - Math.log2(bits >>> 5)
    for (let at = 0; at < this.used; ) {
      const len = this.bytes[at + 4]!
      this.index(DomainTable.hashBytes(this.bytes, at + HEADER, at + HEADER + len), at >>> 2)
      at += recordSize(len)
    }
  }

  /** Put key `key` (whose hash is h) into the slot table and the filter. */
  private index(h: number, key: number): void {
    const m = mix(h)
    let slot = home(m, this.cap)
    while (this.slots[slot] !== 0) slot = slot + 1 === this.cap ? 0 : slot + 1
    this.slots[slot] = (m & TAG_MASK) | (key + 1)
    this.filter[filterWord(m, this.filterShift)] |= filterBits(m)
    this.foundSlot = slot
  }

  /** A new record for a name of `len` bytes; the caller writes the name at the returned offset + HEADER. */
  private place(len: number): number {
    const size = recordSize(len)
    if ((this.used + size) / 4 > MAX_UNITS) throw new RangeError(`the names of one matcher must fit in ${MAX_UNITS * 4} bytes`)
    if (this.used + size > this.bytes.length) this.resize(Math.max(this.bytes.length * 2, this.used + size))
    if ((this.keys + 1) * 4 > this.cap * 3) this.sizeIndex((this.keys + 1) * 2)
    const at = this.used
    this.used += size
    this.keys++
    this.words[at >>> 2] = NO_REF
    this.bytes[at + 4] = len
    return at
  }

  /**
   * Key handle of an ASCII name (lower-cased here), adding it when absent. Both intern forms copy the
   * name to where its record would go (the space past `used` is free), hashing it and counting its
   * labels in the same pass from its end; then keep() looks it up there and keeps the record only
   * when the name is new, so a duplicate leaves nothing behind and the name is read once.
   */
  intern(name: string): number {
    const len = name.length
    const at = this.scratch(len)
    const bytes = this.bytes
    let h = HASH_START
    let labels = 1
    // A JS loop beats Buffer#write (a native call) for names this short.
    for (let i = len - 1, o = at + HEADER + len - 1; i >= 0; i--, o--) {
      const c = lowerAscii(name.charCodeAt(i))
      bytes[o] = c
      h = Math.imul(h ^ c, FNV_PRIME)
      if (c === 46) labels++
    }
    return this.keep(at, len, h, labels)
  }

  /** intern() for src[from, to): names straight from a file's bytes, no string made. */
  internBytes(src: Uint8Array, from: number, to: number): number {
    const len = to - from
    const at = this.scratch(len)
    const bytes = this.bytes
    let h = HASH_START
    let labels = 1
    for (let i = to - 1, o = at + HEADER + len - 1; i >= from; i--, o--) {
      const c = lowerAscii(src[i]!)
      bytes[o] = c
      h = Math.imul(h ^ c, FNV_PRIME)
      if (c === 46) labels++
    }
    return this.keep(at, len, h, labels)
  }

  /** Offset where the next record goes, with room for a name of `len` bytes. */
  private scratch(len: number): number {
    if (this.used + recordSize(len) > this.bytes.length) this.resize(Math.max(this.bytes.length * 2, this.used + recordSize(len)))
    return this.used
  }

  /** The key of the name copied at scratch offset `at` (hash h, `labels` labels): found, or its record kept. */
  private keep(at: number, len: number, h: number, labels: number): number {
    const k = this.findStored(at + HEADER, len, h)
    if (k >= 0) return k
    // scratch() made room, so place() keeps this buffer and returns `at`: the copy stays.
    this.place(len)
    this.labelMask |= 1 << Math.min(labels, 31)
    this.index(h, at >>> 2)
    return at >>> 2
  }

  /**
   * Key handle of the name stored at bytes[b, b + len) (outside any record), or -1. The probe loop is
   * find()'s with a byte-to-byte compare; a shared loop with a compare callback would cost the lookup
   * hot path a call per candidate slot.
   */
  private findStored(b: number, len: number, h: number): number {
    const m = mix(h)
    const tag = m & TAG_MASK
    const bytes = this.bytes
    const slots = this.slots
    const cap = this.cap
    let slot = home(m, cap)
    for (;;) {
      const s = slots[slot]!
      if (s === 0) return -1
      const k = (s & KEY_MASK) - 1
      if ((s & TAG_MASK) === tag && bytes[4 * k + 4] === len) {
        const d = 4 * k + HEADER
        let i = 0
        while (i < len && bytes[d + i] === bytes[b + i]) i++
        if (i === len) {
          this.foundSlot = slot
          return k
        }
      }
      slot = slot + 1 === cap ? 0 : slot + 1
    }
  }

  private resize(n: number): void {
    const b = Buffer.allocUnsafeSlow(Math.max(8, n))
    this.bytes.copy(b, 0, 0, this.used)
    this.bytes = b
    this.words = new Int32Array(b.buffer, b.byteOffset, b.length >>> 2)
  }

  /**
   * Building is done. The record store is trimmed only when over a quarter of it is unused: the copy
   * would briefly need both, and the unused tail of an uninitialised buffer is not resident anyway.
   */
  seal(): void {
    if (this.bytes.length - this.used > this.used / 4) this.resize(this.used)
  }

  /**
   * Key handle of q[from, to) compared case-insensitively, given its hash `h` (see hashStep), or -1;
   * sets foundSlot. Allocation-free: this runs for every label suffix of every DNS query.
   */
  find(q: string, from: number, to: number, h: number): number {
    const len = to - from
    const slots = this.slots
    const m = mix(h)
    const fb = filterBits(m)
    if ((this.filter[filterWord(m, this.filterShift)]! & fb) !== fb) return -1
    const bytes = this.bytes
    const tag = m & TAG_MASK
    const cap = this.cap
    let slot = home(m, cap)
    for (;;) {
      const s = slots[slot]!
      if (s === 0) return -1
      const k = (s & KEY_MASK) - 1
      if ((s & TAG_MASK) === tag && bytes[4 * k + 4] === len) {
        const b = 4 * k + HEADER - from
        let i = from
        while (i < to && bytes[b + i] === lowerAscii(q.charCodeAt(i))) i++
        if (i === to) {
          this.foundSlot = slot
          return k
        }
      }
      slot = slot + 1 === cap ? 0 : slot + 1
    }
  }

  /** The key stored in `slot` (a slot that find() reported). */
  keyAt(slot: number): number {
    return (this.slots[slot]! & KEY_MASK) - 1
  }

  /** Key k's ref word: first entry of its chain, an inline entry, or NO_REF. */
  ref(k: number): number {
    return this.words[k]!
  }

  setRef(k: number, ref: number): void {
    this.words[k] = ref
  }

  /** The text of key k (only called when a verdict is materialised). */
  value(k: number): string {
    const b = 4 * k + HEADER
    return this.bytes.toString('latin1', b, b + this.bytes[4 * k + 4]!)
  }

  /** Bytes held by the typed arrays (outside the JS heap, but part of the real cost). */
  get byteSize(): number {
    return this.bytes.byteLength + this.slots.byteLength + this.filter.byteLength
  }

  /** Bytes of the record store actually written (the rest of an over-sized buffer is never resident). */
  get usedBytes(): number {
    return this.used + this.slots.byteLength + this.filter.byteLength
  }
}
