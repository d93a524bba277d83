// The iptables+ipset backend: six hash:net sets (block/alert/allow x IPv4/IPv6) and an EGRESS-GUARD
// chain for iptables and ip6tables, jumped to first from OUTPUT and DOCKER-USER (else FORWARD).
// Each change is one `ipset restore` plus at most one `iptables-restore --noflush` per family, fed on
// stdin; reads (ipset list -t / save, iptables-save) decide what, if anything, must be written.
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors, isEgError } from '../errors.js'
import { run } from './exec.js'
import type { ApplyReport, DesiredState, Drift, Enforcer, EnforcerOptions } from './types.js'
import { detectIptablesFlavour, iptablesTools, type IptablesFlavour, type IptablesTools } from './tools.js'
import {
  SET_KEYS, SET_NAME_MAX, ownedSetNames, parseIpsetSave, parseIpsetTerse, planSet, setName, tempSetName,
  type SetHeader, type SetKey,
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

function members(d: DesiredState, key: SetKey): string[] {
  const role = key.slice(0, -1) as 'block' | 'alert' | 'allow'
  return key.endsWith('4') ? d[role].v4 : d[role].v6
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
  let known: Map<string, { list: readonly string[]; set?: Set<string> }> | undefined

  const specFor = (family: Fam): string[] =>
    chainRules({
      chain,
      family,
      sets: { allow: names.get(`allow${family}`)!, block: names.get(`block${family}`)!, alert: names.get(`alert${family}`)! },
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
    const plans = new Map<string, { mode: string; adds?: string[]; dels?: string[] }>()
    for (const k of SET_KEYS) {
      const name = names.get(k)!
      const hdr = headers.get(name)
      if (!desired && hdr) continue // init: only create what is missing
      const want = desired ? members(desired, k) : []
      const kn = known?.get(name)
      const tempExists = headers.has(tempSetName(prefix, k))
      if (hdr && kn && !tempExists && sameList(kn.list, want)) {
        plans.set(name, { mode: 'none' }) // the common case: nothing changed, no hashing at all
        continue
      }
      if (kn) kn.set ??= new Set(kn.list)
      const plan = planSet({
        name,
        temp: tempSetName(prefix, k),
        family: k.endsWith('4') ? 4 : 6,
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
      throw e
    }
    if (desired) {
      last = desired
      const next = new Map<string, { list: readonly string[]; set?: Set<string> }>()
      for (const k of SET_KEYS) {
        const name = names.get(k)!
        const p = plans.get(name)
        const set = known?.get(name)?.set
        const list = members(desired, k).slice()
        // An incremental edit updates the Set we already hold; otherwise it is rebuilt when needed.
        if (set && p?.mode === 'incremental' && p.adds && p.dels) {
          for (const m of p.dels) set.delete(m)
          for (const m of p.adds) set.add(m)
          next.set(name, { list, set })
        } else if (set && p?.mode === 'none') next.set(name, { list, set })
        else next.set(name, { list })
      }
      known = next
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
      await reconcile(undefined)
    },
    async apply(desired) {
      return reconcile(desired)
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
      for (const d of drift) log.warn({ drift: d.kind }, d.detail)
      return drift
    },
    async remove() {
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
      log.info({ sets: destroy.length }, 'removed chain, jumps and sets')
    },
  }
}
