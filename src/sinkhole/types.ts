// Shapes shared by the sinkhole's parts: hits and container attribution. Types only.

export interface ContainerInfo {
  id: string
  name: string
  image: string
  /** com.docker.compose.service label, when present. */
  service?: string
  /** com.docker.compose.project label, when present. */
  project?: string
}

/** Client address -> container; implementations keep it current from Docker's /events. */
export interface ContainerLookup {
  byIp(ip: string): ContainerInfo | undefined
  /**
   * Who held `ip` at `timeMs` (epoch ms): the current holder, else a container removed shortly before
   * (its last lookups can be recorded after it is gone). Used off the hot path by the hit log.
   */
  byIpAt?(ip: string, timeMs: number): ContainerInfo | undefined
}

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
  action: 'block' | 'alert'
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
