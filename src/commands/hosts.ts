// `egress-guard hosts`: the fleet as the server sees it: each host's applied version, state, last report.
import type { Command } from './types.js'
import { helpText, loadOptions } from '../config.js'
import { errors } from '../errors.js'
import { adminClient, adminSpec, ago, formatTable } from '../client/admin-options.js'
import type { HostStatus } from '../client/api-types.js'

/** PROFILED: containers held to a profile; `-` from an agent that does not report containers. */
function profiled(h: HostStatus): string {
  return h.containers ? String(h.containers.filter((c) => c.profile !== undefined).length) : '-'
}

/** QUARANTINED: the containers the host holds in quarantine, by name. */
function quarantined(h: HostStatus): string {
  return (h.containers ?? []).filter((c) => c.quarantineId !== undefined).map((c) => c.name).join(', ') || '-'
}

const USAGE = `usage: egress-guard hosts [--server URL] [--token-file F] [--json]

Each host: its state (in-sync, behind, silent, drift), the policy version it applied, when it last
reported, drift repairs, current drift and errors, how many containers it holds to profiles, which
containers it holds in quarantine, and whether its Docker API listens on TCP (fail: off loopback
without TLS client certificates).`

/** `fail [::]:2375`, `warn 127.0.0.1:2375`, `ok`, or `-` when the agent found no dockerd (or is older). */
function dockerApi(h: HostStatus): string {
  const d = h.dockerApi
  if (!d) return '-'
  return d.listeners.length ? `${d.verdict} ${d.listeners.join(',')}` : d.verdict
}

const command: Command = {
  summary: 'fleet: each host, the policy version it applied, drift, last seen',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, adminSpec, { env: io.env, section: 'hosts' })
    if (o.help) {
      io.stdout(helpText(USAGE, adminSpec))
      return 0
    }
    if (positionals.length) throw errors.usage(USAGE)
    const r = await (await adminClient(o)).hosts()
    if (o.json) {
      io.stdout(JSON.stringify(r) + '\n')
      return 0
    }
    io.stdout(
      formatTable(
        ['HOST', 'STATE', 'VERSION', 'LAST SEEN', 'ENTRIES', 'REPAIRS', 'DRIFT', 'ERRORS', 'PROFILED', 'QUARANTINED', 'DOCKER API', 'AGENT'],
        r.hosts.map((h) => [h.host, h.state, String(h.version), ago(h.lastSeen), String(h.counts.entries), String(h.repairs), h.drift.join('; ') || '-', h.errors.join('; ') || '-', profiled(h), quarantined(h), dockerApi(h), h.agentVersion]),
      ),
    )
    const bad = r.hosts.filter((h) => h.state !== 'in-sync').length
    const exposed = r.hosts.filter((h) => h.dockerApi?.verdict === 'fail').length
    io.stderr(`${r.hosts.length} hosts, ${bad} not in sync; current policy version ${r.current.version}${exposed ? `; ${exposed} with the Docker API exposed (egress-guard doctor on them says how to fix it)` : ''}\n`)
    return 0
  },
}
export default command
