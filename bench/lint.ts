// How long `lint` takes on a fleet-sized list (1,000,000 names + 100,000 networks), against a baseline
// measured in the same run. Goal: the `egress-guard lint FILE` command in under 3 s.
//
// Baseline: the least any line-based tool must do with the same text: split it into lines, trim each,
// skip blanks and comments, and insert it into a Set (a de-dup). Whatever lint costs above that is
// validation, normalisation and policy building. `wc -l` would be an unfair floor (it never makes strings).
// Run: npx tsx bench/lint.ts [--domains N] [--cidrs N] [--runs N]
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { generateList } from './lib/gen-list.js'
import { parseBlocklist } from '../src/policy/parse.js'
import { loadBlocklists } from '../src/policy/load.js'
import { buildPolicy } from '../src/policy/merge.js'

const { values } = parseArgs({ options: { domains: { type: 'string', default: '1000000' }, cidrs: { type: 'string', default: '100000' }, runs: { type: 'string', default: '3' } } })
const domains = Number(values.domains)
const cidrs = Number(values.cidrs)
const runs = Number(values.runs)

function baseline(text: string): number {
  const set = new Set<string>()
  for (const raw of text.split('\n')) {
    const l = raw.trim()
    if (l === '' || l.startsWith('#')) continue
    set.add(l)
  }
  return set.size
}

/** Best wall time of `runs` runs, and the CPU time (user + system) of that run: on a shared machine
 * wall time includes waiting for a core, CPU time mostly does not. */
type Timing = { s: number; cpu: number; out: unknown }
function cpuNow(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}
/** CPU seconds of waited-for children (cutime + cstime of /proc/self/stat, in 1/100 s); Linux only. */
function childCpu(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[13]) + Number(f[14])) / 100
  } catch {
    return undefined
  }
}

function best(fn: () => unknown): Timing {
  let r: Timing = { s: Infinity, cpu: Infinity, out: undefined }
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    const c0 = cpuNow()
    const out = fn()
    const s = (performance.now() - t0) / 1000
    if (s < r.s) r = { s, cpu: cpuNow() - c0, out }
  }
  return r
}

async function bestAsync(fn: () => Promise<unknown>): Promise<Timing> {
  let r: Timing = { s: Infinity, cpu: Infinity, out: undefined }
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    const c0 = cpuNow()
    const out = await fn()
    const s = (performance.now() - t0) / 1000
    if (s < r.s) r = { s, cpu: cpuNow() - c0, out }
  }
  return r
}

const t0 = performance.now()
const text = generateList({ domains, cidrs, seed: 42 })
const lines = text.split('\n').length - 1
console.log(`list: ${domains} domains + ${cidrs} networks, ${lines} lines, ${(text.length / 1048576).toFixed(1)} MiB (generated in ${((performance.now() - t0) / 1000).toFixed(1)} s)`)

const dir = mkdtempSync(join(tmpdir(), 'eg-bench-lint-'))
try {
  const file = join(dir, 'big.txt')
  writeFileSync(file, text)
  const now = new Date()
  const base = best(() => baseline(text))
  // What `egress-guard lint FILE` does, in process: read, parse + validate, duplicates from the loader's
  // first-seen map, entries counted but not kept. Measured first, before the breakdown keeps big results alive.
  let summary = ''
  const full = await bestAsync(async () => {
    let listed = 0
    const l = await loadBlocklists([file], { now, duplicates: true, onEntry: () => void listed++ })
    summary = `entries listed: ${listed}, problems: ${l.problems.length}`
  })
  // `lint --json` (and the policy server) still build the merged policy: read, parse, buildPolicy.
  const json = await bestAsync(async () => {
    const l = await loadBlocklists([file], { now, duplicates: false })
    return buildPolicy(l.entries, { now }).entries.length
  })
  json.out = undefined
  const parse = best(() => parseBlocklist(text, 'big.txt', { now, seen: false }))
  const parsed = parse.out as ReturnType<typeof parseBlocklist>
  parse.out = undefined
  const build = best(() => buildPolicy(parsed.entries, { now }).entries.length)
  // The real CLI as a child process (node start-up and module loading included), when dist/ is built.
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
  let cliS: number | undefined
  let cliCpu: number | undefined
  if (existsSync(cli)) {
    // Median of `runs` child runs (wall), with that run's CPU: one run is at the mercy of the machine's load.
    const got: { s: number; cpu: number | undefined }[] = []
    for (let i = 0; i < runs; i++) {
      const t = performance.now()
      const c0 = childCpu()
      const r = spawnSync(process.execPath, [cli, 'lint', file], { encoding: 'utf8' })
      const s = (performance.now() - t) / 1000
      const c1 = childCpu()
      got.push({ s, cpu: c0 !== undefined && c1 !== undefined ? c1 - c0 : undefined })
      if (r.status !== 0) console.log(`cli lint exited ${r.status}: ${r.stderr.slice(0, 500)}`)
    }
    got.sort((a, b) => a.s - b.s)
    const mid = got[Math.floor(got.length / 2)]!
    cliS = mid.s
    cliCpu = mid.cpu
  }
  console.log(`${summary}; in process: best of ${runs} runs each; CLI: median of ${runs}`)
  console.log(`${''.padEnd(46)} ${'wall'.padStart(9)} ${'CPU'.padStart(9)}   ratio to baseline (wall / CPU)`)
  const row = (name: string, t: { s: number; cpu?: number }): void =>
    console.log(`${name.padEnd(46)} ${(t.s.toFixed(3) + ' s').padStart(9)} ${t.cpu === undefined ? '        -' : (t.cpu.toFixed(3) + ' s').padStart(9)}   ${(t.s / base.s).toFixed(1)}x / ${t.cpu === undefined ? '-' : (t.cpu / base.cpu).toFixed(1) + 'x'}`)
  row('baseline (split + trim + Set.add)', base)
  row('parseBlocklist (parse + validate)', parse)
  row('buildPolicy (dedup + sort + sha256 etag)', build)
  row('lint in process (read + parse + dup check)', full)
  row('lint --json in process (+ buildPolicy)', json)
  if (cliS !== undefined) row('egress-guard lint FILE (child process)', { s: cliS, ...(cliCpu !== undefined ? { cpu: cliCpu } : {}) })
  const goal = cliS ?? full.s
  console.log(`goal: lint < 3 s -> ${cliS !== undefined ? 'CLI' : 'in process'} wall ${goal < 3 ? 'met' : 'NOT met'} (${goal.toFixed(2)} s); load average now ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} cores`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
