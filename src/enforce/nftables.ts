// The nftables backend: one table of its own (`inet egress_guard`) with twelve policy sets (per role
// and family: a hash set of addresses and an interval set of networks, see nft-script.ts), two sets of
// control-plane endpoints exempt before them (ctl4/ctl6), a guard chain
// and two base chains hooked on output and forward at priority filter - 10 (before Docker's
// iptables-nft rules at filter). Every change is ONE `nft -f -` transaction; verify() reads
// `nft -j list table` back; remove() deletes the table and nothing else.
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors } from '../errors.js'
import { run } from './exec.js'
import { mergeReports, type ApplyReport, type DesiredState, type Enforcer, type EnforcerOptions } from './types.js'
import { nftDrift, parseNftJson, planElements, planNft, tableName, type LiveTable } from './nft-script.js'

export interface NftablesOptions extends EnforcerOptions {
  logger?: Logger
}

const EMPTY: DesiredState = { version: 0, block: { v4: [], v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] } }

export function createNftablesEnforcer(opts: NftablesOptions = {}): Enforcer {
  const prefix = opts.namePrefix ?? 'egress-guard'
  if (!/^[a-z][a-z0-9_-]{0,30}$/i.test(prefix)) throw errors.config(`name prefix ${JSON.stringify(prefix)} is not a valid nft table name`)
  const table = tableName(prefix)
  const netns = opts.netns
  const logOn = opts.log ?? false
  const log = (opts.logger ?? silentLogger).child({ component: 'enforce-nftables' })
  let last: DesiredState | undefined
  /**
   * The set contents this process last wrote, while the kernel is believed to hold exactly that (and
   * the chains): apply() then writes only the element changes, with no read at all (listing the
   * table makes nft 1.0.6 fetch every element, ~0.5 s for 100,000). External drift is not seen on
   * that path by design: the controller's periodic verify() (controller.ts reconcile loop) reads
   * everything back and drops the cache on any drift, and its repair apply then takes the full path.
   */
  let cache: LiveTable['sets'] | undefined
  /** What init() created, reported by the next apply (see the iptables backend). */
  let initReport: ApplyReport | undefined

  async function readLive(): Promise<LiveTable> {
    const r = await run('nft', ['-j', 'list', 'table', 'inet', table], { netns, reject: false })
    if (r.exitCode !== 0) {
      // "No such file or directory" is how nft says the table does not exist.
      if (/No such file|does not exist/i.test(r.stderr)) return parseNftJson('')
      throw errors.exec(`nft -j list table inet ${table} exited ${r.exitCode}: ${r.stderr.trim()}`)
    }
    return parseNftJson(r.stdout)
  }

  async function write(desired: DesiredState, live: LiveTable): Promise<ApplyReport> {
    const t0 = performance.now()
    const plan = planNft(table, live, desired, logOn, prefix)
    cache = undefined // a write that fails half-way leaves unknown state
    if (plan.script) await run('nft', ['-f', '-'], { netns, input: plan.script })
    cache = plan.sets
    const ms = performance.now() - t0
    if (plan.script) log.info({ actions: plan.actions, added: plan.added, removed: plan.removed, ms: Math.round(ms) }, 'kernel updated')
    return { backend: 'nftables', changed: plan.script !== undefined, added: plan.added, removed: plan.removed, ms, actions: plan.actions }
  }

  /** The read-free path (see `cache`); undefined when the full path is needed. */
  async function fastApply(desired: DesiredState): Promise<ApplyReport | undefined> {
    if (!cache) return undefined
    const t0 = performance.now()
    const plan = planElements(table, cache, desired)
    if (!plan) return undefined
    if (plan.script) {
      try {
        await run('nft', ['-f', '-'], { netns, input: plan.script })
      } catch (e) {
        // A table or set removed behind our back: forget the cache, read and rebuild.
        log.warn({ err: (e as Error).message }, 'incremental nft edit failed: falling back to a full apply')
        cache = undefined
        return undefined
      }
    }
    cache = plan.sets
    const ms = performance.now() - t0
    if (plan.script) log.info({ actions: plan.actions, added: plan.added, removed: plan.removed, ms: Math.round(ms) }, 'kernel updated')
    return { backend: 'nftables', changed: plan.script !== undefined, added: plan.added, removed: plan.removed, ms, actions: plan.actions }
  }

  return {
    name: 'nftables',
    async init() {
      cache = undefined // init may create what the cache does not describe
      const live = await readLive()
      // Only create what is missing: an existing table keeps its members until the first apply.
      if (!live.exists) initReport = mergeReports(initReport, await write(EMPTY, live))
      cache = undefined
    },
    async apply(desired) {
      const t0 = performance.now()
      const report = (await fastApply(desired)) ?? (await write(desired, await readLive()))
      last = desired
      const out = mergeReports(initReport, { ...report, ms: performance.now() - t0 })
      initReport = undefined
      return out
    },
    async verify() {
      const drift = nftDrift(table, await readLive(), last, logOn, prefix)
      // Any drift (members, sets, chains): the next apply reads the table and repairs it.
      if (drift.length > 0) cache = undefined
      for (const d of drift) log.warn({ drift: d.kind }, d.detail)
      return drift
    },
    async remove() {
      cache = undefined
      initReport = undefined
      const live = await readLive()
      if (live.exists) await run('nft', ['delete', 'table', 'inet', table], { netns })
      last = undefined
      cache = undefined
      log.info({ table }, live.exists ? 'removed table' : 'no table to remove')
    },
  }
}
