// Shared parts of the DNS benchmarks (bench/sinkhole.ts, bench/sinkhole-p99.ts): pinned child
// processes, readiness probes, dnsperf runs and their parsing, the query files, and the bare Node
// servers used as ceilings. Benchmarks only: the product spawns processes from src/exec.ts.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import dgram from 'node:dgram'
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import dnsPacket from 'dns-packet'
import { prng, type GeneratedList } from './gen-list.js'

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
export const log = (s: string) => process.stderr.write(s + '\n')

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

/** Whether this process may start real-time (SCHED_FIFO) children: root, or CAP_SYS_NICE. */
export function canRealtime(): boolean {
  try {
    execFileSync('chrt', ['-f', '10', 'true'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export interface QueryFiles {
  blocked: string
  forwarded: string
  /** A retry loop: 50 blocked names asked over and over (what a miner does); the hit log folds these. */
  repeated: string
  /** A blocked name, to probe a server with. */
  probeName: string
}

/**
 * Blocked = listed names themselves (or a name under a `*.` entry), forwarded = names under a zone only
 * the upstream knows. 100k lines, shuffled with a seeded PRNG; dnsperf loops over the file.
 */
export function writeQueryFiles(list: GeneratedList, dir: string, domains: number): QueryFiles {
  const r = prng(11)
  const sub = new Set(list.subdomainsOnly)
  const lines = Math.min(100_000, Math.max(1000, domains))
  const blockedQ: string[] = []
  for (let i = 0; i < lines; i++) {
    const d = list.domains[Math.floor(r() * list.domains.length)]!
    blockedQ.push(`${sub.has(d) ? 'www.' + d : d} A`)
  }
  const files = { blocked: join(dir, 'q-blocked.txt'), forwarded: join(dir, 'q-forwarded.txt'), repeated: join(dir, 'q-repeated.txt'), probeName: blockedQ[0]!.split(' ')[0]! }
  writeFileSync(files.blocked, blockedQ.join('\n') + '\n')
  writeFileSync(files.forwarded, Array.from({ length: lines }, (_, i) => `h${i}-${Math.floor(r() * 1e6)}.fwd.bench A`).join('\n') + '\n')
  writeFileSync(files.repeated, Array.from({ length: 10_000 }, (_, i) => blockedQ[i % 50]).join('\n') + '\n')
  return files
}

/** The shared upstream for forwarded names: a wildcard answer for fwd.bench, never cached (TTL 0). */
export const upstreamArgs = (port: number) => ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`, '--address=/fwd.bench/192.0.2.1', '--local-ttl=0', '--cache-size=0', '--dns-forward-max=10000']

/** The blocked-answer ceiling: a bare Node UDP server that echoes each query back flagged as a response. */
export const echoSource = (port: number) =>
  `const s=require('node:dgram').createSocket('udp4');s.on('message',(m,r)=>{m[2]|=0x80;m[3]=(m[3]&0x70)|0x80;s.send(m,r.port,r.address)});s.bind(${port},'127.0.0.1')`

/**
 * The forwarding ceiling: a bare Node UDP forwarder. A sequential ID per query on 4 connected sockets to
 * the upstream, the client's ID put back on the answer; no parsing, no checks, no timeouts, no retries.
 */
export const forwarderSource = (port: number, upPort: number) => `const d=require('node:dgram'),s=d.createSocket('udp4'),P=new Array(65536),U=[];let n=0;
for(let i=0;i<4;i++){const u=d.createSocket({type:'udp4',lookup:(h,o,cb)=>cb(null,h,4)});u.on('message',m=>{const k=m.readUInt16BE(0),p=P[k];if(!p)return;P[k]=undefined;m.writeUInt16BE(p.id,0);s.send(m,p.port,p.address)});u.connect(${upPort},'127.0.0.1');U.push(u)}
s.on('message',(m,r)=>{const k=n=(n+1)&65535;P[k]={id:m.readUInt16BE(0),port:r.port,address:r.address};m.writeUInt16BE(k,0);U[k&3].send(m)});s.bind(${port},'127.0.0.1')`

export interface PerfRun {
  qps: number
  sent: number
  completed: number
  lossPct: number
  avgMs: number
  cpuUsPerQuery: number
  p99Ms?: number
}

export function parsePerf(out: string): Omit<PerfRun, 'cpuUsPerQuery'> {
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

/** Seconds of answers at the start of a p99 run not counted (dnsperf's ramp-up). */
export const RAMP_UP_S = 0.5

/**
 * Latency percentiles (ms) from dnsperf -v lines (`> NOERROR name A 0.000123`, in completion order);
 * dnsperf prints no percentiles itself. The first `skip` answers are the ramp-up of dnsperf's own
 * start (its 20 sockets opening, its rate limiter settling) and are left out, for every server alike.
 */
export function percentiles(out: string, pcts: number[], skip = 0): number[] {
  const lat: number[] = []
  let n = 0
  for (const m of out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)) if (n++ >= skip) lat.push(Number(m[1]))
  if (lat.length === 0) return pcts.map(() => NaN)
  lat.sort((a, b) => a - b)
  return pcts.map((p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]! * 1000)
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export function cpuTicks(pid: number): number {
  // Fields after the parenthesised command name: utime is field 14, stime 15 (1-based, man 5 proc).
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}
export const cpuSeconds = (pid: number) => cpuTicks(pid) / CLK_TCK

function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}
export const rssMiB = (pid: number) => statusKiB(pid, 'VmRSS') / 1024
export const peakMiB = (pid: number) => statusKiB(pid, 'VmHWM') / 1024

/** One UDP query; true when any answer came back with an A record (or any reply, for the echo). */
export function probe(p: number, name: string, anyReply: boolean): Promise<boolean> {
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

export interface BenchProcs {
  dir: string
  /** A fresh port for a server. */
  port(): number
  /** Start `cmd` pinned to `cpu` (SCHED_FIFO when `realtime`); its pid is the command's own. */
  start(cmd: string, argv: string[], cpu: string, realtime?: boolean): ChildProcess
  stop(c: ChildProcess): Promise<void>
  /** Time from spawn to the first correct answer: parsing, loading and binding, as a user waits for it. */
  waitReady(c: ChildProcess, p: number, name: string, anyReply?: boolean): Promise<number>
  /** dnsperf against 127.0.0.1:p on the client core; its whole output. */
  dnsperf(p: number, file: string, seconds: number, opts: { rate?: number; verbose?: boolean }): Promise<string>
}

/** Children are killed and `dir` removed when this process exits, however it exits. */
export function benchProcs(dir: string, o: { clientCpu: string; clients: string; outstanding: string }): BenchProcs {
  const children = new Set<ChildProcess>()
  process.on('exit', () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  process.on('SIGINT', () => process.exit(130))
  let nextPort = 25300 + (process.pid % 1000) * 10

  function start(cmd: string, argv: string[], cpu: string, realtime = false): ChildProcess {
    // taskset (and chrt) exec the command, so the child's pid is the server's pid (for /proc/PID/stat).
    const pre = realtime ? ['chrt', '-f', '10', 'taskset'] : ['taskset']
    const c = spawn(pre[0]!, [...pre.slice(1), '-c', cpu, cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
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

  async function waitReady(c: ChildProcess, p: number, name: string, anyReply = false): Promise<number> {
    const t0 = performance.now()
    for (;;) {
      if (c.exitCode !== null) throw new Error('server exited during load')
      if (await probe(p, name, anyReply)) return (performance.now() - t0) / 1000
      await sleep(10)
    }
  }

  function dnsperf(p: number, file: string, seconds: number, opts: { rate?: number; verbose?: boolean }): Promise<string> {
    const argv = ['-c', o.clientCpu, 'dnsperf', '-s', '127.0.0.1', '-p', String(p), '-d', file, '-l', String(seconds), '-c', o.clients, '-q', o.outstanding, '-t', '2']
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

  return { dir, port: () => nextPort++, start, stop, waitReady, dnsperf }
}
