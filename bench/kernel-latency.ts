// Per-packet cost of the block sets: TCP connect latency (median, p99) from a namespace to an
// unblocked address with NO rules, with 100,000 blocked entries in the iptables+ipset backend, in the
// nftables backend, and, for contrast, behind a linear chain of 100,000 iptables rules, measured in
// interleaved rounds in the same run (goal: sets within 10% of none).
// Usage: npx tsx bench/kernel-latency.ts [--entries 100000] [--connects 500] [--rounds 4] [--quick]
import { execFileSync, spawn } from 'node:child_process'
import { run } from '../src/enforce/exec.js'
import { createEnforcer } from '../src/enforce/factory.js'
import type { DesiredState } from '../src/enforce/types.js'
import { argFlag, argNum, hosts4, median, percentile } from './kernel-common.js'

const quick = argFlag('quick')
const N = argNum('entries', quick ? 10_000 : 100_000)
const CONNECTS = argNum('connects', quick ? 200 : 500)
const ROUNDS = argNum('rounds', quick ? 2 : 4)
const PORT = 8090
const tag = `${process.pid % 100000}`
const made: string[] = []

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
function ns(name: string): string {
  const n = `egl${name}${tag}`
  sh('ip', ['netns', 'add', n])
  made.push(n)
  sh('ip', ['-n', n, 'link', 'set', 'lo', 'up'])
  return n
}

const SERVER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.end(); }).listen(${PORT}, '0.0.0.0', () => console.log('ready'))`
const LOOP = `
const net = require('node:net'); const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const out = [];
function one(i) {
  if (i === n) { process.stdout.write(JSON.stringify(out.slice(50))); return; } // first 50: warm-up
  const t0 = process.hrtime.bigint();
  const s = net.connect({ host, port }, () => { out.push(Number(process.hrtime.bigint() - t0) / 1000); s.destroy(); setImmediate(() => one(i + 1)); });
  s.on('error', (e) => { console.error(e.message); process.exit(1); });
}
one(0);`

async function connects(client: string, host: string): Promise<number[]> {
  const r = await run(process.execPath, ['-e', LOOP, host, String(PORT), String(CONNECTS + 50)], { netns: client, timeoutMs: 600_000 })
  return JSON.parse(r.stdout) as number[]
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)')
  const server = ns('srv')
  const scenarios = ['none', 'ipset', 'nftables', 'linear'] as const
  const clients = new Map<string, { ns: string; dst: string }>()
  scenarios.forEach((s, i) => {
    const c = ns(s.slice(0, 3))
    const a = `va${tag}${i}`.slice(0, 15)
    const b = `vb${tag}${i}`.slice(0, 15)
    sh('ip', ['link', 'add', a, 'netns', c, 'type', 'veth', 'peer', 'name', b, 'netns', server])
    sh('ip', ['-n', c, 'addr', 'add', `203.0.113.${4 * i + 1}/30`, 'dev', a])
    sh('ip', ['-n', server, 'addr', 'add', `203.0.113.${4 * i + 2}/30`, 'dev', b])
    sh('ip', ['-n', c, 'link', 'set', a, 'up'])
    sh('ip', ['-n', server, 'link', 'set', b, 'up'])
    clients.set(s, { ns: c, dst: `203.0.113.${4 * i + 2}` })
  })
  const srv = spawn('ip', ['netns', 'exec', server, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((res) => srv.stdout!.once('data', () => res()))
  try {
    const block: DesiredState = { version: 1, block: { v4: hosts4(N), v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] } }
    await createEnforcer('iptables', { netns: clients.get('ipset')!.ns }).apply(block)
    await createEnforcer('nftables', { netns: clients.get('nftables')!.ns }).apply(block)
    // The hand-written alternative: one rule per address in a chain walked linearly by every packet.
    const lin = ['*filter', ':LINEAR - [0:0]', ...block.block.v4.map((e) => `-A LINEAR -d ${e} -j REJECT`), '-I OUTPUT 1 -j LINEAR', 'COMMIT', ''].join('\n')
    const t0 = performance.now()
    await run('iptables-restore', ['--noflush'], { netns: clients.get('linear')!.ns, input: lin, timeoutMs: 1_800_000 })
    console.error(`loaded ${N} linear rules in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    const lat = new Map<string, number[]>(scenarios.map((s) => [s, []]))
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of scenarios) lat.get(s)!.push(...(await connects(clients.get(s)!.ns, clients.get(s)!.dst)))
    }
    const base = median(lat.get('none')!)
    console.log(`kernel-latency: TCP connect to an unblocked address, ${ROUNDS} interleaved rounds x ${CONNECTS} connects, ${N} blocked entries`)
    const summary: Record<string, { medianUs: number; p99Us: number; ratio: number }> = {}
    for (const s of scenarios) {
      const xs = lat.get(s)!
      const m = median(xs)
      summary[s] = { medianUs: Math.round(m), p99Us: Math.round(percentile(xs, 99)), ratio: Number((m / base).toFixed(3)) }
      console.log(`  ${s.padEnd(9)} median ${m.toFixed(0).padStart(7)} us   p99 ${percentile(xs, 99).toFixed(0).padStart(7)} us   ${(m / base).toFixed(2)}x none${s === 'ipset' || s === 'nftables' ? ' (goal <= 1.10x)' : ''}`)
    }
    console.log(JSON.stringify({ entries: N, connects: CONNECTS, rounds: ROUNDS, summary }))
  } finally {
    srv.kill('SIGKILL')
  }
}

main()
  .catch((e: unknown) => {
    console.error(e)
    process.exitCode = 1
  })
  .finally(() => {
    for (const n of made) {
      try {
        sh('ip', ['netns', 'del', n])
      } catch {
        /* already gone */
      }
    }
  })
