// The enforcement seam: what the kernel should hold (DesiredState), and the interface every
// backend (iptables+ipset, nftables, dry-run) implements. Types, and one helper the backends share.

export interface FamilySets {
  /** Canonical CIDRs (see src/policy/net.ts), de-duplicated. */
  v4: string[]
  v6: string[]
}

/** Everything a backend needs to know; computed purely from a policy plus resolved addresses. */
export interface DesiredState {
  /** Destinations to reject (explicit nets + addresses that blocked domains resolved to). */
  block: FamilySets
  /** Alert-mode destinations: counted and logged, never rejected. */
  alert: FamilySets
  /** Allow entries: accepted before the block sets are consulted. */
  allow: FamilySets
  /**
   * The host's control plane (its policy server, DNS upstreams, sinkhole): `IP,PROTO:PORT` members
   * (`198.51.100.1,tcp:8787`, `2001:db8::53,udp:53`; see control-plane.ts) returned from before every
   * other set, so no policy entry, however broad, cuts the host off the server that can undo it.
   * Absent: empty.
   */
  exempt?: FamilySets
  /** The policy version this state was computed from (for reports and comments). */
  version: number
}

export interface ApplyReport {
  backend: string
  /** False when the kernel already matched and nothing was written. */
  changed: boolean
  added: number
  removed: number
  ms: number
  /** Human-readable lines: what was (or, for dry-run, would be) done. */
  actions: string[]
}

export type DriftKind =
  | 'set-missing'
  | 'set-members'
  | 'chain-missing'
  | 'chain-rules'
  | 'jump-missing'
  | 'jump-not-first'
  | 'table-missing'
  | 'hosts-block'

export interface Drift {
  kind: DriftKind
  detail: string
}

export interface Enforcer {
  readonly name: 'iptables' | 'nftables' | 'dry-run'
  /** Create what must exist before the first apply (idempotent). */
  init(): Promise<void>
  /** Make the kernel match `desired`: one batched process per tool, never one per entry. */
  apply(desired: DesiredState): Promise<ApplyReport>
  /** Compare the kernel with the last applied state; an empty list means no drift. */
  verify(): Promise<Drift[]>
  /** Remove exactly what this backend created, nothing else. */
  remove(): Promise<void>
}

export interface EnforcerOptions {
  /** Act inside this named network namespace (`ip netns exec`). */
  netns?: string
  /** Log rejected packets (rate-limited). */
  log?: boolean
  /** Prefix for set/chain/table names; default `egress-guard` / `EGRESS-GUARD`. Tests may vary it. */
  namePrefix?: string
}

/**
 * `later` with what `earlier` did folded in (init's creations into the first apply's report), so
 * the report says everything the kernel was changed by. `earlier` absent: `later` itself.
 */
export function mergeReports(earlier: ApplyReport | undefined, later: ApplyReport): ApplyReport {
  if (!earlier) return later
  return {
    backend: later.backend,
    changed: earlier.changed || later.changed,
    added: earlier.added + later.added,
    removed: earlier.removed + later.removed,
    ms: earlier.ms + later.ms,
    actions: [...earlier.actions, ...later.actions],
  }
}
