// Server goal: thousands of agents held cheaply and woken fast. 5,000 real HTTP long-polls over
// loopback (undici, one connection each) against the real server in a child process: the server's
// memory per waiting agent (baseline in the same run: the same 5,000 connections idle, so the figure
// separates what a long-poll costs from what a socket costs) and the time from one change to all
// 5,000 agents holding it (baseline in the same run: 5,000 agents polling every 10 s, the default of
// CrowdSec's firewall bouncer, each starting at a random phase).
// Run: npx tsx bench/server-longpoll.ts [--agents 5000] [--entries 1000] [--poll 10]
import { spawn } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

const { values } = parseArgs({ options: { agents: { type: 'string', default: '5000' }, entries: { type: 'string', default: '1000' }, poll: { type: 'string', default: '10' } } })
const AGENTS = Number(values.agents)
const POLL_S = Number(values.poll)

const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(new URL('./server-child.ts', import.meta.url)), values.entries!], { stdio: ['pipe', 'pipe', 'inherit'] })
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
const next = async (): Promise<Record<string, unknown>> => JSON.parse((await lines.next()).value as string) as Record<string, unknown>
const ask = async (cmd: string): Promise<Record<string, unknown>> => {
  child.stdin!.write(cmd + '\n')
  return next()
}
const info = (await next()) as { url: string; admin: string; agent: string; entries: number }
const auth = { authorization: `Bearer ${info.agent}` }
const pool = new Pool(info.url, { connections: AGENTS, pipelining: 1, keepAliveTimeout: 120_000, headersTimeout: 120_000, bodyTimeout: 120_000 })
// The operator's connection is separate: the agents' pool has every connection busy waiting.
const adminPool = new Pool(info.url, { connections: 2 })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const mib = (b: number) => (b / 1048576).toFixed(1)

async function policy(): Promise<{ version: number; etag: string }> {
  const r = await pool.request({ path: '/v1/policy', method: 'GET', headers: auth })
  const b = (await r.body.json()) as { version: number; etag: string }
  return b
}
async function addEntry(value: string): Promise<void> {
  const r = await adminPool.request({ path: '/v1/entries', method: 'POST', headers: { authorization: `Bearer ${info.admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ entries: [{ value, reason: 'bench' }] }) })
  await r.body.dump()
  if (r.statusCode !== 201) throw new Error(`add entry: ${r.statusCode}`)
}

const mem0 = (await ask('mem')) as { rss: number; heapUsed: number }

// Baseline: AGENTS idle keep-alive connections (each made one cheap request and stays open).
const start = await policy()
for (let i = 0; i < AGENTS; i += 500) {
  await Promise.all(Array.from({ length: Math.min(500, AGENTS - i) }, async () => (await pool.request({ path: '/healthz', method: 'GET' })).body.dump()))
}
// Hold every connection busy at once so undici really opens AGENTS sockets (it reuses idle ones).
await Promise.all(Array.from({ length: AGENTS }, async () => {
  const r = await pool.request({ path: `/v1/policy?wait=1`, method: 'GET', headers: { ...auth, 'if-none-match': `"${start.etag}"` } })
  await r.body.dump()
}))
const memIdle = (await ask('mem')) as { rss: number; heapUsed: number }

// AGENTS long-polls, the way the agent asks: If-None-Match + wait + since (a diff comes back).
const wake: number[] = []
let t0 = 0
const polls = Array.from({ length: AGENTS }, async () => {
  const r = await pool.request({ path: `/v1/policy?wait=60&since=${start.version}`, method: 'GET', headers: { ...auth, 'if-none-match': `"${start.etag}"` } })
  if (r.statusCode !== 200) throw new Error(`long-poll answered ${r.statusCode} after ${(performance.now() - t0).toFixed(0)} ms (t0 ${t0})`)
  const body = (await r.body.json()) as { added: unknown[] }
  if (r.statusCode !== 200 || body.added.length !== 1) throw new Error(`unexpected ${r.statusCode}`)
  wake.push(performance.now() - t0)
})
for (let i = 0; i < 600; i++) {
  if (((await ask('waiting')).waiting as number) >= AGENTS) break
  await sleep(100)
}
const waiting = (await ask('waiting')).waiting as number
const memWait = (await ask('mem')) as { rss: number; heapUsed: number }
t0 = performance.now()
await addEntry("wake.example"); const addMs = performance.now() - t0
await Promise.all(polls)
wake.sort((a, b) => a - b)
const pct = (a: number[], p: number) => a[Math.min(a.length - 1, Math.floor((a.length * p) / 100))]!

// Baseline: the same agents polling every POLL_S seconds from a random phase; one change.
const cur = await policy()
const seen: number[] = []
let changedAt = Infinity
const endAt = performance.now() + POLL_S * 1000 * 2.2
const changeAfter = POLL_S * 1000 * 1.1
const bStart = performance.now()
const pollers = Array.from({ length: AGENTS }, async () => {
  await sleep(Math.random() * POLL_S * 1000)
  let done = false
  while (!done && performance.now() < endAt) {
    const r = await pool.request({ path: '/v1/policy', method: 'GET', headers: { ...auth, 'if-none-match': `"${cur.etag}"` } })
    await r.body.dump()
    if (r.statusCode === 200 && performance.now() >= changedAt) {
      seen.push(performance.now() - changedAt)
      done = true
    } else await sleep(POLL_S * 1000)
  }
})
await sleep(changeAfter - (performance.now() - bStart))
changedAt = performance.now()
await addEntry('poll.example')
await Promise.all(pollers)
seen.sort((a, b) => a - b)

child.stdin!.end()
await pool.close()
await adminPool.close()

const perWait = (memWait.rss - mem0.rss) / AGENTS
const perIdle = (memIdle.rss - mem0.rss) / AGENTS
const heapWait = (memWait.heapUsed - memIdle.heapUsed) / AGENTS
console.log(`server long-poll benchmark: ${AGENTS} agents over loopback, policy of ${info.entries} entries, diffs via ?since (${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)}: clients and server share them)`)
console.log(`  waiting long-polls held by the server: ${waiting}; the change (POST /v1/entries, store write, rebuild) took ${addMs.toFixed(0)} ms`)
console.log(`  server RSS: idle ${mib(mem0.rss)} MiB; +${AGENTS} idle connections ${mib(memIdle.rss)} MiB; +${AGENTS} waiting long-polls ${mib(memWait.rss)} MiB`)
console.log(`  memory per waiting agent: ${(perWait / 1024).toFixed(1)} KiB RSS (baseline idle connection: ${(perIdle / 1024).toFixed(1)} KiB; ratio ${(perWait / perIdle).toFixed(2)}x); JS heap per long-poll beyond the socket: ${(heapWait / 1024).toFixed(2)} KiB`)
console.log(`  wake all ${AGENTS} after one change: p50 ${pct(wake, 50).toFixed(0)} ms, p99 ${pct(wake, 99).toFixed(0)} ms, all ${wake[wake.length - 1]!.toFixed(0)} ms`)
console.log(`  baseline ${POLL_S} s polling (${seen.length} agents): p50 ${pct(seen, 50).toFixed(0)} ms, p99 ${pct(seen, 99).toFixed(0)} ms, all ${seen[seen.length - 1]!.toFixed(0)} ms`)
console.log(`  ratio (polling / long-poll): p50 ${(pct(seen, 50) / pct(wake, 50)).toFixed(0)}x, all ${(seen[seen.length - 1]! / wake[wake.length - 1]!).toFixed(0)}x faster`)
