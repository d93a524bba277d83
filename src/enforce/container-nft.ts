// Container egress for the nftables backend: its own table `inet egress_guard_ct` (see
// container-nft-text.ts). apply() is one cheap read (`nft -j list chains`: names and hooks, no set
// elements) and ONE `nft -f -` transaction; learned pairs go through ONE long-lived `nft -e -i`
// (learned-writer.ts). nft 1.0.6 fetches every set element of the table for any listing of sets or
// rules, so only verify() lists the table (its cost grows with the learned pairs held).
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { errors } from '../errors.js'
import { run } from './exec.js'
import type { ApplyReport, Drift } from './types.js'
import { containerAddress, normalizePairs, normalizeState, PendingPairs, type HeldAddress, type NormalPair, type NormalState } from './container-desired.js'
import type { ContainerEnforcer, ContainerEnforcerOptions, ContainerState, LearnReport, SeenEvent } from './container-types.js'
import { ctNftDrift, ctTableName, learnedSet, learnUnits, parseChains, parseSeen, parseTable, planApply, sharedDecls } from './container-nft-text.js'
import { createAckedWriter, nftProtocol, type AckedWriter } from './learned-writer.js'
import { cutFlows } from './conntrack.js'

export interface ContainerNftOptions extends ContainerEnforcerOptions {
  logger?: Logger
  /** How a re-learned pair gets its new timeout: probe the kernel (default), or force `add` (Linux
   * >= 6.10 refreshes on add) or `readd` (add+delete+add, any kernel). Tests force each. */
  timeoutRefresh?: 'probe' | 'add' | 'readd'
}

export function createContainerNft(opts: ContainerNftOptions = {}): ContainerEnforcer & { readonly table: string; writerPid(): number | undefined; refresh(): boolean | undefined } {
  let T: string
  try {
    T = ctTableName(opts.namePrefix)
  } catch (e) {
    throw errors.config((e as Error).message)
  }
  const netns = opts.netns
  const logger = opts.logger ?? silentLogger
  const log = logger.child({ component: 'container-nft' })
  const pending = new PendingPairs()
  let byIp = new Map<string, HeldAddress>()
  let last: NormalState | undefined
  let written = new Map<string, string[]>()
  let mapWritten: { 4?: string[]; 6?: string[] } = {}
  /** Does `add element` refresh an existing element's timeout here (probed once by init)? */
  let refresh: boolean | undefined = opts.timeoutRefresh === 'add' ? true : opts.timeoutRefresh === 'readd' ? false : undefined
  let writer: AckedWriter | undefined
  const getWriter = (): AckedWriter => (writer ??= createAckedWriter(nftProtocol(`${T}_ack`, netns), { ...(netns !== undefined ? { netns } : {}), logger }))
  let lock: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = lock.then(fn, fn)
    lock = p.catch(() => {})
    return p
  }
  const nft = (input: string): Promise<unknown> => run('nft', ['-f', '-'], { netns, input })

  async function readChains(): Promise<Map<string, { hook?: string; prio?: number }>> {
    return parseChains((await run('nft', ['-j', 'list', 'chains', 'inet'], { netns })).stdout, T)
  }

  /**
   * Linux >= 6.10 updates an existing element's timeout on `add`; older kernels keep the old expiry,
   * so a re-learned pair would expire early. Probe once with a throwaway set and pick the writer's
   * form (learnUnits).
   */
  async function probeRefresh(): Promise<boolean> {
    await nft(`add set inet ${T} probe { type ipv4_addr; flags timeout; }\nflush set inet ${T} probe\nadd element inet ${T} probe { 127.0.0.1 timeout 10s }\n`)
    await nft(`add element inet ${T} probe { 127.0.0.1 timeout 1000s }\n`)
    const r = await run('nft', ['-j', 'list', 'set', 'inet', T, 'probe'], { netns })
    await nft(`delete set inet ${T} probe\n`)
    const m = /"expires":\s*(\d+)/.exec(r.stdout)
    return m !== null && Number(m[1]) > 100
  }

  async function ensureInit(): Promise<void> {
    await nft(sharedDecls(T).join('\n') + '\n')
    if (refresh === undefined) refresh = await probeRefresh()
  }

  async function applyNow(state: ContainerState): Promise<ApplyReport> {
    const t0 = performance.now()
    const ns = normalizeState(state)
    if (refresh === undefined) await ensureInit()
    const existing = await readChains()
    const plan = planApply({ table: T, state: ns, existing, written, mapWritten })
    written = new Map()
    mapWritten = {}
    await nft(plan.script)
    written = plan.written
    mapWritten = plan.mapWritten
    // As in the iptables backend: from here learn() uses the new addresses; pending pairs and the
    // departed addresses' sets go through the writer, after any learn() that used the old map.
    byIp = new Map(ns.held.map((h) => [h.ip, h]))
    last = ns
    const now = Date.now()
    const fresh: { key: string; p: NormalPair }[] = []
    for (const h of ns.held) for (const p of pending.take(h.ip, now)) fresh.push({ key: h.key, p })
    const tail = learnUnits(T, fresh, refresh!)
    for (const k of plan.departedKeys) tail.push(`delete set inet ${T} ${learnedSet('l', k)}; delete set inet ${T} ${learnedSet('p', k)}`)
    if (tail.length > 0) await getWriter().write(tail)
    const ms = performance.now() - t0
    if (plan.changed) log.info({ actions: plan.actions, ms: Math.round(ms) }, 'container rules updated')
    return { backend: 'nftables', changed: plan.changed, added: plan.added, removed: plan.departedKeys.length, ms, actions: plan.actions }
  }

  return {
    name: 'nftables',
    table: T,
    writerPid: () => writer?.pid,
    refresh: () => refresh,
    init: () => serial(ensureInit),
    apply: (state) => serial(() => applyNow(state)),
    verify: () =>
      serial(async (): Promise<Drift[]> => {
        if (!last) return []
        const r = await run('nft', ['-j', 'list', 'table', 'inet', T], { netns, reject: false })
        if (r.exitCode !== 0 && !/No such file|does not exist/i.test(r.stderr)) throw errors.exec(`nft -j list table inet ${T} exited ${r.exitCode}: ${r.stderr.trim()}`)
        const drift = ctNftDrift(T, parseTable(r.exitCode === 0 ? r.stdout : ''), last)
        if (drift.length > 0) {
          // The repair apply rewrites every chain and both maps.
          written = new Map()
          mapWritten = {}
        }
        for (const d of drift) log.warn({ drift: d.kind }, d.detail)
        return drift
      }),
    remove: () =>
      serial(async () => {
        if (writer) await writer.close()
        writer = undefined
        const r = await run('nft', ['delete', 'table', 'inet', T], { netns, reject: false })
        if (r.exitCode !== 0 && !/No such file|does not exist/i.test(r.stderr)) throw errors.exec(`nft delete table inet ${T} exited ${r.exitCode}: ${r.stderr.trim()}`)
        // The writer's acknowledgement table (see nftProtocol).
        const a = await run('nft', ['delete', 'table', 'inet', `${T}_ack`], { netns, reject: false })
        if (a.exitCode !== 0 && !/No such file|does not exist/i.test(a.stderr)) throw errors.exec(`nft delete table inet ${T}_ack exited ${a.exitCode}: ${a.stderr.trim()}`)
        byIp = new Map()
        last = undefined
        written = new Map()
        mapWritten = {}
        log.info({ table: T, existed: r.exitCode === 0 }, 'container table removed')
      }),
    async learn(pairs): Promise<LearnReport> {
      const np = normalizePairs(pairs)
      const known: { key: string; p: NormalPair }[] = []
      let deferred = 0
      const now = Date.now()
      for (const p of np) {
        const h = byIp.get(p.ip)
        if (!h) {
          pending.add(p, now)
          deferred++
        } else known.push({ key: h.key, p })
      }
      if (known.length > 0) await getWriter().write(learnUnits(T, known, refresh ?? false))
      return { written: known.length, deferred }
    },
    async forget(ip) {
      const a = containerAddress(ip)
      pending.drop(a.ip)
      const h = byIp.get(a.ip)
      if (h) await getWriter().write([`flush set inet ${T} ${learnedSet('l', h.key)}; flush set inet ${T} ${learnedSet('p', h.key)}`])
    },
    async cut(ip) {
      const a = containerAddress(ip)
      const deleted = await cutFlows(a.ip, a.family, netns)
      log.info({ ip: a.ip, deleted }, 'conntrack entries deleted')
    },
    async seen(): Promise<SeenEvent[]> {
      const out: SeenEvent[] = []
      for (const f of [4, 6] as const) {
        const r = await run('nft', ['-j', 'list', 'set', 'inet', T, `seen${f}`], { netns })
        const { events, elements } = parseSeen(r.stdout)
        for (const e of events) out.push(e)
        if (elements.length === 0) continue
        // Drain what was read. An element that expired in between fails the transaction: it is then
        // left to expire (its timeout is minutes, so that takes a read right at its end).
        const d = await run('nft', ['-f', '-'], { netns, reject: false, input: `delete element inet ${T} seen${f} { ${elements.join(', ')} }\n` })
        if (d.exitCode !== 0) log.warn({ err: d.stderr.trim().slice(0, 300) }, 'could not drain a seen set')
      }
      return out
    },
    async close() {
      if (writer) await writer.close()
      writer = undefined
    },
  }
}
