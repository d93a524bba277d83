// The hit uploader against a fake client: batches, spool while down (bounded, oldest dropped, counted),
// drained in order when the server returns, and kept across a restart.
import t from 'tap'
import { mkdtempSync, rmSync, readFileSync, existsSync, appendFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHitUploader, type HitClient } from '../../src/agent/hit-uploader.js'
import { silentLogger } from '../../src/log.js'
import type { Hit } from '../../src/sinkhole/types.js'

const hit = (n: number): Hit => ({
  time: new Date(Date.UTC(2026, 10, 21, 0, 0, n)).toISOString(),
  lastTime: new Date(Date.UTC(2026, 10, 21, 0, 0, n)).toISOString(),
  count: 1,
  client: '172.17.0.2',
  name: `h${n}.evil.example`,
  qtype: 'A',
  action: 'block',
  entry: { value: 'evil.example', source: 'blocklists/a.txt:1', mode: 'block' },
  answer: 'null',
})

function fake() {
  let up = true
  const batches: Hit[][] = []
  const client: HitClient = {
    async uploadHits(host, hits) {
      if (!up) throw new Error('connect ECONNREFUSED')
      batches.push(hits.map((h) => ({ ...h, host })))
      return { accepted: hits.length }
    },
  }
  return { client, batches, setUp: (v: boolean) => (up = v) }
}

function dir(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), `eg-hits-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('batches of at most batchSize, host filled in', async (t) => {
  const f = fake()
  const u = createHitUploader({ client: f.client, host: 'web1', spoolFile: join(dir(t), 'spool.jsonl'), batchSize: 3, log: silentLogger })
  for (let i = 0; i < 7; i++) u.add(hit(i))
  t.equal(await u.flush(), true)
  const sizes = f.batches.map((b) => b.length)
  t.ok(sizes.every((n) => n <= 3), `batch sizes ${sizes}`)
  t.same(f.batches.flat().map((h) => h.name), [0, 1, 2, 3, 4, 5, 6].map((i) => `h${i}.evil.example`))
  t.ok(f.batches.flat().every((h) => h.host === 'web1'))
  t.equal(u.stats().uploaded, 7)
  t.equal(u.stats().pending, 0)
})

t.test('server down: spooled to disk, bounded, oldest dropped and counted; drained in order on return', async (t) => {
  const f = fake()
  const spoolFile = join(dir(t), 'spool.jsonl')
  const u = createHitUploader({ client: f.client, host: 'web1', spoolFile, batchSize: 4, maxSpoolHits: 10, log: silentLogger })
  f.setUp(false)
  for (let i = 0; i < 6; i++) u.add(hit(i))
  t.equal(await u.flush(), false)
  t.equal(readFileSync(spoolFile, 'utf8').trim().split('\n').length, 6, 'on disk as JSON lines')
  for (let i = 6; i < 15; i++) u.add(hit(i))
  t.equal(await u.flush(), false)
  const lines = readFileSync(spoolFile, 'utf8').trim().split('\n')
  t.equal(lines.length, 10, 'bounded by count')
  t.equal(JSON.parse(lines[0]!).name, 'h5.evil.example', 'the oldest were dropped first')
  t.equal(u.stats().dropped, 5)
  t.equal(u.stats().spooled, 10)
  f.setUp(true)
  t.equal(await u.flush(), true)
  t.same(f.batches.flat().map((h) => h.name), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14].map((i) => `h${i}.evil.example`), 'oldest first')
  t.notOk(existsSync(spoolFile), 'spool removed once drained')
  t.equal(u.stats().pending, 0)
})

t.test('bounded by bytes too', async (t) => {
  const f = fake()
  const spoolFile = join(dir(t), 'spool.jsonl')
  const one = JSON.stringify({ ...hit(0), host: 'web1' }).length + 1
  const u = createHitUploader({ client: f.client, host: 'web1', spoolFile, maxSpoolBytes: one * 3 + 5, log: silentLogger })
  f.setUp(false)
  for (let i = 0; i < 8; i++) u.add(hit(i))
  await u.flush()
  t.equal(u.stats().spooled, 3)
  t.equal(u.stats().dropped, 5)
})

t.test('the spool survives a restart; a torn last line is skipped', async (t) => {
  const f = fake()
  const spoolFile = join(dir(t), 'spool.jsonl')
  f.setUp(false)
  const u1 = createHitUploader({ client: f.client, host: 'web1', spoolFile, log: silentLogger })
  for (let i = 0; i < 3; i++) u1.add(hit(i))
  await u1.stop()
  appendFileSync(spoolFile, '{"time":"2026-11') // a crash mid-append
  f.setUp(true)
  const u2 = createHitUploader({ client: f.client, host: 'web1', spoolFile, log: silentLogger })
  await u2.load()
  t.equal(u2.stats().spooled, 3)
  t.equal(await u2.flush(), true)
  t.equal(f.batches.flat().length, 3)
})

t.test('a timer uploads without an explicit flush', async (t) => {
  const f = fake()
  const u = createHitUploader({ client: f.client, host: 'web1', spoolFile: join(dir(t), 's.jsonl'), intervalMs: 20, log: silentLogger })
  u.start()
  t.teardown(() => u.stop())
  u.add(hit(1))
  for (let i = 0; i < 100 && f.batches.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
  t.equal(f.batches.length, 1)
})
