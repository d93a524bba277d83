// Pure text generation for the nftables backend: the `nft -f -` transaction that makes the table
// `inet egress_guard` hold the desired sets and chains, interval arithmetic (nft interval sets with
// auto-merge store the UNION of the members, so desired and live are compared as merged intervals),
// and parsing/drift-checking `nft -j list table` output.
//
// Each role+family has TWO sets matched by the same rules: `block4` holds single addresses (/32,
// /128) in a plain hash set, `block4net` the real networks in an interval set. nft 1.0.6 fetches every
// element of every interval set in the table for any element change, so 100,000 addresses in an
// interval set made a one-entry edit cost a full load; in a hash set an `add element` or
// `delete element` touches that element only (measured: ~1 ms instead of ~1.6 s of CPU).
//
// Before all of them, `ctl4`/`ctl6` hold the control-plane endpoints (DesiredState.exempt) in a
// concatenated set `ipv4_addr . inet_proto . inet_service`: one hash lookup on the destination
// address, protocol and port together, so exempting the server's tcp/8787 exempts nothing else on
// that address, and a re-resolved server address is one `add element` away.
import { createHash } from 'node:crypto'
import { formatIp, parseCidr } from '../policy/net.js'
import type { DesiredState, Drift } from './types.js'
import { diffMembers } from './ipset-script.js'

export type NftSetKey = 'allow4' | 'allow6' | 'block4' | 'block6' | 'alert4' | 'alert6'
export const NFT_SET_KEYS: readonly NftSetKey[] = ['allow4', 'allow6', 'block4', 'block6', 'alert4', 'alert6']
/** The interval set of a role+family (networks); the key itself names the hash set of addresses. */
export const netSet = (key: NftSetKey): string => `${key}net`
/** The control-plane (exempt) sets, one per family. */
export type CtlKey = 'ctl4' | 'ctl6'
export const CTL_KEYS: readonly CtlKey[] = ['ctl4', 'ctl6']
const ctlType = (key: CtlKey): string => `${key === 'ctl4' ? 'ipv4_addr' : 'ipv6_addr'} . inet_proto . inet_service`
/** Base chains and their hooks; the priority runs them before Docker's (iptables-nft) filter chains at 0. */
export const HOOKS = ['output', 'forward'] as const
export const PRIORITY = -10
export const GUARD = 'guard'

export function tableName(prefix: string | undefined): string {
  return (prefix ?? 'egress-guard').replace(/-/g, '_')
}

/** [first, last] address of a network as unsigned integers (IPv4 as numbers: cheaper than bigint). */
type Interval = [bigint, bigint]
type Interval4 = [number, number]

function bytesToBig(b: Uint8Array): bigint {
  let v = 0n
  for (const x of b) v = (v << 8n) | BigInt(x)
  return v
}
function bigToBytes(v: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len)
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn)
    v >>= 8n
  }
  return out
}

/** Fast path for the common case, canonical `a.b.c.d/len` (or a bare address); undefined otherwise. */
function v4Interval(text: string): Interval4 | undefined {
  const slash = text.indexOf('/')
  const parts = (slash < 0 ? text : text.slice(0, slash)).split('.')
  if (parts.length !== 4) return undefined
  let v = 0
  for (const p of parts) {
    const n = Number(p)
    if (!Number.isInteger(n) || n < 0 || n > 255 || p === '') return undefined
    v = v * 256 + n
  }
  const len = slash < 0 ? 32 : Number(text.slice(slash + 1))
  if (!Number.isInteger(len) || len < 0 || len > 32) return undefined
  const size = 2 ** (32 - len)
  const start = v - (v % size)
  return [start, start + size - 1]
}

function v6Interval(text: string): Interval | undefined {
  const r = parseCidr(text)
  if (!r.ok || r.cidr.family !== 6) return undefined
  const start = bytesToBig(r.cidr.bytes)
  return [start, start + (1n << BigInt(128 - r.cidr.prefix)) - 1n]
}

/** Sort and merge overlapping AND adjacent intervals, as the kernel's auto-merge does. */
export function mergeIntervals<T extends number | bigint>(list: [T, T][], one: T): [T, T][] {
  const s = [...list].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const out: [T, T][] = []
  for (const iv of s) {
    const top = out[out.length - 1]
    if (top && iv[0] <= ((top[1] as number) + (one as number))) {
      if (iv[1] > top[1]) top[1] = iv[1]
    } else out.push([iv[0], iv[1]])
  }
  return out
}

const v4Text = (v: number): string => `${Math.floor(v / 16777216)}.${Math.floor(v / 65536) % 256}.${Math.floor(v / 256) % 256}.${v % 256}`
const v6Text = (v: bigint): string => formatIp({ family: 6, bytes: bigToBytes(v, 16) })

/** One merged interval as nft element text: a single address, an aligned prefix, or `a-b`. */
function elementText(a: number | bigint, b: number | bigint, fam: 4 | 6): string {
  const text = (v: number | bigint): string => (fam === 4 ? v4Text(Number(v)) : v6Text(BigInt(v)))
  if (a === b) return text(a)
  const size = BigInt(b) - BigInt(a) + 1n
  if ((size & (size - 1n)) === 0n && BigInt(a) % size === 0n) {
    let len = fam === 4 ? 32 : 128
    for (let s = size; s > 1n; s >>= 1n) len--
    return `${text(a)}/${len}`
  }
  return `${text(a)}-${text(b)}`
}

/** The merged intervals of a member list, as comparable `start-end` keys and as nft element text. */
export function mergedMembers(cidrs: readonly string[], fam: 4 | 6): { keys: string[]; elements: string[] } {
  if (fam === 4) {
    const ivs: Interval4[] = []
    for (const c of cidrs) {
      const iv = v4Interval(c)
      if (iv) ivs.push(iv)
    }
    const m = mergeIntervals(ivs, 1)
    return { keys: m.map(([a, b]) => `${a}-${b}`), elements: m.map(([a, b]) => elementText(a, b, 4)) }
  }
  const ivs: Interval[] = []
  for (const c of cidrs) {
    const iv = v6Interval(c)
    if (iv) ivs.push(iv)
  }
  const m = mergeIntervals(ivs, 1n)
  return { keys: m.map(([a, b]) => `${a}-${b}`), elements: m.map(([a, b]) => elementText(a, b, 6)) }
}

/** Canonical comparable form of a member list: the merged intervals as `start-end` keys. */
export function intervalKeys(cidrs: readonly string[], fam: 4 | 6): string[] {
  return mergedMembers(cidrs, fam).keys
}

/**
 * A member list split into single addresses and real networks. Addresses stay the DesiredState's own
 * canonical strings (`198.51.100.7/32`), in input order (DesiredState lists are de-duplicated): a
 * 100,000-entry edit then pays for no sort and no new strings, and Set lookups reuse the hash V8
 * cached in each string. nft element text drops the host prefix (addrText) only for lines written.
 */
export function splitMembers(cidrs: readonly string[], fam: 4 | 6): { addrs: string[]; nets: string[] } {
  const host = fam === 4 ? '/32' : '/128'
  const addrs: string[] = []
  const nets: string[] = []
  for (const c of cidrs) {
    if (c.endsWith(host)) addrs.push(c)
    else if (!c.includes('/')) addrs.push(c + host)
    else nets.push(c)
  }
  return { addrs, nets }
}

/** `198.51.100.7/32` -> `198.51.100.7`: how an address is written to and listed by nft. */
const addrText = (m: string): string => {
  const i = m.indexOf('/')
  return i < 0 ? m : m.slice(0, i)
}

function membersOf(d: DesiredState, key: NftSetKey): string[] {
  const role = key.slice(0, -1) as 'block' | 'alert' | 'allow'
  return key.endsWith('4') ? d[role].v4 : d[role].v6
}
const famOf = (key: NftSetKey): 4 | 6 => (key.endsWith('4') ? 4 : 6)

/**
 * The guard chain's rules (nft syntax, without comment), in precedence order: the control-plane
 * exemption (address . protocol . destination port), then allow, block, alert.
 */
export function guardRules(log: boolean, prefix: string): string[] {
  const p = (s: string): string => `"${`${prefix} ${s}: `.replace(/[^A-Za-z0-9 _:.-]/g, '').slice(0, 127)}"`
  const out: string[] = ['ip daddr . meta l4proto . th dport @ctl4 counter return', 'ip6 daddr . meta l4proto . th dport @ctl6 counter return']
  // Every rule twice: once for the address (hash) set, once for the network (interval) set.
  const each = (role: string, fn: (m: string) => void): void => {
    for (const f of [4, 6] as const) for (const sfx of ['', 'net']) fn(`${f === 4 ? 'ip' : 'ip6'} daddr @${role}${f}${sfx}`)
  }
  each('allow', (m) => out.push(`${m} counter return`))
  each('block', (m) => {
    if (log) out.push(`${m} limit rate 10/minute log prefix ${p('block')}`)
    // TCP gets a reset so clients fail at once; everything else an ICMP(v6) port unreachable.
    out.push(`meta l4proto tcp ${m} counter reject with tcp reset`, `${m} counter reject with icmpx type port-unreachable`)
  })
  each('alert', (m) => out.push(`${m} limit rate 10/minute log prefix ${p('alert')}`, `${m} counter return`))
  return out
}

/**
 * Each rule carries a comment with a hash of its text: `nft -j` prints expressions in a form that is
 * tedious to compare, but it prints comments verbatim, so the comments in order identify the rules.
 */
export function ruleComment(chain: string, index: number, text: string): string {
  return `eg:${createHash('sha256').update(`${chain}\n${index}\n${text}`).digest('hex').slice(0, 12)}`
}

export interface ExpectedChain {
  name: string
  hook?: string
  rules: string[]
  comments: string[]
}

export function expectedChains(log: boolean, prefix: string): ExpectedChain[] {
  const mk = (name: string, rules: string[], hook?: string): ExpectedChain => ({
    name,
    ...(hook ? { hook } : {}),
    rules,
    comments: rules.map((r, i) => ruleComment(name, i, r)),
  })
  return [mk(GUARD, guardRules(log, prefix)), ...HOOKS.map((h) => mk(h, [`counter jump ${GUARD}`], h))]
}

/** What `nft -j list table` told us about our table. */
export interface LiveTable {
  exists: boolean
  /** set name -> members: an interval set's merged interval keys, a hash set's sorted element texts */
  sets: Map<string, LiveSet>
  chains: Map<string, { hook?: string; prio?: number; type?: string; policy?: string; comments: string[] }>
}

export interface LiveSet {
  type: string
  interval: boolean
  /** Interval set: merged interval keys, sorted. Hash set: element texts, in no particular order. */
  keys: string[]
  /** Hash set: a Set of `keys`, built when a diff first needs it and carried across edits. */
  set?: Set<string>
}

type Json = Record<string, unknown>

function cidrIv(text: string, fam: 4 | 6): [number | bigint, number | bigint] | undefined {
  return fam === 4 ? v4Interval(text) : v6Interval(text)
}

function elemInterval(e: unknown, fam: 4 | 6): [number | bigint, number | bigint] | undefined {
  if (typeof e === 'string') return cidrIv(e, fam)
  if (e && typeof e === 'object') {
    const o = e as Json
    if (o.elem && typeof o.elem === 'object') return elemInterval((o.elem as Json).val, fam)
    if (o.prefix && typeof o.prefix === 'object') {
      const p = o.prefix as { addr: string; len: number }
      return cidrIv(`${p.addr}/${p.len}`, fam)
    }
    if (Array.isArray(o.range)) {
      const a = cidrIv(String(o.range[0]), fam)
      const b = cidrIv(String(o.range[1]), fam)
      if (a && b) return [a[0], b[1]]
    }
  }
  return undefined
}

const PROTO_NUM: Record<string, string> = { '6': 'tcp', '17': 'udp' }

/** `{concat: ["198.51.100.1", "tcp", 8787]}` -> `198.51.100.1,tcp:8787` (DesiredState.exempt's form). */
function concatKey(e: unknown): string | undefined {
  const o = e && typeof e === 'object' ? (e as Json) : undefined
  const c = o?.concat ?? ((o?.elem as Json | undefined)?.val as Json | undefined)?.concat
  if (!Array.isArray(c) || c.length !== 3) return undefined
  const proto = PROTO_NUM[String(c[1])] ?? String(c[1])
  return `${String(c[0])},${proto}:${String(c[2])}`
}

/** `198.51.100.1,tcp:8787` -> `198.51.100.1 . tcp . 8787`: how an endpoint is written to nft. */
const ctlText = (m: string): string => {
  const r = /^(.+),(tcp|udp):(\d+)$/.exec(m)
  return r ? `${r[1]} . ${r[2]} . ${r[3]}` : m
}

/** Parse `nft -j list table inet NAME` output (an absent table is `exists: false`). */
export function parseNftJson(text: string): LiveTable {
  const live: LiveTable = { exists: false, sets: new Map(), chains: new Map() }
  if (!text.trim()) return live
  const doc = JSON.parse(text) as { nftables?: Json[] }
  for (const item of doc.nftables ?? []) {
    if (item.table) live.exists = true
    else if (item.set) {
      const s = item.set as Json
      if (Array.isArray(s.type)) {
        // A concatenated set (the control-plane endpoints): elements are {concat: [addr, proto, port]}.
        const keys: string[] = []
        for (const e of (s.elem as unknown[] | undefined) ?? []) {
          const k = concatKey(e)
          if (k) keys.push(k)
        }
        live.sets.set(String(s.name), { type: s.type.map(String).join(' . '), interval: false, keys })
        continue
      }
      const fam: 4 | 6 = s.type === 'ipv6_addr' ? 6 : 4
      const interval = Array.isArray(s.flags) && s.flags.includes('interval')
      if (!interval) {
        // Hash set: elements are plain address strings ({elem: {val}} when they carry options).
        const keys: string[] = []
        for (const e of (s.elem as unknown[] | undefined) ?? []) {
          const v = typeof e === 'string' ? e : ((e as Json)?.elem as Json | undefined)?.val
          if (typeof v === 'string') keys.push(v.includes('/') ? v : `${v}/${fam === 4 ? 32 : 128}`)
        }
        live.sets.set(String(s.name), { type: String(s.type), interval, keys })
        continue
      }
      const ivs: [number | bigint, number | bigint][] = []
      for (const e of (s.elem as unknown[] | undefined) ?? []) {
        const iv = elemInterval(e, fam)
        if (iv) ivs.push(iv)
      }
      const merged = fam === 4 ? mergeIntervals(ivs as Interval4[], 1) : mergeIntervals(ivs as Interval[], 1n)
      live.sets.set(String(s.name), { type: String(s.type), interval, keys: merged.map((iv) => `${iv[0]}-${iv[1]}`) })
    } else if (item.chain) {
      const c = item.chain as Json
      live.chains.set(String(c.name), {
        comments: [],
        ...(c.hook !== undefined ? { hook: String(c.hook), prio: Number(c.prio), type: String(c.type), policy: String(c.policy) } : {}),
      })
    } else if (item.rule) {
      const r = item.rule as Json
      live.chains.get(String(r.chain))?.comments.push(String(r.comment ?? ''))
    }
  }
  return live
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** Interval sets compare as sorted merged keys; hash sets as sets (nft lists them in hash order). */
function sameMembers(have: LiveSet, want: readonly string[]): boolean {
  if (have.interval || sameList(have.keys, want)) return sameList(have.keys, want)
  const h = have.set ?? new Set(have.keys)
  if (h.size !== have.keys.length || new Set(want).size !== h.size) return false
  return want.every((k) => h.has(k))
}

function chainOk(live: LiveTable, c: ExpectedChain): 'missing' | 'hook' | 'rules' | 'ok' {
  const l = live.chains.get(c.name)
  if (!l) return 'missing'
  if (c.hook && (l.hook !== c.hook || l.prio !== PRIORITY || l.type !== 'filter' || l.policy !== 'accept')) return 'hook'
  if (!c.hook && l.hook) return 'hook'
  return sameList(l.comments, c.comments) ? 'ok' : 'rules'
}

/** One set as it should be: name, nft type, kind, members, and how a member is written. */
interface WantedSet {
  name: string
  type: string
  interval: boolean
  keys: string[]
  /** Element text of the whole set (written only when a set is created or refilled). */
  elements: () => string[]
  /** Element text of one member (hash sets: for `add element` / `delete element` edits). */
  text: (key: string) => string
}

/** The two sets of a role+family: name, nft type, kind and the members they should hold. */
function wantedSets(desired: DesiredState, key: NftSetKey): WantedSet[] {
  const fam = famOf(key)
  const type = fam === 4 ? 'ipv4_addr' : 'ipv6_addr'
  const { addrs, nets } = splitMembers(membersOf(desired, key), fam)
  const merged = mergedMembers(nets, fam)
  return [
    // Element text only when a whole set is written (created or refilled).
    { name: key, type, interval: false, keys: addrs, elements: () => addrs.map(addrText), text: addrText },
    { name: netSet(key), type, interval: true, keys: merged.keys, elements: () => merged.elements, text: (k) => k },
  ]
}

/** The control-plane set of a family (one hash set of concatenated keys). */
function wantedCtl(desired: DesiredState, key: CtlKey): WantedSet {
  const keys = [...((key === 'ctl4' ? desired.exempt?.v4 : desired.exempt?.v6) ?? [])]
  return { name: key, type: ctlType(key), interval: false, keys, elements: () => keys.map(ctlText), text: ctlText }
}

/** Element lines of bounded length (still one transaction). */
function elementLines(out: string[], verb: 'add' | 'delete', T: string, name: string, elems: readonly string[]): void {
  for (let i = 0; i < elems.length; i += 4096) out.push(`${verb} element ${T} ${name} { ${elems.slice(i, i + 4096).join(', ')} }`)
}

/**
 * Lines that move one existing-or-declared set from `have` to `want`: a hash set gets `delete element`
 * and `add element` for the difference only; an interval set is flushed and refilled (the kernel
 * merges intervals, so an element-wise edit of merged ranges could split them).
 */
function setChange(
  T: string,
  w: WantedSet,
  have: LiveSet | undefined,
  out: string[],
  next: LiveSet,
): { added: number; removed: number; verb: 'create' | 'refill' | 'edit' } | undefined {
  if (have && sameList(have.keys, w.keys)) {
    if (have.set) next.set = have.set
    return undefined
  }
  let adds: string[]
  let dels: string[]
  if (!w.interval && have) {
    // Lookups in the live Set only (see diffMembers); it then becomes the next state's Set.
    const live = have.set ?? new Set(have.keys)
    ;({ adds, dels } = diffMembers(w.keys, live, have.keys))
    if (adds.length === 0 && dels.length === 0) {
      next.set = live
      return undefined
    }
    adds = [...new Set(adds)] // a DesiredState that broke the no-duplicates contract still applies
    for (const d of dels) live.delete(d)
    for (const a of adds) live.add(a)
    next.set = live
  } else {
    const haveSet = new Set(have?.keys ?? [])
    const wantSet = new Set(w.keys)
    adds = w.keys.filter((k) => !haveSet.has(k))
    dels = (have?.keys ?? []).filter((k) => !wantSet.has(k))
  }
  if (w.interval || !have) {
    if (have) out.push(`flush set ${T} ${w.name}`)
    elementLines(out, 'add', T, w.name, w.elements())
  } else {
    elementLines(out, 'delete', T, w.name, dels.map(w.text))
    elementLines(out, 'add', T, w.name, adds.map(w.text))
  }
  return { added: adds.length, removed: dels.length, verb: !have ? 'create' : w.interval ? 'refill' : 'edit' }
}

/** `set ctl4: edit +1 -0 (3 control-plane endpoints)`. */
function ctlAction(w: WantedSet, c: NonNullable<ReturnType<typeof setChange>>): string {
  return `set ${w.name}: ${c.verb} +${c.added} -${c.removed} (${w.keys.length} control-plane endpoints)`
}

/**
 * Both sets of a role+family as one action line, e.g. `set block4: edit +1 -0 (100001 addresses, 2
 * intervals)`: operators (and `plan`) think in roles, not in the two-set layout.
 */
function pairAction(key: NftSetKey, ws: readonly { keys: string[] }[], changes: readonly (ReturnType<typeof setChange>)[]): string | undefined {
  const done = changes.filter((c) => c !== undefined)
  if (done.length === 0) return undefined
  const verb = done.some((c) => c.verb === 'create') ? 'create' : done.some((c) => c.verb === 'refill') ? 'refill' : 'edit'
  const a = done.reduce((n, c) => n + c.added, 0)
  const r = done.reduce((n, c) => n + c.removed, 0)
  return `set ${key}: ${verb} +${a} -${r} (${ws[0]!.keys.length} addresses, ${ws[1]!.keys.length} intervals)`
}

/**
 * The ONE transaction (`nft -f -` input) that moves `live` to `desired`; undefined when nothing
 * differs. Changed interval sets are flushed and refilled and hash sets edited in the same
 * transaction, so a packet sees the old state or the new one, never a half-filled set. A set of the
 * wrong type or kind (e.g. `block4` as an interval set, from a version before the address sets) is
 * deleted and re-created; the guard chain that references it is flushed first and rewritten.
 */
export function planNft(
  table: string,
  live: LiveTable,
  desired: DesiredState,
  log: boolean,
  prefix: string,
): { script?: string; actions: string[]; added: number; removed: number; sets: LiveTable['sets'] } {
  const T = `inet ${table}`
  const deletes: string[] = []
  const setLines: string[] = []
  const actions: string[] = []
  let added = 0
  let removed = 0
  const sets: LiveTable['sets'] = new Map()
  if (!live.exists) actions.push(`create table ${T}`)
  for (const key of CTL_KEYS) {
    const w = wantedCtl(desired, key)
    const next: LiveSet = { type: w.type, interval: false, keys: w.keys }
    sets.set(w.name, next)
    let have = live.sets.get(w.name)
    if (have && (have.type !== w.type || have.interval)) {
      deletes.push(`delete set ${T} ${w.name}`)
      have = undefined
    }
    setLines.push(`add set ${T} ${w.name} { type ${w.type}; }`)
    const c = setChange(T, w, have, setLines, next)
    added += c?.added ?? 0
    removed += c?.removed ?? 0
    if (c) actions.push(ctlAction(w, c))
  }
  for (const key of NFT_SET_KEYS) {
    const ws = wantedSets(desired, key)
    const changes = ws.map((w) => {
      const next: LiveSet = { type: w.type, interval: w.interval, keys: w.keys }
      sets.set(w.name, next)
      let have = live.sets.get(w.name)
      if (have && (have.type !== w.type || have.interval !== w.interval)) {
        deletes.push(`delete set ${T} ${w.name}`)
        have = undefined
      }
      setLines.push(`add set ${T} ${w.name} { type ${w.type};${w.interval ? ' flags interval; auto-merge;' : ''} }`)
      const c = setChange(T, w, have, setLines, next)
      added += c?.added ?? 0
      removed += c?.removed ?? 0
      return c
    })
    const action = pairAction(key, ws, changes)
    if (action) actions.push(action)
  }
  const lines: string[] = [`add table ${T}`]
  // A referenced set cannot be deleted: empty the guard chain first (it is rewritten below).
  const guardFlushed = deletes.length > 0 && live.chains.has(GUARD)
  if (guardFlushed) lines.push(`flush chain ${T} ${GUARD}`)
  for (const l of deletes) lines.push(l)
  for (const l of setLines) lines.push(l) // not push(...): 100,000 arguments overflow the stack
  const chains = expectedChains(log, prefix)
  // The guard chain must exist before a base chain jumps to it: declare all, then fill.
  for (const c of chains) {
    let st = chainOk(live, c)
    if (st === 'ok' && guardFlushed && c.name === GUARD) st = 'rules'
    if (st === 'ok') continue
    if (st === 'hook') lines.push(`flush chain ${T} ${c.name}`, `delete chain ${T} ${c.name}`)
    const decl = c.hook ? ` { type filter hook ${c.hook} priority filter - ${-PRIORITY}; policy accept; }` : ''
    lines.push(`add chain ${T} ${c.name}${decl}`, `flush chain ${T} ${c.name}`)
    c.rules.forEach((r, i) => lines.push(`add rule ${T} ${c.name} ${r} comment "${c.comments[i]}"`))
    actions.push(`${st === 'missing' ? 'create' : 'rewrite'} chain ${c.name}${c.hook ? ` (hook ${c.hook} priority filter - ${-PRIORITY})` : ''}`)
  }
  if (actions.length === 0) return { actions, added, removed, sets }
  return { script: lines.join('\n') + '\n', actions, added, removed, sets }
}

/**
 * Element changes only, against the set contents this process last wrote (`known`): no table, set or
 * chain declarations, so a transaction against a table that vanished fails (and the caller falls back
 * to planNft on a fresh read) instead of half re-creating it. Undefined when `known` lacks a set.
 */
export function planElements(
  table: string,
  known: LiveTable['sets'],
  desired: DesiredState,
): { script?: string; actions: string[]; added: number; removed: number; sets: LiveTable['sets'] } | undefined {
  const T = `inet ${table}`
  const lines: string[] = []
  const actions: string[] = []
  let added = 0
  let removed = 0
  const sets: LiveTable['sets'] = new Map()
  for (const key of CTL_KEYS) {
    const w = wantedCtl(desired, key)
    const have = known.get(w.name)
    if (!have || have.type !== w.type || have.interval) return undefined
    const next: LiveSet = { type: w.type, interval: false, keys: w.keys }
    sets.set(w.name, next)
    const c = setChange(T, w, have, lines, next)
    added += c?.added ?? 0
    removed += c?.removed ?? 0
    if (c) actions.push(ctlAction(w, c))
  }
  for (const key of NFT_SET_KEYS) {
    const ws = wantedSets(desired, key)
    const changes: ReturnType<typeof setChange>[] = []
    for (const w of ws) {
      const have = known.get(w.name)
      if (!have || have.type !== w.type || have.interval !== w.interval) return undefined
      const next: LiveSet = { type: w.type, interval: w.interval, keys: w.keys }
      sets.set(w.name, next)
      const c = setChange(T, w, have, lines, next)
      added += c?.added ?? 0
      removed += c?.removed ?? 0
      changes.push(c)
    }
    const action = pairAction(key, ws, changes)
    if (action) actions.push(action)
  }
  return { ...(lines.length > 0 ? { script: lines.join('\n') + '\n' } : {}), actions, added, removed, sets }
}

/** Drift between the live table and the last applied desired state (members only when given). */
export function nftDrift(table: string, live: LiveTable, desired: DesiredState | undefined, log: boolean, prefix: string): Drift[] {
  if (!live.exists) return [{ kind: 'table-missing', detail: `table inet ${table} missing` }]
  const out: Drift[] = []
  for (const key of CTL_KEYS) {
    const have = live.sets.get(key)
    const want = desired ? wantedCtl(desired, key) : undefined
    if (!have || have.type !== ctlType(key)) out.push({ kind: 'set-missing', detail: have ? `set ${key} is of type ${have.type}, not ${ctlType(key)}` : `set ${key} missing` })
    else if (want && !sameMembers(have, want.keys)) out.push({ kind: 'set-members', detail: `set ${key}: control-plane endpoints differ from the ${want.keys.length} expected` })
  }
  for (const key of NFT_SET_KEYS) {
    const wanted = desired ? wantedSets(desired, key) : undefined
    for (const [i, name] of [key, netSet(key)].entries()) {
      const have = live.sets.get(name)
      if (!have) {
        out.push({ kind: 'set-missing', detail: `set ${name} missing` })
        continue
      }
      if (have.interval !== (i === 1)) {
        out.push({ kind: 'set-missing', detail: `set ${name} is ${have.interval ? 'an interval' : 'a hash'} set, not the kind expected` })
        continue
      }
      if (wanted && !sameMembers(have, wanted[i]!.keys)) {
        out.push({ kind: 'set-members', detail: `set ${name}: members differ from policy version ${desired!.version}` })
      }
    }
  }
  for (const c of expectedChains(log, prefix)) {
    const st = chainOk(live, c)
    if (st === 'missing') out.push({ kind: c.hook ? 'jump-missing' : 'chain-missing', detail: `chain ${c.name} missing` })
    else if (st === 'hook') out.push({ kind: 'jump-not-first', detail: `chain ${c.name}: hook/priority differ (want ${c.hook} priority ${PRIORITY})` })
    else if (st === 'rules') {
      const n = live.chains.get(c.name)!.comments.length
      out.push({ kind: c.hook ? 'jump-missing' : 'chain-rules', detail: n === 0 ? `chain ${c.name} flushed` : `chain ${c.name}: rules differ` })
    }
  }
  return out
}
