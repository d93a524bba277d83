// The server's Prometheus metrics, registered on the registry passed in (one per process, never the
// global default). Gauges that describe state (policy, agents) are computed at scrape time from
// callbacks, so nothing has to remember to update them.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Entry } from '../policy/types.js'
import type { DockerApiReport, HostState } from '../client/api-types.js'

export interface ServerMetrics {
  /** One finished HTTP request; `route` is the route pattern (bounded label set), not the URL. */
  request(method: string, route: string, status: number, seconds: number): void
  hitsReceived(n: number): void
  policyChange(): void
}

export interface MetricSources {
  version: () => number
  entries: () => readonly Entry[]
  agentStates: () => Promise<Record<HostState, number>>
  /** Hosts by the Docker API verdict of their last report (hosts that reported none are not counted). */
  dockerApi: () => Promise<Record<DockerApiReport['verdict'], number>>
  waiting: () => number
  /** Stored API entries kept but not served because they fail validation. */
  invalidStoreEntries: () => number
}

export function createServerMetrics(registry: Registry, src: MetricSources): ServerMetrics {
  new Gauge({
    name: 'egress_guard_server_policy_version',
    help: 'Version of the policy the server distributes',
    registers: [registry],
    collect() {
      this.set(src.version())
    },
  })
  new Gauge({
    name: 'egress_guard_server_policy_entries',
    help: 'Entries in the distributed policy by kind, mode, allow and source (api|file)',
    labelNames: ['kind', 'mode', 'allow', 'source'] as const,
    registers: [registry],
    collect() {
      this.reset()
      const counts = new Map<string, number>()
      for (const e of src.entries()) {
        const k = `${e.kind}|${e.mode}|${e.allow}|${e.source.startsWith('api:') ? 'api' : 'file'}`
        counts.set(k, (counts.get(k) ?? 0) + 1)
      }
      for (const [k, n] of counts) {
        const [kind, mode, allow, source] = k.split('|') as [string, string, string, string]
        this.set({ kind, mode, allow, source }, n)
      }
    },
  })
  new Gauge({
    name: 'egress_guard_server_agents',
    help: 'Agents by state (in-sync, behind, silent, drift)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const s = await src.agentStates()
      for (const [state, n] of Object.entries(s)) this.set({ state }, n)
    },
  })
  new Gauge({
    name: 'egress_guard_server_store_invalid_entries',
    help: 'API entries in the store that fail validation: kept, not served (GET /v1/policy/problems names them)',
    registers: [registry],
    collect() {
      this.set(src.invalidStoreEntries())
    },
  })
  new Gauge({
    name: 'egress_guard_server_agents_docker_api',
    help: 'Hosts by the Docker API verdict of their last report: fail = the API listens on TCP off loopback without TLS client verification',
    labelNames: ['verdict'] as const,
    registers: [registry],
    async collect() {
      const s = await src.dockerApi()
      for (const [verdict, n] of Object.entries(s)) this.set({ verdict }, n)
    },
  })
  new Gauge({
    name: 'egress_guard_server_longpoll_waiting',
    help: 'Policy requests currently held open waiting for a change',
    registers: [registry],
    collect() {
      this.set(src.waiting())
    },
  })
  const hits = new Counter({ name: 'egress_guard_server_hits_received_total', help: 'Hit records accepted from agents', registers: [registry] })
  const changes = new Counter({ name: 'egress_guard_server_policy_changes_total', help: 'Policy version bumps since start', registers: [registry] })
  const latency = new Histogram({
    name: 'egress_guard_server_request_duration_seconds',
    help: 'HTTP request latency by route (long-polls include their wait)',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60],
    registers: [registry],
  })
  return {
    request: (method, route, status, seconds) => latency.observe({ method, route, status: String(status) }, seconds),
    hitsReceived: (n) => hits.inc(n),
    policyChange: () => changes.inc(),
  }
}
