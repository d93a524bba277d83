// Container identity shapes: what the sinkhole's hits name (ContainerInfo), and the full record that
// profile enforcement and quarantine follow per container (labels, every address, changes). Types only.

/** The `egress-guard.profile=NAME` label: holds the container to profile NAME. */
export const PROFILE_LABEL = 'egress-guard.profile'

/** What a hit says about the container that asked (kept small: it travels with every hit). */
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

/** One network a container is attached to, with the addresses it holds there (canonical text). */
export interface ContainerNetwork {
  /** The network's name as Docker reports it (`bridge`, `myproject_default`, `host`...). */
  name: string
  ipv4?: string
  ipv6?: string
}

/** Everything known about one running container. Records are immutable: a change makes a new one. */
export interface ContainerRecord {
  id: string
  /** Without the leading `/`. */
  name: string
  image: string
  /** Every label with a string value, as Docker reports it (untrusted text: never reaches a shell). */
  labels: Readonly<Record<string, string>>
  /**
   * The `egress-guard.profile` label exactly as given, when the label is present (even empty or not a
   * valid profile name: consumers compare it with profile names, and one that names no profile holds
   * the container to nothing, fail closed). Absent: an unlabelled container.
   */
  profile?: string
  service?: string
  project?: string
  /** HostConfig.NetworkMode (`bridge`, `host`, `none`, `container:<id>`, a network name), when reported. */
  networkMode?: string
  /** Every address on every network (IPv4 and global IPv6), canonical, sorted, no duplicates. */
  addresses: string[]
  /** Attached networks, sorted by name. */
  networks: ContainerNetwork[]
}

/**
 * A change to the set of running containers, after the lookup maps are updated:
 * - `added`: a container started (or was found by a listing);
 * - `updated`: a running container's record changed (a network connect/disconnect, a new address, a
 *   rename, an address taken over by another container);
 * - `removed`: it stopped, died or was removed (a restart is `removed` then `added`).
 * After a reconnect to the engine, the listing is compared with what was known and only the
 * differences are reported.
 */
export type ContainerChange =
  | { type: 'added'; record: ContainerRecord }
  | { type: 'updated'; record: ContainerRecord; previous: ContainerRecord }
  | { type: 'removed'; record: ContainerRecord }
