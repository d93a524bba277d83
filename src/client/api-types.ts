// Wire shapes of the HTTP API (v1), shared by the server's routes, the API client, the agent and the
// admin commands, so one change to the contract is one change here. Types only.
import type { Entry } from '../policy/types.js'
import type { Profile, ProfileMode, ProfileRule } from '../profiles/types.js'
import type { Hit } from '../sinkhole/types.js'
import type { HeldContainer, NewQuarantine, Quarantine, QuarantineMatch } from '../quarantine/types.js'
import type { LearnedRecord, StoredLearned } from '../profiles/learned.js'

export type Role = 'admin' | 'agent' | 'read'

/** `GET /v1/policy` full answer. */
export interface PolicyBody {
  version: number
  etag: string
  generatedAt: string
  entries: Entry[]
  /** Present when the policy has profiles (see Policy.profiles); `etag` covers them. */
  profiles?: Profile[]
  /** Present when quarantines are in force (see Policy.quarantines); `etag` covers them. */
  quarantines?: Quarantine[]
}

/** `GET /v1/policy?since=V` answer when the server still has version V (header `X-Policy-Diff: 1`). */
export interface PolicyDiffBody {
  version: number
  etag: string
  generatedAt: string
  since: number
  added: Entry[]
  /** Entry ids present at `since` and gone now. */
  removed: string[]
  /** Every profile of the new version, whole (they are small), when it has any; absent: none. */
  profiles?: Profile[]
  /** Every quarantine in force in the new version, whole, when there is any; absent: none. */
  quarantines?: Quarantine[]
}

export interface ReportCounts {
  entries: number
  domains: number
  nets: number
  v4: number
  v6: number
}

/** `POST /v1/report` body: what an agent has applied. */
export interface ReportBody {
  host: string
  version: number
  etag: string
  counts: ReportCounts
  repairs: number
  drift: string[]
  errors: string[]
  agentVersion: string
  /** Whether this host's dockerd takes API calls over TCP (absent: no dockerd found, or an older agent). */
  dockerApi?: DockerApiReport
  /**
   * The containers this host holds to a profile or in quarantine (labelled or quarantined containers
   * only; at most 4096). Absent from agents that predate per-container enforcement.
   */
  containers?: HeldContainer[]
}

/** The Docker API's exposure on a host: fail = TCP off loopback without TLS client verification. */
export interface DockerApiReport {
  verdict: 'ok' | 'warn' | 'fail'
  /** TCP addresses it listens on, e.g. `[::]:2375`; empty when unix-only. */
  listeners: string[]
  detail: string
}

export type HostState = 'in-sync' | 'behind' | 'silent' | 'drift'

export interface HostStatus extends Omit<ReportBody, 'host'> {
  host: string
  state: HostState
  /** RFC 3339. */
  lastSeen: string
}

export interface HostsBody {
  current: { version: number; etag: string }
  hosts: HostStatus[]
}

/** One item of `POST /v1/entries`. */
export interface NewEntry {
  value: string
  reason: string
  /** `4h`, `7d`, a date or an RFC 3339 time. */
  expires?: string
  mode?: 'block' | 'alert'
  allow?: boolean
  force?: boolean
}

export interface AuditEvent {
  time: string
  actor: string
  action: string
  target: string
  reason?: string
  details?: unknown
}

export interface TokenInfo {
  id: string
  role: Role
  host?: string
  name?: string
  created: string
  createdBy: string
}

export interface CreatedToken {
  id: string
  /** The secret: shown once, never stored. */
  token: string
  role: Role
  host?: string
}

export interface HitsQuery {
  /** `1h`, `30m` or an RFC 3339 time. */
  since?: string
  host?: string
  container?: string
  domain?: string
  limit?: number
}

export interface EntriesQuery {
  source?: 'api' | 'file'
  q?: string
  mode?: 'block' | 'alert'
  allow?: boolean
}

/** A container held to a profile, as an agent reports it (`ReportBody.containers`). */
export interface ProfileHolder {
  host: string
  container: { id: string; name: string }
}

/** One item of `GET /v1/profiles`. */
export interface ProfileListItem {
  name: string
  mode: ProfileMode
  /** Destination lines (after merging duplicates): rules.length. */
  lines: number
  /** The file, labelled (`blocklists/profiles/web.txt`). */
  source: string
  rules: ProfileRule[]
  /**
   * The containers held to the profile, per host. Hook for the per-container phase: absent until
   * agents report their labelled containers; `profile ls` shows a CONTAINERS column once any is present.
   */
  containers?: ProfileHolder[]
}

/** `GET /v1/profiles`. */
export interface ProfilesBody {
  version: number
  profiles: ProfileListItem[]
  /**
   * Containers labelled with a profile the policy does not have (held to DNS only: fail closed),
   * per host. Present once any agent reports its containers.
   */
  missing?: Array<ProfileHolder & { profile: string }>
}

/** One item of `GET /v1/quarantines`: the quarantine and the containers it holds, per host. */
export interface QuarantineListItem extends Quarantine {
  /**
   * The containers agents report holding in this quarantine (ReportBody.containers with this
   * quarantineId), from their last reports; empty: no match yet.
   */
  matched: QuarantineMatch[]
}

/** `GET /v1/quarantines`. */
export interface QuarantinesBody {
  version: number
  quarantines: QuarantineListItem[]
}

/** `POST /v1/quarantines` answer (201). */
export interface AddedQuarantine {
  quarantine: Quarantine
  /** The policy version that carries it (agents apply it when they have this version). */
  version: number
}

/** `DELETE /v1/quarantines/:idOrContainer` answer. */
export interface RemovedQuarantines {
  removed: Quarantine[]
  version: number
}

/** `POST /v1/learned` answer (202). */
export interface LearnedAccepted {
  /** Records merged into the store. */
  accepted: number
  /** Records for profiles the policy does not have (dropped). */
  ignored: number
}

/** `GET /v1/profiles/:name/learned`. */
export interface LearnedBody {
  profile: string
  /** The profile's current mode, when the policy has it. */
  mode?: ProfileMode
  records: StoredLearned[]
}

export type { Entry, HeldContainer, Hit, LearnedRecord, NewQuarantine, Profile, ProfileMode, ProfileRule, Quarantine, QuarantineMatch, StoredLearned }
