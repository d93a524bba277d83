// Container egress for the iptables+ipset backend: chains EGRESS-GUARD-CT{,Q,H,N} per family, jumped
// to from DOCKER-USER (else FORWARD) right after the fleet chain's jump and from INPUT; mode and seen
// sets shared by all containers; two learned sets per held address (see container-ipt-text.ts).
// apply() is one `ipset -exist restore` and at most one `iptables-restore --noflush` per family, after
// cheap reads (`ipset list -n`, iptables-save); learned sets are only ever created here and never
// flushed by apply. Learned pairs go through ONE long-lived `ipset restore` (learned-writer.ts).
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors, isEgError } from '../errors.js'
import { run } from './exec.js'
import type { ApplyReport, Drift } from './types.js'
import { detectIptablesFlavour, iptablesTools, type IptablesFlavour } from './tools.js'
import { parseIptablesSave, restoreInput, type FilterTable } from './iptables-rules.js'
import { containerAddress, normalizePairs, normalizeState, PendingPairs, type HeldAddress, type NormalPair, type NormalState } from './container-desired.js'
import type { ContainerEnforcer, ContainerEnforcerOptions, ContainerState, LearnReport, SeenEvent } from './container-types.js'
import {
  chainRules, ctNames, ctRulesDrift, drainScript, learnedSetCreates, learnedSetRe, learnLine, modeEdits, modeMembers,
  learnedSetOf, parseDrained, parseModeMembers, planCtRules, removeCtRules, sharedSetCreates, sharedSetNames, type CtNames, type Fam,
} from './container-ipt-text.js'
import { createAckedWriter, ipsetProtocol, type AckedWriter } from './learned-writer.js'
import { cutFlows } from './conntrack.js'

export interface ContainerIptablesOptions extends ContainerEnforcerOptions {
  logger?: Logger
  flavour?: IptablesFlavour | 'default'
}

export function createContainerIptables(opts: ContainerIptablesOptions = {}): ContainerEnforcer & { readonly names: CtNames; writerPid(): number | undefined } {
  let n: CtNames
  try {
    n = ctNames(opts.namePrefix)
  } catch (e) {
    throw errors.config((e as Error).message)
  }
  const netns = opts.netns
  const tools = iptablesTools(opts.flavour ?? 'default')
  const logger = opts.logger ?? silentLogger
  const log = logger.child({ component: 'container-iptables' })
  const learnedRe = learnedSetRe(n.prefix)
  const pending = new PendingPairs()
  /** The last applied state, by address: learn() writes into these addresses' sets. */
  let byIp = new Map<string, HeldAddress>()
  let last: NormalState | undefined
  /** Mode-set members this process last wrote (the kernel holds these unless drift). */
  let modeKnown: Map<string, Set<string>> | undefined
  let writer: AckedWriter | undefined
  /**
   * Learned sets declared (`create`, a no-op with -exist) in the current writer process. ipset looks
   * a set's type up in the kernel for EVERY line naming a set its session did not create itself (one
   * netlink round trip per line: 64 pairs took ~5 ms instead of ~0.4 ms); a set created in the
   * session is cached. Reset whenever the writer was respawned.
   */
  const declared = new Set<string>()
  let declaredIn = -1
  /** Prefix `create` lines for the sets of `keys` the writer's session has not seen. */
  function declare(keys: Iterable<HeldAddress>): string[] {
    const w = getWriter()
    if (w.stats.spawns !== declaredIn) {
      declared.clear()
      declaredIn = w.stats.spawns
    }
    const out: string[] = []
    for (const h of keys) {
      if (declared.has(h.key)) continue
      declared.add(h.key)
      for (const l of learnedSetCreates(n, h)) out.push(l)
    }
    return out
  }
  // Big batches (a 100,000-pair load) need fewer acks; a DNS answer's pairs are a few lines anyway.
  const getWriter = (): AckedWriter => (writer ??= createAckedWriter(ipsetProtocol(n.ack), { ...(netns !== undefined ? { netns } : {}), logger, maxUnits: 16_384 }))
  /** apply/verify/remove/init run one at a time; learn() does not wait for them (see apply). */
  let lock: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = lock.then(fn, fn)
    lock = p.catch(() => {})
    return p
  }

  const restore = (script: string): Promise<unknown> => run('ipset', ['-exist', 'restore'], { netns, input: script })
  async function setNames(): Promise<Set<string>> {
    return new Set((await run('ipset', ['list', '-n'], { netns })).stdout.split('\n').filter(Boolean))
  }
  async function readTables(): Promise<[FilterTable, FilterTable]> {
    const [a, b] = await Promise.all([run(tools.save4, ['-t', 'filter'], { netns }), run(tools.save6, ['-t', 'filter'], { netns })])
    return [parseIptablesSave(a.stdout), parseIptablesSave(b.stdout)]
  }
  /** Members of the mode sets that exist, in ONE process (`save` lines inside `ipset restore`). */
  async function readModes(names: ReadonlySet<string>): Promise<Map<string, Set<string>>> {
    const sets = [...modeMembers(n, { held: [], sinkhole: { v4: [], v6: [], port: 53 } }).keys()].filter((s) => names.has(s))
    if (sets.length === 0) return new Map()
    return parseModeMembers((await run('ipset', ['restore'], { netns, input: sets.map((s) => `save ${s}`).join('\n') + '\n' })).stdout)
  }

  /**
   * iptables-nft creates the nft base chain (INPUT, FORWARD) the first time a rule goes into it and
   * leaves it empty when our jump is deleted; an empty accept-policy base chain filters nothing and is
   * recreated on demand, so it is deleted (as the fleet backend does for OUTPUT/FORWARD).
   */
  async function dropEmptyHookChains(): Promise<void> {
    if (tools.flavour === 'legacy') return
    if (tools.flavour === 'default' && (await detectIptablesFlavour(netns))?.flavour !== 'nf_tables') return
    const cmds: string[] = []
    for (const fam of ['ip', 'ip6']) {
      const r = await run('nft', ['-j', 'list', 'table', fam, 'filter'], { netns, reject: false }).catch((e) => {
        if (isEgError(e) && e.code === 'EG_MISSING_TOOL') return undefined
        throw e
      })
      if (!r || r.exitCode !== 0) continue
      const items = (JSON.parse(r.stdout) as { nftables?: Record<string, Record<string, unknown>>[] }).nftables ?? []
      const chains = items.filter((i) => i.chain).map((i) => i.chain!)
      const ruled = new Set(items.filter((i) => i.rule).map((i) => String(i.rule!.chain)))
      const empty = chains.filter((c) => ['INPUT', 'FORWARD'].includes(String(c.name)) && c.hook !== undefined && c.policy === 'accept' && !ruled.has(String(c.name)))
      for (const c of empty) cmds.push(`delete chain ${fam} filter ${String(c.name)}`)
      if (empty.length > 0 && empty.length === chains.length) cmds.push(`delete table ${fam} filter`)
    }
    if (cmds.length > 0) await run('nft', ['-f', '-'], { netns, input: cmds.join('\n') + '\n' })
  }

  async function applyNow(state: ContainerState): Promise<ApplyReport> {
    const t0 = performance.now()
    const ns = normalizeState(state)
    const [names, [t4, t6]] = await Promise.all([setNames(), readTables()])
    const actions: string[] = []
    // 1. Sets: shared ones, the learned pair of every held address (create -exist never flushes),
    //    then mode-set edits (adds before deletes).
    // Only missing sets are created: `names` was read just now, and an unchanged state then costs
    // no ipset process at all.
    const script = sharedSetCreates(n).filter((l) => !names.has(l.split(' ')[1]!))
    const wantLearned = new Set<string>()
    for (const h of ns.held) {
      for (const l of learnedSetCreates(n, h)) if (!names.has(l.split(' ')[1]!)) script.push(l)
      wantLearned.add(n.learned('l', h.key)).add(n.learned('p', h.key))
    }
    const created = [...wantLearned].filter((s) => !names.has(s)).length
    if (created > 0) actions.push(`ipset: create ${created} learned sets`)
    const want = modeMembers(n, ns)
    const have = modeKnown ?? (await readModes(names))
    const edits = modeEdits(want, have)
    for (const l of edits) script.push(l)
    if (edits.length > 0) actions.push(`ipset: ${edits.length} mode-set edits`)
    modeKnown = undefined // unknown until the write succeeds
    if (script.length > 0) await restore(script.join('\n') + '\n')
    modeKnown = want
    // 2. Rules, one restore per family (they reference the sets made above).
    await Promise.all(
      ([[4, t4, tools.restore4], [6, t6, tools.restore6]] as const).map(async ([f, t, bin]) => {
        const plan = planCtRules(t, n, chainRules(n, ns, f as Fam))
        const input = restoreInput(plan.lines)
        if (!input) return
        await run(bin, ['--noflush', '--wait=10'], { netns, input })
        for (const a of plan.actions) actions.push(`${f === 4 ? 'iptables' : 'ip6tables'}: ${a}`)
      }),
    )
    // 3. From here learn() writes into the new addresses' sets. Pairs learned before they were
    //    applied, then the learned sets of addresses that left (no rule names them any more) go
    //    through the writer: its queue orders them after every learn() that still used the old map.
    byIp = new Map(ns.held.map((h) => [h.ip, h]))
    last = ns
    const adds: string[] = []
    const touched: HeldAddress[] = []
    const now = Date.now()
    for (const h of ns.held) {
      const ps = pending.take(h.ip, now)
      if (ps.length > 0) touched.push(h)
      for (const p of ps) adds.push(learnLine(learnedSetOf(n, h.key, p), p))
    }
    const departed = [...names].filter((s) => learnedRe.test(s) && !wantLearned.has(s))
    const tail = adds.length > 0 ? [...declare(touched), ...adds] : []
    for (const s of departed) {
      tail.push(`destroy ${s}`)
      declared.delete(s.slice(s.lastIndexOf('-') + 1))
    }
    if (departed.length > 0) actions.push(`ipset: destroy ${departed.length} learned sets of departed addresses`)
    if (tail.length > 0) await getWriter().write(tail)
    const ms = performance.now() - t0
    if (actions.length > 0) log.info({ actions, ms: Math.round(ms) }, 'container rules updated')
    return { backend: 'iptables', changed: actions.length > 0, added: edits.filter((l) => l.startsWith('add')).length, removed: edits.filter((l) => l.startsWith('del')).length, ms, actions }
  }

  return {
    name: 'iptables',
    names: n,
    writerPid: () => writer?.pid,
    init: () =>
      serial(async () => {
        await restore(sharedSetCreates(n).join('\n') + '\n')
      }),
    apply: (state) => serial(() => applyNow(state)),
    verify: () =>
      serial(async (): Promise<Drift[]> => {
        if (!last) return []
        const [names, [t4, t6]] = await Promise.all([setNames(), readTables()])
        const out: Drift[] = []
        for (const s of sharedSetNames(n)) if (!s.includes('-ct-drain-') && !names.has(s)) out.push({ kind: 'set-missing', detail: `set ${s} missing` })
        for (const h of last.held) {
          for (const k of ['l', 'p'] as const) if (!names.has(n.learned(k, h.key))) out.push({ kind: 'set-missing', detail: `learned set ${n.learned(k, h.key)} of ${h.ip} missing` })
        }
        const have = await readModes(names)
        for (const [set, members] of modeMembers(n, last)) {
          const h = have.get(set)
          if (h && (h.size !== members.size || [...members].some((m) => !h.has(m)))) out.push({ kind: 'set-members', detail: `set ${set}: members differ from the applied state` })
        }
        out.push(...ctRulesDrift(t4, n, chainRules(n, last, 4), 'iptables'), ...ctRulesDrift(t6, n, chainRules(n, last, 6), 'ip6tables'))
        if (out.length > 0) modeKnown = undefined // the repair apply reads the kernel
        for (const d of out) log.warn({ drift: d.kind }, d.detail)
        return out
      }),
    remove: () =>
      serial(async () => {
        if (writer) await writer.close()
        writer = undefined
        declared.clear()
        const [t4, t6] = await readTables()
        for (const [t, bin] of [[t4, tools.restore4], [t6, tools.restore6]] as const) {
          const input = restoreInput(removeCtRules(t, n))
          if (input) await run(bin, ['--noflush', '--wait=10'], { netns, input })
        }
        await dropEmptyHookChains()
        const names = await setNames()
        const doomed = [...names].filter((s) => learnedRe.test(s) || sharedSetNames(n).includes(s))
        if (doomed.length > 0) await restore(doomed.map((s) => `destroy ${s}`).join('\n') + '\n')
        byIp = new Map()
        last = undefined
        modeKnown = undefined
        log.info({ sets: doomed.length }, 'container rules and sets removed')
      }),
    async learn(pairs): Promise<LearnReport> {
      const np = normalizePairs(pairs)
      // Grouped by set: ipset sends consecutive adds to one set in one netlink message, and each
      // change of set flushes one (alternating sets cost ~50% more CPU for 100,000 pairs).
      const bySet = new Map<string, NormalPair[]>()
      let written = 0
      let deferred = 0
      const now = Date.now()
      for (const p of np) {
        const h = byIp.get(p.ip)
        if (!h) {
          pending.add(p, now)
          deferred++
          continue
        }
        const k = p.port === undefined ? `l${h.key}` : `p${h.key}`
        let list = bySet.get(k)
        if (!list) bySet.set(k, (list = []))
        list.push(p)
        written++
      }
      if (written > 0) {
        const lines = declare(new Set([...bySet.keys()].map((k) => byIp.get(bySet.get(k)![0]!.ip)!)))
        for (const [k, list] of bySet) {
          const set = n.learned(k[0] as 'l' | 'p', k.slice(1))
          for (const p of list) lines.push(learnLine(set, p))
        }
        await getWriter().write(lines)
      }
      return { written, deferred }
    },
    async forget(ip) {
      const a = containerAddress(ip)
      pending.drop(a.ip)
      const h = byIp.get(a.ip)
      if (h) await getWriter().write([`flush ${n.learned('l', h.key)}`, `flush ${n.learned('p', h.key)}`])
    },
    async cut(ip) {
      const a = containerAddress(ip)
      const deleted = await cutFlows(a.ip, a.family, netns)
      log.info({ ip: a.ip, deleted }, 'conntrack entries deleted')
    },
    async seen(): Promise<SeenEvent[]> {
      const r = await run('ipset', ['-exist', 'restore'], { netns, input: drainScript(n) })
      return parseDrained(n, r.stdout)
    },
    async close() {
      if (writer) await writer.close()
      writer = undefined
      declared.clear()
    },
  }
}
