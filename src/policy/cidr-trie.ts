// Binary prefix trie for the matcher's network entries: one trie per address family, one node per
// prefix bit, so finding every listed network that contains an address is one walk of at most 32
// (IPv4) or 128 (IPv6) steps over typed arrays, however many networks are listed. Single addresses
// (/32, /128: half of a typical feed) live in a hash map instead: in the trie each one would own a
// private chain of ~15-100 nodes, most of the trie's memory.

/** Receives, shallow to deep, the entry chain of every trie node on an address's path. */
export interface ChainSink {
  /** `exact`: the chain belongs to the queried value itself (only meaningful for domain names). */
  consider(head: number, exact: boolean): void
}

export class CidrTrie {
  /** Children of node n at 2n (bit 0) and 2n+1 (bit 1); 0 means none (the root is never a child). */
  private kids: Int32Array
  /** First entry of the chain stored at node n, -1 when none. */
  private heads: Int32Array
  private nodes = 1
  /** Host routes: IPv4 as an int32, IPv6 as the 16 bytes in a latin1 string -> chain head. */
  private readonly hosts = new Map<number | string, number>()
  /** Number of networks inserted. */
  size = 0

  constructor(readonly bits: 32 | 128, initialNodes = 1024) {
    this.kids = new Int32Array(initialNodes * 2)
    this.heads = new Int32Array(initialNodes).fill(-1)
  }

  private grow(): void {
    const kids = new Int32Array(this.kids.length * 2)
    kids.set(this.kids)
    const heads = new Int32Array(this.heads.length * 2).fill(-1)
    heads.set(this.heads)
    this.kids = kids
    this.heads = heads
  }

  /**
   * Push entry `entry` onto the chain of the node for `bytes`/`prefix` (network order, host bits
   * ignored). Returns the previous chain head, which the caller links as the entry's `next`.
   */
  insert(bytes: Uint8Array, prefix: number, entry: number): number {
    this.size++
    if (prefix === this.bits) {
      const key = this.bits === 32 ? ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) : Buffer.from(bytes.subarray(0, 16)).toString('latin1')
      const prev = this.hosts.get(key) ?? -1
      this.hosts.set(key, entry)
      return prev
    }
    let n = 0
    for (let i = 0; i < prefix; i++) {
      const b = (bytes[i >> 3]! >> (7 - (i & 7))) & 1
      let c = this.kids[2 * n + b]!
      if (c === 0) {
        if (this.nodes === this.heads.length) this.grow()
        c = this.nodes++
        this.kids[2 * n + b] = c
      }
      n = c
    }
    const prev = this.heads[n]!
    this.heads[n] = entry
    return prev
  }

  /** Release the unused tail of the node arrays once building is done. */
  seal(): void {
    if (this.nodes < this.heads.length) {
      this.kids = this.kids.slice(0, this.nodes * 2)
      this.heads = this.heads.slice(0, this.nodes)
    }
  }

  /** Walk an IPv4 address given as an unsigned 32-bit number (trie built with bits = 32). */
  walk32(a: number, sink: ChainSink): void {
    const kids = this.kids
    const heads = this.heads
    let n = 0
    if (heads[0]! >= 0) sink.consider(heads[0]!, false)
    for (let i = 31; i > 0; i--) {
      n = kids[2 * n + ((a >>> i) & 1)]!
      if (n === 0) break
      const h = heads[n]!
      if (h >= 0) sink.consider(h, false)
    }
    // The host route last: it is the most specific.
    if (this.hosts.size > 0) {
      const h = this.hosts.get(a | 0)
      if (h !== undefined) sink.consider(h, false)
    }
  }

  /** Walk an address given as bytes in network order. */
  walkBytes(bytes: Uint8Array, sink: ChainSink): void {
    const kids = this.kids
    const heads = this.heads
    const last = this.bits - 1
    let n = 0
    if (heads[0]! >= 0) sink.consider(heads[0]!, false)
    for (let i = 0; i < last; i++) {
      n = kids[2 * n + ((bytes[i >> 3]! >> (7 - (i & 7))) & 1)]!
      if (n === 0) break
      const h = heads[n]!
      if (h >= 0) sink.consider(h, false)
    }
    if (this.hosts.size > 0) {
      const h = this.hosts.get(Buffer.from(bytes.buffer, bytes.byteOffset, this.bits / 8).toString('latin1'))
      if (h !== undefined) sink.consider(h, false)
    }
  }

  get nodeCount(): number {
    return this.nodes
  }

  /** Bytes held by the typed arrays. */
  get byteSize(): number {
    return this.kids.byteLength + this.heads.byteLength
  }
}
