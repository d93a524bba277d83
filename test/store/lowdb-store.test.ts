// The lowdb store: round trips, retention of hits, the schema version, a corrupt file that stops
// startup without being touched, and kill -9 during a burst of writes leaving a whole file.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HITS_FILE, MAIN_FILE, openLowdbStore } from '../../src/store/lowdb-store.js'
import { STORE_SCHEMA } from '../../src/store/types.js'
import type { Hit } from '../../src/sinkhole/types.js'

async function tempDir(t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `eg-store-${process.pid}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const hit = (i: number, lastTime: string, over: Partial<Hit> = {}): Hit => ({
  time: lastTime, lastTime, count: 1, client: '172.17.0.2', name: `h${i}.example`, qtype: 'A', action: 'block',
  entry: { value: `h${i}.example`, source: 'f:1', mode: 'block' }, answer: 'null', host: 'web1', ...over,
})

t.test('round trip across reopen, with the schema version on disk', async (t) => {
  const dir = await tempDir(t)
  const s = await openLowdbStore(dir)
  const added = await s.addEntries([{ kind: 'domain', value: 'a.example', allow: false, mode: 'block', source: 'x', reason: 'why' }], { actor: 'alice' })
  t.match(added[0]!.id, /^api-[0-9a-f]{12}$/)
  t.equal(added[0]!.source, 'api:alice')
  t.equal(await s.commitPolicy('e1', 'test'), 1)
  t.equal(await s.commitPolicy('e1', 'same'), 1, 'same etag: same version')
  t.equal(await s.commitPolicy('e2', 'test'), 2)
  await s.addToken({ id: 'tok-1', hash: 'ab'.repeat(32), role: 'read', created: 'now', createdBy: 'x' }, { actor: 'alice' })
  await s.upsertAgent({ host: 'web1', version: 2, etag: 'e2', counts: { entries: 1, domains: 1, nets: 0, v4: 0, v6: 0 }, repairs: 0, drift: [], errors: [], agentVersion: '1', lastSeen: 'now' })
  await s.upsertAgent({ host: 'web1', version: 3, etag: 'e3', counts: { entries: 1, domains: 1, nets: 0, v4: 0, v6: 0 }, repairs: 0, drift: [], errors: [], agentVersion: '1', lastSeen: 'later' })
  await s.close()
  const disk = JSON.parse(await readFile(join(dir, MAIN_FILE), 'utf8'))
  t.equal(disk.schema, STORE_SCHEMA)
  const s2 = await openLowdbStore(dir)
  t.same((await s2.listEntries()).map((e) => e.value), ['a.example'])
  t.same(await s2.policyVersion(), { version: 2, etag: 'e2' })
  t.equal((await s2.listTokens()).length, 1)
  t.same((await s2.listAgents()).map((a) => a.version), [3], 'upsert replaces by host')
  t.same((await s2.listAudit(10)).map((e) => e.action), ['token.create', 'policy.version', 'policy.version', 'entry.add'])
  const removed = await s2.removeEntries([added[0]!.id, 'nope'], { actor: 'bob', reason: 'done' })
  t.equal(removed.length, 1)
  t.same(await s2.removeEntries(['nope'], { actor: 'bob' }), [])
  t.equal(await s2.removeToken('nope', { actor: 'bob' }), undefined)
  await s2.close()
})

t.test('hits are kept in their own file, capped by count and age', async (t) => {
  const dir = await tempDir(t)
  let now = new Date('2026-06-01T12:00:00Z')
  const s = await openLowdbStore(dir, { maxHits: 5, maxHitAgeMs: 3_600_000, now: () => now })
  t.equal(await s.appendHits([hit(0, '2026-06-01T10:00:00Z'), hit(1, '2026-06-01T11:30:00Z')]), 1, 'the 2 h old hit is dropped at once')
  t.equal(await s.appendHits(Array.from({ length: 7 }, (_, i) => hit(10 + i, '2026-06-01T11:59:00Z'))), 5)
  const all = await s.queryHits({})
  t.same(all.map((h) => h.name).sort(), ['h12.example', 'h13.example', 'h14.example', 'h15.example', 'h16.example'])
  now = new Date('2026-06-01T13:30:00Z')
  await s.appendHits([hit(99, '2026-06-01T13:29:00Z')])
  t.same((await s.queryHits({})).map((h) => h.name), ['h99.example'], 'aged out')
  await s.close()
  const main = await readFile(join(dir, MAIN_FILE), 'utf8')
  t.notOk(main.includes('h99.example'), 'hits are not in the main file')
  t.ok((await readFile(join(dir, HITS_FILE), 'utf8')).includes('h99.example'))
})

t.test('a corrupt or foreign store file stops startup with a coded error and is never overwritten', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['truncated JSON', '{"schema":1,"version":3,"entries":[{"kind":"dom', /not valid JSON/],
    ['not an object', '[1,2,3]', /not an egress-guard store/],
    ['newer schema', JSON.stringify({ schema: 99, version: 1, etag: '', entries: [], tokens: [], agents: [], audit: [] }), /schema 99 is newer/],
    ['missing list', JSON.stringify({ schema: 1, version: 1, etag: '', entries: {}, tokens: [], agents: [], audit: [] }), /"entries" is missing or not a list/],
    ['empty file', '', /not valid JSON/],
  ]
  for (const [name, text, message] of cases) {
    const dir = await tempDir(t)
    const file = join(dir, MAIN_FILE)
    await writeFile(file, text)
    const err = await openLowdbStore(dir).then(() => undefined, (e: unknown) => e as { code: string; message: string })
    t.equal(err?.code, 'EG_STORE_CORRUPT', name)
    t.match(err?.message, message, name)
    t.ok(err?.message.includes(file), `${name}: the message names the file`)
    t.equal(await readFile(file, 'utf8'), text, `${name}: the file is unchanged`)
    t.same((await readdir(dir)).sort(), [MAIN_FILE], `${name}: nothing else written either`)
  }
  const dir = await tempDir(t)
  await writeFile(join(dir, HITS_FILE), '{oops')
  const err = await openLowdbStore(dir).then(() => undefined, (e: unknown) => e as { code: string; message: string })
  t.equal(err?.code, 'EG_STORE_CORRUPT', 'the hits file is checked too')
  t.equal(await readFile(join(dir, HITS_FILE), 'utf8'), '{oops')
})

t.test('kill -9 during a burst of writes leaves a whole store that loads', async (t) => {
  const child = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url))
  const dir = await tempDir(t)
  let tmpLeftOver = 0
  let lastCount = 0
  for (let round = 0; round < 8; round++) {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => void p.kill('SIGKILL'))
    let out = ''
    let err = ''
    p.stderr.on('data', (d) => (err += d))
    // Kill after a varying number of completed writes, while the next one is in flight.
    const target = lastCount + 3 + round
    let killing = false
    await new Promise<void>((resolve, reject) => {
      p.stdout.on('data', (d) => {
        out += d
        const n = Number(out.trimEnd().split('\n').pop())
        if (n >= target && !killing) {
          killing = true
          // Kill the moment the next write's temp file exists: in the middle of writing it.
          const tmp = join(dir, `.${MAIN_FILE}.tmp`)
          const started = Date.now()
          const poll = setInterval(() => {
            if (existsSync(tmp) || Date.now() - started > 3000) {
              clearInterval(poll)
              p.kill('SIGKILL')
              resolve()
            }
          }, 1)
        }
      })
      p.on('exit', (code, sig) => (sig === 'SIGKILL' ? resolve() : reject(new Error(`writer exited ${code}: ${err}`))))
    })
    await new Promise((r) => p.once('close', r))
    const acked = Number(out.trimEnd().split('\n').pop())
    if ((await readdir(dir)).includes(`.${MAIN_FILE}.tmp`)) tmpLeftOver++
    const text = await readFile(join(dir, MAIN_FILE), 'utf8')
    const data = JSON.parse(text) as { schema: number; entries: unknown[] }
    t.equal(data.schema, STORE_SCHEMA, `round ${round}: the file parses and has its schema`)
    t.ok(data.entries.length >= acked, `round ${round}: every acknowledged write is there (${data.entries.length} >= ${acked})`)
    const s = await openLowdbStore(dir)
    t.equal((await s.listEntries()).length, data.entries.length, `round ${round}: the store opens`)
    lastCount = data.entries.length
  }
  // A crash mid-write leaves a partial temp file: the store ignores it and removes it when it opens.
  await writeFile(join(dir, `.${MAIN_FILE}.tmp`), '{"schema":1,"entr')
  const s = await openLowdbStore(dir)
  t.equal((await s.listEntries()).length, lastCount, 'a torn temp file is ignored')
  t.notOk(existsSync(join(dir, `.${MAIN_FILE}.tmp`)), 'and removed at open')
  await s.addEntries([{ kind: 'domain', value: 'after.example', allow: false, mode: 'block', source: 'x' }], { actor: 't' })
  t.equal(JSON.parse(await readFile(join(dir, MAIN_FILE), 'utf8')).entries.length, lastCount + 1)
  t.comment(`a half-written temp file was left behind in ${tmpLeftOver} of 8 rounds (the kill landed mid-write); the store file was whole every time`)
  t.ok(tmpLeftOver >= 1, 'at least one kill landed in the middle of a write')
})

t.test('the directory lock: one writer at a time, a dead holder is taken over (more in dir-lock.test.ts)', async (t) => {
  const dir = await tempDir(t)
  const a = await openLowdbStore(dir, { lock: true })
  const err = await openLowdbStore(dir, { lock: true }).then(() => undefined, (e: unknown) => e as { code: string; message: string })
  t.equal(err?.code, 'EG_CONFLICT')
  t.match(err?.message, new RegExp(`in use by process ${process.pid}`))
  await a.close()
  // A holder killed with -9 leaves its lock; a pid that no longer exists does not block.
  const dead = spawn(process.execPath, ['-e', ''])
  await new Promise((r) => dead.once('exit', r))
  await writeFile(join(dir, '.lock'), `${dead.pid}\n`)
  const b = await openLowdbStore(dir, { lock: true })
  t.equal((await readFile(join(dir, '.lock'), 'utf8')).trim(), String(process.pid))
  await b.close()
  const c = await openLowdbStore(dir, { lock: true })
  t.pass('released on close (the file stays: the lock is the kernel\'s, not the file\'s)')
  await c.close()
})

t.test('soft state (agents, hits) is written within softFlushMs, entries at once', async (t) => {
  const dir = await tempDir(t)
  const s = await openLowdbStore(dir, { softFlushMs: 100 })
  await s.appendHits([hit(1, new Date().toISOString())])
  t.notOk((await readFile(join(dir, HITS_FILE), 'utf8')).includes('h1.example'), 'not yet')
  await s.addEntries([{ kind: 'domain', value: 'now.example', allow: false, mode: 'block', source: 'x' }], { actor: 't' })
  t.ok((await readFile(join(dir, MAIN_FILE), 'utf8')).includes('now.example'), 'entries are on disk before the call returns')
  await new Promise((r) => setTimeout(r, 400))
  t.ok((await readFile(join(dir, HITS_FILE), 'utf8')).includes('h1.example'), 'hits follow within the interval')
  await s.close()
})
