// `doctor`'s checks as a list of small functions, each returning a status and how to fix it, so
// later issues can append checks (server reachable, sinkhole answering) without touching the runner.
import { readFile } from 'node:fs/promises'
import { run, type RunOptions, type RunResult } from '../enforce/exec.js'
import { isEgError } from '../errors.js'
import { parseIptablesVersion } from '../enforce/tools.js'
import type { DockerApiState } from '../docker/api-exposure.js'
import { dockerApiCheck } from './docker-api-check.js'

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip'

export interface CheckResult {
  name: string
  status: CheckStatus
  detail: string
  /** One line: what to do about a warn/fail. */
  fix?: string
  /** A failed required check makes `doctor` exit 1. */
  required: boolean
}

export interface CheckContext {
  netns?: string
  /** Process spawner (src/enforce/exec.ts run); injectable for unit tests. */
  run: (cmd: string, args: readonly string[], opts?: RunOptions) => Promise<RunResult>
  /** Contents of /proc/self/status (injectable). */
  procStatus: () => Promise<string>
  uid: number | undefined
  /** Results of earlier checks, by name (later checks may depend on them). */
  results: Map<string, CheckResult>
  /** Docker's daemon.json when dockerd's command line names none (default /etc/docker/daemon.json). */
  daemonJson?: string
  /** The Docker API's exposure (src/docker/api-exposure.ts); injectable for unit tests. */
  dockerApi?: () => Promise<DockerApiState | undefined>
}

export type Check = (ctx: CheckContext) => Promise<CheckResult>

export const CAP_NET_ADMIN = 12

/** The effective capability mask from /proc/self/status (`CapEff:\t0000003fffffffff`). */
export function parseCapEff(status: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-f]+)\s*$/im.exec(status)
  return m ? BigInt(`0x${m[1]}`) : undefined
}

export function hasCap(mask: bigint, cap: number): boolean {
  return ((mask >> BigInt(cap)) & 1n) === 1n
}

/** Run a probe command; a missing binary is a value (exitCode 127), not an exception. */
async function tryRun(ctx: CheckContext, cmd: string, args: string[], netns = ctx.netns): Promise<RunResult & { missing?: boolean }> {
  try {
    return await ctx.run(cmd, args, { netns, reject: false, timeoutMs: 15_000 })
  } catch (e) {
    if (isEgError(e) && e.code === 'EG_MISSING_TOOL') return { command: cmd, exitCode: 127, stdout: '', stderr: e.message, missing: true }
    throw e
  }
}

const firstLine = (s: string): string => s.trim().split('\n')[0] ?? ''

export const privileges: Check = async (ctx) => {
  const name = 'privileges'
  const fix = 'run as root (sudo egress-guard ...) or grant CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN)'
  if (ctx.uid === 0) return { name, status: 'ok', detail: 'running as root', required: true }
  const mask = parseCapEff(await ctx.procStatus().catch(() => ''))
  if (mask !== undefined && hasCap(mask, CAP_NET_ADMIN)) return { name, status: 'ok', detail: 'CAP_NET_ADMIN in the effective set', required: true }
  return { name, status: 'fail', detail: `not root (uid ${ctx.uid ?? '?'}) and no CAP_NET_ADMIN`, fix, required: true }
}

function toolCheck(cmd: string, args: string[], pkg: string): Check {
  return async (ctx) => {
    const r = await tryRun(ctx, cmd, args)
    const name = `tool ${cmd}`
    if (r.missing || r.exitCode === 127) return { name, status: 'warn', detail: `${cmd} not found`, fix: `apt-get install ${pkg}`, required: false }
    return { name, status: 'ok', detail: firstLine(r.stdout + r.stderr), required: false }
  }
}

export const iptablesTool = toolCheck('iptables', ['--version'], 'iptables')
export const ip6tablesTool = toolCheck('ip6tables', ['--version'], 'iptables')
export const ipsetTool = toolCheck('ipset', ['version'], 'ipset')
export const nftTool = toolCheck('nft', ['--version'], 'nftables')

export const iptablesFlavour: Check = async (ctx) => {
  const name = 'iptables flavour'
  const r = await tryRun(ctx, 'iptables', ['--version'])
  const v = parseIptablesVersion(r.stdout + r.stderr)
  if (!v) return { name, status: 'skip', detail: 'iptables not available', required: false }
  return {
    name,
    status: 'ok',
    detail: `${v.flavour} (iptables v${v.version}); egress-guard writes with the same binaries Docker uses`,
    required: false,
  }
}

/** The kernel accepts ipsets: create and destroy a throwaway set (named for this process). */
export const ipsetKernel: Check = async (ctx) => {
  const name = 'ip_set kernel support'
  if (ctx.results.get('tool ipset')?.status !== 'ok') return { name, status: 'skip', detail: 'ipset not installed', required: false }
  const set = `eg-doctor-${process.pid}`
  const c = await tryRun(ctx, 'ipset', ['create', set, 'hash:net', 'family', 'inet'])
  if (c.exitCode !== 0) {
    return { name, status: 'warn', detail: firstLine(c.stderr) || `ipset create exited ${c.exitCode}`, fix: 'modprobe ip_set ip_set_hash_net xt_set (or use --backend nftables)', required: false }
  }
  await tryRun(ctx, 'ipset', ['destroy', set])
  return { name, status: 'ok', detail: 'created and destroyed a hash:net set', required: false }
}

/** nf_tables usable: listing the ruleset is read-only and fails when the kernel lacks nf_tables. */
export const nftKernel: Check = async (ctx) => {
  const name = 'nf_tables kernel support'
  if (ctx.results.get('tool nft')?.status !== 'ok') return { name, status: 'skip', detail: 'nft not installed', required: false }
  const r = await tryRun(ctx, 'nft', ['list', 'tables'])
  if (r.exitCode !== 0) return { name, status: 'warn', detail: firstLine(r.stderr), fix: 'modprobe nf_tables (or use --backend iptables)', required: false }
  return { name, status: 'ok', detail: 'nft can read the ruleset', required: false }
}

/** At least one kernel backend works: this is what `apply` and `agent` need. */
export const backendAvailable: Check = async (ctx) => {
  const ok = (n: string): boolean => ctx.results.get(n)?.status === 'ok'
  const ipt = ok('tool iptables') && ok('tool ip6tables') && ok('ip_set kernel support')
  const nft = ok('nf_tables kernel support')
  const usable = [ipt ? 'iptables' : '', nft ? 'nftables' : ''].filter(Boolean)
  if (usable.length > 0) return { name: 'kernel backend', status: 'ok', detail: `usable: ${usable.join(', ')}`, required: true }
  return { name: 'kernel backend', status: 'fail', detail: 'neither iptables+ipset nor nftables is usable', fix: 'apt-get install iptables ipset nftables, and run as root', required: true }
}

export const dockerUserChain: Check = async (ctx) => {
  const name = 'DOCKER-USER chain'
  if (ctx.results.get('tool iptables')?.status !== 'ok') return { name, status: 'skip', detail: 'iptables not installed', required: false }
  const r = await tryRun(ctx, 'iptables', ['-S', 'DOCKER-USER'])
  if (r.exitCode === 0) return { name, status: 'ok', detail: 'present: containers are filtered through DOCKER-USER', required: false }
  return {
    name,
    status: 'warn',
    detail: 'absent: Docker is not running (or not started yet); egress-guard hooks FORWARD instead',
    fix: 'start Docker (systemctl start docker); the next apply moves the jump into DOCKER-USER',
    required: false,
  }
}

/** The default list, in order (later checks read earlier results). */
export const DEFAULT_CHECKS: readonly Check[] = [
  privileges, iptablesTool, ip6tablesTool, ipsetTool, nftTool, iptablesFlavour, ipsetKernel, nftKernel, backendAvailable, dockerUserChain,
  dockerApiCheck,
]

export function defaultContext(netns?: string): CheckContext {
  return {
    ...(netns ? { netns } : {}),
    run,
    procStatus: () => readFile('/proc/self/status', 'utf8'),
    uid: process.getuid?.(),
    results: new Map(),
  }
}

/** Run checks in order; a check that throws becomes a failed result, never a crash. */
export async function runChecks(ctx: CheckContext, checks: readonly Check[] = DEFAULT_CHECKS): Promise<CheckResult[]> {
  const out: CheckResult[] = []
  for (const check of checks) {
    let r: CheckResult
    try {
      r = await check(ctx)
    } catch (e) {
      r = { name: check.name || 'check', status: 'fail', detail: (e as Error).message, required: true }
    }
    ctx.results.set(r.name, r)
    out.push(r)
  }
  return out
}
