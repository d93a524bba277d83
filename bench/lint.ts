// How long `lint` takes on a fleet-sized list (1,000,000 names + 100,000 networks), against a baseline
// measured in the same run. Goal: parse + validate + buildPolicy in under 3 s.
//
// Baseline: the least any line-based tool must do with the same text: split it into lines, trim each,
// skip blanks and comments, and insert it into a Set (a de-dup). Whatever lint costs above that is
// validation, normalisation and policy building. `wc -l` would be an unfair floor (it never makes strings).
// Run: npx tsx bench/lint.ts [--domains N] [--cidrs N] [--runs N]
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
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

function best(fn: () => unknown): { s: number; out: unknown } {
  let s = Infinity
  let out: unknown
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    out = fn()
    s = Math.min(s, (performance.now() - t0) / 1000)
  }
  return { s, out }
}

async function bestAsync(fn: () => Promise<unknown>): Promise<{ s: number; out: unknown }> {
  let s = Infinity
  let out: unknown
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    out = await fn()
    s = Math.min(s, (performance.now() - t0) / 1000)
  }
  return { s, out }
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
  // What `egress-guard lint FILE` does, in process: read, parse + validate, buildPolicy with duplicate
  // reporting. Measured first, before the breakdown below keeps big results alive.
  let summary = ''
  const full = await bestAsync(async () => {
    const l = await loadBlocklists([file], { now, duplicates: false })
    let dups = 0
    const p = buildPolicy(l.entries, { now, onDuplicate: () => dups++ })
    summary = `entries: ${p.entries.length} in the policy, problems: ${l.problems.length + dups}`
  })
  const parse = best(() => parseBlocklist(text, 'big.txt', { now, seen: false }))
  const parsed = parse.out as ReturnType<typeof parseBlocklist>
  parse.out = undefined
  const build = best(() => buildPolicy(parsed.entries, { now }).entries.length)
  // The real CLI as a child process (node start-up and module loading included), when dist/ is built.
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
  let cliS: number | undefined
  if (existsSync(cli)) {
    const t = performance.now()
    const r = spawnSync(process.execPath, [cli, 'lint', file], { encoding: 'utf8' })
    cliS = (performance.now() - t) / 1000
    if (r.status !== 0) console.log(`cli lint exited ${r.status}: ${r.stderr.slice(0, 500)}`)
  }
  console.log(`${summary}; best of ${runs} runs each (CLI: 1 run)`)
  const row = (name: string, s: number): void => console.log(`${name.padEnd(46)} ${s.toFixed(3).padStart(7)} s   ${(s / base.s).toFixed(1).padStart(5)}x baseline`)
  row('baseline (split + trim + Set.add)', base.s)
  row('parseBlocklist (parse + validate)', parse.s)
  row('buildPolicy (dedup + sort + sha256 etag)', build.s)
  row('lint in process (read + parse + buildPolicy)', full.s)
  if (cliS !== undefined) row('egress-guard lint FILE (child process)', cliS)
  console.log(`goal: lint < 3 s -> ${full.s < 3 ? 'met' : 'NOT met'} (${(full.s / 3).toFixed(2)} of the budget); load average now ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} cores`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
