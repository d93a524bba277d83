// The container-egress dry-run twin: prints what a kernel backend would do and keeps a pretend
// kernel (held addresses, learned sets with expiries) in memory, so `plan`, tests and the agent can
// run without root. decide() runs a packet through the same model the rules implement
// (container-desired.ts), recording what the seen sets would hold.
import type { ApplyReport, Drift } from './types.js'
import {
  containerAddress, decide, normalizePairs, normalizeState, PendingPairs, type Decision, type HeldAddress, type NormalPair, type NormalState, type Packet,
} from './container-desired.js'
import type { ContainerEnforcer, LearnReport, SeenEvent } from './container-types.js'

/** What survives an enforcer instance (the kernel does): pass the same object to a second instance. */
export interface DryRunKernel {
  installed: boolean
  state?: NormalState
  /** Learned sets by address key: member (`dst` or `proto:port:dst`) -> expiry (ms). */
  learned: Map<string, Map<string, number>>
  seen: SeenEvent[]
}

export function createDryRunKernel(): DryRunKernel {
  return { installed: false, learned: new Map(), seen: [] }
}

export interface DryRunContainerEnforcer extends ContainerEnforcer {
  /** What the rules would do with this packet (records seen events like the kernel's seen sets). */
  decide(p: Packet): Decision
  readonly kernel: DryRunKernel
}

export interface ContainerDryRunOptions {
  namePrefix?: string
  kernel?: DryRunKernel
  /** Clock for learned-pair expiry (tests advance it instead of sleeping). */
  now?: () => number
}

const member = (p: NormalPair): string => (p.port === undefined ? p.dst : `${p.proto}:${p.port}:${p.dst}`)

export function createContainerDryRun(print: (line: string) => void, opts: ContainerDryRunOptions = {}): DryRunContainerEnforcer {
  const prefix = opts.namePrefix ?? 'egress-guard'
  const chain = `${prefix.toUpperCase()}-CT`
  const k = opts.kernel ?? createDryRunKernel()
  const now = opts.now ?? Date.now
  const pending = new PendingPairs()
  let byIp = new Map<string, HeldAddress>((k.state?.held ?? []).map((h) => [h.ip, h]))
  const set = (h: Pick<HeldAddress, 'ip' | 'key'>): string => `${prefix}-ct-{l,p}-${h.key} (${h.ip})`

  function write(h: HeldAddress, p: NormalPair): void {
    let s = k.learned.get(h.key)
    if (!s) k.learned.set(h.key, (s = new Map()))
    s.set(member(p), now() + p.ttl * 1000)
  }

  return {
    name: 'dry-run',
    kernel: k,
    async init() {
      if (k.installed) return
      k.installed = true
      print(`create container sets (mode, seen, ack) and chain ${chain}: quarantine -> DNS to the sinkhole only; enforce/alert -> established, sinkhole DNS, learned pairs, profile nets; else refuse (enforce) or record (alert)`)
      print(`insert jump to ${chain} in DOCKER-USER (else FORWARD) after egress-guard's own jump, and in INPUT`)
    },
    async apply(state): Promise<ApplyReport> {
      const t0 = performance.now()
      const ns = normalizeState(state)
      if (!k.installed) await this.init()
      const before = new Map((k.state?.held ?? []).map((h) => [h.key, h]))
      const after = new Map(ns.held.map((h) => [h.key, h]))
      const actions: string[] = []
      let added = 0
      let removed = 0
      for (const [key, h] of after) {
        const b = before.get(key)
        if (!b) {
          print(`create learned sets ${set(h)}; hold ${h.ip} in ${h.mode} (${h.nets.length} profile nets)`)
          added++
        } else if (b.mode !== h.mode || JSON.stringify(b.nets) !== JSON.stringify(h.nets)) print(`hold ${h.ip} in ${h.mode} (${h.nets.length} profile nets)`)
        else continue
        actions.push(`${h.ip}: ${h.mode}`)
      }
      for (const [key, h] of before) {
        if (after.has(key)) continue
        print(`release ${h.ip}; destroy learned sets ${set(h)}`)
        k.learned.delete(key)
        actions.push(`${h.ip}: released`)
        removed++
      }
      if (JSON.stringify(k.state?.sinkhole) !== JSON.stringify(ns.sinkhole)) {
        print(`sinkhole DNS accepted at ${[...ns.sinkhole.v4, ...ns.sinkhole.v6].join(', ') || '(none)'} port ${ns.sinkhole.port}`)
        actions.push('sinkhole')
      }
      k.state = ns
      byIp = new Map(ns.held.map((h) => [h.ip, h]))
      for (const h of ns.held) for (const p of pending.take(h.ip, now())) write(h, p)
      return { backend: 'dry-run', changed: actions.length > 0, added, removed, ms: performance.now() - t0, actions }
    },
    async verify(): Promise<Drift[]> {
      return []
    },
    async remove() {
      if (!k.installed) return
      print(`delete jumps to ${chain} and its chains; destroy every container set (learned pairs included)`)
      k.installed = false
      k.state = undefined
      k.learned.clear()
      byIp = new Map()
    },
    async learn(pairs): Promise<LearnReport> {
      const np = normalizePairs(pairs)
      let deferred = 0
      for (const p of np) {
        const h = byIp.get(p.ip)
        if (!h) {
          pending.add(p, now())
          deferred++
        } else write(h, p)
      }
      return { written: np.length - deferred, deferred }
    },
    async forget(ip) {
      const a = containerAddress(ip)
      pending.drop(a.ip)
      const h = byIp.get(a.ip)
      if (h) k.learned.delete(h.key)
    },
    async cut(ip) {
      print(`conntrack: delete flows from and to ${containerAddress(ip).ip}`)
    },
    async seen() {
      return k.seen.splice(0)
    },
    async close() {},
    decide(p) {
      if (!k.state) return { verdict: 'pass' }
      const d = decide(
        k.state,
        (ip, dst, proto, port) => {
          const s = k.learned.get(byIp.get(ip)?.key ?? '')
          if (!s) return false
          const t = now()
          return (s.get(dst) ?? 0) > t || (port !== undefined && (s.get(`${proto}:${port}:${dst}`) ?? 0) > t)
        },
        p,
      )
      if ('seen' in d) k.seen.push({ kind: d.seen, src: p.src, dst: p.dst, proto: p.proto, ...(p.port !== undefined && p.proto !== 'icmp' ? { port: p.port } : {}) })
      return d
    },
  }
}
