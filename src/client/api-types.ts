// Wire shapes of the HTTP API (v1), shared by the server's routes, the API client, the agent and the
// admin commands, so one change to the contract is one change here. Types only.
import type { Entry } from '../policy/types.js'
import type { Profile, ProfileMode, ProfileRule } from '../profiles/types.js'
import type { Hit } from '../sinkhole/types.js'

export type Role = 'admin' | 'agent' | 'read'

/** `GET /v1/policy` full answer. */
export interface PolicyBody {
  version: number
  etag: string
  generatedAt: string
  entries: Entry[]
  /** Present when the policy has profiles (see Policy.profiles); `etag` covers them. */
  profiles?: Profile[]
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
  source?: 'api' | 'file' | 'feed'
  q?: string
  mode?: 'block' | 'alert'
  allow?: boolean
}

/** A container held to a profile, as an agent reports it (a later phase fills these). */
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
}

export type { Entry, Hit, Profile, ProfileMode, ProfileRule }
