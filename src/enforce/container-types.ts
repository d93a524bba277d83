// The container-egress seam (default-deny per container, issue 16): what the kernel should hold for
// the containers held to a profile (ContainerState), and the interface every backend (iptables+ipset,
// nftables, dry-run) implements. Separate from the fleet Enforcer: its own chains/sets/table. Types only.
import type { ApplyReport, Drift } from './types.js'

export type ContainerMode = 'enforce' | 'alert' | 'quarantine'

/** One profile destination: an address or CIDR, optionally limited to ports (TCP and UDP). */
export interface ProfileNet {
  cidr: string
  ports?: number[]
}

export interface ContainerEgress {
  /** Docker container id (12 to 64 hex). With the address it names the learned sets, so a new
   * container that reuses an address never inherits the learned pairs of the one before it. */
  id: string
  /** Its addresses on Docker networks (IPv4 and IPv6). */
  addresses: string[]
  /** learn-mode and unlabelled containers are not listed at all. */
  mode: ContainerMode
  /** The profile's own addresses/CIDRs (a missing profile: enforce with none, DNS to the sinkhole only). */
  nets: ProfileNet[]
}

export interface ContainerState {
  containers: ContainerEgress[]
  /** The sinkhole's addresses as containers reach it, and the port it receives on (INPUT, after any DNAT). */
  sinkhole: { v4: string[]; v6: string[]; port: number }
}

/** A learned (container, destination[, proto:port]) pair; `ttlSec` is the final kernel timeout (the
 * caller applies the floor and grace). A port without a proto allows TCP and UDP. */
export interface LearnPair {
  /** The container's address (as in ContainerState). */
  container: string
  dst: string
  proto?: 'tcp' | 'udp'
  port?: number
  ttlSec: number
}

export interface LearnReport {
  /** Pairs written to the kernel (acknowledged) by this call. */
  written: number
  /** Pairs for an address no applied state holds yet: kept in memory and written by the apply that
   * adds it, before it is enforced (a container's first lookup may beat the agent's apply). */
  deferred: number
}

export type SeenKind = 'refused' | 'alerted' | 'quarantine'

/** A packet the rules refused (enforce), would have refused (alert) or refused from a quarantined container. */
export interface SeenEvent {
  kind: SeenKind
  src: string
  dst: string
  /** `tcp`, `udp`, `icmp`, ... (a protocol number as text when the tool prints no name). */
  proto?: string
  /** Destination port (TCP/UDP only). */
  port?: number
}

export interface ContainerEnforcer {
  readonly name: 'iptables' | 'nftables' | 'dry-run'
  /** Create the shared sets/table the writer needs (idempotent; touches no learned set). */
  init(): Promise<void>
  /** Make the kernel hold `state`: mode sets/maps, chains, jumps, one learned set pair per held
   * address. Never flushes a learned set of an address that stays; destroys those of addresses that
   * left (and of an address whose container id changed). */
  apply(state: ContainerState): Promise<ApplyReport>
  /** Compare the kernel with the last applied state; empty means no drift. */
  verify(): Promise<Drift[]>
  /** Remove everything this seam made (chains, jumps, sets, table), learned pairs included. */
  remove(): Promise<void>
  /** Write learned pairs; resolves once they are in the kernel (acknowledged by the writer process).
   * Rejects (EG_BAD_INPUT) before writing anything when a pair is invalid, and (EG_EXEC) when the
   * writer failed: the caller releases the answer anyway and counts it. */
  learn(pairs: readonly LearnPair[]): Promise<LearnReport>
  /** Drop every learned pair of this address (container stopped or lost the address). */
  forget(containerIp: string): Promise<void>
  /** Delete the conntrack entries from and to this address (quarantine: call after apply()). */
  cut(containerIp: string): Promise<void>
  /** What the rules refused or alerted since the last call (drains the seen sets). */
  seen(): Promise<SeenEvent[]>
  /** Stop the writer process (the kernel state stays). */
  close(): Promise<void>
}

export interface ContainerEnforcerOptions {
  /** Act inside this named network namespace (`ip netns exec`). */
  netns?: string
  /** Prefix of set/chain/table names; default `egress-guard` (chains `EGRESS-GUARD-CT*`, table
   * `inet egress_guard_ct`). Must match the fleet enforcer's so our jump lands after its jump. */
  namePrefix?: string
}
