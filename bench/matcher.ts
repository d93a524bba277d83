// Policy-core speed and memory goals for the matcher, each measured against a baseline in the same
// run: memory per domain (goal < 120 B; baseline a plain Set<string> of the names), name lookups/s
// (goal >= 2M/s; baseline Set.has of the exact name) and IP lookups/s (goal >= 1M/s; baselines a
// linear scan over the networks and node:net BlockList).
// Run: npx tsx --expose-gc bench/matcher.ts [--domains 1000000] [--cidrs 100000] [--queries 1000000]
import { BlockList } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { generateListParts, prng } from './lib/gen-list.js'
import { parseBlocklist } from '../src/policy/parse.js'
import { buildPolicy } from '../src/policy/merge.js'
import { buildMatcher, type CompactMatcher } from '../src/policy/matcher.js'
import { formatIp, parseCidr, parseIp, type Cidr } from '../src/policy/net.js'
import type { Entry } from '../src/policy/types.js'

const { values } = parseArgs({
  options: {
    domains: { type: 'string', default: '1000000' },
    cidrs: { type: 'string', default: '100000' },
    queries: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '7' },
  },
})
const DOMAINS = Number(values.domains)
const CIDRS = Number(values.cidrs)
const QUERIES = Number(values.queries)
const SEED = Number(values.seed)

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) {
  console.error('run with --expose-gc: npx tsx --expose-gc bench/matcher.ts (or node --expose-gc --import tsx bench/matcher.ts)')
  process.exit(2)
}

/** JS heap plus ArrayBuffer memory: the matcher keeps most of its data in typed arrays, outside the JS heap. */
function mem(): number {
  for (let i = 0; i < 3; i++) gc!()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

/** A standalone copy of a string (parser output may be a slice that keeps a whole file alive). */
function flat(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1')
}

const fmtRate = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M/s` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k/s` : `${n.toFixed(0)} /s`)
const log = (s: string): void => void process.stderr.write(s + '\n')

/**
 * Best of `rounds` timed passes over `queries`, after one untimed warm-up pass. Two rates: per
 * wall-clock second, and per second of this process's CPU time (user + system), which is the
 * steadier figure on a shared machine where other jobs take the cores away.
 */
function rate(queries: readonly string[], fn: (q: string) => unknown, rounds = 3): { perSec: number; perCpuSec: number; hits: number } {
  let best = 0
  let bestCpu = 0
  let hits = 0
  for (let r = 0; r <= rounds; r++) {
    let h = 0
    const c0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < queries.length; i++) if (fn(queries[i]!)) h++
    const s = Number(process.hrtime.bigint() - t0) / 1e9
    const c = process.cpuUsage(c0)
    const cpu = (c.user + c.system) / 1e6
    if (r > 0) {
      best = Math.max(best, queries.length / s)
      bestCpu = Math.max(bestCpu, queries.length / Math.max(cpu, 1e-6))
    }
    hits = h
  }
  return { perSec: best, perCpuSec: bestCpu, hits }
}

// ---- 1. memory: the matcher alone is alive, everything it was built from is dropped ----
const empty = mem()
log(`generating ${DOMAINS} domains + ${CIDRS} networks (seed ${SEED}), parsing, merging ...`)
let entries: Entry[] | undefined = (() => {
  const text = generateListParts({ domains: DOMAINS, cidrs: CIDRS, seed: SEED }).text
  const parsed = parseBlocklist(text, 'bench.txt')
  if (parsed.problems.some((p) => p.severity === 'error')) throw new Error('the generated list has errors')
  return buildPolicy(parsed.entries).entries
})()
log('building the matcher ...')
const t0 = process.hrtime.bigint()
const c0 = process.cpuUsage()
let matcher: CompactMatcher | undefined = buildMatcher(entries)
const buildMs = Number(process.hrtime.bigint() - t0) / 1e6
const buildCpu = process.cpuUsage(c0)
const buildCpuMs = (buildCpu.user + buildCpu.system) / 1e3
entries = undefined
const matcherBytes = mem() - empty
const stats = matcher.stats()

// Baseline: a Set of the same names, each a standalone string (what a plain exact-match list holds).
const parts = generateListParts({ domains: DOMAINS, cidrs: CIDRS, seed: SEED })
;(parts as { text?: string }).text = undefined
const listed = parts.domains
const subOnly = new Set(parts.subdomainsOnly)
const cidrTexts = parts.cidrs
const beforeSet = mem()
let set: Set<string> | undefined = new Set(listed.map(flat))
const setBytes = mem() - beforeSet
const setSize = set.size
set = undefined

const r = prng(SEED + 1)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!

// Names: 30 % exact hits, 20 % names under a listed name, 50 % misses (half of them look-alikes).
const nameQueries: string[] = []
for (let i = 0; i < QUERIES; i++) {
  const x = r()
  let d = pick(listed)
  if (x < 0.3) {
    while (subOnly.has(d)) d = pick(listed)
    nameQueries.push(flat(d))
  } else if (x < 0.5) nameQueries.push(flat(pick(['www.', 'cdn.', 'a.b.', 'api.', 'x1.']) + d))
  else if (x < 0.75) nameQueries.push(flat('not' + d))
  else nameQueries.push(flat(`host${Math.floor(r() * 1e6)}.example-${Math.floor(r() * 1e4)}.com`))
}

// Addresses: 50 % inside a listed network, 50 % random public addresses (mostly misses); 90 % IPv4.
const cidrs: Cidr[] = cidrTexts.map((c) => {
  const p = parseCidr(c)
  if (!p.ok) throw new Error(c)
  return p.cidr
})
function inside(c: Cidr): string {
  const b = Uint8Array.from(c.bytes)
  for (let i = c.prefix; i < b.length * 8; i++) if (r() < 0.5) b[i >> 3]! |= 0x80 >> (i & 7)
  return formatIp({ family: c.family, bytes: b })
}
function randomIp(): string {
  if (r() < 0.9) return `${pick([11, 23, 45, 61, 77, 88, 101, 145, 185, 203])}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`
  const b = new Uint8Array(16)
  for (let i = 0; i < 16; i++) b[i] = Math.floor(r() * 256)
  b[0] = 0x20 | (b[0]! & 0x0f)
  return formatIp({ family: 6, bytes: b })
}
const ipQueries: string[] = []
for (let i = 0; i < QUERIES; i++) ipQueries.push(r() < 0.5 ? inside(pick(cidrs)) : randomIp())


// ---- 2. name lookups ----
log('name lookups ...')
const ours = rate(nameQueries, (q) => matcher!.matchName(q))
// The same lookups, reading the deciding entry of every hit (what the sinkhole does for a block): an
// inline entry's Verdict builds its Entry on first read and then finds it in a cache (one more memory
// access per hit). Reported beside the goal, which is about the lookup.
const oursEntry = rate(nameQueries, (q) => matcher!.matchName(q)?.entry)
let exact: Set<string> | undefined = new Set(listed)
const naive = rate(nameQueries, (q) => exact!.has(q))
exact = undefined

// ---- 3. IP lookups ----
log('IP lookups ...')
const oursIp = rate(ipQueries, (q) => matcher!.matchIp(q))
// Baseline A: a linear scan (v4 as integer mask compares, the fastest a scan gets) on a sample, extrapolated.
const v4Net = new Uint32Array(cidrs.length)
const v4Mask = new Uint32Array(cidrs.length)
const v6: Cidr[] = []
let n4 = 0
for (const c of cidrs) {
  if (c.family === 4) {
    v4Net[n4] = ((c.bytes[0]! << 24) | (c.bytes[1]! << 16) | (c.bytes[2]! << 8) | c.bytes[3]!) >>> 0
    v4Mask[n4++] = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0
  } else v6.push(c)
}
function scan(q: string): boolean {
  const ip = parseIp(q)
  if (!ip) return false
  if (ip.family === 4) {
    const a = ((ip.bytes[0]! << 24) | (ip.bytes[1]! << 16) | (ip.bytes[2]! << 8) | ip.bytes[3]!) >>> 0
    for (let i = 0; i < n4; i++) if (((a & v4Mask[i]!) >>> 0) === v4Net[i]) return true
    return false
  }
  for (const c of v6) {
    let ok = true
    for (let bit = 0; bit < c.prefix && ok; bit += 8) {
      const m = c.prefix - bit >= 8 ? 0xff : (0xff << (8 - (c.prefix - bit))) & 0xff
      if ((ip.bytes[bit >> 3]! & m) !== c.bytes[bit >> 3]) ok = false
    }
    if (ok) return true
  }
  return false
}
const sample = ipQueries.slice(0, 1000)
const scanRate = rate(sample, scan, 1)
// Baseline B: node:net BlockList (every network added as a subnet rule).
let bl: BlockList | undefined = new BlockList()
for (const c of cidrs) bl.addSubnet(formatIp(c), c.prefix, c.family === 4 ? 'ipv4' : 'ipv6')
const blSample = ipQueries.slice(0, 100)
const blRate = rate(blSample, (q) => bl!.check(q, q.includes(':') ? 'ipv6' : 'ipv4'), 1)
bl = undefined

// ---- report ----
const B = (n: number): string => `${n.toFixed(1)} B`
const both = (x: { perSec: number; perCpuSec: number }): string => `${fmtRate(x.perCpuSec)} (wall ${fmtRate(x.perSec)})`
const ratio = (a: number, b: number): string => (a / b >= 10 ? `${(a / b).toFixed(0)}x` : `${(a / b).toFixed(2)}x`)
const rows: string[][] = [
  ['measure', 'egress-guard matcher', 'baseline', 'ratio', 'goal'],
  ['memory per domain (heap + typed arrays)', B(matcherBytes / DOMAINS), `${B(setBytes / setSize)} (Set<string>)`, ratio(matcherBytes / DOMAINS, setBytes / setSize), '< 120 B: ' + (matcherBytes / DOMAINS < 120 ? 'met' : 'NOT MET')],
  ['name lookups per CPU second (30% exact, 20% sub, 50% miss)', both(ours), `${both(naive)} Set.has, exact only`, ratio(ours.perCpuSec, naive.perCpuSec), '>= 2 M/s: ' + (ours.perCpuSec >= 2e6 ? 'met' : 'NOT MET')],
  ['  the same, reading verdict.entry of every hit', both(oursEntry), '', ratio(oursEntry.perCpuSec, naive.perCpuSec), ''],
  ['IP lookups per CPU second (50% in a listed net; 90% v4)', both(oursIp), `${both(scanRate)} linear scan`, ratio(oursIp.perCpuSec, scanRate.perCpuSec), '>= 1 M/s: ' + (oursIp.perCpuSec >= 1e6 ? 'met' : 'NOT MET')],
  ['', '', `${both(blRate)} net.BlockList`, ratio(oursIp.perCpuSec, blRate.perCpuSec), ''],
]
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
console.log(`\nmatcher benchmark: ${DOMAINS} domains + ${CIDRS} networks, ${QUERIES} queries each, node ${process.version}`)
for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd())
console.log(
  `\nbuild ${buildCpuMs.toFixed(0)} ms CPU (wall ${buildMs.toFixed(0)} ms); ${stats.domainKeys} domain keys, ${stats.netEntries} networks, ${stats.trieNodes} trie nodes; ` +
    `matcher total ${(matcherBytes / 2 ** 20).toFixed(1)} MiB (the ${CIDRS} networks included), typed arrays ${(stats.typedBytes / 2 ** 20).toFixed(1)} MiB`,
)
console.log(`hit rates: names ${((100 * ours.hits) / QUERIES).toFixed(1)} % (Set.has ${((100 * naive.hits) / QUERIES).toFixed(1)} %), addresses ${((100 * oursIp.hits) / QUERIES).toFixed(1)} %`)
console.log(`baselines on samples: linear scan ${scanRate.hits}/${sample.length} hits, BlockList ${blRate.hits}/${blSample.length} hits`)
console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} cores`)
