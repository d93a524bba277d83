// learn() cost for the container-egress seam (issue 16: the sinkhole's answer waits for its learned
// pairs to be in the kernel, hold bounded at 50 ms): per backend, the latency of one learn() call
// (median/p99) for batches of 1, 8 and 64 pairs on empty sets; the same at a paced 1,000 calls/s (the
// writer groups concurrent calls into one batch); throughput with 32 concurrent callers; one
// 100,000-pair call; and single-pair latency again with those 100,000 pairs held. CPU time of the
// writer process is read from /proc, so a loaded machine shows up as wall time, not as CPU.
// Usage: npx tsx bench/learn-writer.ts [--quick]
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createContainerEnforcer } from '../src/enforce/container-factory.js'
import type { ContainerEnforcer, LearnPair } from '../src/enforce/container-types.js'
import { argFlag, loadAvg, median, percentile, timeCpu } from './kernel-common.js'

const quick = argFlag('quick')
const SCALE = quick ? 0.25 : 1
const BULK = quick ? 20_000 : 100_000
const tag = `${process.pid % 100000}`
const made: string[] = []
const enforcers: ContainerEnforcer[] = []
const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const SRC = '10.0.0.2'
const ID = 'fe'.repeat(32)

let next = 0
/** Fresh destinations (12.0.0.0/8 upwards) so every pair is a new member. */
function pairs(n: number, ported = false): LearnPair[] {
  const out: LearnPair[] = []
  for (let i = 0; i < n; i++) {
    const v = (0x0c000000 + next++) >>> 0
    out.push({ container: SRC, dst: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`, ttlSec: 3600, ...(ported ? { proto: 'tcp' as const, port: 443 } : {}) })
  }
  return out
}

/** utime+stime of a process in ms (100 Hz ticks). */
function procCpu(pid: number | undefined): number {
  if (!pid) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 10
  } catch {
    return 0
  }
}

const ms = (x: number): string => x.toFixed(2).padStart(6) + ' ms'

async function sequential(e: ContainerEnforcer, size: number, calls: number): Promise<number[]> {
  const lat: number[] = []
  for (let i = 0; i < calls; i++) {
    const batch = pairs(size, i % 2 === 1)
    const t0 = performance.now()
    await e.learn(batch)
    lat.push(performance.now() - t0)
  }
  return lat
}

/** One learn() of one pair every `everyMs`, for `total` calls; latency of each. */
async function paced(e: ContainerEnforcer, everyMs: number, total: number): Promise<number[]> {
  const lat: number[] = []
  const all: Promise<void>[] = []
  const t0 = performance.now()
  for (let i = 0; i < total; i++) {
    const due = t0 + i * everyMs
    const wait = due - performance.now()
    if (wait > 1) await new Promise((r) => setTimeout(r, wait))
    const s = performance.now()
    all.push(e.learn(pairs(1)).then(() => void lat.push(performance.now() - s)))
  }
  await Promise.all(all)
  return lat
}

async function concurrent(e: ContainerEnforcer, callers: number, durationMs: number): Promise<{ perSec: number; lat: number[] }> {
  const lat: number[] = []
  const end = performance.now() + durationMs
  let done = 0
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        const s = performance.now()
        await e.learn(pairs(1))
        lat.push(performance.now() - s)
        done++
      }
    }),
  )
  return { perSec: done / (durationMs / 1000), lat }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)')
  console.log(`learn-writer: learn() latency and throughput per backend (load average ${loadAvg()})`)
  const report: Record<string, unknown> = {}
  for (const kind of ['iptables', 'nftables'] as const) {
    const host = `eglw${kind.slice(0, 3)}${tag}`
    sh('ip', ['netns', 'add', host])
    made.push(host)
    const e = createContainerEnforcer(kind, { netns: host })
    enforcers.push(e)
    await e.apply({ containers: [{ id: ID, addresses: [SRC], mode: 'enforce', nets: [] }], sinkhole: { v4: ['10.0.0.1'], v6: [], port: 53 } })
    await e.learn(pairs(1)) // spawn the writer
    const pid = (e as unknown as { writerPid(): number | undefined }).writerPid()
    const r: Record<string, unknown> = {}
    console.log(`\n${kind}`)
    for (const [size, calls] of [[1, 400], [8, 200], [64, 100]] as const) {
      const c0 = procCpu(pid)
      const lat = await sequential(e, size, Math.round(calls * SCALE))
      const cpuPerCall = (procCpu(pid) - c0) / lat.length
      r[`seq${size}`] = { medianMs: median(lat), p99Ms: percentile(lat, 99), writerCpuMsPerCall: cpuPerCall }
      console.log(`  ${String(size).padStart(3)} pair(s) per call, sequential: median ${ms(median(lat))}  p99 ${ms(percentile(lat, 99))}  writer CPU ${cpuPerCall.toFixed(2)} ms/call`)
    }
    {
      const c0 = procCpu(pid)
      const lat = await paced(e, 1, Math.round(3000 * SCALE))
      r.paced1000 = { medianMs: median(lat), p99Ms: percentile(lat, 99), writerCpuMsPerPair: (procCpu(pid) - c0) / lat.length }
      console.log(`  1 pair per call at 1,000 calls/s: median ${ms(median(lat))}  p99 ${ms(percentile(lat, 99))}  writer CPU ${((procCpu(pid) - c0) / lat.length).toFixed(3)} ms/pair`)
    }
    {
      const c = await concurrent(e, 32, 3000 * SCALE)
      r.concurrent32 = { pairsPerSec: Math.round(c.perSec), medianMs: median(c.lat), p99Ms: percentile(c.lat, 99) }
      console.log(`  32 concurrent callers, 1 pair each: ${Math.round(c.perSec)} pairs/s, median ${ms(median(c.lat))}  p99 ${ms(percentile(c.lat, 99))}`)
    }
    {
      const big = pairs(BULK / 2).concat(pairs(BULK / 2, true))
      const c0 = procCpu(pid)
      const t = await timeCpu(() => e.learn(big))
      const writer = procCpu(pid) - c0
      r.bulk = { pairs: BULK, wallMs: Math.round(t.wall), cpuMs: Math.round(t.cpu + writer) }
      console.log(`  ${BULK} pairs in one call: ${(t.wall / 1000).toFixed(2)} s wall, ${((t.cpu + writer) / 1000).toFixed(2)} s CPU (agent + tools), ${Math.round(BULK / (t.wall / 1000))} pairs/s`)
    }
    {
      const lat = await sequential(e, 1, Math.round(400 * SCALE))
      r.seq1Loaded = { medianMs: median(lat), p99Ms: percentile(lat, 99) }
      console.log(`    1 pair per call with ${BULK} held: median ${ms(median(lat))}  p99 ${ms(percentile(lat, 99))}`)
    }
    report[kind] = r
    await e.remove()
  }
  console.log(`\n(load average ${loadAvg()})`)
  console.log(JSON.stringify(report))
}

main()
  .catch((e: unknown) => {
    console.error(e)
    process.exitCode = 1
  })
  .finally(async () => {
    for (const e of enforcers) await e.close().catch(() => {})
    for (const n of made) {
      try {
        sh('ip', ['netns', 'del', n])
      } catch {
        /* already gone */
      }
    }
  })
