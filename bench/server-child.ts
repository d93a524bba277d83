// The server side of the server benchmarks, in its own process so its memory is measured alone:
// builds the real server (lowdb store in a temp dir, a generated blocklist), listens on 127.0.0.1,
// prints {url, admin, agent} as one JSON line, then answers stdin commands: `mem` (after a GC) and
// `waiting` (held long-polls). Rate limits are off: one token stands for thousands of agents here.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { generateList } from './lib/gen-list.js'
import { buildServer } from '../src/server/build.js'
import { generateToken } from '../src/server/auth.js'
import { openLowdbStore } from '../src/store/lowdb-store.js'
import { silentLogger } from '../src/log.js'

const entries = Number(process.argv[2] ?? 1000)
const dir = await mkdtemp(join(tmpdir(), `eg-bench-server-${process.pid}-`))
await mkdir(join(dir, 'blocklists'))
await writeFile(join(dir, 'blocklists', 'base.txt'), generateList({ domains: Math.round(entries * 0.9), cidrs: Math.round(entries * 0.1), seed: 7 }))
const store = await openLowdbStore(join(dir, 'data'))
const admin = generateToken()
const agent = generateToken()
await store.addToken({ id: agent.id, hash: agent.hash, role: 'agent', host: 'bench', created: new Date().toISOString(), createdBy: 'bench' }, { actor: 'bench' })
const app = await buildServer({ store, blocklistDirs: [join(dir, 'blocklists')], log: silentLogger, adminTokenHash: admin.hash, limits: { ratePerMinute: 0 } })
// Thousands of connections arrive at once: a listen backlog as deep as the kernel allows.
const url = await app.listen({ host: '127.0.0.1', port: 0, backlog: 4096 })
process.stdout.write(JSON.stringify({ url, admin: admin.secret, agent: agent.secret, entries: app.eg.policy.current.entries.length }) + '\n')

const gc = (globalThis as { gc?: () => void }).gc
const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line === 'mem') {
    gc?.()
    gc?.()
    const m = process.memoryUsage()
    process.stdout.write(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external }) + '\n')
  } else if (line === 'waiting') {
    process.stdout.write(JSON.stringify({ waiting: app.eg.policy.waiters.size }) + '\n')
  }
})
rl.on('close', async () => {
  await app.close()
  await store.close()
  await rm(dir, { recursive: true, force: true })
  process.exit(0)
})
