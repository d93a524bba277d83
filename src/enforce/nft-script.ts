// Pure text generation for the nftables backend: the `nft -f -` transaction that makes the table
// `inet egress_guard` hold the desired sets and chains, interval arithmetic (nft interval sets with
// auto-merge store the UNION of the members, so desired and live are compared as merged intervals),
// and parsing/drift-checking `nft -j list table` output.
import { createHash } from 'node:crypto'
import { formatIp, parseCidr } from '../policy/net.js'
import type { DesiredState, Drift } from './types.js'

export type NftSetKey = 'allow4' | 'allow6' | 'block4' | 'block6' | 'alert4' | 'alert6'
export const NFT_SET_KEYS: readonly NftSetKey[] = ['allow4', 'allow6', 'block4', 'block6', 'alert4', 'alert6']
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

function membersOf(d: DesiredState, key: NftSetKey): string[] {
  const role = key.slice(0, -1) as 'block' | 'alert' | 'allow'
  return key.endsWith('4') ? d[role].v4 : d[role].v6
}
const famOf = (key: NftSetKey): 4 | 6 => (key.endsWith('4') ? 4 : 6)

/** The guard chain's rules (nft syntax, without comment), in precedence order: allow, block, alert. */
export function guardRules(log: boolean, prefix: string): string[] {
  const p = (s: string): string => `"${`${prefix} ${s}: `.replace(/[^A-Za-z0-9 _:.-]/g, '').slice(0, 127)}"`
  const out: string[] = []
  for (const f of [4, 6] as const) out.push(`${f === 4 ? 'ip' : 'ip6'} daddr @allow${f} counter return`)
  for (const f of [4, 6] as const) {
    const m = `${f === 4 ? 'ip' : 'ip6'} daddr @block${f}`
    if (log) out.push(`${m} limit rate 10/minute log prefix ${p('block')}`)
    // TCP gets a reset so clients fail at once; everything else an ICMP(v6) port unreachable.
    out.push(`meta l4proto tcp ${m} counter reject with tcp reset`, `${m} counter reject with icmpx type port-unreachable`)
  }
  for (const f of [4, 6] as const) {
    const m = `${f === 4 ? 'ip' : 'ip6'} daddr @alert${f}`
    out.push(`${m} limit rate 10/minute log prefix ${p('alert')}`, `${m} counter return`)
  }
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
  /** set name -> merged interval keys */
  sets: Map<string, { type: string; keys: string[] }>
  chains: Map<string, { hook?: string; prio?: number; type?: string; policy?: string; comments: string[] }>
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

/** Parse `nft -j list table inet NAME` output (an absent table is `exists: false`). */
export function parseNftJson(text: string): LiveTable {
  const live: LiveTable = { exists: false, sets: new Map(), chains: new Map() }
  if (!text.trim()) return live
  const doc = JSON.parse(text) as { nftables?: Json[] }
  for (const item of doc.nftables ?? []) {
    if (item.table) live.exists = true
    else if (item.set) {
      const s = item.set as Json
      const fam: 4 | 6 = s.type === 'ipv6_addr' ? 6 : 4
      const ivs: [number | bigint, number | bigint][] = []
      for (const e of (s.elem as unknown[] | undefined) ?? []) {
        const iv = elemInterval(e, fam)
        if (iv) ivs.push(iv)
      }
      const merged = fam === 4 ? mergeIntervals(ivs as Interval4[], 1) : mergeIntervals(ivs as Interval[], 1n)
      live.sets.set(String(s.name), { type: String(s.type), keys: merged.map((iv) => `${iv[0]}-${iv[1]}`) })
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

function chainOk(live: LiveTable, c: ExpectedChain): 'missing' | 'hook' | 'rules' | 'ok' {
  const l = live.chains.get(c.name)
  if (!l) return 'missing'
  if (c.hook && (l.hook !== c.hook || l.prio !== PRIORITY || l.type !== 'filter' || l.policy !== 'accept')) return 'hook'
  if (!c.hook && l.hook) return 'hook'
  return sameList(l.comments, c.comments) ? 'ok' : 'rules'
}

/**
 * The ONE transaction (`nft -f -` input) that moves `live` to `desired`; undefined when nothing
 * differs. Sets whose merged contents differ are flushed and refilled in the same transaction, so a
 * packet sees the old set or the new one, never a half-filled one.
 */
export function planNft(
  table: string,
  live: LiveTable,
  desired: DesiredState,
  log: boolean,
  prefix: string,
): { script?: string; actions: string[]; added: number; removed: number; sets: LiveTable['sets'] } {
  const T = `inet ${table}`
  const lines: string[] = [`add table ${T}`]
  const actions: string[] = []
  let added = 0
  let removed = 0
  const sets: LiveTable['sets'] = new Map()
  if (!live.exists) actions.push(`create table ${T}`)
  for (const key of NFT_SET_KEYS) {
    const fam = famOf(key)
    const type = fam === 4 ? 'ipv4_addr' : 'ipv6_addr'
    const { keys: want, elements: elems } = mergedMembers(membersOf(desired, key), fam)
    sets.set(key, { type, keys: want })
    const have = live.sets.get(key)
    if (have && have.type !== type) lines.push(`delete set ${T} ${key}`) // cannot be referenced: chains are rewritten below
    lines.push(`add set ${T} ${key} { type ${type}; flags interval; auto-merge; }`)
    if (have && have.type === type && sameList(have.keys, want)) continue
    const haveSet = new Set(have?.keys ?? [])
    const wantSet = new Set(want)
    const a = want.filter((k) => !haveSet.has(k)).length
    const r = (have?.keys ?? []).filter((k) => !wantSet.has(k)).length
    added += a
    removed += r
    lines.push(`flush set ${T} ${key}`)
    // Several `add element` commands of bounded length; still one transaction.
    for (let i = 0; i < elems.length; i += 4096) lines.push(`add element ${T} ${key} { ${elems.slice(i, i + 4096).join(', ')} }`)
    actions.push(`set ${key}: ${have ? 'refill' : 'create'} +${a} -${r} (${want.length} intervals)`)
  }
  const chains = expectedChains(log, prefix)
  // The guard chain must exist before a base chain jumps to it: declare all, then fill.
  for (const c of chains) {
    const st = chainOk(live, c)
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

/** Drift between the live table and the last applied desired state (members only when given). */
export function nftDrift(table: string, live: LiveTable, desired: DesiredState | undefined, log: boolean, prefix: string): Drift[] {
  if (!live.exists) return [{ kind: 'table-missing', detail: `table inet ${table} missing` }]
  const out: Drift[] = []
  for (const key of NFT_SET_KEYS) {
    const have = live.sets.get(key)
    if (!have) {
      out.push({ kind: 'set-missing', detail: `set ${key} missing` })
      continue
    }
    if (desired && !sameList(have.keys, intervalKeys(membersOf(desired, key), famOf(key)))) {
      out.push({ kind: 'set-members', detail: `set ${key}: members differ from policy version ${desired.version}` })
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
