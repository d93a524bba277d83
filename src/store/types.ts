// The Store seam: everything the server persists (API entries, the policy version counter, the audit
// log, agents' reports, hits, token hashes). lowdb implements it for one server; a shared database
// can implement the same interface for several replicas. Each method that changes the policy also
// writes its audit record (and, given a PolicySeal, the policy version it makes) in the same write,
// so the log, the version and the data cannot disagree; a write that fails changes none of them.
import type { Entry, Problem } from '../policy/types.js'
import type { Hit } from '../sinkhole/types.js'
import type { AuditEvent, ReportBody, Role } from '../client/api-types.js'
import type { NewQuarantine, Quarantine } from '../quarantine/types.js'
import type { LearnedRecord, StoredLearned } from '../profiles/learned.js'

/** Bumped when the on-disk shape changes; a store refuses files from a newer schema. */
export const STORE_SCHEMA = 1

/** An entry pushed through the API: always has id, added, actor and `source: api:<actor>`. */
export type ApiEntry = Entry & { id: string; added: string; actor: string }

export interface StoredToken {
  id: string
  /** Hex SHA-256 of the secret; the secret itself is never stored. */
  hash: string
  role: Role
  /** Agent tokens: the only host name they may report for. */
  host?: string
  name?: string
  created: string
  createdBy: string
}

export interface AgentRecord extends ReportBody {
  /** RFC 3339: when the last report arrived. */
  lastSeen: string
}

export interface HitFilter {
  /** Only hits whose lastTime is at or after this instant. */
  since?: Date
  host?: string
  /** Matches the container's id (prefix), name or compose service. */
  container?: string
  /** The queried name, or a name under it. */
  domain?: string
  limit?: number
}

export interface Actor {
  actor: string
  reason?: string
}

/**
 * Seals a change of API entries with the policy version it makes, in the same write: the store calls
 * etagFor with the API entries as they will be after the change (the entries it serves), and bumps the
 * version when the etag differs from the last one, as commitPolicy would.
 */
export interface PolicySeal {
  etagFor(apiEntries: ApiEntry[]): string
  /** Why, for the audit record of the new version. */
  why: string
}

export interface Store {
  readonly schema: number
  /** Where the data lives, for messages. */
  readonly location: string

  /** API entries that are served, oldest first (not the ones `problems` reports). */
  listEntries(): Promise<ApiEntry[]>
  /** Adds all or nothing; ids/added/actor/source are filled in here. */
  addEntries(entries: Entry[], by: Actor, seal?: PolicySeal): Promise<ApiEntry[]>
  /** Removes the entries with these ids; returns what was removed. */
  removeEntries(ids: string[], by: Actor, seal?: PolicySeal): Promise<ApiEntry[]>
  /**
   * Stored entries that fail validation (hand-edited, restored, or from a time of looser rules): kept
   * in the store, never served, one `file:line` error each.
   */
  problems(): Promise<Problem[]>

  /** The persisted policy version counter and the etag it was given for. */
  policyVersion(): Promise<{ version: number; etag: string }>
  /** Record the policy's etag; bumps the version when it differs from the last one. Returns the version. */
  commitPolicy(etag: string, why: string): Promise<number>

  appendAudit(e: Omit<AuditEvent, 'time'> & { time?: string }): Promise<void>
  /** Newest first. */
  listAudit(limit: number): Promise<AuditEvent[]>

  upsertAgent(r: AgentRecord): Promise<void>
  listAgents(): Promise<AgentRecord[]>

  /** Appends, then trims to the retention (count and age). Returns how many were kept from this batch. */
  appendHits(hits: Hit[]): Promise<number>
  /** Newest first. */
  queryHits(f: HitFilter): Promise<Hit[]>

  /** Every quarantine made through the API and not removed (expired ones too), oldest first. */
  listQuarantines(): Promise<Quarantine[]>
  /**
   * Store one (`expires` already canonical); id, added and actor are filled in here, and the audit
   * record `quarantine.add` is written in the same write.
   */
  addQuarantine(q: NewQuarantine, by: Actor): Promise<Quarantine>
  /** Removes the quarantines with these ids (audit `quarantine.remove` each); returns what was removed. */
  removeQuarantines(ids: string[], by: Actor): Promise<Quarantine[]>

  /**
   * Merge learn-mode records uploaded by `host` (validated by the caller) into the per-profile
   * records (mergeLearned: bounded per profile). Soft state, like hits.
   */
  mergeLearned(host: string, records: LearnedRecord[]): Promise<{ accepted: number; evicted: number }>
  /** One profile's records whose lastSeen is at or after `since`, by name. */
  listLearned(f: { profile: string; since?: Date }): Promise<StoredLearned[]>

  addToken(t: StoredToken, by: Actor): Promise<void>
  listTokens(): Promise<StoredToken[]>
  removeToken(id: string, by: Actor): Promise<StoredToken | undefined>

  /** Flush pending writes. */
  close(): Promise<void>
}
