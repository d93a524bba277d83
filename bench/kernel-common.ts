// Shared plumbing for the kernel benchmarks: run the measuring half INSIDE a throwaway network
// namespace (so ours and the baselines spawn tools directly, with no `ip netns exec` per call),
// refuse to run in the root namespace, generate entry lists, and summarise timings.
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export const INNER = 'EG_BENCH_NETNS'

/**
 * Outer half: make a namespace, re-run this script inside it with the same node flags (tsx loader),
 * delete the namespace afterwards. Inner half: check we really are in that namespace. Returns true
 * when the caller is the inner half and should measure.
 */
export function enterNamespace(tag: string): boolean {
  const want = process.env[INNER]
  if (want) {
    const here = execFileSync('ip', ['netns', 'identify', String(process.pid)], { encoding: 'utf8' }).trim()
    if (here !== want) throw new Error(`refusing to benchmark outside the throwaway namespace (in ${JSON.stringify(here)}, want ${want})`)
    return true
  }
  if (process.getuid?.() !== 0) {
    console.error('kernel benchmarks need root (network namespaces)')
    process.exit(2)
  }
  const ns = `egb${tag}${process.pid}`.slice(0, 30)
  execFileSync('ip', ['netns', 'add', ns])
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, [INNER]: ns },
    })
    process.exitCode = r.status ?? 1
  } finally {
    execFileSync('ip', ['netns', 'del', ns])
  }
  return false
}

/** `n` distinct IPv4 host entries (canonical /32), spread over 100.0.0.0/8 .. so no two are adjacent. */
export function hosts4(n: number, salt = 0): string[] {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const v = (0x0b000000 + salt * 0x01000000 + i * 37) >>> 0
    out.push(`${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/32`)
  }
  return out
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

export async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

export const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)) + ' ms'

export function argFlag(name: string): boolean {
  return process.argv.includes(`--${name}`)
}
export function argNum(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : def
}

/**
 * CPU milliseconds used so far by this process AND its waited-for children (ipset, iptables-restore,
 * nft): user+system from process.cpuUsage() plus cutime+cstime from /proc/self/stat (100 Hz ticks).
 * On a shared, loaded machine wall time mostly measures waiting for a core; CPU time does not.
 */
export function cpuMs(): number {
  const u = process.cpuUsage()
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields after the command name start at field 3 (state); cutime and cstime are fields 16 and 17.
  return (u.user + u.system) / 1000 + (Number(f[13]) + Number(f[14])) * 10
}

/** Wall and CPU milliseconds of one call. */
export async function timeCpu(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const c0 = cpuMs()
  const t0 = performance.now()
  await fn()
  return { wall: performance.now() - t0, cpu: cpuMs() - c0 }
}

export function loadAvg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
}
