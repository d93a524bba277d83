// Pure text of the container-egress seam for iptables+ipset: set and chain names, `ipset restore`
// lines (shared sets, one learned set pair per held address, learned pairs, the seen-set drain), the
// chains' rules exactly as `iptables-save` prints them (so a second apply compares equal and writes
// nothing), the jump placement after the fleet chain's jump, and drift.
//
// This kernel's ipset lacks hash:net,net (and hash:ip,ip never existed), so a (container, destination)
// pair cannot be one member of one global set: each held address gets its own learned sets instead,
// `L` (hash:ip: destinations on any port) and `P` (hash:ip,port: destination and proto:port), both
// with per-member timeouts, matched by two `-s ADDRESS` rules per address. The cost is a walk over
// those rules for the FIRST packet of a connection from a held container (established traffic
// returns before it); per-address sets also make forget() a flush, never a scan of a big set.
import type { Drift } from './types.js'
import type { FilterTable } from './iptables-rules.js'
import type { HeldAddress, NormalPair, NormalState } from './container-desired.js'
import type { ContainerMode, SeenEvent, SeenKind } from './container-types.js'

export type Fam = 4 | 6

/** ipset names are at most 31 characters; the longest of ours is `${prefix}-ct-seen-alert6` (16 more). */
export const CT_PREFIX_MAX = 15
const SET_PREFIX_RE = /^[a-z0-9][a-z0-9_-]*$/i

export interface CtNames {
  prefix: string
  /** The fleet chain (its jump stays before ours). */
  fleet: string
  main: string
  /** Quarantined sources. */
  quar: string
  /** Enforce and alert sources. */
  held: string
  /** The refusal tail: records and rejects (enforce) or records and returns (alert). */
  no: string
  ack: string
  mode: (m: ContainerMode, f: Fam) => string
  seen: (k: SeenKind, f: Fam) => string
  /** The temporary set a seen set is swapped into to be read (one per seen set). */
  drain: (k: SeenKind, f: Fam) => string
  learned: (kind: 'l' | 'p', key: string) => string
}

export const SEEN_KINDS: readonly SeenKind[] = ['refused', 'alerted', 'quarantine']
const SEEN_TAG: Record<SeenKind, string> = { refused: 'deny', alerted: 'alert', quarantine: 'quar' }
const MODE_TAG: Record<ContainerMode, string> = { enforce: 'enforce', alert: 'alert', quarantine: 'quarantine' }

export function ctNames(prefix = 'egress-guard'): CtNames {
  if (!SET_PREFIX_RE.test(prefix) || prefix.length > CT_PREFIX_MAX) {
    throw new Error(`name prefix ${JSON.stringify(prefix)} must match ${SET_PREFIX_RE} and be at most ${CT_PREFIX_MAX} characters for the container sets`)
  }
  const fleet = prefix.toUpperCase()
  return {
    prefix,
    fleet,
    main: `${fleet}-CT`,
    quar: `${fleet}-CTQ`,
    held: `${fleet}-CTH`,
    no: `${fleet}-CTN`,
    ack: `${prefix}-ct-ack`,
    mode: (m, f) => `${prefix}-ct-${MODE_TAG[m]}${f}`,
    seen: (k, f) => `${prefix}-ct-seen-${SEEN_TAG[k]}${f}`,
    drain: (k, f) => `${prefix}-ct-drain-${SEEN_TAG[k]}${f}`,
    learned: (kind, key) => `${prefix}-ct-${kind}-${key}`,
  }
}

/** Learned-set names look like this (what apply() may garbage-collect and remove() destroys). */
export function learnedSetRe(prefix: string): RegExp {
  return new RegExp(`^${prefix.replace(/[-]/g, '\\-')}-ct-[lp]-[0-9a-f]{10}$`)
}

/** Every fixed set name (mode, seen, ack); learned sets are matched by learnedSetRe. */
export function sharedSetNames(n: CtNames): string[] {
  const out = [n.ack]
  for (const f of [4, 6] as const) {
    for (const m of ['enforce', 'alert', 'quarantine'] as const) out.push(n.mode(m, f))
    for (const k of SEEN_KINDS) out.push(n.seen(k, f), n.drain(k, f))
  }
  return out
}

const inet = (f: Fam): string => (f === 4 ? 'inet' : 'inet6')
/** Seen sets: bounded (a flood cannot grow them) and self-expiring (if nobody drains them). */
export const SEEN_TIMEOUT = 300
const seenCreate = (name: string, f: Fam): string => `create ${name} hash:ip,port,ip family ${inet(f)} timeout ${SEEN_TIMEOUT} maxelem 65536`
/** Learned sets: a generous maxelem (memory grows with members, not with the bound). */
export const LEARNED_MAXELEM = 1_048_576

/** `create` lines for the mode, seen and ack sets (run with -exist: idempotent). */
export function sharedSetCreates(n: CtNames): string[] {
  const out = [`create ${n.ack} hash:ip family inet`]
  for (const f of [4, 6] as const) {
    for (const m of ['enforce', 'alert', 'quarantine'] as const) out.push(`create ${n.mode(m, f)} hash:ip family ${inet(f)}`)
    for (const k of SEEN_KINDS) out.push(seenCreate(n.seen(k, f), f))
  }
  return out
}

/** The two learned sets of one held address. Identical text every time (create -exist must match). */
export function learnedSetCreates(n: CtNames, h: Pick<HeldAddress, 'family' | 'key'>): string[] {
  return [
    `create ${n.learned('l', h.key)} hash:ip family ${inet(h.family)} timeout 60 maxelem ${LEARNED_MAXELEM}`,
    `create ${n.learned('p', h.key)} hash:ip,port family ${inet(h.family)} timeout 60 maxelem ${LEARNED_MAXELEM}`,
  ]
}

/** One `add` line for a learned pair into `set` (its l or p set; `-exist` refreshes the timeout of a
 * member already there). */
export function learnLine(set: string, p: NormalPair): string {
  return p.port === undefined ? `add ${set} ${p.dst} timeout ${p.ttl}` : `add ${set} ${p.dst},${p.proto}:${p.port} timeout ${p.ttl}`
}

/** The learned set a pair goes to. */
export function learnedSetOf(n: CtNames, key: string, p: NormalPair): string {
  return n.learned(p.port === undefined ? 'l' : 'p', key)
}

const host = (ip: string, f: Fam): string => `${ip}/${f === 4 ? 32 : 128}`
const ms = (set: string, dirs: string): string => `-m set --match-set ${set} ${dirs}`

/** Accept DNS to the sinkhole: one rule per address and protocol. */
function sinkRules(state: NormalState, f: Fam): string[] {
  const out: string[] = []
  for (const a of f === 4 ? state.sinkhole.v4 : state.sinkhole.v6) {
    for (const proto of ['udp', 'tcp']) out.push(`-d ${host(a, f)} -p ${proto} -m ${proto} --dport ${state.sinkhole.port} -j RETURN`)
  }
  return out
}

/** Neighbour discovery to and from the host must pass (ICMPv6 router solicitation, NS, NA). */
const ND = ['133', '135', '136'].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`)

function rejects(f: Fam): string[] {
  return ['-p tcp -j REJECT --reject-with tcp-reset', `-j REJECT --reject-with ${f === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable'}`]
}

/** multiport takes at most 15 ports per rule. */
function portChunks(ports: readonly number[]): string[] {
  const out: string[] = []
  for (let i = 0; i < ports.length; i += 15) out.push(ports.slice(i, i + 15).join(','))
  return out
}

/**
 * The four chains of one family, each as the rule texts `iptables-save` prints after `-A CHAIN `.
 * Order (see decide() in container-desired.ts): main dispatches quarantine first, then enforce and
 * alert; CTH accepts established traffic, DNS to the sinkhole, then refuses DNS elsewhere and
 * DNS-over-TLS, then accepts learned pairs and profile nets; CTN records and decides.
 * `-g` (goto) makes a RETURN in CTN/CTQ go straight back to DOCKER-USER/FORWARD/INPUT.
 */
export function chainRules(n: CtNames, state: NormalState, f: Fam): Map<string, string[]> {
  const main = [
    `${ms(n.mode('quarantine', f), 'src')} -g ${n.quar}`,
    `${ms(n.mode('enforce', f), 'src')} -g ${n.held}`,
    `${ms(n.mode('alert', f), 'src')} -g ${n.held}`,
  ]
  const quar = [...(f === 6 ? ND : []), ...sinkRules(state, f), `-j SET --add-set ${n.seen('quarantine', f)} src,dst,dst --exist`, ...rejects(f)]
  const held = [
    '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
    ...(f === 6 ? ND : []),
    ...sinkRules(state, f),
    `-p udp -m udp --dport 53 -g ${n.no}`,
    `-p tcp -m tcp --dport 53 -g ${n.no}`,
    `-p tcp -m tcp --dport 853 -g ${n.no}`,
  ]
  for (const h of state.held) {
    if (h.family !== f || h.mode === 'quarantine') continue
    const s = `-s ${host(h.ip, f)}`
    held.push(`${s} ${ms(n.learned('l', h.key), 'dst')} -j RETURN`, `${s} ${ms(n.learned('p', h.key), 'dst,dst')} -j RETURN`)
    for (const net of h.nets) {
      if (!net.ports) held.push(`${s} -d ${net.cidr} -j RETURN`)
      else for (const proto of ['tcp', 'udp']) for (const c of portChunks(net.ports)) held.push(`${s} -d ${net.cidr} -p ${proto} -m multiport --dports ${c} -j RETURN`)
    }
  }
  held.push(`-g ${n.no}`)
  const no = [
    `${ms(n.mode('alert', f), 'src')} -j SET --add-set ${n.seen('alerted', f)} src,dst,dst --exist`,
    `${ms(n.mode('alert', f), 'src')} -j RETURN`,
    `-j SET --add-set ${n.seen('refused', f)} src,dst,dst --exist`,
    ...rejects(f),
  ]
  return new Map([
    [n.main, main],
    [n.quar, quar],
    [n.held, held],
    [n.no, no],
  ])
}

/** The chains our jumps live in: DOCKER-USER when Docker made it (else FORWARD), and INPUT (the sinkhole and the host). */
export function ctHooks(t: FilterTable): string[] {
  return [t.chains.has('DOCKER-USER') ? 'DOCKER-USER' : 'FORWARD', 'INPUT']
}

/**
 * Where our jump belongs in `parent`: right after the leading jumps to the fleet chain (0 or 1 of
 * them), i.e. before any rule that is not egress-guard's. Both chains only RETURN or REJECT, so
 * their order between themselves does not change a verdict; what matters is that both run before
 * Docker's own rules. Returns the 0-based index the jump should have, ignoring our own jumps.
 */
function wantIndex(rules: readonly string[], n: CtNames): number {
  let i = 0
  for (const r of rules) {
    if (r === `-j ${n.main}`) continue
    if (r !== `-j ${n.fleet}`) break
    i++
  }
  return i
}

function ourPositions(rules: readonly string[], n: CtNames): number[] {
  const out: number[] = []
  rules.forEach((r, i) => {
    if (r === `-j ${n.main}`) out.push(i)
  })
  return out
}

/** Is our jump in `parent` once, preceded only by fleet jumps? */
function jumpOk(t: FilterTable, parent: string, n: CtNames): 'ok' | 'missing' | 'misplaced' {
  const rules = t.rules.get(parent) ?? []
  const pos = ourPositions(rules, n)
  if (pos.length === 0) return 'missing'
  if (pos.length > 1) return 'misplaced'
  for (let i = 0; i < pos[0]!; i++) if (rules[i] !== `-j ${n.fleet}`) return 'misplaced'
  return 'ok'
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * `iptables-restore --noflush` body: declare (create or flush) and fill each chain whose rules
 * differ, then place the jumps. Declaring a chain flushes it, so an unchanged chain is left alone.
 * The chains reference each other, so all four are declared before any is filled.
 */
export function planCtRules(t: FilterTable, n: CtNames, want: ReadonlyMap<string, readonly string[]>): { lines: string[]; actions: string[] } {
  const lines: string[] = []
  const actions: string[] = []
  const changed = [...want].filter(([c, rules]) => !t.chains.has(c) || !same(t.rules.get(c) ?? [], rules))
  for (const [c] of changed) lines.push(`:${c} - [0:0]`)
  // A chain that exists and is unchanged is not declared; one referenced by a changed one must exist.
  for (const [c] of want) if (!t.chains.has(c) && !changed.some(([x]) => x === c)) lines.push(`:${c} - [0:0]`)
  for (const [c, rules] of changed) {
    for (const r of rules) lines.push(`-A ${c} ${r}`)
    actions.push(`${t.chains.has(c) ? 'rewrite' : 'create'} chain ${c} (${rules.length} rules)`)
  }
  for (const parent of ctHooks(t)) {
    const st = jumpOk(t, parent, n)
    if (st === 'ok') continue
    const rules = t.rules.get(parent) ?? []
    for (const _ of ourPositions(rules, n)) lines.push(`-D ${parent} -j ${n.main}`)
    lines.push(`-I ${parent} ${wantIndex(rules, n) + 1} -j ${n.main}`)
    actions.push(`${st === 'missing' ? 'insert' : 'move'} jump ${parent} -> ${n.main}`)
  }
  // Docker appeared after we hooked FORWARD: DOCKER-USER carries the jump now.
  if (t.chains.has('DOCKER-USER')) {
    for (const _ of ourPositions(t.rules.get('FORWARD') ?? [], n)) {
      lines.push(`-D FORWARD -j ${n.main}`)
      actions.push(`delete jump FORWARD -> ${n.main} (DOCKER-USER carries it)`)
    }
  }
  return { lines, actions }
}

/** Body that deletes every jump to our chains, then flushes and deletes them; empty when none exist. */
export function removeCtRules(t: FilterTable, n: CtNames): string[] {
  const ours = [n.main, n.quar, n.held, n.no]
  const lines: string[] = []
  for (const [parent, rules] of t.rules) {
    if (ours.includes(parent)) continue
    for (const r of rules) if (ours.some((c) => r === `-j ${c}`)) lines.push(`-D ${parent} ${r}`)
  }
  const present = ours.filter((c) => t.chains.has(c))
  for (const c of present) lines.push(`-F ${c}`)
  for (const c of present) lines.push(`-X ${c}`)
  return lines
}

export function ctRulesDrift(t: FilterTable, n: CtNames, want: ReadonlyMap<string, readonly string[]>, label: string): Drift[] {
  const out: Drift[] = []
  for (const [c, rules] of want) {
    if (!t.chains.has(c)) out.push({ kind: 'chain-missing', detail: `${label}: chain ${c} missing` })
    else if (!same(t.rules.get(c) ?? [], rules)) out.push({ kind: 'chain-rules', detail: `${label}: chain ${c} has ${(t.rules.get(c) ?? []).length} rules that differ from the ${rules.length} expected` })
  }
  for (const parent of ctHooks(t)) {
    const st = jumpOk(t, parent, n)
    if (st === 'missing') out.push({ kind: 'jump-missing', detail: `${label}: no jump ${parent} -> ${n.main}` })
    else if (st === 'misplaced') out.push({ kind: 'jump-not-first', detail: `${label}: jump ${parent} -> ${n.main} is not right after egress-guard's own jumps` })
  }
  return out
}

/**
 * The drain script: swap each seen set with a fresh empty twin (atomic: a packet recorded meanwhile
 * lands in the fresh set and is read next time), print the old contents, destroy them.
 */
export function drainScript(n: CtNames): string {
  const lines: string[] = []
  for (const f of [4, 6] as const) {
    for (const k of SEEN_KINDS) {
      const d = n.drain(k, f)
      // create -exist + flush: a twin left over by a crash is emptied before it is swapped in.
      lines.push(seenCreate(d, f), `flush ${d}`, `swap ${d} ${n.seen(k, f)}`, `save ${d}`, `destroy ${d}`)
    }
  }
  return lines.join('\n') + '\n'
}

/** `add NAME 172.18.0.2,tcp:443,198.51.100.10 timeout 297` lines of drained sets -> events. */
export function parseDrained(n: CtNames, text: string): SeenEvent[] {
  const kinds = new Map<string, SeenKind>()
  for (const f of [4, 6] as const) for (const k of SEEN_KINDS) kinds.set(n.drain(k, f), k)
  const out: SeenEvent[] = []
  for (const line of text.split('\n')) {
    if (!line.startsWith('add ')) continue
    const [, set, member] = line.split(' ')
    const kind = kinds.get(set ?? '')
    if (!kind || !member) continue
    // IPv6 members contain ':' too: the proto:port part is the one between the two commas.
    const [src, pp, dst] = member.split(',')
    if (!src || !pp || !dst) continue
    const colon = pp.indexOf(':')
    const proto = colon < 0 ? pp : pp.slice(0, colon)
    const portText = colon < 0 ? '' : pp.slice(colon + 1)
    const port = /^\d+$/.test(portText) && (proto === 'tcp' || proto === 'udp') ? Number(portText) : undefined
    out.push({ kind, src, dst, proto, ...(port !== undefined ? { port } : {}) })
  }
  return out
}

/** The one-process read of the mode sets (`save` inside `ipset restore`), for diffs and verify. */
export function parseModeMembers(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const line of text.split('\n')) {
    const p = line.split(' ')
    if (p[0] === 'create') out.set(p[1]!, new Set())
    else if (p[0] === 'add') out.get(p[1]!)?.add(p[2]!)
  }
  return out
}

/** Mode set members wanted: address -> its mode's set. */
export function modeMembers(n: CtNames, state: NormalState): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const f of [4, 6] as const) for (const m of ['enforce', 'alert', 'quarantine'] as const) out.set(n.mode(m, f), new Set())
  for (const h of state.held) out.get(n.mode(h.mode, h.family))!.add(h.ip)
  return out
}

/**
 * Lines that move the mode sets from `have` to `want`: adds before deletes, so an address moving
 * between modes is in both for a moment and the stricter one wins (main checks quarantine, then
 * enforce, then alert): it is never unenforced in between.
 */
export function modeEdits(want: ReadonlyMap<string, ReadonlySet<string>>, have: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const adds: string[] = []
  const dels: string[] = []
  for (const [set, members] of want) {
    const h = have.get(set) ?? new Set<string>()
    for (const m of members) if (!h.has(m)) adds.push(`add ${set} ${m}`)
    for (const m of h) if (!members.has(m)) dels.push(`del ${set} ${m}`)
  }
  return [...adds, ...dels]
}
