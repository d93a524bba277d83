// Prometheus metrics shared by the sinkhole (and later the server): one explicit registry per process,
// never prom-client's global default, and small typed recorders so hot paths never build label objects.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export type { Registry }

/** Every way a query can end, as counted by `egress_guard_sinkhole_queries_total{result}`. */
export const QUERY_RESULTS = ['blocked', 'alert', 'forwarded', 'refused', 'formerr', 'servfail', 'ratelimited'] as const
export type QueryResult = (typeof QUERY_RESULTS)[number]

/**
 * What the sinkhole calls. Each method is O(1) and allocation-free (label children are bound once here),
 * so calling them once per query costs about as much as a Map lookup.
 */
export interface SinkholeMetrics {
  /** One query finished with this result (count every query exactly once). */
  query(result: QueryResult): void
  /**
   * One blocked or alert lookup (the hit log calls this per lookup, not per aggregated record).
   * `mode` is the answer kind: 'null' | 'nxdomain' | 'refused' | 'custom' | 'forwarded'
   * ('custom:<ip>' is folded to 'custom' so the label set stays small).
   */
  hit(action: 'block' | 'alert' | 'deny' | 'quarantine', mode: string): void
  /** Seconds from sending a query upstream to a valid answer (or the final failure). */
  upstreamLatency(seconds: number): void
  cacheHit(): void
  cacheMiss(): void
  /** Hit-log lines that could not be written (the log keeps running). */
  hitLogWriteError(lines: number): void
  /** Containers currently known to the Docker attribution (addresses, not containers, are the key). */
  containerAddresses(n: number): void
}

export interface RegistryOptions {
  /** Also export prom-client's process metrics (CPU, RSS, event-loop lag) with the `egress_guard_` prefix. */
  processMetrics?: boolean
}

/** A fresh registry; `registry.metrics()` gives the text exposition, `registry.contentType` its type. */
export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry()
  if (opts.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'egress_guard_' })
  return registry
}

const MODES = ['null', 'nxdomain', 'refused', 'custom', 'forwarded'] as const

/** Register the sinkhole's metrics on `registry` (call once per registry: names must be unique in it). */
export function createSinkholeMetrics(registry: Registry): SinkholeMetrics {
  const queries = new Counter({
    name: 'egress_guard_sinkhole_queries_total',
    help: 'DNS queries answered by the sinkhole, by result',
    labelNames: ['result'],
    registers: [registry],
  })
  const hits = new Counter({
    name: 'egress_guard_sinkhole_hits_total',
    help: 'Blocked or alert lookups (every lookup, before aggregation), by action and answer mode',
    labelNames: ['action', 'mode'],
    registers: [registry],
  })
  const upstream = new Histogram({
    name: 'egress_guard_sinkhole_upstream_duration_seconds',
    help: 'Time for a forwarded query to get an upstream answer (or fail)',
    // Local resolvers answer in well under a millisecond; remote ones in tens of ms; the tail shows timeouts.
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  const cacheHits = new Counter({ name: 'egress_guard_sinkhole_cache_hits_total', help: 'Forwarded queries answered from the cache', registers: [registry] })
  const cacheMisses = new Counter({ name: 'egress_guard_sinkhole_cache_misses_total', help: 'Forwarded queries not in the cache', registers: [registry] })
  const writeErrors = new Counter({ name: 'egress_guard_sinkhole_hit_log_write_errors_total', help: 'Hit-log lines lost to write errors', registers: [registry] })
  const containers = new Gauge({ name: 'egress_guard_sinkhole_container_addresses', help: 'Client addresses currently attributed to a Docker container', registers: [registry] })

  // Bind label children once: `counter.inc(labels)` hashes the label object on every call.
  const byResult = new Map<string, Counter.Internal>()
  for (const r of QUERY_RESULTS) {
    byResult.set(r, queries.labels(r))
    queries.labels(r).inc(0) // expose every series at 0 so rate() works from the first scrape
  }
  const byHit = { block: new Map<string, Counter.Internal>(), alert: new Map<string, Counter.Internal>(), deny: new Map<string, Counter.Internal>(), quarantine: new Map<string, Counter.Internal>() }
  for (const a of ['block', 'alert', 'deny', 'quarantine'] as const) for (const m of MODES) byHit[a].set(m, hits.labels(a, m))

  return {
    query(result) {
      byResult.get(result)?.inc()
    },
    hit(action, mode) {
      const children = byHit[action] as Map<string, Counter.Internal> | undefined
      if (!children) return
      const child = children.get(mode) ?? (mode.startsWith('custom') ? children.get('custom') : undefined)
      if (child) child.inc()
      else hits.labels(action, 'other').inc()
    },
    upstreamLatency(seconds) {
      upstream.observe(seconds)
    },
    cacheHit() {
      cacheHits.inc()
    },
    cacheMiss() {
      cacheMisses.inc()
    },
    hitLogWriteError(lines) {
      writeErrors.inc(lines)
    },
    containerAddresses(n) {
      containers.set(n)
    },
  }
}

/** Recorders that do nothing: for components run without metrics (tests, one-shot commands). */
export const noopSinkholeMetrics: SinkholeMetrics = {
  query() {},
  hit() {},
  upstreamLatency() {},
  cacheHit() {},
  cacheMiss() {},
  hitLogWriteError() {},
  containerAddresses() {},
}
