// The dry-run backend: prints what a kernel backend would do (set members added and removed, the
// chain and its jumps) and keeps the result in memory, so plan, tests and verify() work without root.
import { mergeReports, type ApplyReport, type DesiredState, type Drift, type Enforcer, type FamilySets } from './types.js'
import { writableNames, type HostsFile } from './hosts-file.js'

type Role = 'exempt' | 'block' | 'alert' | 'allow'
const ROLES: readonly Role[] = ['exempt', 'allow', 'block', 'alert']
const FAMS = ['v4', 'v6'] as const

export interface DryRunOptions {
  /** What the "kernel" holds before the first apply (e.g. read from the live backend for `plan`). */
  current?: DesiredState
  /** Name prefix shown in the printed set and chain names (default `egress-guard`). */
  namePrefix?: string
}

export interface DryRunEnforcer extends Enforcer {
  /** What the pretend kernel holds now (undefined before init). */
  snapshot(): DesiredState | undefined
}

function empty(): FamilySets {
  return { v4: [], v6: [] }
}

export function createDryRunEnforcer(print: (line: string) => void, opts: DryRunOptions = {}): DryRunEnforcer {
  const prefix = opts.namePrefix ?? 'egress-guard'
  const chain = prefix.toUpperCase()
  /** The pretend kernel: role -> family -> members. */
  let kernel: Map<string, Set<string>> | undefined
  let version = opts.current?.version ?? 0
  // The same set names as the iptables backend: `ctl4` holds the exempt control-plane endpoints.
  const key = (role: Role, fam: 'v4' | 'v6'): string => `${role === 'exempt' ? 'ctl' : role}${fam === 'v4' ? 4 : 6}`
  const sets = (state: DesiredState, role: Role): FamilySets => (role === 'exempt' ? (state.exempt ?? empty()) : state[role])
  /** What init() printed, reported by the next apply (as the kernel backends do). */
  let initReport: ApplyReport | undefined

  function load(state: DesiredState | undefined): Map<string, Set<string>> {
    const m = new Map<string, Set<string>>()
    for (const role of ROLES) for (const fam of FAMS) m.set(key(role, fam), new Set(state ? sets(state, role)[fam] : []))
    return m
  }
  if (opts.current) kernel = load(opts.current)

  const setName = (k: string): string => `${prefix}-${k}`

  return {
    name: 'dry-run',
    async init() {
      if (kernel) return
      kernel = load(undefined)
      const lines: string[] = []
      for (const role of ROLES) for (const fam of FAMS) lines.push(`create set ${setName(key(role, fam))} (${role === 'exempt' ? 'hash:ip,port' : 'hash:net'}, ${fam === 'v4' ? 'inet' : 'inet6'})`)
      lines.push(`create chain ${chain}: return control-plane endpoints (ctl sets), accept allow sets, count+log alert sets, reject block sets (tcp-reset / icmp unreachable)`)
      lines.push(`insert jump to ${chain} first in OUTPUT, and in DOCKER-USER when it exists (else FORWARD)`)
      for (const l of lines) print(l)
      initReport = { backend: 'dry-run', changed: true, added: 0, removed: 0, ms: 0, actions: [`create ${ROLES.length * FAMS.length} sets, chain ${chain} and its jumps`] }
    },
    async apply(desired) {
      const t0 = performance.now()
      if (!kernel) await this.init()
      const k = kernel!
      let added = 0
      let removed = 0
      const actions: string[] = []
      for (const role of ROLES) {
        for (const fam of FAMS) {
          const name = key(role, fam)
          const live = k.get(name)!
          const want = new Set(sets(desired, role)[fam])
          const add = [...want].filter((m) => !live.has(m))
          const rm = [...live].filter((m) => !want.has(m))
          for (const m of add) print(`add ${setName(name)} ${m}`)
          for (const m of rm) print(`del ${setName(name)} ${m}`)
          if (add.length + rm.length > 0) actions.push(`${setName(name)}: +${add.length} -${rm.length} (${want.size} members)`)
          added += add.length
          removed += rm.length
          k.set(name, want)
        }
      }
      version = desired.version
      const out = mergeReports(initReport, { backend: 'dry-run', changed: added + removed > 0, added, removed, ms: performance.now() - t0, actions })
      initReport = undefined
      return out
    },
    async verify(): Promise<Drift[]> {
      // Nothing outside this object can change the pretend kernel, so it always matches what was applied.
      return []
    },
    async remove() {
      if (!kernel) return
      print(`delete jumps to ${chain} from OUTPUT and DOCKER-USER/FORWARD, then chain ${chain}`)
      for (const role of ROLES) for (const fam of FAMS) print(`destroy set ${setName(key(role, fam))}`)
      kernel = undefined
      initReport = undefined
    },
    snapshot() {
      if (!kernel) return undefined
      const s: DesiredState = { block: empty(), alert: empty(), allow: empty(), exempt: empty(), version }
      for (const role of ROLES) for (const fam of FAMS) sets(s, role)[fam] = [...kernel.get(key(role, fam))!].sort()
      return s
    },
  }
}

/**
 * The hosts file's dry-run twin: prints the names an apply would add to and remove from the managed
 * block of the real file, writes nothing, and remembers the names so a second apply prints nothing.
 */
export function createDryRunHostsFile(real: HostsFile, print: (line: string) => void): HostsFile {
  let applied: string[] | undefined
  return {
    path: real.path,
    async apply(names) {
      const want = writableNames(names)
      let add: string[]
      let remove: string[]
      if (applied === undefined) ({ add, remove } = await real.plan(want))
      else {
        add = want.filter((n) => !applied!.includes(n))
        remove = applied.filter((n) => !want.includes(n))
      }
      applied = want
      for (const n of add) print(`hosts ${real.path}: add 0.0.0.0 ${n} / :: ${n}`)
      for (const n of remove) print(`hosts ${real.path}: remove ${n}`)
      return { changed: add.length + remove.length > 0 }
    },
    verify: async () => [],
    plan: (names) => real.plan(names),
    async remove() {
      print(`hosts ${real.path}: remove the managed block`)
      applied = undefined
    },
  }
}
