// The profile model (default-deny egress for labelled containers): what a profile file says once
// parsed, as the server distributes it and the agent enforces it. Types only.

/**
 * What a profile does to the containers held to it:
 * - `enforce`: only what the profile allows (and the fleet policy does not block) is reachable;
 * - `alert`: nothing is blocked; what enforce would refuse becomes a hit with `action: alert`;
 * - `learn`: nothing is blocked; every name looked up is recorded for `profile suggest`.
 */
export type ProfileMode = 'learn' | 'alert' | 'enforce'

export const PROFILE_MODES: readonly ProfileMode[] = ['learn', 'alert', 'enforce']

/** One allowed destination: one line of a profile file (duplicate lines are merged into the first). */
export interface ProfileRule {
  /** 'domain': a DNS name; 'net': an address or network in canonical CIDR form (as Entry.kind). */
  kind: 'domain' | 'net'
  /** As Entry.value: lower-case punycode name without `*.` or trailing dot, or canonical CIDR. */
  value: string
  /** domain only: true for `*.name` (names under it, not the name itself); absent: the name and every name under it. */
  subdomainsOnly?: boolean
  /**
   * `port=443` / `port=80,443`: the only destination ports the addresses of this line may be reached
   * on (sorted ascending, no duplicates, 1..65535). Absent: any port. Applies to what the kernel
   * accepts (learned addresses of a name line, or the network of a net line); DNS answers are not
   * port-aware.
   */
  ports?: number[]
  /** The trailing `# text` / `; text`, or the full-line comment directly above. */
  reason?: string
  /** `file:line`, the file labelled as the server labels blocklist files (`blocklists/profiles/web.txt:3`). */
  source: string
  /** `force` on the line: a network broader than /8 (v4) or /32 (v6) is accepted (as in blocklists). */
  force?: boolean
}

/** A parsed profile: `<blocklists dir>/profiles/NAME.txt`. */
export interface Profile {
  /** NAME of the file, `[a-z0-9][a-z0-9_-]*` (at most 63 characters): what `egress-guard.profile=NAME` names. */
  name: string
  /** From the file's `mode=` line; `enforce` when there is none (or it is invalid: fail closed). */
  mode: ProfileMode
  /** Allowed destinations in file order, one per distinct destination. */
  rules: ProfileRule[]
  /** The file, labelled (`blocklists/profiles/web.txt`). */
  source: string
  /** `file:line` of the `mode=` line, when there is one. */
  modeSource?: string
}
