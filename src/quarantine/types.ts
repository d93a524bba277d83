// The quarantine model: one container cut off from everything but DNS to the sinkhole, until an
// operator lifts it. Made through the API (audited), distributed with the policy (same version, etag
// and long-poll as entries and profiles) and applied by the agent on the host whose container it
// names. Types only.

/** A quarantine as the server stores it and the policy carries it. */
export interface Quarantine {
  /** `q-` and 12 lower-case hex digits, made by the server. */
  id: string
  /**
   * The container as the operator gave it: a container name (with or without a leading `/`), an id
   * prefix of at least MIN_ID_PREFIX hex digits, or a compose service (`com.docker.compose.service`).
   * Every running container it matches on a host it applies to is quarantined (see match.ts).
   */
  container: string
  /** Only on this host (the agent's `--host` name); absent: on every host. */
  host?: string
  reason: string
  /** RFC 3339 instant (canonical UTC, as entries' `expires`); absent: until removed. */
  expires?: string
  /** RFC 3339: when it was made. */
  added: string
  /** Who made it (the token's actor). */
  actor: string
}

/** `POST /v1/quarantines` body. */
export interface NewQuarantine {
  container: string
  host?: string
  reason: string
  /** `4h`, `7d`, a date (`2026-12-31`, the end of that day UTC) or an RFC 3339 time. */
  expires?: string
}

/** A container an agent holds to a profile or in quarantine, as its report lists it. */
export interface HeldContainer {
  /** Docker container id (12..64 lower-case hex). */
  id: string
  /** Without the leading `/`. */
  name: string
  /** The `egress-guard.profile` label as given, when the container has one (even one naming no profile). */
  profile?: string
  /** The id of the quarantine the agent applies to it, when it is quarantined. */
  quarantineId?: string
}

/** A container a quarantine matched, from the agents' last reports. */
export interface QuarantineMatch {
  host: string
  container: { id: string; name: string }
}
