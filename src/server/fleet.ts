// Fleet state of one agent from its last report. Pure, so tests drive it with an injected clock.
// Precedence: silent (we cannot trust anything older) > drift (the host is not enforcing what it
// says) > behind > in-sync.
import type { HostState, HostStatus } from '../client/api-types.js'
import type { AgentRecord } from '../store/types.js'

/** The server's current policy as far as fleet state needs it. */
export interface CurrentPolicy {
  version: number
  etag: string
  /** RFC 3339: when this version was built (a report after it saw this version's content). */
  generatedAt: string
}

/**
 * In sync means the host applied the current version. Etags alone do not say so: a block added and
 * removed again makes the version after the removal share the etag of the version before the add,
 * and a host cut off by the add (still reporting the old version and etag, not yet silent) looked
 * in sync. A different version with the same etag counts only when the report came after the current
 * version existed: the host then enforces exactly the current content (a host that had no reason to
 * fetch, its etag already matching, keeps its older version number).
 */
export function hostState(a: AgentRecord, current: CurrentPolicy, now: Date, silentAfterMs: number): HostState {
  if (now.getTime() - Date.parse(a.lastSeen) > silentAfterMs) return 'silent'
  if (a.drift.length > 0) return 'drift'
  if (a.etag !== current.etag) return 'behind'
  if (a.version === current.version) return 'in-sync'
  return Date.parse(a.lastSeen) >= Date.parse(current.generatedAt) ? 'in-sync' : 'behind'
}

export function hostStatuses(agents: AgentRecord[], current: CurrentPolicy, now: Date, silentAfterMs: number): HostStatus[] {
  return agents
    .map((a) => ({ ...a, state: hostState(a, current, now, silentAfterMs) }))
    .sort((x, y) => x.host.localeCompare(y.host))
}
