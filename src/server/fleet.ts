// Fleet state of one agent from its last report. Pure, so tests drive it with an injected clock.
// Precedence: silent (we cannot trust anything older) > drift (the host is not enforcing what it
// says) > behind > in-sync.
import type { HostState, HostStatus } from '../client/api-types.js'
import type { AgentRecord } from '../store/types.js'

export function hostState(a: AgentRecord, currentEtag: string, now: Date, silentAfterMs: number): HostState {
  if (now.getTime() - Date.parse(a.lastSeen) > silentAfterMs) return 'silent'
  if (a.drift.length > 0) return 'drift'
  if (a.etag !== currentEtag) return 'behind'
  return 'in-sync'
}

export function hostStatuses(agents: AgentRecord[], currentEtag: string, now: Date, silentAfterMs: number): HostStatus[] {
  return agents
    .map((a) => ({ ...a, state: hostState(a, currentEtag, now, silentAfterMs) }))
    .sort((x, y) => x.host.localeCompare(y.host))
}
