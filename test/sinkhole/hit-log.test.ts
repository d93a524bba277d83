// Hit aggregation, the JSON-lines file, bounded keys and surviving write failures, with an injected clock.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createHitLog } from '../../src/sinkhole/hit-log.js'
import { createRegistry, createSinkholeMetrics } from '../../src/metrics.js'
import { createLogger, silentLogger } from '../../src/log.js'
import type { Hit } from '../../src/sinkhole/types.js'

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'eg-hitlog-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

function clock(start = Date.parse('2026-11-21T10:00:00Z')) {
  let ms = start
  return {
    now: () => ms,
    iso: () => new Date(ms).toISOString(),
    advance(d: number) {
      ms += d
    },
  }
}

const entry = { value: 'evil.example', source: 'blocklists/x.txt:3', reason: 'miner pool', mode: 'block' as const }
function hit(c: ReturnType<typeof clock>, over: Partial<Omit<Hit, 'count' | 'lastTime'>> = {}): Omit<Hit, 'count' | 'lastTime'> {
  return { time: c.iso(), client: '172.17.0.2', name: 'pool.evil.example', qtype: 'A', action: 'block', entry, answer: 'null', ...over }
}

function captureLog() {
  const lines: Record<string, unknown>[] = []
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    },
  })
  return { log: createLogger({ destination: dest, level: 'debug' }), lines }
}

t.test('first occurrence is emitted at once, repeats fold into one record per interval', async (t) => {
  const c = clock()
  const hl = createHitLog({ intervalMs: 60_000, log: silentLogger, now: c.now })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))

  hl.record(hit(c))
  t.equal(got.length, 1, 'first lookup emitted immediately')
  t.match(got[0], { count: 1, client: '172.17.0.2', name: 'pool.evil.example', time: c.iso(), lastTime: c.iso() })
  const firstRepeat = new Date(c.now() + 1000).toISOString()
  for (let i = 0; i < 59; i++) {
    c.advance(1000) // a miner retrying every second
    hl.record(hit(c))
  }
  t.equal(got.length, 1, 'repeats within the interval are not emitted one by one')
  const last = c.iso()
  c.advance(1000) // 60 s after the start: the interval is over; the next record ends it first
  hl.record(hit(c))
  t.equal(got.length, 2, 'interval end emits one aggregate')
  t.match(got[1], { count: 59, time: firstRepeat, lastTime: last, name: 'pool.evil.example' })
  // The 60th repeat belongs to the next interval: still folded (the key stays known while it is busy).
  t.equal(got.length, 2)
  await hl.flush()
  t.equal(got.length, 3)
  t.match(got[2], { count: 1 })
})

t.test('an idle key is forgotten after a quiet interval, so it is news again', async (t) => {
  const c = clock()
  const hl = createHitLog({ intervalMs: 10_000, log: silentLogger, now: c.now })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  hl.record(hit(c))
  c.advance(10_000)
  hl.record(hit(c, { name: 'other.example' })) // ends interval 1 (key still "seen" in it)
  c.advance(10_000)
  hl.record(hit(c, { name: 'other.example' })) // ends interval 2: pool.evil.example idle for a whole interval
  t.equal(got.length, 2)
  hl.record(hit(c))
  t.equal(got.length, 3, 'the forgotten key is emitted at once again')
  t.match(got[2], { name: 'pool.evil.example', count: 1 })
})

t.test('keys: client, container, name, qtype and action are separate', async (t) => {
  const c = clock()
  const hl = createHitLog({ intervalMs: 60_000, log: silentLogger, now: c.now })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  hl.record(hit(c))
  hl.record(hit(c, { qtype: 'AAAA' }))
  hl.record(hit(c, { client: '172.17.0.3' }))
  hl.record(hit(c, { action: 'alert', answer: 'forwarded' }))
  hl.record(hit(c, { name: 'x.evil.example' }))
  t.equal(got.length, 5, 'five distinct keys, five immediate records')
  // Address reuse: a new container on the same client address is news, not a repeat of the old one.
  const first = { id: 'abc123', name: 'miner', image: 'eg-busybox:test' }
  const second = { id: 'def456', name: 'miner2', image: 'eg-busybox:test' }
  hl.record(hit(c, { container: first }))
  hl.record(hit(c, { container: first }))
  hl.record(hit(c, { container: second }))
  t.equal(got.length, 7)
  t.match(got[5], { count: 1, container: first })
  t.match(got[6], { count: 1, container: second })
  await hl.flush()
  t.equal(got.length, 8)
  t.match(got[7], { count: 1, container: first })
})

t.test('JSON-lines file holds one record per line, equal to what listeners got', async (t) => {
  const c = clock()
  const file = join(tmp(), 'hits.jsonl')
  const hl = createHitLog({ file, intervalMs: 60_000, log: silentLogger, now: c.now })
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  const container = { id: 'id1', name: 'web', image: 'nginx', service: 'web', project: 'shop' }
  hl.record(hit(c, { container }))
  hl.record(hit(c, { container }))
  hl.record(hit(c, { container }))
  hl.record(hit(c, { name: 'b.example', answer: 'nxdomain' }))
  await hl.close()
  const lines = readFileSync(file, 'utf8').split('\n')
  t.equal(lines.pop(), '', 'file ends with a newline')
  t.equal(lines.length, 3)
  t.same(lines.map((l) => JSON.parse(l)), got)
  t.match(JSON.parse(lines[0]!), { count: 1, container: { service: 'web', project: 'shop' }, entry: { source: 'blocklists/x.txt:3', reason: 'miner pool' } })
  t.match(JSON.parse(lines[2]!), { count: 2, name: 'pool.evil.example' })
  hl.record(hit(c))
  await hl.flush()
  t.equal(readFileSync(file, 'utf8').split('\n').length - 1, 3, 'nothing written after close')
})

t.test('bounded keys: a new key beyond maxKeys flushes early instead of growing', async (t) => {
  const c = clock()
  const { log, lines } = captureLog()
  const hl = createHitLog({ intervalMs: 60_000, log, maxKeys: 3, now: c.now })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  for (const n of ['a', 'b', 'c']) {
    hl.record(hit(c, { name: `${n}.example` }))
    hl.record(hit(c, { name: `${n}.example` }))
  }
  t.equal(got.length, 3, 'three first occurrences, repeats folded')
  hl.record(hit(c, { name: 'd.example' }))
  t.equal(got.length, 7, 'the three folded aggregates were flushed, then d emitted')
  t.same(got.slice(3, 6).map((h) => [h.name, h.count]), [['a.example', 1], ['b.example', 1], ['c.example', 1]])
  t.match(got[6], { name: 'd.example', count: 1 })
  t.ok(lines.some((l) => l.msg === 'hit aggregation full, flushing early'))
  // After the early flush a is news again (memory was released, not just the aggregates).
  hl.record(hit(c, { name: 'a.example' }))
  t.equal(got.length, 8)
  for (let i = 0; i < 20; i++) hl.record(hit(c, { name: `flood${i}.example` })) // several more early flushes
  t.equal(lines.filter((l) => l.msg === 'hit aggregation full, flushing early').length, 1, 'warned once per interval, not per flush')
  c.advance(60_000)
  hl.record(hit(c, { name: 'next-interval.example' }))
  t.ok(lines.some((l) => l.msg === 'hit aggregation was full several times in the last interval' && (l.times as number) > 1), 'and summarised at its end')
})

t.test('write failures are logged and counted, never thrown; the log recovers', async (t) => {
  const c = clock()
  const dir = tmp()
  const file = join(dir, 'missing', 'hits.jsonl')
  const { log, lines } = captureLog()
  const registry = createRegistry()
  const metrics = createSinkholeMetrics(registry)
  const hl = createHitLog({ file, intervalMs: 60_000, log, metrics, now: c.now })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  hl.record(hit(c))
  hl.record(hit(c, { name: 'b.example' }))
  await hl.flush()
  t.equal(got.length, 2, 'listeners still get every record')
  const errs = lines.filter((l) => l.msg === 'cannot write hit log')
  t.ok(errs.length >= 1, 'the failure is logged')
  t.ok(errs.length <= 2, 'and not once per line forever')
  const m = await registry.getSingleMetric('egress_guard_sinkhole_hit_log_write_errors_total')!.get()
  t.equal(m.values[0]!.value, 2, 'both lost lines counted')

  mkdirSync(join(dir, 'missing'))
  hl.record(hit(c, { name: 'c.example' }))
  await hl.flush()
  t.match(JSON.parse(readFileSync(file, 'utf8')), { name: 'c.example' }, 'written once the directory exists')
  t.ok(lines.some((l) => l.msg === 'hit log writable again'))
})

t.test('a failing listener does not stop the others or the file', async (t) => {
  const c = clock()
  const file = join(tmp(), 'h.jsonl')
  const hl = createHitLog({ file, intervalMs: 60_000, log: silentLogger, now: c.now })
  const got: Hit[] = []
  const off = hl.onHit(() => {
    throw new Error('boom')
  })
  hl.onHit((h) => got.push(h))
  hl.record(hit(c))
  off()
  await hl.close()
  t.equal(got.length, 1)
  t.equal(readFileSync(file, 'utf8').split('\n').length, 2)
})

t.test('metrics count every lookup, not every record', async (t) => {
  const c = clock()
  const registry = createRegistry()
  const hl = createHitLog({ intervalMs: 60_000, log: silentLogger, metrics: createSinkholeMetrics(registry), now: c.now })
  t.teardown(() => hl.close())
  for (let i = 0; i < 5; i++) hl.record(hit(c))
  hl.record(hit(c, { action: 'alert', answer: 'forwarded' }))
  hl.record(hit(c, { answer: 'custom:192.0.2.1' }))
  const text = await registry.metrics()
  t.match(text, /egress_guard_sinkhole_hits_total\{action="block",mode="null"\} 5/)
  t.match(text, /egress_guard_sinkhole_hits_total\{action="alert",mode="forwarded"\} 1/)
  t.match(text, /egress_guard_sinkhole_hits_total\{action="block",mode="custom"\} 1/)
})

t.test('a real timer ends intervals without any record arriving', async (t) => {
  const hl = createHitLog({ intervalMs: 80, log: silentLogger })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  const c = clock(Date.now())
  hl.record(hit(c))
  hl.record(hit(c))
  hl.record(hit(c))
  // The hit log's timer is unref'd (it never keeps a process alive), so hold the loop open here.
  const keepAlive = setTimeout(() => {}, 5000)
  await new Promise<void>((resolve) => {
    const off = hl.onHit(() => {
      off()
      resolve()
    })
  })
  clearTimeout(keepAlive)
  t.equal(got.length, 2)
  t.match(got[1], { count: 2 })
})


t.test('late attribution: an unattributed hit waits briefly for its container', async (t) => {
  const c = clock()
  const table = new Map<string, { id: string; name: string; image: string }>()
  const hl = createHitLog({ intervalMs: 60_000, log: silentLogger, now: c.now, containers: { byIp: (ip) => table.get(ip) }, attributionDelayMs: 50 })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  // The container's first query beats Docker's start event: the sinkhole saw no container.
  hl.record(hit(c))
  t.equal(got.length, 0, 'held back, not emitted without a container')
  table.set('172.17.0.2', { id: 'c1', name: 'dropper', image: 'eg-busybox:test' })
  await new Promise((r) => setTimeout(r, 150)) // the Docker event lands within the delay
  t.equal(got.length, 1)
  t.match(got[0], { count: 1, container: { id: 'c1', name: 'dropper' } }, 'the first record names the container')
  // Its retries arrive attributed: they fold into the same key, not a new "first" record.
  hl.record(hit(c, { container: table.get('172.17.0.2') }))
  t.equal(got.length, 1)
  await hl.flush()
  t.equal(got.length, 2)
  t.match(got[1], { count: 1, container: { id: 'c1' } })
  // A host process (no container ever) is still reported, with the address only.
  hl.record(hit(c, { client: '127.0.0.1' }))
  await hl.flush()
  t.equal(got.length, 3)
  t.equal(got[2]!.container, undefined)
  t.equal(got[2]!.client, '127.0.0.1')
})

t.test('late attribution asks who held the address when the hit happened (byIpAt)', async (t) => {
  const c = clock()
  const asked: Array<[string, number]> = []
  const gone = { id: 'old', name: 'exited-dropper', image: 'eg-busybox:test' }
  const lookup = {
    byIp: () => undefined, // the container already exited: the hot path names nobody
    byIpAt: (ip: string, at: number) => {
      asked.push([ip, at])
      return gone
    },
  }
  const hl = createHitLog({ intervalMs: 60_000, log: silentLogger, now: c.now, containers: lookup, attributionDelayMs: 10_000 })
  t.teardown(() => hl.close())
  const got: Hit[] = []
  hl.onHit((h) => got.push(h))
  hl.record(hit(c))
  t.equal(got.length, 0)
  await hl.flush() // releases what is held, without waiting for the delay
  t.same(asked, [['172.17.0.2', c.now()]], 'asked with the hit\'s own time')
  t.match(got[0], { container: gone, count: 1 })
})
