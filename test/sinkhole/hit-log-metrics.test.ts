// The sinkhole's Prometheus recorders (src/metrics.ts): explicit registries, every series exposed, the
// names and labels the README documents.
import t from 'tap'
import { register as globalRegistry } from 'prom-client'
import { createRegistry, createSinkholeMetrics, noopSinkholeMetrics, QUERY_RESULTS } from '../../src/metrics.js'

t.test('every query result is a series from the first scrape, and counts', async (t) => {
  const registry = createRegistry()
  const m = createSinkholeMetrics(registry)
  let text = await registry.metrics()
  for (const r of QUERY_RESULTS) t.match(text, new RegExp(`egress_guard_sinkhole_queries_total\\{result="${r}"\\} 0`), `${r} exposed at 0`)
  m.query('blocked')
  m.query('blocked')
  m.query('forwarded')
  m.query('ratelimited')
  text = await registry.metrics()
  t.match(text, /egress_guard_sinkhole_queries_total\{result="blocked"\} 2/)
  t.match(text, /egress_guard_sinkhole_queries_total\{result="forwarded"\} 1/)
  t.match(text, /egress_guard_sinkhole_queries_total\{result="ratelimited"\} 1/)
})

t.test('hits by action and mode; custom answers fold into one label value', async (t) => {
  const registry = createRegistry()
  const m = createSinkholeMetrics(registry)
  m.hit('block', 'null')
  m.hit('block', 'custom:192.0.2.1')
  m.hit('block', 'custom:2001:db8::1')
  m.hit('alert', 'forwarded')
  m.hit('block', 'something-new')
  const text = await registry.metrics()
  t.match(text, /egress_guard_sinkhole_hits_total\{action="block",mode="null"\} 1/)
  t.match(text, /egress_guard_sinkhole_hits_total\{action="block",mode="custom"\} 2/)
  t.match(text, /egress_guard_sinkhole_hits_total\{action="alert",mode="forwarded"\} 1/)
  t.match(text, /egress_guard_sinkhole_hits_total\{action="block",mode="other"\} 1/, 'unknown modes never mint new label values')
  t.notMatch(text, /192\.0\.2\.1/, 'no address in a label')
})

t.test('upstream latency histogram, cache, write errors, container gauge', async (t) => {
  const registry = createRegistry()
  const m = createSinkholeMetrics(registry)
  m.upstreamLatency(0.0003)
  m.upstreamLatency(0.02)
  m.cacheHit()
  m.cacheMiss()
  m.cacheMiss()
  m.hitLogWriteError(3)
  m.containerAddresses(7)
  const text = await registry.metrics()
  t.match(text, /egress_guard_sinkhole_upstream_duration_seconds_bucket\{le="0.0005"\} 1/)
  t.match(text, /egress_guard_sinkhole_upstream_duration_seconds_bucket\{le="0.025"\} 2/)
  t.match(text, /egress_guard_sinkhole_upstream_duration_seconds_count 2/)
  t.match(text, /egress_guard_sinkhole_cache_hits_total 1/)
  t.match(text, /egress_guard_sinkhole_cache_misses_total 2/)
  t.match(text, /egress_guard_sinkhole_hit_log_write_errors_total 3/)
  t.match(text, /egress_guard_sinkhole_container_addresses 7/)
})

t.test('registries are independent and the global default registry stays empty', async (t) => {
  const a = createRegistry()
  const b = createRegistry()
  createSinkholeMetrics(a).query('blocked')
  createSinkholeMetrics(b) // same names in another registry: no "already registered" error
  t.match(await a.metrics(), /result="blocked"\} 1/)
  t.match(await b.metrics(), /result="blocked"\} 0/)
  t.equal(globalRegistry.getMetricsAsArray().length, 0, 'nothing registered globally')
  t.throws(() => createSinkholeMetrics(a), 'registering twice on one registry is a programming error, reported')
  t.match(a.contentType, /text\/plain/)
})

t.test('process metrics are opt-in', async (t) => {
  t.notMatch(await createRegistry().metrics(), /process_cpu/)
  t.match(await createRegistry({ processMetrics: true }).metrics(), /egress_guard_process_cpu_seconds_total/)
})

t.test('the no-op recorders accept every call', async (t) => {
  for (const r of QUERY_RESULTS) noopSinkholeMetrics.query(r)
  noopSinkholeMetrics.hit('block', 'null')
  noopSinkholeMetrics.upstreamLatency(1)
  noopSinkholeMetrics.cacheHit()
  noopSinkholeMetrics.cacheMiss()
  noopSinkholeMetrics.hitLogWriteError(1)
  noopSinkholeMetrics.containerAddresses(1)
  t.pass()
})
