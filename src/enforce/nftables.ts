// The nftables backend: one table of its own (`inet egress_guard`) with six interval sets, a guard
// chain and two base chains hooked on output and forward at priority filter - 10 (before Docker's
// iptables-nft rules at filter). Every change is ONE `nft -f -` transaction; verify() reads
// `nft -j list table` back; remove() deletes the table and nothing else.
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors } from '../errors.js'
import { run } from './exec.js'
import type { ApplyReport, DesiredState, Enforcer, EnforcerOptions } from './types.js'
import { nftDrift, parseNftJson, planNft, tableName, type LiveTable } from './nft-script.js'

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
   * The set contents this process last wrote. While it is valid, apply() reads the table terse
   * (`nft -t`: sets without their elements, chains and rules in full) instead of listing 100,000
   * elements; verify() always reads everything and drops the cache when a set has drifted, so the
   * reconcile loop (verify, then apply on drift) still repairs a flushed set.
   */
  let cache: LiveTable['sets'] | undefined

  async function readLive(terse = false): Promise<LiveTable> {
    const r = await run('nft', [...(terse ? ['-t'] : []), '-j', 'list', 'table', 'inet', table], { netns, reject: false })
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
    if (plan.script) await run('nft', ['-f', '-'], { netns, input: plan.script })
    cache = plan.sets
    const ms = performance.now() - t0
    if (plan.script) log.info({ actions: plan.actions, added: plan.added, removed: plan.removed, ms: Math.round(ms) }, 'kernel updated')
    return { backend: 'nftables', changed: plan.script !== undefined, added: plan.added, removed: plan.removed, ms, actions: plan.actions }
  }

  return {
    name: 'nftables',
    async init() {
      const live = await readLive()
      // Only create what is missing: an existing table keeps its members until the first apply.
      if (!live.exists) await write(EMPTY, live)
    },
    async apply(desired) {
      const t0 = performance.now()
      const known = cache
      const live = await readLive(known !== undefined)
      if (known) {
        // Terse read: the sets' existence and type are real, their members are what we last wrote.
        for (const [name, set] of live.sets) {
          const k = known.get(name)
          if (k && k.type === set.type) live.sets.set(name, k)
          else cache = undefined
        }
      }
      const report = await write(desired, live)
      last = desired
      return { ...report, ms: performance.now() - t0 }
    },
    async verify() {
      const drift = nftDrift(table, await readLive(), last, logOn, prefix)
      if (drift.some((d) => d.kind === 'set-members' || d.kind === 'set-missing' || d.kind === 'table-missing')) cache = undefined
      for (const d of drift) log.warn({ drift: d.kind }, d.detail)
      return drift
    },
    async remove() {
      const live = await readLive()
      if (live.exists) await run('nft', ['delete', 'table', 'inet', table], { netns })
      last = undefined
      cache = undefined
      log.info({ table }, live.exists ? 'removed table' : 'no table to remove')
    },
  }
}
