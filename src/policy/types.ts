// The policy model every other part reads: entries, problems, policies and verdicts. Types only.
import type { Profile } from '../profiles/types.js'
import type { Quarantine } from '../quarantine/types.js'

export type { Profile, ProfileMode, ProfileRule } from '../profiles/types.js'
export type { Quarantine } from '../quarantine/types.js'

/** One blocklist entry after parsing and normalisation. */
export interface Entry {
  /** 'domain': a DNS name; 'net': an IPv4/IPv6 address or network, always in canonical CIDR form. */
  kind: 'domain' | 'net'
  /**
   * domain: lower-case, punycode, no trailing dot, no `*.` prefix (see `subdomainsOnly`).
   * net: canonical CIDR, e.g. `203.0.113.7/32`, `2001:db8::/48`.
   */
  value: string
  /** domain only: true for `*.evil.example` (names under it, not the name itself). */
  subdomainsOnly?: boolean
  /** `@@` entries: allow wins over any block or alert it overlaps. */
  allow: boolean
  /** 'alert': log hits, do not block. */
  mode: 'block' | 'alert'
  reason?: string
  /** RFC 3339 instant (a bare date `2026-12-31` means the end of that day, UTC). */
  expires?: string
  /** `force` on the line: a network broader than /8 (v4) or /32 (v6) is accepted. */
  force?: boolean
  /** Where it came from: `file:line` for files, `api:<actor>` for API pushes. */
  source: string
  /** Stable id: API entries get one from the store; file entries derive one from kind+value+flags. */
  id?: string
  /** API entries: when it was added (RFC 3339). */
  added?: string
  /** API entries: who added it. */
  actor?: string
}

export type Severity = 'error' | 'warning'

/** A per-line problem. Problems are values, never exceptions: one bad line never drops a list. */
export interface Problem {
  file: string
  line: number
  severity: Severity
  /** Short stable code, e.g. `invalid-name`, `too-broad`, `non-canonical-cidr`. */
  code: string
  message: string
}

/** A merged, validated policy: what a server distributes and an agent enforces. */
export interface Policy {
  /** Monotonic on the server; for a directory-only policy, derived from the content. */
  version: number
  /** Content hash of the entries (quoted as an HTTP ETag by the server). */
  etag: string
  /** Sorted, de-duplicated, expired entries removed. */
  entries: Entry[]
  /** RFC 3339: when this policy was built. */
  generatedAt: string
  /**
   * Default-deny profiles (`<blocklists dir>/profiles/NAME.txt`), sorted by name, names unique.
   * Absent means none (a policy without profiles has the etag of its entries alone; see
   * src/profiles/etag.ts); with profiles, `etag` covers them too.
   */
  profiles?: Profile[]
  /**
   * Quarantines in force (made through the API; expired ones left out), sorted by id. Absent means
   * none; with some, `etag` covers them too (src/profiles/etag.ts).
   */
  quarantines?: Quarantine[]
}

export type Action = 'block' | 'alert' | 'allow'

/** Which entry decides for a name or an address. */
export interface Verdict {
  action: Action
  entry: Entry
}

/**
 * Hot-path lookups (the DNS sinkhole calls matchName for every query).
 * Precedence: allow > block > alert; within the winning action, the most specific entry is reported.
 * A returned Verdict and its Entry may be shared between lookups (the compact matcher builds one
 * Entry per entry, frozen; `entry` may be a getter that builds it on first read): treat both as
 * read-only, and read `entry` only when it is needed.
 */
export interface Matcher {
  matchName(name: string): Verdict | undefined
  matchIp(ip: string): Verdict | undefined
}
