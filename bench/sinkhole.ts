// Issue 4 "Speed": the sinkhole against dnsmasq with the same generated blocklist, in one run, with
// dnsperf. Load time, memory, max qps at < 0.1% loss for blocked and forwarded names, p99 at half that
// rate, server CPU per query, hit logging on/off, and bare Node UDP servers (an echo, a forwarder) as the
// ceilings.
//   npx tsx bench/sinkhole.ts                      # 1,000,000 names, 10 s per measurement
//   npx tsx bench/sinkhole.ts --domains 10000 --seconds 3
//   npx tsx bench/sinkhole.ts --load-only --runs 3    # load time, load CPU, RSS and peak RSS only
// Server on core 1, dnsperf (and the shared upstream) on core 0, so they do not fight for a core. The
// upstream runs SCHED_FIFO when it may (root): it stands in for a resolver on another machine, and
// without it every forwarded answer waits for dnsperf's time slice on the shared core (dnsperf straight
// at that upstream at 22k qps: p99 5-8 ms on the shared core, 0.2-0.35 ms with SCHED_FIFO).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { generateListParts } from './lib/gen-list.js'
import {
  RAMP_UP_S, benchProcs, canRealtime, cpuSeconds, echoSource, forwarderSource, log, peakMiB, parsePerf, percentiles, rssMiB, upstreamArgs, writeQueryFiles, type PerfRun,
} from './lib/dns-bench.js'

const { values: args } = parseArgs({
  options: {
    domains: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '20' },
    outstanding: { type: 'string', default: '200' },
    'server-cpu': { type: 'string', default: '1' },
    'client-cpu': { type: 'string', default: '0' },
    seed: { type: 'string', default: '7' },
    runs: { type: 'string', default: '1' },
    // Only load time, load CPU and memory, dnsmasq vs the sinkhole, --runs times each: no dnsperf.
    'load-only': { type: 'boolean', default: false },
    // With --load-only: also load this other build's cli.js (e.g. a copy of dist/ from an older
    // commit), alternating with the others, for a before/after in the same run.
    'compare-cli': { type: 'string' },
  },
})
const DOMAINS = Number(args.domains)
const SECONDS = Number(args.seconds)
const SERVER_CPU = args['server-cpu']!
const CLIENT_CPU = args['client-cpu']!
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MAX_LOSS = 0.001
const RUNS = Math.max(1, Number(args.runs))

const dir = mkdtempSync(join(tmpdir(), 'eg-bench-sinkhole-'))
const { port, start, stop, waitReady, dnsperf } = benchProcs(dir, { clientCpu: CLIENT_CPU, clients: args.clients!, outstanding: args.outstanding! })

// ---------------------------------------------------------------- inputs

log(`generating ${DOMAINS.toLocaleString()} names ...`)
const list = generateListParts({ domains: DOMAINS, cidrs: 0, seed: Number(args.seed) })
const blocklist = join(dir, 'list.txt')
writeFileSync(blocklist, list.text)
// dnsmasq's equivalent: every listed name (and what is under it) answers 0.0.0.0.
const dnsmasqConf = join(dir, 'dnsmasq.conf')
writeFileSync(dnsmasqConf, list.domains.map((d) => `address=/${d}/0.0.0.0\n`).join(''))

const q = writeQueryFiles(list, dir, DOMAINS)
const probeName = q.probeName

/** Max rate at < 0.1% loss (closed loop first; if it loses more, throttle below what it achieved), then p99 at half. */
async function measure(pid: number, p: number, file: string): Promise<PerfRun> {
  let rate: number | undefined
  let best: PerfRun | undefined
  for (let attempt = 0; attempt < 4; attempt++) {
    const c0 = cpuSeconds(pid)
    const run = parsePerf(await dnsperf(p, file, SECONDS, { rate }))
    const cpu = ((cpuSeconds(pid) - c0) / Math.max(1, run.completed)) * 1e6
    best = { ...run, cpuUsPerQuery: cpu }
    log(`    ${rate ? `-Q ${Math.round(rate)}` : 'unthrottled'}: ${Math.round(run.qps)} qps, loss ${run.lossPct.toFixed(3)}%, ${cpu.toFixed(1)} us CPU/query`)
    if (!(run.lossPct >= MAX_LOSS * 100)) break
    rate = run.qps * 0.85
  }
  const half = Math.max(100, best!.qps / 2)
  const out = await dnsperf(p, file, SECONDS, { rate: half, verbose: true })
  const skip = Math.round(half * RAMP_UP_S)
  const [p50, p99, p999] = percentiles(out, [0.5, 0.99, 0.999], skip) as [number, number, number]
  best!.p99Ms = p99
  log(`    p99 at ${Math.round(half)} qps: ${p99.toFixed(3)} ms (p50 ${p50.toFixed(3)}, p99.9 ${p999.toFixed(3)}; first ${RAMP_UP_S} s left out)`)
  return best!
}

// ---------------------------------------------------------------- the run

interface Row {
  name: string
  loadS: number
  /** RSS at the first correct answer: what the loaded list costs. */
  rssMiB: number
  /** RSS at the end of the run, after every workload at full rate (garbage not yet collected included). */
  rssEndMiB?: number
  blocked?: PerfRun
  forwarded?: PerfRun
  repeated?: PerfRun
}
const rows: Row[] = []

// The shared upstream for forwarded names: a wildcard answer, never cached (TTL 0), on the client core,
// real-time when allowed (see the top of this file).
const upPort = port()
const UPSTREAM_RT = canRealtime()
if (!UPSTREAM_RT) log('note: cannot use SCHED_FIFO (not root?): the upstream shares the client core at normal priority, so forwarded p99 includes its waits for dnsperf')
const upstream = start('dnsmasq', upstreamArgs(upPort), CLIENT_CPU, UPSTREAM_RT)
await waitReady(upstream, upPort, 'x.fwd.bench')

type Workload = 'blocked' | 'forwarded' | 'repeated'
const FILES: Record<Workload, string> = { blocked: q.blocked, forwarded: q.forwarded, repeated: q.repeated }

async function bench(name: string, cmd: string, argv: string[], p: number, workloads: Workload[], anyReply = false): Promise<void> {
  log(`${name}:`)
  const c = start(cmd, argv, SERVER_CPU)
  const loadS = await waitReady(c, p, anyReply ? 'echo.bench' : probeName, anyReply)
  const row: Row = { name, loadS, rssMiB: rssMiB(c.pid!) }
  log(`  ready in ${loadS.toFixed(2)} s, RSS ${row.rssMiB.toFixed(0)} MiB`)
  for (const w of workloads) {
    log(`  ${w}:`)
    // Several runs on a shared, noisy machine: report each figure's median.
    const runs: PerfRun[] = []
    for (let i = 0; i < RUNS; i++) runs.push(await measure(c.pid!, p, FILES[w]))
    const med = (k: keyof PerfRun) => runs.map((x) => x[k] as number).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!
    row[w] = { ...runs[0]!, qps: med('qps'), cpuUsPerQuery: med('cpuUsPerQuery'), p99Ms: med('p99Ms'), lossPct: med('lossPct'), avgMs: med('avgMs') }
  }
  row.rssEndMiB = rssMiB(c.pid!)
  rows.push(row)
  await stop(c)
}


const cli = join(ROOT, 'dist', 'cli.js')
if (!existsSync(cli)) throw new Error('build first: npx tsc -p tsconfig.json')
const dnsmasqVersion = /version (\S+)/.exec(execFileSync('dnsmasq', ['--version'], { encoding: 'utf8' }))?.[1] ?? ''

if (args['load-only']) {
  // Alternating dnsmasq and sinkhole starts, so both see the same machine load; CPU seconds spent up
  // to the first correct answer (utime+stime of the server) are the steadier figure on a loaded box.
  type L = { wall: number; cpu: number; rss: number; peak: number }
  const res: Record<'dnsmasq' | 'sinkhole' | 'other', L[]> = { dnsmasq: [], sinkhole: [], other: [] }
  const other = args['compare-cli']
  for (let i = 0; i < RUNS; i++) {
    for (const which of ['dnsmasq', 'sinkhole', ...(other ? ['other' as const] : [])] as const) {
      const p = port()
      const c = which === 'dnsmasq'
        ? start('dnsmasq', ['--no-daemon', `--conf-file=${dnsmasqConf}`, '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${p}`, `--server=127.0.0.1#${upPort}`, '--cache-size=10000'], SERVER_CPU)
        : start(process.execPath, [which === 'other' ? other! : cli, 'sinkhole', '--listen', `127.0.0.1:${p}`, '--upstream', `127.0.0.1:${upPort}`, '--blocklists', blocklist, '--cache-size', '10000', '--log-level', 'warn'], SERVER_CPU)
      const wall = await waitReady(c, p, probeName)
      const x = { wall, cpu: cpuSeconds(c.pid!), rss: rssMiB(c.pid!), peak: peakMiB(c.pid!) }
      log(`  ${which} run ${i + 1}: ready in ${x.wall.toFixed(2)} s wall, ${x.cpu.toFixed(2)} s CPU, RSS ${x.rss.toFixed(0)} MiB, peak ${x.peak.toFixed(0)} MiB`)
      res[which].push(x)
      await stop(c)
    }
  }
  await stop(upstream)
  const med = (xs: L[], k: keyof L) => xs.map((x) => x[k]).sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const out = [`${DOMAINS.toLocaleString('en-US')} listed names, load only, medians of ${RUNS} run(s); load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    '| server | load wall (s) | load CPU (s) | RSS (MiB) | peak RSS (MiB) |', '| --- | ---: | ---: | ---: | ---: |']
  const named: [string, L[]][] = [[`dnsmasq ${dnsmasqVersion}`, res.dnsmasq], ['egress-guard sinkhole', res.sinkhole]]
  if (other) named.push([`egress-guard sinkhole (${other})`, res.other])
  for (const [name, xs] of named) {
    out.push(`| ${name} | ${med(xs, 'wall').toFixed(2)} | ${med(xs, 'cpu').toFixed(2)} | ${med(xs, 'rss').toFixed(0)} | ${med(xs, 'peak').toFixed(0)} |`)
  }
  for (const k of ['wall', 'cpu', 'rss', 'peak'] as const) {
    out.push(`sinkhole / dnsmasq ${k}: ${(med(res.sinkhole, k) / med(res.dnsmasq, k)).toFixed(2)}x` + (other ? `; other build / dnsmasq: ${(med(res.other, k) / med(res.dnsmasq, k)).toFixed(2)}x` : ''))
  }
  process.stdout.write(out.join('\n') + '\n')
  process.exit(0)
}

// 1. the ceilings: bare Node UDP servers (lib/dns-bench.ts), an echo for blocked answers and a
// forwarder for forwarded ones.
const echoPort = port()
await bench('node UDP echo (ceiling)', process.execPath, ['-e', echoSource(echoPort)], echoPort, ['blocked'], true)
const fwdPort = port()
await bench('node UDP forwarder (ceiling)', process.execPath, ['-e', forwarderSource(fwdPort, upPort)], fwdPort, ['forwarded'], true)

// 2. dnsmasq with the same list.
const dmPort = port()
await bench(`dnsmasq ${dnsmasqVersion}`, 'dnsmasq',
  ['--no-daemon', `--conf-file=${dnsmasqConf}`, '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${dmPort}`, `--server=127.0.0.1#${upPort}`, '--cache-size=10000', '--dns-forward-max=1000'],
  dmPort, ['blocked', 'forwarded'])

// 3. the sinkhole, hit logging off and on (every blocked lookup here is a distinct name: the worst case).
// The real command, as an operator runs it (blocklist load, policy build, matcher, sockets).
const sinkholeArgs = (p: number) => [cli, 'sinkhole', '--listen', `127.0.0.1:${p}`, '--upstream', `127.0.0.1:${upPort}`, '--blocklists', blocklist, '--cache-size', '10000', '--log-level', 'warn']
const shPort = port()
await bench('egress-guard sinkhole', process.execPath, sinkholeArgs(shPort), shPort, ['blocked', 'forwarded', 'repeated'])
const hitFile = join(dir, 'hits.jsonl')
const shPort2 = port()
await bench('egress-guard sinkhole, hit log on', process.execPath, [...sinkholeArgs(shPort2), '--hit-log', hitFile], shPort2, ['blocked', 'repeated'])
const hitBytes = existsSync(hitFile) ? statSync(hitFile).size : 0
await stop(upstream)

// ---------------------------------------------------------------- report

const f = (n: number | undefined, d = 0) => (n === undefined || Number.isNaN(n) ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }))
const lines: string[] = []
lines.push(`${DOMAINS.toLocaleString('en-US')} listed names, median of ${RUNS} run(s) of ${SECONDS} s, dnsperf -c ${args.clients} -q ${args.outstanding} on core ${CLIENT_CPU}, server on core ${SERVER_CPU}, upstream on core ${CLIENT_CPU} ${UPSTREAM_RT ? 'at SCHED_FIFO' : 'at normal priority'}; max rate at < 0.1% loss, p99 at half that rate (${SECONDS} s, the first ${RAMP_UP_S} s left out).`)
lines.push('')
lines.push('| server | load (s) | RSS loaded (MiB) | RSS at end (MiB) | blocked qps | blocked p99 (ms) | blocked CPU/query (µs) | forwarded qps | forwarded p99 (ms) | forwarded CPU/query (µs) |')
lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
for (const r of rows) {
  lines.push(`| ${r.name} | ${f(r.loadS, 2)} | ${f(r.rssMiB)} | ${f(r.rssEndMiB)} | ${f(r.blocked?.qps)} | ${f(r.blocked?.p99Ms, 3)} | ${f(r.blocked?.cpuUsPerQuery, 1)} | ${f(r.forwarded?.qps)} | ${f(r.forwarded?.p99Ms, 3)} | ${f(r.forwarded?.cpuUsPerQuery, 1)} |`)
}
const [echo, fwd, dm, sh, shHits] = rows as [Row, Row, Row, Row, Row]
const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : NaN)
const goal = (ok: boolean) => (ok ? 'met' : 'NOT met')
const rb = ratio(sh.blocked?.qps, dm.blocked?.qps)
const rf = ratio(sh.forwarded?.qps, dm.forwarded?.qps)
const rcpu = ratio(sh.blocked?.cpuUsPerQuery, dm.blocked?.cpuUsPerQuery)
const rl = ratio(sh.loadS, dm.loadS)
const rm = ratio(sh.rssMiB, dm.rssMiB)
const p99max = Math.max(sh.blocked?.p99Ms ?? NaN, sh.forwarded?.p99Ms ?? NaN)
lines.push('')
lines.push('| ratio (sinkhole / baseline) | value | goal |')
lines.push('| --- | ---: | --- |')
lines.push(`| blocked qps / dnsmasq | ${f(rb, 2)}× | ≥ 1: ${goal(rb >= 1)} |`)
lines.push(`| blocked CPU per query / dnsmasq | ${f(rcpu, 2)}× | (lower is better) |`)
lines.push(`| forwarded qps / dnsmasq | ${f(rf, 2)}× | ≥ 0.5: ${goal(rf >= 0.5)} |`)
lines.push(`| p99 at half load (worst of blocked, forwarded) | ${f(p99max, 3)} ms | < 2 ms: ${goal(p99max < 2)} (blocked ${f(sh.blocked?.p99Ms, 3)}, forwarded ${f(sh.forwarded?.p99Ms, 3)}) |`)
lines.push(`| load time / dnsmasq | ${f(rl, 2)}× | < 1: ${goal(rl < 1)} |`)
lines.push(`| memory of the loaded list (RSS at the first answer) / dnsmasq | ${f(rm, 2)}× | < 1: ${goal(rm < 1)} |`)
lines.push(`| RSS at the end of the run (after full-rate forwarding) / dnsmasq | ${f(ratio(sh.rssEndMiB, dm.rssEndMiB), 2)}× | (reported; see README) |`)
lines.push(`| blocked qps / node UDP echo (ceiling) | ${f(ratio(sh.blocked?.qps, echo.blocked?.qps), 2)}× | |`)
lines.push(`| p99 at half load, node UDP echo (the noise floor of this machine and client) | ${f(echo.blocked?.p99Ms, 3)} ms | |`)
lines.push(`| forwarded qps / node UDP forwarder (ceiling) | ${f(ratio(sh.forwarded?.qps, fwd.forwarded?.qps), 2)}× | |`)
lines.push(`| p99 at half load, node UDP forwarder | ${f(fwd.forwarded?.p99Ms, 3)} ms | |`)
// With the client as the bottleneck, qps hides the hit log's cost; server CPU per query shows it.
lines.push(`| hit log on / off, server CPU per query, every name distinct (worst case) | ${f(ratio(shHits.blocked?.cpuUsPerQuery, sh.blocked?.cpuUsPerQuery), 2)}× | ${f(sh.blocked?.cpuUsPerQuery, 1)} → ${f(shHits.blocked?.cpuUsPerQuery, 1)} µs; qps ${f(ratio(shHits.blocked?.qps, sh.blocked?.qps), 2)}×; ${f(hitBytes / 1048576, 1)} MiB of hits written in all |`)
lines.push(`| hit log on / off, server CPU per query, 50 names repeated (a retry loop) | ${f(ratio(shHits.repeated?.cpuUsPerQuery, sh.repeated?.cpuUsPerQuery), 2)}× | ${f(sh.repeated?.cpuUsPerQuery, 1)} → ${f(shHits.repeated?.cpuUsPerQuery, 1)} µs; qps ${f(ratio(shHits.repeated?.qps, sh.repeated?.qps), 2)}× |`)
process.stdout.write(lines.join('\n') + '\n')
process.exit(0)
