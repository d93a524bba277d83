// Per-packet cost of the container-egress learned sets (issue 16: "100,000 learned pairs in the
// kernel: TCP connect latency within 10% of none"). ONE "container" namespace has a link to each of
// six forwarding "host" namespaces, and one client process connects to a server through each host in
// turn (connect by connect, so machine noise hits every scenario alike): no rules at all; conntrack
// only (as on any Docker host); a held (enforce) container with only the destination learned, and
// with 100,000 more learned pairs, for the iptables+ipset and the nftables backend. The destination
// is learned as a proto:port pair, so a connect's SYN misses the any-port set and hits the ported one.
// Usage: npx tsx bench/container-connect.ts [--pairs 100000] [--connects 2000] [--quick]
import { execFileSync, spawn } from 'node:child_process'
import { run } from '../src/enforce/exec.js'
import { createContainerEnforcer } from '../src/enforce/container-factory.js'
import type { ContainerEnforcer, LearnPair } from '../src/enforce/container-types.js'
import { argFlag, argNum, loadAvg, median, percentile } from './kernel-common.js'

const quick = argFlag('quick')
const PAIRS = argNum('pairs', quick ? 10_000 : 100_000)
const CONNECTS = argNum('connects', quick ? 400 : 2000)
const PORT = 8090
const tag = `${process.pid % 100000}`
const made: string[] = []
const enforcers: ContainerEnforcer[] = []

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
function ns(name: string): string {
  const n = `egc${name}${tag}`
  sh('ip', ['netns', 'add', n])
  made.push(n)
  sh('ip', ['-n', n, 'link', 'set', 'lo', 'up'])
  return n
}

const SERVER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end(); }).listen(${PORT}, '0.0.0.0', () => console.log('ready'))`
const LOOP = `
const net = require('node:net'); const hosts = process.argv[1].split(','), port = Number(process.argv[2]), n = Number(process.argv[3]);
const out = hosts.map(() => []);
function one(i, h) {
  if (i === n) { process.stdout.write(JSON.stringify(out.map((o) => o.slice(50)))); return; } // first 50 each: warm-up
  const t0 = process.hrtime.bigint();
  const s = net.connect({ host: hosts[h], port }, () => {
    out[h].push(Number(process.hrtime.bigint() - t0) / 1000); s.destroy();
    setImmediate(() => (h + 1 === hosts.length ? one(i + 1, 0) : one(i, h + 1)));
  });
  s.on('error', (e) => { console.error(hosts[h], e.message); process.exit(1); });
}
one(0, 0);`

const SCENARIOS = ['none', 'conntrack', 'iptables-0', `iptables-${PAIRS}`, 'nftables-0', `nftables-${PAIRS}`] as const
const ID = 'be'.repeat(32)

async function connects(client: string, dsts: string[]): Promise<number[][]> {
  const r = await run(process.execPath, ['-e', LOOP, dsts.join(','), String(PORT), String(CONNECTS + 50)], { netns: client, timeoutMs: 900_000 })
  return JSON.parse(r.stdout) as number[][]
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)')
  const server = ns('srv')
  const client = ns('cli')
  const setups = new Map<string, { host: string; dst: string; src: string; gw: string }>()
  SCENARIOS.forEach((s, i) => {
    const host = ns(`h${i}`)
    sh('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    const links: [string, string, string, string, string][] = [
      // [a ns, a addr, b ns, b addr, name stem]
      [client, `10.${i}.0.2/24`, host, `10.${i}.0.1/24`, 'c'],
      [host, `203.0.113.${4 * i + 1}/30`, server, `203.0.113.${4 * i + 2}/30`, 's'],
    ]
    for (const [a, aAddr, b, bAddr, stem] of links) {
      const ai = `v${stem}a${tag}${i}`.slice(0, 15)
      const bi = `v${stem}b${tag}${i}`.slice(0, 15)
      sh('ip', ['link', 'add', ai, 'netns', a, 'type', 'veth', 'peer', 'name', bi, 'netns', b])
      sh('ip', ['-n', a, 'addr', 'add', aAddr, 'dev', ai])
      sh('ip', ['-n', b, 'addr', 'add', bAddr, 'dev', bi])
      sh('ip', ['-n', a, 'link', 'set', ai, 'up'])
      sh('ip', ['-n', b, 'link', 'set', bi, 'up'])
    }
    // The server's address on host i's link is reached through host i; replies go back the same way.
    sh('ip', ['-n', client, 'route', 'add', `203.0.113.${4 * i + 2}/32`, 'via', `10.${i}.0.1`])
    sh('ip', ['-n', server, 'route', 'add', `10.${i}.0.0/24`, 'via', `203.0.113.${4 * i + 1}`])
    setups.set(s, { host, dst: `203.0.113.${4 * i + 2}`, src: `10.${i}.0.2`, gw: `10.${i}.0.1` })
  })
  const srv = spawn('ip', ['netns', 'exec', server, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((res) => srv.stdout!.once('data', () => res()))
  try {
    // What every Docker host has anyway (its NAT): connection tracking in the forwarding namespace.
    sh('ip', ['netns', 'exec', setups.get('conntrack')!.host, 'iptables', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'])
    for (const s of SCENARIOS) {
      if (s === 'none' || s === 'conntrack') continue
      const { host, dst, src } = setups.get(s)!
      const [kind, count] = s.split('-') as ['iptables' | 'nftables', string]
      const e = createContainerEnforcer(kind, { netns: host })
      enforcers.push(e)
      await e.apply({ containers: [{ id: ID, addresses: [src], mode: 'enforce', nets: [] }], sinkhole: { v4: [setups.get(s)!.gw], v6: [], port: 53 } })
      const n = Number(count)
      if (n > 0) {
        // Half any-port, half ported pairs, spread over 11.0.0.0/8.
        const pairs: LearnPair[] = []
        for (let k = 0; k < n; k++) {
          const v = (0x0b000000 + k * 37) >>> 0
          pairs.push({ container: src, dst: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`, ttlSec: 3600, ...(k % 2 ? { proto: 'tcp' as const, port: 443 } : {}) })
        }
        const t0 = performance.now()
        await e.learn(pairs)
        console.error(`${s}: learned ${n} pairs in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      }
      await e.learn([{ container: src, dst, proto: 'tcp', port: PORT, ttlSec: 3600 }])
    }
    // Sanity: a held container reaches only what it learned.
    const sample = setups.get(`iptables-${PAIRS}`)!
    const refused = await run(process.execPath, ['-e', `require('node:net').connect(9, '${sample.dst}').on('error', (e) => console.log(e.code)).on('connect', () => console.log('open'))`], { netns: client, reject: false })
    if (!refused.stdout.includes('ECONNREFUSED')) throw new Error(`expected an unlearned port to be refused, got ${refused.stdout}`)

    console.error(`load average before: ${loadAvg()}`)
    const got = await connects(client, SCENARIOS.map((s) => setups.get(s)!.dst))
    const lat = new Map<string, number[]>(SCENARIOS.map((s, i) => [s, got[i]!]))
    console.error(`load average after: ${loadAvg()}`)
    const med = (s: string): number => median(lat.get(s)!)
    console.log(`container-connect: TCP connect through a forwarding host, ${CONNECTS} connects per scenario, one client alternating connect by connect, ${PAIRS} learned pairs`)
    const summary: Record<string, { medianUs: number; p99Us: number; vsNone: number; vsConntrack: number; vsZeroPairs?: number }> = {}
    for (const s of SCENARIOS) {
      const m = med(s)
      const zero = s.endsWith(`-${PAIRS}`) ? med(s.replace(`-${PAIRS}`, '-0')) : undefined
      summary[s] = {
        medianUs: Math.round(m),
        p99Us: Math.round(percentile(lat.get(s)!, 99)),
        vsNone: Number((m / med('none')).toFixed(3)),
        vsConntrack: Number((m / med('conntrack')).toFixed(3)),
        ...(zero ? { vsZeroPairs: Number((m / zero).toFixed(3)) } : {}),
      }
      console.log(
        `  ${s.padEnd(16)} median ${m.toFixed(0).padStart(6)} us   p99 ${percentile(lat.get(s)!, 99).toFixed(0).padStart(6)} us   ${(m / med('none')).toFixed(2)}x none   ${(m / med('conntrack')).toFixed(2)}x conntrack` +
          (zero ? `   ${(m / zero).toFixed(2)}x the same backend with 0 pairs (goal <= 1.10x)` : ''),
      )
    }
    console.log(JSON.stringify({ pairs: PAIRS, connects: CONNECTS, summary }))
  } finally {
    srv.kill('SIGKILL')
  }
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
