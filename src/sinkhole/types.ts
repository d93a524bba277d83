// Shapes shared by the sinkhole's parts: hits and where they go. Types only.

// Container identity lives in src/docker/ (used by the sinkhole, profiles and quarantine alike).
import type { ContainerInfo } from '../docker/types.js'

export type { ContainerInfo, ContainerLookup } from '../docker/types.js'

export type HitAction = 'block' | 'alert' | 'deny' | 'quarantine'

/** One blocked or alert lookup (or an aggregate of repeats within an interval). */
export interface Hit {
  /** RFC 3339, first occurrence in the interval. */
  time: string
  /** RFC 3339, last occurrence in the interval. */
  lastTime: string
  /** Repeats aggregated into this record (>= 1). */
  count: number
  client: string
  container?: ContainerInfo
  /** Queried name, lower-case, no trailing dot. */
  name: string
  /** Query type, e.g. 'A', 'AAAA'. */
  qtype: string
  /** `deny`: outside a profile in enforce mode; `quarantine`: from a quarantined container (issue 16). */
  action: HitAction
  /** The profile that decided (`deny`, or `alert` from a profile in alert mode). */
  profile?: string
  /** The deciding entry. */
  entry: { value: string; source: string; reason?: string; id?: string; mode: 'block' | 'alert' }
  /** What the client was told: 'null', 'nxdomain', 'refused', 'custom:<ip>', or 'forwarded'. */
  answer: string
  /** Host that saw it (filled by the agent). */
  host?: string
}

/** Where the sinkhole sends hits: the JSON-lines log, the agent's uploader, metrics. */
export interface HitSink {
  record(hit: Omit<Hit, 'count' | 'lastTime'>): void
}
