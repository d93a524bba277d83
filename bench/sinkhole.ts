// Issue 4 "Speed": the sinkhole against dnsmasq with the same generated blocklist, in one run, with
// dnsperf. Load time, memory, max qps at < 0.1% loss for blocked and forwarded names, p99 at half that
// rate, server CPU per query, hit logging on/off, and a bare Node UDP echo as the ceiling.
//   npx tsx bench/sinkhole.ts                      # 1,000,000 names, 10 s per measurement
//   npx tsx bench/sinkhole.ts --domains 10000 --seconds 3
//   npx tsx bench/sinkhole.ts --load-only --runs 3    # load time, load CPU, RSS and peak RSS only
// Server on core 1, dnsperf (and the shared upstream) on core 0, so they do not fight for a core.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import dgram from 'node:dgram'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import dnsPacket from 'dns-packet'
import { generateListParts, prng } from './lib/gen-list.js'

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
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
const MAX_LOSS = 0.001
const RUNS = Math.max(1, Number(args.runs))

const dir = mkdtempSync(join(tmpdir(), 'eg-bench-sinkhole-'))
const children = new Set<ChildProcess>()
function cleanup(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
process.on('exit', cleanup)
process.on('SIGINT', () => process.exit(130))

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const log = (s: string) => process.stderr.write(s + '\n')

// ---------------------------------------------------------------- inputs

log(`generating ${DOMAINS.toLocaleString()} names ...`)
const list = generateListParts({ domains: DOMAINS, cidrs: 0, seed: Number(args.seed) })
const blocklist = join(dir, 'list.txt')
writeFileSync(blocklist, list.text)
// dnsmasq's equivalent: every listed name (and what is under it) answers 0.0.0.0.
const dnsmasqConf = join(dir, 'dnsmasq.conf')
writeFileSync(dnsmasqConf, list.domains.map((d) => `address=/${d}/0.0.0.0\n`).join(''))

// Queries: blocked = listed names themselves (or a name under a `*.` entry), forwarded = names under a
// zone only the upstream knows. 100k lines, shuffled with a seeded PRNG; dnsperf loops over the file.
const r = prng(11)
const sub = new Set(list.subdomainsOnly)
const QLINES = Math.min(100_000, Math.max(1000, DOMAINS))
const blockedQ: string[] = []
for (let i = 0; i < QLINES; i++) {
  const d = list.domains[Math.floor(r() * list.domains.length)]!
  blockedQ.push(`${sub.has(d) ? 'www.' + d : d} A`)
}
const blockedFile = join(dir, 'q-blocked.txt')
writeFileSync(blockedFile, blockedQ.join('\n') + '\n')
const forwardedFile = join(dir, 'q-forwarded.txt')
writeFileSync(forwardedFile, Array.from({ length: QLINES }, (_, i) => `h${i}-${Math.floor(r() * 1e6)}.fwd.bench A`).join('\n') + '\n')
const probeName = blockedQ[0]!.split(' ')[0]!
// A retry loop: 50 blocked names asked over and over (what a miner does); the hit log folds these.
const repeatedFile = join(dir, 'q-repeated.txt')
writeFileSync(repeatedFile, Array.from({ length: 10_000 }, (_, i) => blockedQ[i % 50]).join('\n') + '\n')

// ---------------------------------------------------------------- processes

let nextPort = 25300 + (process.pid % 1000) * 10
function port(): number {
  return nextPort++
}

function start(cmd: string, argv: string[], cpu: string): ChildProcess {
  // taskset execs the command, so the child's pid is the server's pid (for /proc/PID/stat).
  const c = spawn('taskset', ['-c', cpu, cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(c)
  let err = ''
  c.stderr!.on('data', (d) => (err = (err + String(d)).slice(-4000)))
  c.stdout!.resume()
  c.on('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGTERM' && sig !== 'SIGKILL') log(`${cmd} exited ${code ?? sig}: ${err}`)
  })
  return c
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  const done = new Promise((r) => c.once('exit', r))
  c.kill('SIGTERM')
  const t = setTimeout(() => c.kill('SIGKILL'), 5000)
  await done
  clearTimeout(t)
  children.delete(c)
}

/** One UDP query; true when any answer came back with an A record (or any reply, for the echo). */
function probe(p: number, name: string, anyReply: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4')
    let done = false
    const finish = (ok: boolean): void => {
      if (done) return
      done = true
      clearTimeout(t)
      s.close()
      resolve(ok)
    }
    const t = setTimeout(() => finish(false), 200)
    // Connected, so that "nothing listens yet" comes back at once as ECONNREFUSED (the ICMP port
    // unreachable) instead of costing the whole timeout: otherwise the load time of either server
    // would carry up to 200 ms of probe timing.
    s.on('error', () => finish(false))
    s.on('message', (m) => {
      try {
        const d = dnsPacket.decode(m)
        finish(anyReply || (d.answers ?? []).some((a) => a.type === 'A'))
      } catch {
        finish(anyReply)
      }
    })
    s.connect(p, '127.0.0.1', () => {
      s.send(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }))
    })
  })
}

/** Time from spawn to the first correct answer: parsing, loading and binding, as a user waits for it. */
async function waitReady(c: ChildProcess, p: number, name: string, anyReply = false): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    if (c.exitCode !== null) throw new Error('server exited during load')
    if (await probe(p, name, anyReply)) return (performance.now() - t0) / 1000
    await sleep(10)
  }
}

function cpuTicks(pid: number): number {
  // Fields after the parenthesised command name: utime is field 14, stime 15 (1-based, man 5 proc).
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

interface PerfRun {
  qps: number
  sent: number
  completed: number
  lossPct: number
  avgMs: number
  cpuUsPerQuery: number
  p99Ms?: number
}

function dnsperf(p: number, file: string, seconds: number, opts: { rate?: number; verbose?: boolean }): Promise<string> {
  const argv = ['-c', CLIENT_CPU, 'dnsperf', '-s', '127.0.0.1', '-p', String(p), '-d', file, '-l', String(seconds), '-c', args.clients!, '-q', args.outstanding!, '-t', '2']
  if (opts.rate) argv.push('-Q', String(Math.round(opts.rate)))
  if (opts.verbose) argv.push('-v')
  // Output straight to a file: with -v (a line per query) a pipe to this process would slow dnsperf down.
  const outFile = join(dir, 'dnsperf.out')
  const fd = openSync(outFile, 'w')
  return new Promise((resolve, reject) => {
    const c = spawn('taskset', argv, { stdio: ['ignore', fd, fd] })
    c.on('error', reject)
    c.on('close', () => {
      closeSync(fd)
      resolve(readFileSync(outFile, 'utf8'))
    })
  })
}

function parsePerf(out: string): Omit<PerfRun, 'cpuUsPerQuery'> {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN)
  const sent = num(/Queries sent:\s+(\d+)/)
  const completed = num(/Queries completed:\s+(\d+)/)
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    sent,
    completed,
    lossPct: sent > 0 ? ((sent - completed) / sent) * 100 : NaN,
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  }
}

/**
 * Latency percentile (ms) from dnsperf -v lines (`> NOERROR name A 0.000123`, in completion order);
 * dnsperf prints no percentiles itself. The first `skip` answers are the ramp-up of dnsperf's own
 * start (its 20 sockets opening, its rate limiter settling) and are left out, for every server alike.
 */
function percentile(out: string, pct: number, skip = 0): number {
  const lat: number[] = []
  let n = 0
  for (const m of out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)) if (n++ >= skip) lat.push(Number(m[1]))
  if (lat.length === 0) return NaN
  lat.sort((a, b) => a - b)
  return lat[Math.min(lat.length - 1, Math.floor(lat.length * pct))]! * 1000
}

/** Seconds of answers at the start of a p99 run not counted (dnsperf's ramp-up). */
const RAMP_UP_S = 0.5

/** Max rate at < 0.1% loss (closed loop first; if it loses more, throttle below what it achieved), then p99 at half. */
async function measure(pid: number, p: number, file: string): Promise<PerfRun> {
  let rate: number | undefined
  let best: PerfRun | undefined
  for (let attempt = 0; attempt < 4; attempt++) {
    const c0 = cpuTicks(pid)
    const run = parsePerf(await dnsperf(p, file, SECONDS, { rate }))
    const cpu = ((cpuTicks(pid) - c0) / CLK_TCK / Math.max(1, run.completed)) * 1e6
    best = { ...run, cpuUsPerQuery: cpu }
    log(`    ${rate ? `-Q ${Math.round(rate)}` : 'unthrottled'}: ${Math.round(run.qps)} qps, loss ${run.lossPct.toFixed(3)}%, ${cpu.toFixed(1)} us CPU/query`)
    if (!(run.lossPct >= MAX_LOSS * 100)) break
    rate = run.qps * 0.85
  }
  const half = Math.max(100, best!.qps / 2)
  const out = await dnsperf(p, file, SECONDS, { rate: half, verbose: true })
  const skip = Math.round(half * RAMP_UP_S)
  best!.p99Ms = percentile(out, 0.99, skip)
  log(`    p99 at ${Math.round(half)} qps: ${best!.p99Ms.toFixed(3)} ms (p50 ${percentile(out, 0.5, skip).toFixed(3)}, p99.9 ${percentile(out, 0.999, skip).toFixed(3)}; first ${RAMP_UP_S} s left out)`)
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

// The shared upstream for forwarded names: a wildcard answer, never cached (TTL 0), on the client core.
const upPort = port()
const upstream = start('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${upPort}`, '--address=/fwd.bench/192.0.2.1', '--local-ttl=0', '--cache-size=0', '--dns-forward-max=10000'], CLIENT_CPU)
await waitReady(upstream, upPort, 'x.fwd.bench')

type Workload = 'blocked' | 'forwarded' | 'repeated'
const FILES: Record<Workload, string> = { blocked: blockedFile, forwarded: forwardedFile, repeated: repeatedFile }

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

function peakMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
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
      const x = { wall, cpu: cpuTicks(c.pid!) / CLK_TCK, rss: rssMiB(c.pid!), peak: peakMiB(c.pid!) }
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

// 1. the ceiling: a bare Node UDP server that echoes each query back flagged as a response.
const echoPort = port()
const ECHO = `const s=require('node:dgram').createSocket('udp4');s.on('message',(m,r)=>{m[2]|=0x80;m[3]=(m[3]&0x70)|0x80;s.send(m,r.port,r.address)});s.bind(${echoPort},'127.0.0.1')`
await bench('node UDP echo (ceiling)', process.execPath, ['-e', ECHO], echoPort, ['blocked'], true)

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
lines.push(`${DOMAINS.toLocaleString('en-US')} listed names, median of ${RUNS} run(s) of ${SECONDS} s, dnsperf -c ${args.clients} -q ${args.outstanding} on core ${CLIENT_CPU}, server on core ${SERVER_CPU}; max rate at < 0.1% loss, p99 at half that rate (${SECONDS} s, the first ${RAMP_UP_S} s left out).`)
lines.push('')
lines.push('| server | load (s) | RSS loaded (MiB) | RSS at end (MiB) | blocked qps | blocked p99 (ms) | blocked CPU/query (µs) | forwarded qps | forwarded p99 (ms) | forwarded CPU/query (µs) |')
lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
for (const r of rows) {
  lines.push(`| ${r.name} | ${f(r.loadS, 2)} | ${f(r.rssMiB)} | ${f(r.rssEndMiB)} | ${f(r.blocked?.qps)} | ${f(r.blocked?.p99Ms, 3)} | ${f(r.blocked?.cpuUsPerQuery, 1)} | ${f(r.forwarded?.qps)} | ${f(r.forwarded?.p99Ms, 3)} | ${f(r.forwarded?.cpuUsPerQuery, 1)} |`)
}
const [echo, dm, sh, shHits] = rows as [Row, Row, Row, Row]
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
lines.push(`| p99 at half load (worst of blocked, forwarded) | ${f(p99max, 3)} ms | < 2 ms: ${goal(p99max < 2)} |`)
lines.push(`| load time / dnsmasq | ${f(rl, 2)}× | < 1: ${goal(rl < 1)} |`)
lines.push(`| memory of the loaded list (RSS at the first answer) / dnsmasq | ${f(rm, 2)}× | < 1: ${goal(rm < 1)} |`)
lines.push(`| RSS at the end of the run (after full-rate forwarding) / dnsmasq | ${f(ratio(sh.rssEndMiB, dm.rssEndMiB), 2)}× | (reported; see README) |`)
lines.push(`| blocked qps / node UDP echo (ceiling) | ${f(ratio(sh.blocked?.qps, echo.blocked?.qps), 2)}× | |`)
lines.push(`| p99 at half load, node UDP echo (the noise floor of this machine and client) | ${f(echo.blocked?.p99Ms, 3)} ms | |`)
// With the client as the bottleneck, qps hides the hit log's cost; server CPU per query shows it.
lines.push(`| hit log on / off, server CPU per query, every name distinct (worst case) | ${f(ratio(shHits.blocked?.cpuUsPerQuery, sh.blocked?.cpuUsPerQuery), 2)}× | ${f(sh.blocked?.cpuUsPerQuery, 1)} → ${f(shHits.blocked?.cpuUsPerQuery, 1)} µs; qps ${f(ratio(shHits.blocked?.qps, sh.blocked?.qps), 2)}×; ${f(hitBytes / 1048576, 1)} MiB of hits written in all |`)
lines.push(`| hit log on / off, server CPU per query, 50 names repeated (a retry loop) | ${f(ratio(shHits.repeated?.cpuUsPerQuery, sh.repeated?.cpuUsPerQuery), 2)}× | ${f(sh.repeated?.cpuUsPerQuery, 1)} → ${f(shHits.repeated?.cpuUsPerQuery, 1)} µs; qps ${f(ratio(shHits.repeated?.qps, sh.repeated?.qps), 2)}× |`)
process.stdout.write(lines.join('\n') + '\n')
process.exit(0)
