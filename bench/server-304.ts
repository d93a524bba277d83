// Server goal: unchanged-policy checks are cheap. autocannon against the real server in a child
// process: GET /v1/policy with a matching If-None-Match (304, what an agent's check costs), against
// baselines in the same run: GET /healthz (no auth, smallest answer: the floor of this stack) and the
// full 200 policy (what every check would cost without ETags).
// Run: npx tsx bench/server-304.ts [--seconds 8] [--connections 64] [--entries 1000]
import { spawn } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '8' }, connections: { type: 'string', default: '64' }, entries: { type: 'string', default: '1000' } } })
const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./server-child.ts', import.meta.url)), values.entries!], { stdio: ['pipe', 'pipe', 'inherit'] })
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
const info = JSON.parse((await lines.next()).value as string) as { url: string; agent: string; entries: number }
const auth = { authorization: `Bearer ${info.agent}` }
const etag = (await fetch(`${info.url}/v1/policy`, { headers: auth })).headers.get('etag')!

async function run(title: string, path: string, headers: Record<string, string>, expect: number) {
  const r = await autocannon({ url: info.url + path, headers, connections: Number(values.connections), duration: Number(values.seconds), title })
  const total = r.requests.total
  const ok = (r.statusCodeStats as Record<string, { count: number }>)[String(expect)]?.count ?? 0
  if (ok < total * 0.99) throw new Error(`${title}: only ${ok} of ${total} answers were ${expect}`)
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, bytes: r.throughput.average }
}

const health = await run('healthz', '/healthz', {}, 200)
const notModified = await run('304', '/v1/policy', { ...auth, 'if-none-match': etag }, 304)
const full = await run('full', '/v1/policy', auth, 200)
child.stdin!.end()

console.log(`server 304 benchmark: autocannon, ${values.connections} connections x ${values.seconds} s each, policy of ${info.entries} entries (${cpus().length} CPUs shared with autocannon, load average ${loadavg()[0]!.toFixed(1)})`)
for (const [name, x] of [['GET /healthz (baseline: the floor)', health], ['GET /v1/policy -> 304', notModified], ['GET /v1/policy -> 200 full (baseline: no ETag)', full]] as const) {
  console.log(`  ${name.padEnd(48)} ${Math.round(x.rps).toString().padStart(7)} req/s  p50 ${x.p50} ms  p99 ${x.p99} ms  ${(x.bytes / 1048576).toFixed(1)} MiB/s`)
}
console.log(`  ratio: 304 answers run at ${(notModified.rps / health.rps).toFixed(2)}x of healthz (auth + ETag check cost) and ${(notModified.rps / full.rps).toFixed(1)}x the full-policy rate`)
