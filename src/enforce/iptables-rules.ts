// Pure text generation for the iptables side: the EGRESS-GUARD chain's rules (in the exact form
// iptables-save prints them, so a read-back compares as text), parsing `iptables-save -t filter`,
// the `iptables-restore --noflush` input that installs the chain and its jumps, and drift detection.
import type { Drift } from './types.js'

export type Fam = 4 | 6

export interface ChainSpec {
  chain: string
  family: Fam
  /** `exempt`: the control-plane set (hash:ip,port); matched first, see chainRules. */
  sets: { exempt: string; allow: string; block: string; alert: string }
  /** Log rejected packets (rate limited). Alert packets are always logged (rate limited). */
  log: boolean
  /** Text at the start of log lines; iptables allows 29 characters. */
  logPrefix: string
}

/** One LOG line per 6 seconds per rule after a burst of 5 (iptables' default burst, so save omits it). */
const LIMIT = '-m limit --limit 10/min'

function quoteLogPrefix(p: string): string {
  // iptables-save quotes the prefix; keep it to characters that need no escaping.
  return `"${p.replace(/[^A-Za-z0-9 _:.-]/g, '').slice(0, 29)}"`
}

/**
 * The chain's rules, in order, as `iptables-save` prints them after `-A CHAIN `.
 * First the control-plane exemption: a packet to the agent's server, its DNS upstreams or its sinkhole
 * (address, protocol and destination port all matching, `dst,dst`) returns before any policy set is
 * looked at, so no entry, however broad or forced, cuts the host off the server that can undo it.
 * Then the policy's precedence: allow returns first (wins over any overlapping block or alert),
 * then block rejects (TCP gets a reset so clients fail fast; everything else an ICMP port
 * unreachable), then alert: a rate-limited LOG and an unconditional RETURN whose counter counts every
 * alert packet. Alert never rejects; block before alert so an alert network cannot shadow a block
 * inside it.
 */
export function chainRules(s: ChainSpec): string[] {
  const m = (set: string): string => `-m set --match-set ${set} dst`
  const unreach = s.family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable'
  const rules = [`-m set --match-set ${s.sets.exempt} dst,dst -j RETURN`, `${m(s.sets.allow)} -j RETURN`]
  if (s.log) rules.push(`${m(s.sets.block)} ${LIMIT} -j LOG --log-prefix ${quoteLogPrefix(`${s.logPrefix} block: `)}`)
  rules.push(
    `-p tcp ${m(s.sets.block)} -j REJECT --reject-with tcp-reset`,
    `${m(s.sets.block)} -j REJECT --reject-with ${unreach}`,
    `${m(s.sets.alert)} ${LIMIT} -j LOG --log-prefix ${quoteLogPrefix(`${s.logPrefix} alert: `)}`,
    `${m(s.sets.alert)} -j RETURN`,
  )
  return rules
}

export interface FilterTable {
  /** Chains declared in the table (built-in and user). */
  chains: Set<string>
  /** Rules per chain, each the text after `-A CHAIN `. */
  rules: Map<string, string[]>
}

/** Parse the `*filter` section of `iptables-save` output. An absent table parses as empty. */
export function parseIptablesSave(text: string): FilterTable {
  const chains = new Set<string>()
  const rules = new Map<string, string[]>()
  let inFilter = false
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) inFilter = line === '*filter'
    else if (!inFilter) continue
    else if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0]!
      chains.add(name)
      if (!rules.has(name)) rules.set(name, [])
    } else if (line.startsWith('-A ')) {
      const sp = line.indexOf(' ', 3)
      const name = line.slice(3, sp)
      const list = rules.get(name) ?? []
      list.push(line.slice(sp + 1))
      rules.set(name, list)
    }
  }
  return { chains, rules }
}

/** Where the chain is jumped to from: OUTPUT (host processes) and DOCKER-USER when Docker made it, else FORWARD. */
export function hookChains(t: FilterTable): string[] {
  return ['OUTPUT', t.chains.has('DOCKER-USER') ? 'DOCKER-USER' : 'FORWARD']
}

function jumpPositions(t: FilterTable, parent: string, chain: string): number[] {
  const jump = `-j ${chain}`
  const out: number[] = []
  ;(t.rules.get(parent) ?? []).forEach((r, i) => {
    if (r === jump) out.push(i)
  })
  return out
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * The body of an `iptables-restore --noflush` input (without `*filter`/`COMMIT`) that makes the
 * chain hold exactly `want` and be jumped to first, once, from each hook chain. Empty when the kernel
 * already matches, so a second apply writes nothing and keeps the counters.
 * In --noflush mode a `:CHAIN - [0:0]` line creates the chain or flushes it if it exists; built-in and
 * Docker's chains are never declared, so they are never flushed.
 */
export function planRules(t: FilterTable, chain: string, want: readonly string[]): { lines: string[]; actions: string[] } {
  const lines: string[] = []
  const actions: string[] = []
  const have = t.rules.get(chain)
  if (!t.chains.has(chain) || !have || !sameList(have, want)) {
    lines.push(`:${chain} - [0:0]`, ...want.map((r) => `-A ${chain} ${r}`))
    actions.push(t.chains.has(chain) ? `rewrite chain ${chain} (${want.length} rules)` : `create chain ${chain} (${want.length} rules)`)
  }
  const hooks = hookChains(t)
  for (const parent of hooks) {
    const pos = jumpPositions(t, parent, chain)
    if (pos.length === 1 && pos[0] === 0) continue
    for (let i = 0; i < pos.length; i++) lines.push(`-D ${parent} -j ${chain}`)
    lines.push(`-I ${parent} 1 -j ${chain}`)
    actions.push(pos.length === 0 ? `insert jump ${parent} -> ${chain} at 1` : `move jump ${parent} -> ${chain} to 1`)
  }
  // Docker appeared after we hooked FORWARD: DOCKER-USER carries the jump now, FORWARD's is redundant.
  if (hooks[1] === 'DOCKER-USER') {
    for (const _ of jumpPositions(t, 'FORWARD', chain)) {
      lines.push(`-D FORWARD -j ${chain}`)
      actions.push(`delete jump FORWARD -> ${chain} (DOCKER-USER carries it)`)
    }
  }
  return { lines, actions }
}

/** Input body that deletes every jump to the chain, then the chain itself; empty when none exist. */
export function removeRules(t: FilterTable, chain: string): string[] {
  const lines: string[] = []
  for (const [parent] of t.rules) {
    if (parent === chain) continue
    for (const _ of jumpPositions(t, parent, chain)) lines.push(`-D ${parent} -j ${chain}`)
  }
  if (t.chains.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`)
  return lines
}

/** Chain and jump drift for one family. */
export function rulesDrift(t: FilterTable, chain: string, want: readonly string[], label: string): Drift[] {
  const out: Drift[] = []
  if (!t.chains.has(chain)) out.push({ kind: 'chain-missing', detail: `${label}: chain ${chain} missing` })
  else {
    const have = t.rules.get(chain) ?? []
    if (!sameList(have, want)) {
      out.push({ kind: 'chain-rules', detail: have.length === 0 ? `${label}: chain ${chain} flushed` : `${label}: chain ${chain} has ${have.length} rules that differ from the ${want.length} expected` })
    }
  }
  for (const parent of hookChains(t)) {
    const pos = jumpPositions(t, parent, chain)
    if (pos.length === 0) out.push({ kind: 'jump-missing', detail: `${label}: no jump ${parent} -> ${chain}` })
    else if (pos[0] !== 0) out.push({ kind: 'jump-not-first', detail: `${label}: jump ${parent} -> ${chain} is rule ${pos[0]! + 1}, not 1` })
    else if (pos.length > 1) out.push({ kind: 'chain-rules', detail: `${label}: ${pos.length} jumps ${parent} -> ${chain}` })
  }
  return out
}

/** Wrap a body in the table header and COMMIT; undefined when there is nothing to write. */
export function restoreInput(body: readonly string[]): string | undefined {
  return body.length === 0 ? undefined : ['*filter', ...body, 'COMMIT', ''].join('\n')
}
