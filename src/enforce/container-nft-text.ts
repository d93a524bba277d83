// Pure text of the container-egress seam for nftables: the table `inet egress_guard_ct` (its own, so
// the fleet table is never touched), its maps, sets and chains, the `nft -f -` transaction of an
// apply, learned-pair commands, and parsing of `nft -j` output for verify() and seen().
//
// Dispatch is O(1): base chains on forward and input (priority filter - 5: after the fleet table's
// guard at filter - 10, so a fleet block always wins; before Docker's iptables-nft rules at filter)
// look the source up in a verdict map, `ADDRESS : goto c_KEY` (enforce/alert) or `goto quar`. Each
// held address has its own chain and two learned sets, `l_KEY` (destinations, any port) and `p_KEY`
// (proto . port . destination), with per-element timeouts. Learned sets are declared with `add set`
// (idempotent: an existing set keeps its elements) and are never flushed by an apply.
import { createHash } from 'node:crypto'
import type { Drift } from './types.js'
import type { HeldAddress, NormalPair, NormalState } from './container-desired.js'
import type { SeenEvent, SeenKind } from './container-types.js'

export type Fam = 4 | 6
export const CT_PRIORITY = -5
export const BASE_HOOKS = ['forward', 'input'] as const
export const SEEN_TIMEOUT = 300
export const LEARNED_SIZE = 1_048_576
/** The seen sets carry the kind as a mark-typed last field. */
export const SEEN_MARK: Record<SeenKind, number> = { refused: 1, alerted: 2, quarantine: 3 }

export function ctTableName(prefix = 'egress-guard'): string {
  if (!/^[a-z][a-z0-9_-]{0,30}$/i.test(prefix)) throw new Error(`name prefix ${JSON.stringify(prefix)} is not a valid nft table name`)
  return `${prefix.replace(/-/g, '_')}_ct`
}

const addrType = (f: Fam): string => (f === 4 ? 'ipv4_addr' : 'ipv6_addr')
const ipk = (f: Fam): string => (f === 4 ? 'ip' : 'ip6')
export const chainOf = (key: string): string => `c_${key}`
export const learnedSet = (kind: 'l' | 'p', key: string): string => `${kind}_${key}`

/** Set and map declarations shared by every apply (all idempotent `add`). */
export function sharedDecls(T: string): string[] {
  const out = [`add table inet ${T}`]
  for (const f of [4, 6] as const) {
    out.push(
      `add map inet ${T} mode${f} { type ${addrType(f)} : verdict; }`,
      `add set inet ${T} seen${f} { type ${addrType(f)} . inet_proto . inet_service . ${addrType(f)} . mark; flags dynamic,timeout; timeout ${SEEN_TIMEOUT}s; size 65536; }`,
    )
  }
  return out
}

export function learnedDecls(T: string, h: Pick<HeldAddress, 'family' | 'key'>): string[] {
  return [
    `add set inet ${T} ${learnedSet('l', h.key)} { type ${addrType(h.family)}; flags timeout; size ${LEARNED_SIZE}; }`,
    `add set inet ${T} ${learnedSet('p', h.key)} { type inet_proto . inet_service . ${addrType(h.family)}; flags timeout; size ${LEARNED_SIZE}; }`,
  ]
}

const ND = 'icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } return'

function sinkRules(state: NormalState, f: Fam): string[] {
  const a = f === 4 ? state.sinkhole.v4 : state.sinkhole.v6
  return a.length === 0 ? [] : [`${ipk(f)} daddr { ${a.join(', ')} } meta l4proto { tcp, udp } th dport ${state.sinkhole.port} return`]
}

function seenRules(kind: SeenKind): string[] {
  const k = SEEN_MARK[kind]
  const out: string[] = []
  for (const f of [4, 6] as const) {
    const p = ipk(f)
    out.push(
      `meta nfproto ipv${f} meta l4proto { tcp, udp } update @seen${f} { ${p} saddr . meta l4proto . th dport . ${p} daddr . ${k} }`,
      `meta nfproto ipv${f} meta l4proto != { tcp, udp } update @seen${f} { ${p} saddr . meta l4proto . 0 . ${p} daddr . ${k} }`,
    )
  }
  return out
}

const REJECTS = ['meta l4proto tcp reject with tcp reset', 'reject with icmpx type port-unreachable']

/** The chain of one enforce/alert address (a quarantined one keeps its chain; the map skips it). */
export function addressRules(state: NormalState, h: HeldAddress): string[] {
  const f = h.family
  const p = ipk(f)
  const tail = h.mode === 'alert' ? 'alert' : 'deny'
  const out = ['ct state established,related return', ...(f === 6 ? [ND] : []), ...sinkRules(state, f)]
  out.push(`meta l4proto { tcp, udp } th dport 53 goto ${tail}`, `tcp dport 853 goto ${tail}`)
  out.push(`${p} daddr @${learnedSet('l', h.key)} return`, `meta l4proto . th dport . ${p} daddr @${learnedSet('p', h.key)} return`)
  const open = h.nets.filter((n) => !n.ports).map((n) => n.cidr)
  if (open.length > 0) out.push(`${p} daddr { ${open.join(', ')} } return`)
  const byPorts = new Map<string, string[]>()
  for (const n of h.nets) if (n.ports) byPorts.set(n.ports.join(', '), [...(byPorts.get(n.ports.join(', ')) ?? []), n.cidr])
  for (const [ports, cidrs] of byPorts) out.push(`meta l4proto { tcp, udp } th dport { ${ports} } ${p} daddr { ${cidrs.join(', ')} } return`)
  out.push(`goto ${tail}`)
  return out
}

/** Every chain's rules: name -> rules (nft syntax, no comment), plus the base chains' hooks. */
export function expectedChains(state: NormalState): Map<string, { rules: string[]; hook?: string }> {
  const m = new Map<string, { rules: string[]; hook?: string }>()
  m.set('quar', { rules: [ND, ...sinkRules(state, 4), ...sinkRules(state, 6), ...seenRules('quarantine'), ...REJECTS] })
  m.set('deny', { rules: [...seenRules('refused'), ...REJECTS] })
  // Reached by goto: its end returns to the base chain, whose policy accepts.
  m.set('alert', { rules: seenRules('alerted') })
  for (const h of state.held) m.set(chainOf(h.key), { rules: addressRules(state, h) })
  for (const hook of BASE_HOOKS) m.set(hook, { rules: ['ip saddr vmap @mode4', 'ip6 saddr vmap @mode6'], hook })
  return m
}

export function mapElements(state: NormalState, f: Fam): string[] {
  return state.held.filter((h) => h.family === f).map((h) => `${h.ip} : goto ${h.mode === 'quarantine' ? 'quar' : chainOf(h.key)}`)
}

/** Rules carry a comment hashed from chain, position and text: `nft -j` prints comments verbatim. */
export function ruleComment(chain: string, index: number, text: string): string {
  return `egc:${createHash('sha256').update(`${chain}\n${index}\n${text}`).digest('hex').slice(0, 12)}`
}

export interface NftPlanInput {
  table: string
  state: NormalState
  /** Chains that exist now (from `nft -j list chains`), with their hook if any. */
  existing: ReadonlyMap<string, { hook?: string; prio?: number }>
  /** Chain -> comments this process last wrote (a chain whose rules match is not rewritten). */
  written: ReadonlyMap<string, readonly string[]>
  /** Map elements this process last wrote per family (undefined: unknown, rewrite). */
  mapWritten: { 4?: readonly string[]; 6?: readonly string[] }
}

export interface NftPlan {
  script: string
  actions: string[]
  written: Map<string, string[]>
  mapWritten: { 4: string[]; 6: string[] }
  /** Per-address chains that existed and are not wanted: deleted in the script; their sets go later. */
  departedKeys: string[]
  /** Held addresses whose chain and learned sets are new. */
  added: number
  changed: boolean
}

const same = (a: readonly string[] | undefined, b: readonly string[]): boolean => !!a && a.length === b.length && a.every((x, i) => x === b[i])

/** ONE transaction: declarations (idempotent), changed chains, the maps, departed chains. */
export function planApply(i: NftPlanInput): NftPlan {
  const T = i.table
  const lines = sharedDecls(T)
  const actions: string[] = []
  const chains = expectedChains(i.state)
  const written = new Map<string, string[]>()
  for (const h of i.state.held) for (const l of learnedDecls(T, h)) lines.push(l)
  const newSets = i.state.held.filter((h) => !i.existing.has(chainOf(h.key))).length
  if (newSets > 0) actions.push(`create learned sets and chain for ${newSets} addresses`)
  // Declare every chain first: maps and gotos name them.
  for (const [name, c] of chains) {
    const ex = i.existing.get(name)
    if (c.hook) {
      if (ex && (ex.hook !== c.hook || ex.prio !== CT_PRIORITY)) lines.push(`flush chain inet ${T} ${name}`, `delete chain inet ${T} ${name}`)
      lines.push(`add chain inet ${T} ${name} { type filter hook ${c.hook} priority filter - ${-CT_PRIORITY}; policy accept; }`)
    } else lines.push(`add chain inet ${T} ${name}`)
  }
  for (const [name, c] of chains) {
    const comments = c.rules.map((r, k) => ruleComment(name, k, r))
    written.set(name, comments)
    const ex = i.existing.get(name)
    if (ex && (!c.hook || (ex.hook === c.hook && ex.prio === CT_PRIORITY)) && same(i.written.get(name), comments)) continue
    lines.push(`flush chain inet ${T} ${name}`)
    c.rules.forEach((r, k) => lines.push(`add rule inet ${T} ${name} ${r} comment "${comments[k]}"`))
    if (!name.startsWith('c_') || ex) actions.push(`${ex ? 'rewrite' : 'create'} chain ${name} (${c.rules.length} rules)`)
  }
  const mapWritten = { 4: mapElements(i.state, 4), 6: mapElements(i.state, 6) }
  for (const f of [4, 6] as const) {
    if (same(i.mapWritten[f], mapWritten[f])) continue
    lines.push(`flush map inet ${T} mode${f}`)
    if (mapWritten[f].length > 0) lines.push(`add element inet ${T} mode${f} { ${mapWritten[f].join(', ')} }`)
    actions.push(`mode${f}: ${mapWritten[f].length} addresses`)
  }
  const departedKeys: string[] = []
  for (const name of i.existing.keys()) {
    if (!/^c_[0-9a-f]{10}$/.test(name) || chains.has(name)) continue
    lines.push(`flush chain inet ${T} ${name}`, `delete chain inet ${T} ${name}`)
    departedKeys.push(name.slice(2))
  }
  if (departedKeys.length > 0) actions.push(`delete chains of ${departedKeys.length} departed addresses`)
  return { script: lines.join('\n') + '\n', actions, written, mapWritten, departedKeys, added: newSets, changed: actions.length > 0 }
}

/** Parse `nft -j list chains inet` for our table: name -> hook/prio. */
export function parseChains(text: string, table: string): Map<string, { hook?: string; prio?: number }> {
  const out = new Map<string, { hook?: string; prio?: number }>()
  if (!text.trim()) return out
  for (const item of (JSON.parse(text) as { nftables?: Record<string, Record<string, unknown>>[] }).nftables ?? []) {
    const c = item.chain
    if (!c || c.table !== table || c.family !== 'inet') continue
    out.set(String(c.name), c.hook !== undefined ? { hook: String(c.hook), prio: Number(c.prio) } : {})
  }
  return out
}

/**
 * Learned-pair transactions (one writer unit each). `refresh` (the kernel updates an existing
 * element's timeout on `add`, Linux >= 6.10): one `add element` per set and chunk. Otherwise
 * add + delete + add in ONE transaction, so a re-learned pair gets its new timeout without a moment
 * of absence (an `add` of an existing element would keep the old expiry).
 */
export function learnUnits(T: string, pairs: readonly { key: string; p: NormalPair }[], refresh: boolean, chunk = 256): string[] {
  const bySet = new Map<string, { el: string[]; bare: string[] }>()
  for (const { key, p } of pairs) {
    const set = learnedSet(p.port === undefined ? 'l' : 'p', key)
    const bare = p.port === undefined ? p.dst : `${p.proto} . ${p.port} . ${p.dst}`
    let e = bySet.get(set)
    if (!e) bySet.set(set, (e = { el: [], bare: [] }))
    e.el.push(`${bare} timeout ${p.ttl}s`)
    e.bare.push(bare)
  }
  const out: string[] = []
  for (const [set, e] of bySet) {
    for (let i = 0; i < e.el.length; i += chunk) {
      const add = `add element inet ${T} ${set} { ${e.el.slice(i, i + chunk).join(', ')} }`
      out.push(refresh ? add : `${add}; delete element inet ${T} ${set} { ${e.bare.slice(i, i + chunk).join(', ')} }; ${add}`)
    }
  }
  return out
}

type Json = Record<string, unknown>

/** Elements of `nft -j list set` of a seen set -> events, plus the element texts to delete. */
export function parseSeen(text: string): { events: SeenEvent[]; elements: string[] } {
  const events: SeenEvent[] = []
  const elements: string[] = []
  const kinds = new Map(Object.entries(SEEN_MARK).map(([k, v]) => [v, k as SeenKind]))
  for (const item of (JSON.parse(text) as { nftables?: Json[] }).nftables ?? []) {
    const s = item.set as Json | undefined
    for (const e of (s?.elem as unknown[] | undefined) ?? []) {
      const v = ((e as Json)?.elem as Json | undefined)?.val ?? e
      const c = (v as Json)?.concat as unknown[] | undefined
      if (!Array.isArray(c) || c.length !== 5) continue
      const [src, proto, port, dst, mark] = c
      const kind = kinds.get(Number(mark))
      if (!kind) continue
      const pr = String(proto)
      events.push({ kind, src: String(src), dst: String(dst), proto: pr, ...(pr === 'tcp' || pr === 'udp' ? { port: Number(port) } : {}) })
      elements.push(`${String(src)} . ${/^[a-z0-9-]+$/i.test(pr) ? pr : Number(pr)} . ${Number(port)} . ${String(dst)} . ${Number(mark)}`)
    }
  }
  return { events, elements }
}

export interface LiveCtTable {
  exists: boolean
  sets: Set<string>
  maps: Map<string, string[]>
  chains: Map<string, { hook?: string; prio?: number; comments: string[] }>
}

/** Parse `nft -j list table inet T` (verify only: with many learned pairs this read is the costly one). */
export function parseTable(text: string): LiveCtTable {
  const live: LiveCtTable = { exists: false, sets: new Set(), maps: new Map(), chains: new Map() }
  if (!text.trim()) return live
  for (const item of (JSON.parse(text) as { nftables?: Json[] }).nftables ?? []) {
    if (item.table) live.exists = true
    else if (item.set) live.sets.add(String((item.set as Json).name))
    else if (item.map) {
      const m = item.map as Json
      const els: string[] = []
      for (const e of (m.elem as unknown[] | undefined) ?? []) {
        if (!Array.isArray(e)) continue
        const target = ((e[1] as Json)?.goto as Json | undefined)?.target
        els.push(`${String(e[0])} : goto ${String(target)}`)
      }
      live.maps.set(String(m.name), els.sort())
    } else if (item.chain) {
      const c = item.chain as Json
      live.chains.set(String(c.name), { comments: [], ...(c.hook !== undefined ? { hook: String(c.hook), prio: Number(c.prio) } : {}) })
    } else if (item.rule) {
      const r = item.rule as Json
      live.chains.get(String(r.chain))?.comments.push(String(r.comment ?? ''))
    }
  }
  return live
}

export function ctNftDrift(table: string, live: LiveCtTable, state: NormalState): Drift[] {
  if (!live.exists) return [{ kind: 'table-missing', detail: `table inet ${table} missing` }]
  const out: Drift[] = []
  for (const s of ['seen4', 'seen6']) if (!live.sets.has(s)) out.push({ kind: 'set-missing', detail: `set ${s} missing` })
  for (const h of state.held) {
    for (const k of ['l', 'p'] as const) if (!live.sets.has(learnedSet(k, h.key))) out.push({ kind: 'set-missing', detail: `learned set ${learnedSet(k, h.key)} of ${h.ip} missing` })
  }
  for (const f of [4, 6] as const) {
    const have = live.maps.get(`mode${f}`)
    if (!have) out.push({ kind: 'set-missing', detail: `map mode${f} missing` })
    else if (!same(have, [...mapElements(state, f)].sort())) out.push({ kind: 'set-members', detail: `map mode${f}: elements differ from the applied state` })
  }
  for (const [name, c] of expectedChains(state)) {
    const l = live.chains.get(name)
    const comments = c.rules.map((r, k) => ruleComment(name, k, r))
    if (!l) out.push({ kind: c.hook ? 'jump-missing' : 'chain-missing', detail: `chain ${name} missing` })
    else if (c.hook && (l.hook !== c.hook || l.prio !== CT_PRIORITY)) out.push({ kind: 'jump-not-first', detail: `chain ${name}: hook/priority differ (want ${c.hook} priority ${CT_PRIORITY})` })
    else if (!same(l.comments, comments)) out.push({ kind: c.hook ? 'jump-missing' : 'chain-rules', detail: l.comments.length === 0 ? `chain ${name} flushed` : `chain ${name}: rules differ` })
  }
  return out
}
