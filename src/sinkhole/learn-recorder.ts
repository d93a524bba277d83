// learn mode (issue 16): per profile, every name its containers looked up (first and last seen,
// count, containers, answers), bounded in memory, drained by whoever uploads it (`profile suggest`
// reads what the server keeps). The uploader is pluggable: the agent hands drained records to it.
export interface LearnedName {
  profile: string
  name: string
  /** RFC 3339. */
  firstSeen: string
  lastSeen: string
  count: number
  /** Container names (at most maxPerRecord). */
  containers: string[]
  /** Addresses seen in its answers (at most maxPerRecord). */
  answers: string[]
}

export interface LearnRecorder {
  /** One lookup of `name` by a container held to `profile` (a learn-mode profile). */
  record(profile: string, name: string, container: string | undefined, now?: number): void
  /** Addresses of a forwarded answer for that lookup. */
  answers(profile: string, name: string, ips: readonly string[]): void
  /** Everything recorded since the last drain (records are removed). */
  drain(): LearnedName[]
  /** Records dropped because the recorder was full. */
  dropped(): number
  size(): number
}

interface Rec {
  first: number
  last: number
  count: number
  containers: Set<string>
  answers: Set<string>
}

export function createLearnRecorder(opts: { maxNames?: number; maxPerRecord?: number } = {}): LearnRecorder {
  const maxNames = opts.maxNames ?? 10_000
  const maxPer = opts.maxPerRecord ?? 16
  const byKey = new Map<string, Rec>()
  let dropped = 0
  const key = (p: string, n: string): string => `${p}\u0000${n}`
  return {
    record(profile, name, container, now = Date.now()) {
      const k = key(profile, name)
      let r = byKey.get(k)
      if (!r) {
        if (byKey.size >= maxNames) {
          dropped++
          return
        }
        byKey.set(k, (r = { first: now, last: now, count: 0, containers: new Set(), answers: new Set() }))
      }
      r.count++
      r.last = now
      if (container !== undefined && r.containers.size < maxPer) r.containers.add(container)
    },
    answers(profile, name, ips) {
      const r = byKey.get(key(profile, name))
      if (!r) return
      for (const ip of ips) if (r.answers.size < maxPer) r.answers.add(ip)
    },
    drain() {
      const out: LearnedName[] = []
      for (const [k, r] of byKey) {
        const i = k.indexOf('\u0000')
        out.push({ profile: k.slice(0, i), name: k.slice(i + 1), firstSeen: new Date(r.first).toISOString(), lastSeen: new Date(r.last).toISOString(), count: r.count, containers: [...r.containers].sort(), answers: [...r.answers].sort() })
      }
      byKey.clear()
      return out
    },
    dropped: () => dropped,
    size: () => byKey.size,
  }
}
