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

const KEY_BITS = 25
const KEY_MASK = (1 << KEY_BITS) - 1
const TAG_MASK = ~KEY_MASK
/**
 * Key handles are record offsets in 8-byte units, so the record store may hold at most this many
 * units (256 MiB: millions of names, far above any real list).
 */
const MAX_UNITS = KEY_MASK - 1
/** Record header: chain head, name length, solo meta (three int32); the name follows. */
const HEADER = 12
/**
 * Solo-meta value of a key whose chain has more than one entry. Entry meta words (entry-table.ts
 * W_META) never have bit 6 set: flags use bits 0-5 and the expiry index starts at bit 8.
 */
export const MULTI = 0x40

export class DomainTable {
  /**
   * One record per key, back to back, each starting on an 8-byte boundary: [first entry (int32, -1
   * when none)][name length (int32)][solo meta (int32)][name bytes (latin1; names are ASCII)]. A
   * key's handle is its record offset / 8. Keeping the chain head, the length and the bytes together
   * means a found key costs one cache line (two for long names) after its slot, where separate offset
   * and byte arrays cost two or three cache misses per hit on a list too big for the cache. Solo meta
   * is the meta word of the chain's only entry (MULTI when there are more), so the common one-entry
   * key is decided without touching the entry table at all.
   */
  private bytes: Buffer
  /** Int32 view of `bytes` for the header words (index = byte offset / 4). */
  private words: Int32Array
  /**
   * Slot -> (key handle + 1) in the low 25 bits, and the top 7 bits of the key's mixed hash above them
   * (0: empty). The tag rejects almost every wrong slot without touching the record, which keeps a
   * miss to about one cache line. Load factor kept at or under 1/2.
   */
  private readonly slots: Int32Array
  private readonly mask: number
  /**
   * A blocked Bloom filter of the keys, 8 bits per key (~1 B per domain): each key sets two bits of
   * one 32-bit word, so a probe reads one word yet gets two hashes' worth of rejection (~5-6 % false
   * positives, where one bit per key gave ~12 %). Small enough to stay in cache when the slot table
   * is not, so most suffixes that are not keys cost no trip to main memory at all.
   */
  private readonly filter: Int32Array
  /** Shift that turns the 32-bit filter hash into a word index (its top bits). */
  private readonly filterShift: number
  private keys = 0
  /** Bytes of `bytes` in use (a multiple of 8). */
  private used = 0
  /**
   * Bit n set when some key has n labels (n >= 31 folded into bit 31). Lookups skip suffixes whose
   * label count no key has: lists rarely hold bare TLDs, so the `com` probe of every query goes away.
   */
  labelMask = 0

  /** `maxKeys` and `maxBytes` (total name length) bound what will be added (duplicates take no space). */
  constructor(maxKeys: number, maxBytes: number) {
    let cap = 16
    while (cap < maxKeys * 2) cap *= 2
    this.slots = new Int32Array(cap)
    this.mask = cap - 1
    // 8 bits per key, rounded up to a power of two: cap is 2-4 slots per key, so cap * 4 bits.
    let bits = 1024
    while (bits < maxKeys * 8) bits *= 2
    this.filter = new Int32Array(bits >>> 5)
    this.filterShift = 32 - Math.log2(bits >>> 5)
    // Worst case: a header and 7 bytes of padding per key; seal() trims the rest.
    this.bytes = Buffer.allocUnsafeSlow(Math.max(8, maxKeys * (HEADER + 7) + maxBytes))
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

  /** Key handle of an ASCII lower-case name, adding it when absent. */
  intern(name: string): number {
    const h = DomainTable.hashOf(name)
    const k = this.find(name, 0, name.length, h)
    if (k >= 0) return k
    const size = (HEADER + name.length + 7) & ~7
    if ((this.used + size) / 8 > MAX_UNITS) throw new RangeError(`the names of one matcher must fit in ${MAX_UNITS * 8} bytes`)
    if (this.used + size > this.bytes.length) {
      // Only when normalising made a name longer than announced (punycode); not the common path.
      this.resize(Math.max(this.bytes.length * 2, this.used + size))
    }
    const at = this.used
    const key = at >>> 3
    this.keys++
    let labels = 1
    for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) === 46) labels++
    this.labelMask |= 1 << Math.min(labels, 31)
    this.words[at >>> 2] = -1
    this.words[(at >>> 2) + 1] = name.length
    this.words[(at >>> 2) + 2] = MULTI
    // A JS loop beats Buffer#write (a native call) for names this short.
    const bytes = this.bytes
    for (let i = 0, o = at + HEADER; i < name.length; i++, o++) bytes[o] = name.charCodeAt(i)
    this.used += size
    const m = mix(h)
    let slot = m & this.mask
    while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask
    this.slots[slot] = (m & TAG_MASK) | (key + 1)
    this.filter[filterWord(m, this.filterShift)] |= filterBits(m)
    return key
  }

  private resize(n: number): void {
    const b = Buffer.allocUnsafeSlow(Math.max(8, n))
    this.bytes.copy(b, 0, 0, this.used)
    this.bytes = b
    this.words = new Int32Array(b.buffer, b.byteOffset, b.length >>> 2)
  }

  /** Trim the build-time over-allocation of the record store. */
  seal(): void {
    if (this.used < this.bytes.length) this.resize(this.used)
  }

  /**
   * Key handle of q[from, to) compared case-insensitively, given its hash `h` (see hashStep), or -1.
   * Allocation-free: this runs for every label suffix of every DNS query.
   */
  find(q: string, from: number, to: number, h: number): number {
    const len = to - from
    const slots = this.slots
    const m = mix(h)
    const fb = filterBits(m)
    if ((this.filter[filterWord(m, this.filterShift)]! & fb) !== fb) return -1
    const words = this.words
    const bytes = this.bytes
    const tag = m & TAG_MASK
    let slot = m & this.mask
    for (;;) {
      const s = slots[slot]!
      if (s === 0) return -1
      const k = (s & KEY_MASK) - 1
      if ((s & TAG_MASK) === tag && words[2 * k + 1] === len) {
        const b = 8 * k + HEADER
        let i = 0
        while (i < len && bytes[b + i] === lowerAscii(q.charCodeAt(from + i))) i++
        if (i === len) return k
      }
      slot = (slot + 1) & this.mask
    }
  }

  /** First entry of key k's chain, -1 when none. */
  head(k: number): number {
    return this.words[2 * k]!
  }

  /** The meta word of key k's only entry, or MULTI when its chain has none or several. */
  soloMeta(k: number): number {
    return this.words[2 * k + 2]!
  }

  /** Push `entry` (whose meta word is `meta`) onto key k's chain; the caller links the old head behind it. */
  setHead(k: number, entry: number, meta: number): void {
    this.words[2 * k + 2] = this.words[2 * k]! < 0 ? meta : MULTI
    this.words[2 * k] = entry
  }

  /** The text of key k (only called when a verdict is materialised). */
  value(k: number): string {
    const b = 8 * k + HEADER
    return this.bytes.toString('latin1', b, b + this.words[2 * k + 1]!)
  }

  /** Bytes held by the typed arrays (outside the JS heap, but part of the real cost). */
  get byteSize(): number {
    return this.bytes.byteLength + this.slots.byteLength + this.filter.byteLength
  }
}
