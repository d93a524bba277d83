// The iptables+ipset backend: six hash:net sets (block/alert/allow x IPv4/IPv6), two hash:ip,port sets
// of control-plane endpoints (ctl4/ctl6, exempt before everything) and an EGRESS-GUARD chain for
// iptables and ip6tables, jumped to first from OUTPUT and DOCKER-USER (else FORWARD).
// A full apply is one `ipset restore` plus at most one `iptables-restore --noflush` per family, fed on
// stdin, after reads (ipset list -t / save, iptables-save) that decide what must be written; a member
// edit on top of state this process wrote is ONE `ipset -exist restore` and no reads (see fastApply).
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors, isEgError } from '../errors.js'
import { run } from './exec.js'
import { mergeReports, type ApplyReport, type DesiredState, type Drift, type Enforcer, type EnforcerOptions } from './types.js'
import { detectIptablesFlavour, iptablesTools, type IptablesFlavour, type IptablesTools } from './tools.js'
import {
  SET_KEYS, SET_NAME_MAX, ownedSetNames, parseIpsetSave, parseIpsetTerse, planSet, setName, setSize, setType, tempSetName,
  type SetHeader, type SetKey, type SetPlan,
} from './ipset-script.js'
import { chainRules, parseIptablesSave, planRules, removeRules, restoreInput, rulesDrift, type Fam, type FilterTable } from './iptables-rules.js'

export interface IptablesOptions extends EnforcerOptions {
  logger?: Logger
  /** Which iptables binaries to use; default: the system's `iptables` (the one Docker uses). */
  flavour?: IptablesFlavour | 'default'
}

const PREFIX_RE = /^[a-z0-9][a-z0-9_-]*$/i

/** Validate the name prefix once: it ends up in set and chain names, so it must fit and be plain. */
export function resolveNames(namePrefix: string | undefined): { prefix: string; chain: string } {
  const prefix = namePrefix ?? 'egress-guard'
  // Longest set name is `${prefix}-alert4-t` (9 more characters); chains allow 28.
  if (!PREFIX_RE.test(prefix) || prefix.length + 9 > SET_NAME_MAX) {
    throw errors.config(`name prefix ${JSON.stringify(prefix)} must match ${PREFIX_RE} and be at most ${SET_NAME_MAX - 9} characters`)
  }
  return { prefix, chain: prefix.toUpperCase() }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const NONE: readonly string[] = []

function members(d: DesiredState, key: SetKey): readonly string[] {
  const role = key.slice(0, -1) as 'block' | 'alert' | 'allow' | 'ctl'
  const sets = role === 'ctl' ? d.exempt : d[role]
  if (!sets) return NONE
  return key.endsWith('4') ? sets.v4 : sets.v6
}

/** Per live set: the members this process last wrote, their Set (built lazily) and the set's maxelem. */
interface Known {
  list: readonly string[]
  set?: Set<string>
  maxelem: number
}

export function createIptablesEnforcer(opts: IptablesOptions = {}): Enforcer & { readonly tools: IptablesTools } {
  const { prefix, chain } = resolveNames(opts.namePrefix)
  const tools = iptablesTools(opts.flavour ?? 'default')
  const log = (opts.logger ?? silentLogger).child({ component: 'enforce-iptables' })
  const netns = opts.netns
  const names = new Map(SET_KEYS.map((k) => [k, setName(prefix, k)]))
  const owned = new Set(ownedSetNames(prefix))
  /** Last state written (or confirmed). */
  let last: DesiredState | undefined
  /**
   * Per live set, the member list this process last wrote (the kernel holds exactly these) and a Set
   * of it, built only when a diff needs one: a full apply of 100,000 entries does not pay for a Set
   * that an identical next apply would not use. Dropped whenever the kernel may disagree.
   */
  let known: Map<string, Known> | undefined
  /**
   * True while the kernel is believed to hold exactly what this process last wrote: every set (with
   * the maxelem in `known`), the chains and the jumps. Set by a full reconcile that succeeded; cleared
   * by init, by any drift verify() finds, by a failed write and by remove().
   */
  let trusted = false
  /**
   * What init() created (sets, chains, jumps), reported by the next apply: init runs first and its
   * own report has no caller, so a first apply in a fresh namespace said "unchanged" after creating
   * everything.
   */
  let initReport: ApplyReport | undefined

  const specFor = (family: Fam): string[] =>
    chainRules({
      chain,
      family,
      sets: { exempt: names.get(`ctl${family}`)!, allow: names.get(`allow${family}`)!, block: names.get(`block${family}`)!, alert: names.get(`alert${family}`)! },
      log: opts.log ?? false,
      logPrefix: prefix,
    })

  async function readHeaders(): Promise<Map<string, SetHeader>> {
    return parseIpsetTerse((await run('ipset', ['list', '-t'], { netns })).stdout)
  }
  async function readMembers(): Promise<Map<string, Set<string>>> {
    const saved = parseIpsetSave((await run('ipset', ['save'], { netns })).stdout, owned)
    return new Map([...saved].map(([n, s]) => [n, new Set(s.members)]))
  }
  async function readTables(): Promise<[FilterTable, FilterTable]> {
    const [a, b] = await Promise.all([
      run(tools.save4, ['-t', 'filter'], { netns }),
      run(tools.save6, ['-t', 'filter'], { netns }),
    ])
    return [parseIptablesSave(a.stdout), parseIptablesSave(b.stdout)]
  }

  /** Record what the kernel now holds after `desired` was written with `plans`. */
  function remember(desired: DesiredState, plans: ReadonlyMap<string, SetPlan>, maxelemOf: (k: SetKey, p: SetPlan | undefined) => number): void {
    last = desired
    const next = new Map<string, Known>()
    for (const k of SET_KEYS) {
      const name = names.get(k)!
      const p = plans.get(name)
      const set = known?.get(name)?.set
      const list = members(desired, k).slice()
      const maxelem = maxelemOf(k, p)
      // An incremental edit updates the Set we already hold; otherwise it is rebuilt when needed.
      if (set && p?.mode === 'incremental' && p.adds && p.dels) {
        for (const m of p.dels) set.delete(m)
        for (const m of p.adds) set.add(m)
        next.set(name, { list, set, maxelem })
      } else if (set && p?.mode === 'none') next.set(name, { list, set, maxelem })
      else next.set(name, { list, maxelem })
    }
    known = next
  }

  /**
   * The one-process path: when this process wrote the current kernel state (trusted) and every set's
   * change is a small edit that fits its maxelem, write only the `del`/`add` lines in ONE
   * `ipset -exist restore`, with no read-back (a 100,000-entry policy edit costs one process start,
   * not four). Chains and jumps cannot need a change: they depend only on the set names and options,
   * fixed per enforcer. External drift (an admin flushing a set, a reboot, Docker rewriting
   * FORWARD) is NOT seen here by design: the controller's periodic verify() (reconcile loop in
   * controller.ts) reads the kernel back, clears `trusted` on any drift, and its repair apply then
   * takes the full path. Returns undefined when the full path is needed (first apply, after drift, a
   * set that must grow or be rebuilt); `-exist` makes a re-sent add/del harmless.
   */
  async function fastApply(desired: DesiredState): Promise<ApplyReport | undefined> {
    if (!trusted || !known) return undefined
    const t0 = performance.now()
    const plans = new Map<string, SetPlan>()
    const script: string[] = []
    const actions: string[] = []
    let added = 0
    let removed = 0
    for (const k of SET_KEYS) {
      const name = names.get(k)!
      const kn = known.get(name)
      if (!kn) return undefined
      const want = members(desired, k)
      if (sameList(kn.list, want)) {
        plans.set(name, { name, mode: 'none', added: 0, removed: 0, lines: [] })
        continue
      }
      kn.set ??= new Set(kn.list)
      const fam = k.endsWith('4') ? 4 : 6
      const plan = planSet({
        name,
        temp: tempSetName(prefix, k),
        family: fam,
        type: setType(k),
        desired: want,
        live: { name, type: setType(k), family: fam === 4 ? 'inet' : 'inet6', hashsize: 0, maxelem: kn.maxelem },
        liveMembers: kn.set,
        prevList: kn.list,
        tempExists: false,
      })
      if (plan.mode !== 'none' && plan.mode !== 'incremental') return undefined
      plans.set(name, plan)
      if (plan.lines.length === 0) continue
      for (const l of plan.lines) script.push(l)
      added += plan.added
      removed += plan.removed
      actions.push(`ipset ${name}: ${plan.mode} +${plan.added} -${plan.removed}`)
    }
    if (script.length > 0) {
      try {
        await run('ipset', ['-exist', 'restore'], { netns, input: script.join('\n') + '\n' })
      } catch (e) {
        // E.g. a set destroyed behind our back: forget what we believed and let the full path
        // read the kernel and rebuild (a missing tool fails there again, with the same error).
        log.warn({ err: (e as Error).message }, 'incremental ipset edit failed: falling back to a full apply')
        known = undefined
        trusted = false
        return undefined
      }
    }
    remember(desired, plans, (k) => known!.get(names.get(k)!)!.maxelem)
    const ms = performance.now() - t0
    if (actions.length > 0) log.info({ actions, added, removed, ms: Math.round(ms) }, 'kernel updated')
    return { backend: 'iptables', changed: actions.length > 0, added, removed, ms, actions }
  }

  /** Sets first (rules reference them), then one restore per family for chain + jumps. */
  async function reconcile(desired: DesiredState | undefined): Promise<ApplyReport> {
    const t0 = performance.now()
    const actions: string[] = []
    let added = 0
    let removed = 0
    const [headers, [t4, t6]] = await Promise.all([readHeaders(), readTables()])
    // Trust the in-memory members only when every set still exists with the count we left it at;
    // otherwise read the kernel's members (one `ipset save`, skipped when none of our sets exist).
    let fromKernel: Map<string, Set<string>> | undefined
    const ours = SET_KEYS.filter((k) => headers.has(names.get(k)!))
    if (desired && (!known || SET_KEYS.some((k) => headers.get(names.get(k)!)?.entries !== known!.get(names.get(k)!)?.list.length))) {
      fromKernel = ours.length > 0 ? await readMembers() : new Map()
      known = undefined
    }
    const script: string[] = []
    const plans = new Map<string, SetPlan>()
    for (const k of SET_KEYS) {
      const name = names.get(k)!
      const hdr = headers.get(name)
      if (!desired && hdr) continue // init: only create what is missing
      const want = desired ? members(desired, k) : []
      const kn = known?.get(name)
      const tempExists = headers.has(tempSetName(prefix, k))
      if (hdr && kn && !tempExists && sameList(kn.list, want)) {
        plans.set(name, { name, mode: 'none', added: 0, removed: 0, lines: [] }) // the common case: nothing changed, no hashing at all
        continue
      }
      if (kn) kn.set ??= new Set(kn.list)
      const plan = planSet({
        name,
        temp: tempSetName(prefix, k),
        family: k.endsWith('4') ? 4 : 6,
        type: setType(k),
        desired: want,
        live: hdr,
        liveMembers: kn ? kn.set : fromKernel?.get(name),
        ...(kn ? { prevList: kn.list } : {}),
        tempExists,
      })
      plans.set(name, plan)
      if (plan.lines.length === 0) continue
      for (const l of plan.lines) script.push(l) // not push(...lines): 100,000 arguments overflow the stack
      added += plan.added
      removed += plan.removed
      actions.push(`ipset ${name}: ${plan.mode} +${plan.added} -${plan.removed}`)
    }
    const writeSets = async (): Promise<void> => {
      if (script.length > 0) await run('ipset', ['-exist', 'restore'], { netns, input: script.join('\n') + '\n' })
    }
    // --wait: legacy iptables takes the xtables lock; Docker may hold it for a moment.
    const writeRules = (): Promise<void>[] =>
      ([[4, t4, tools.restore4], [6, t6, tools.restore6]] as const).map(async ([fam, table, bin]) => {
        const plan = planRules(table, chain, specFor(fam))
        const input = restoreInput(plan.lines)
        if (!input) return
        await run(bin, ['--noflush', '--wait=10'], { netns, input })
        actions.push(...plan.actions.map((a) => `${fam === 4 ? 'iptables' : 'ip6tables'}: ${a}`))
      })
    // Rules name the sets, so sets come first unless every set already exists; v4 and v6 rules are
    // independent of each other.
    try {
      if (ours.length === SET_KEYS.length) await Promise.all([writeSets(), ...writeRules()])
      else {
        await writeSets()
        await Promise.all(writeRules())
      }
    } catch (e) {
      known = undefined // a restore that failed half-way: the next apply reads the kernel back
      trusted = false
      throw e
    }
    if (desired) {
      // A created or swapped set has the size planSet chose; an edited one keeps the live header's.
      const maxelemOf = (k: SetKey, p: SetPlan | undefined): number =>
        p && (p.mode === 'create' || p.mode === 'swap') ? setSize(members(desired, k).length).maxelem : (headers.get(names.get(k)!)?.maxelem ?? 0)
      remember(desired, plans, maxelemOf)
      trusted = true
    }
    const ms = performance.now() - t0
    if (actions.length > 0) log.info({ actions, added, removed, ms: Math.round(ms) }, 'kernel updated')
    return { backend: 'iptables', changed: actions.length > 0, added, removed, ms, actions }
  }

  /**
   * iptables-nft creates the nft base chain for OUTPUT/FORWARD the first time a rule goes into it;
   * deleting our jump leaves it empty. An empty base chain with policy accept filters nothing, and
   * iptables-nft recreates it on demand, so deleting it (and a table left with no chains) restores
   * `nft list ruleset` to what it was before we hooked in. Chains with rules or a drop policy
   * (Docker's FORWARD) are never touched. Legacy iptables has no such artefact.
   */
  async function dropEmptyHookChains(): Promise<void> {
    if (tools.flavour === 'legacy') return
    if (tools.flavour === 'default' && (await detectIptablesFlavour(netns))?.flavour !== 'nf_tables') return
    const cmds: string[] = []
    for (const fam of ['ip', 'ip6']) {
      let text: string
      try {
        const r = await run('nft', ['-j', 'list', 'table', fam, 'filter'], { netns, reject: false })
        if (r.exitCode !== 0) continue
        text = r.stdout
      } catch (e) {
        if (isEgError(e) && e.code === 'EG_MISSING_TOOL') return
        throw e
      }
      const items = (JSON.parse(text) as { nftables?: Record<string, Record<string, unknown>>[] }).nftables ?? []
      const chains = items.filter((i) => i.chain).map((i) => i.chain!)
      const ruled = new Set(items.filter((i) => i.rule).map((i) => String(i.rule!.chain)))
      const empty = chains.filter((c) => ['OUTPUT', 'FORWARD'].includes(String(c.name)) && c.hook !== undefined && c.policy === 'accept' && !ruled.has(String(c.name)))
      for (const c of empty) cmds.push(`delete chain ${fam} filter ${String(c.name)}`)
      if (empty.length > 0 && empty.length === chains.length) cmds.push(`delete table ${fam} filter`)
    }
    if (cmds.length > 0) await run('nft', ['-f', '-'], { netns, input: cmds.join('\n') + '\n' })
  }

  return {
    name: 'iptables',
    tools,
    async init() {
      trusted = false // init may create sets that `known` does not describe
      const r = await reconcile(undefined)
      if (r.changed) initReport = mergeReports(initReport, r)
    },
    async apply(desired) {
      const r = (await fastApply(desired)) ?? (await reconcile(desired))
      const out = mergeReports(initReport, r)
      initReport = undefined
      return out
    },
    async verify() {
      const drift: Drift[] = []
      const [headers, [t4, t6]] = await Promise.all([readHeaders(), readTables()])
      const missing = SET_KEYS.filter((k) => !headers.has(names.get(k)!))
      for (const k of missing) drift.push({ kind: 'set-missing', detail: `ipset ${names.get(k)} missing` })
      if (last) {
        const live = await readMembers()
        for (const k of SET_KEYS) {
          const name = names.get(k)!
          const have = live.get(name)
          if (!have) continue
          const want = members(last, k)
          const wantSet = new Set(want)
          let extra = 0
          for (const m of have) if (!wantSet.has(m)) extra++
          const lacking = want.filter((m) => !have.has(m)).length
          if (extra + lacking > 0) drift.push({ kind: 'set-members', detail: `ipset ${name}: ${lacking} missing, ${extra} unexpected` })
        }
        // The cache no longer describes the kernel: make the next apply read it back.
        if (drift.length > 0) known = undefined
      }
      drift.push(...rulesDrift(t4, chain, specFor(4), 'iptables'), ...rulesDrift(t6, chain, specFor(6), 'ip6tables'))
      // Any drift (sets, chains or jumps): the next apply takes the full, reading path and repairs it.
      if (drift.length > 0) trusted = false
      for (const d of drift) log.warn({ drift: d.kind }, d.detail)
      return drift
    },
    async remove() {
      trusted = false // before anything: a remove() that fails half-way leaves unknown state
      initReport = undefined
      // Jumps and chains first: a set referenced by a rule cannot be destroyed.
      const [t4, t6] = await readTables()
      for (const [table, bin] of [[t4, tools.restore4], [t6, tools.restore6]] as const) {
        const input = restoreInput(removeRules(table, chain))
        if (input) await run(bin, ['--noflush', '--wait=10'], { netns, input })
      }
      await dropEmptyHookChains()
      const headers = await readHeaders()
      const destroy = [...owned].filter((n) => headers.has(n)).map((n) => `destroy ${n}`)
      if (destroy.length > 0) await run('ipset', ['restore'], { netns, input: destroy.join('\n') + '\n' })
      last = undefined
      known = undefined
      trusted = false
      log.info({ sets: destroy.length }, 'removed chain, jumps and sets')
    },
  }
}
