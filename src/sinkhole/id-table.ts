// In-flight upstream tries by their 16-bit query ID, for one socket, without a Map.
//
// A Map with an entry set and deleted per forwarded query made the old generation fill: V8's hash
// tables keep deleted entries until they rehash, rehash into freshly allocated tables, and with a
// steady trickle of queries in flight those tables and the entries they still point at outlive two
// scavenges and are promoted. Measured at 19k forwarded qps after the process had served blocked
// answers: ~100 KB promoted per scavenge (94 % of what survived), a 5-9 ms mark-compact about every
// second, and p99 around 15 ms; with this table and the coalescing table in sinkhole.ts, ~80 bytes
// per scavenge and no mark-compact. Here an ID maps to a slot in a typed array (0 = free) and slots are
// reused from a free list: once warm, nothing is allocated per query.
export class IdTable<T> {
  /** ID -> slot + 1; 0 when the ID is free. 128 KiB, touched only as IDs are used. */
  private readonly slotOf = new Uint16Array(65536)
  private readonly items: Array<T | undefined> = []
  private readonly free: number[] = []
  private n = 0

  get size(): number {
    return this.n
  }

  get(id: number): T | undefined {
    const s = this.slotOf[id]!
    return s === 0 ? undefined : this.items[s - 1]
  }

  has(id: number): boolean {
    return this.slotOf[id] !== 0
  }

  /** Stores `v` under a free `id`; false when the ID is taken or every slot is (65,535 in flight). */
  set(id: number, v: T): boolean {
    if (this.slotOf[id] !== 0) return false
    let s = this.free.pop()
    if (s === undefined) {
      if (this.items.length >= 65535) return false
      s = this.items.length
      this.items.push(v)
    } else this.items[s] = v
    this.slotOf[id] = s + 1
    this.n++
    return true
  }

  delete(id: number): boolean {
    const s = this.slotOf[id]!
    if (s === 0) return false
    this.slotOf[id] = 0
    this.items[s - 1] = undefined
    this.free.push(s - 1)
    this.n--
    return true
  }

  /** Everything in the table, in no particular order (a copy). */
  values(): T[] {
    return this.items.filter((x): x is T => x !== undefined)
  }

  clear(): void {
    this.slotOf.fill(0)
    this.items.length = 0
    this.free.length = 0
    this.n = 0
  }
}
