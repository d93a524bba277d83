// Binary prefix trie for the matcher's network entries: one trie per address family, one node per
// prefix bit, so finding every listed network that contains an address is one walk of at most 32
// (IPv4) or 128 (IPv6) steps over a typed array, however many networks are listed. Single addresses
// (/32, /128: half of a typical feed) live in a hash map instead: in the trie each one would own a
// private chain of ~15-100 nodes, most of the trie's memory.

/** Receives, shallow to deep, the entry chain of every trie node on an address's path. */
export interface ChainSink {
  /** `exact`: the chain belongs to the queried value itself (only meaningful for domain names). */
  consider(head: number, exact: boolean): void
}

/** Words per node: child for bit 0, child for bit 1 (0: none; the root is never a child), chain head (-1: none). */
const NODE = 3
/** IPv4 lookups jump straight to depth 16 through a 65,536-slot table (256 KiB) when nothing shallower is listed. */
const JUMP_BITS = 16

export class CidrTrie {
  /** Node n at [NODE*n, NODE*n+2]: the two children and the chain head share a cache line. */
  private t: Int32Array
  private nodes = 1
  /** Host routes: IPv4 as an int32, IPv6 as the 16 bytes in a latin1 string -> chain head. */
  private readonly hosts = new Map<number | string, number>()
  /**
   * IPv4 only, built by seal(): for each 16-bit prefix, the node at depth 16 (0: none), or -1 when a
   * network of /16 or shorter lies on that path (those chains must be visited, so walk from the root).
   */
  private jump: Int32Array | undefined
  /** Number of networks inserted. */
  size = 0

  constructor(
    readonly bits: 32 | 128,
    initialNodes = 1024,
  ) {
    this.t = new Int32Array(initialNodes * NODE)
    this.t[2] = -1
  }

  private grow(): void {
    const t = new Int32Array(this.t.length * 2)
    t.set(this.t)
    this.t = t
  }

  /**
   * Push entry `entry` onto the chain of the node for `bytes`/`prefix` (network order, host bits
   * ignored). Returns the previous chain head, which the caller links as the entry's `next`.
   */
  insert(bytes: Uint8Array, prefix: number, entry: number): number {
    this.size++
    if (prefix === this.bits) {
      const key = this.bits === 32 ? (bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]! : Buffer.from(bytes.subarray(0, 16)).toString('latin1')
      const prev = this.hosts.get(key) ?? -1
      this.hosts.set(key, entry)
      return prev
    }
    let n = 0
    for (let i = 0; i < prefix; i++) {
      const b = (bytes[i >> 3]! >> (7 - (i & 7))) & 1
      let c = this.t[NODE * n + b]!
      if (c === 0) {
        if ((this.nodes + 1) * NODE > this.t.length) this.grow()
        c = this.nodes++
        this.t[NODE * c + 2] = -1
        this.t[NODE * n + b] = c
      }
      n = c
    }
    const prev = this.t[NODE * n + 2]!
    this.t[NODE * n + 2] = entry
    return prev
  }

  /** Release the unused tail of the node array and build the IPv4 jump table; call once, after the inserts. */
  seal(): void {
    if (this.nodes * NODE < this.t.length) this.t = this.t.slice(0, this.nodes * NODE)
    if (this.bits === 32 && this.nodes > 1) {
      const jump = new Int32Array(1 << JUMP_BITS)
      // Depth-first to depth 16; `shallow`: a chain on the path above depth 16 (the root included).
      const fill = (n: number, depth: number, path: number, shallow: boolean): void => {
        const t = this.t
        if (depth === JUMP_BITS) {
          jump[path] = shallow ? -1 : n
          return
        }
        const below = shallow || t[NODE * n + 2]! >= 0
        for (let b = 0; b < 2; b++) {
          const c = t[NODE * n + b]!
          const p = (path << 1) | b
          const span = 1 << (JUMP_BITS - depth - 1)
          if (c !== 0) fill(c, depth + 1, p, below)
          else if (below) jump.fill(-1, p * span, (p + 1) * span)
        }
      }
      fill(0, 0, 0, false)
      this.jump = jump
    }
  }

  /** Walk an IPv4 address given as an unsigned 32-bit number (trie built with bits = 32). */
  walk32(a: number, sink: ChainSink): void {
    const t = this.t
    let n = 0
    let i = 31
    const j = this.jump === undefined ? -1 : this.jump[a >>> JUMP_BITS]!
    if (j >= 0) {
      // Nothing listed above depth 16 on this path: start at the depth-16 node (or skip to the hosts).
      n = j
      i = j === 0 ? 0 : 31 - JUMP_BITS
      if (j !== 0 && t[NODE * n + 2]! >= 0) sink.consider(t[NODE * n + 2]!, false)
    } else if (t[2]! >= 0) sink.consider(t[2]!, false)
    for (; i > 0; i--) {
      n = t[NODE * n + ((a >>> i) & 1)]!
      if (n === 0) break
      const h = t[NODE * n + 2]!
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
    const t = this.t
    const last = this.bits - 1
    let n = 0
    if (t[2]! >= 0) sink.consider(t[2]!, false)
    for (let i = 0; i < last; i++) {
      n = t[NODE * n + ((bytes[i >> 3]! >> (7 - (i & 7))) & 1)]!
      if (n === 0) break
      const h = t[NODE * n + 2]!
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
    return this.t.byteLength + (this.jump?.byteLength ?? 0)
  }
}
