// Which containers the kernel holds to a profile, pure: the policy's profiles, the running containers,
// the quarantined ids and the sinkhole's addresses in, the ContainerEnforcer's desired state out (and
// the labels that name no profile, reported as problems). No I/O; container-egress.ts applies it.
import type { ContainerRecord } from '../docker/types.js'
import type { ContainerEgress, ContainerState, ProfileNet } from '../enforce/container-types.js'
import type { Profile } from '../profiles/types.js'

/** A container whose label names a profile the policy does not have: held to DNS only (fail closed). */
export interface MissingProfile {
  id: string
  name: string
  profile: string
}

export interface ContainerPlan {
  state: ContainerState
  missing: MissingProfile[]
  /** Container id -> the profile it is held to (learn mode included; missing profiles excluded). */
  held: Map<string, Profile>
}

/** A profile's own address/network lines, as the kernel takes them (name lines are learned instead). */
export function profileNets(p: Profile): ProfileNet[] {
  return p.rules.filter((r) => r.kind === 'net').map((r) => (r.ports?.length ? { cidr: r.value, ports: [...r.ports] } : { cidr: r.value }))
}

/**
 * - quarantined (by id): `quarantine`, whatever its label (an unlabelled container can be quarantined);
 * - labelled with an existing profile: its mode and nets; `learn` is not listed (it blocks nothing);
 * - labelled with a missing profile (or an empty/invalid label): `enforce` with no nets, and reported;
 * - unlabelled: not listed (behaves as without profiles).
 * Containers without an address (network `none`, `host`) are not listed: there is nothing to match.
 */
export function planContainers(
  records: readonly ContainerRecord[],
  profiles: readonly Profile[] | undefined,
  quarantined: ReadonlySet<string>,
  sinkhole: ContainerState['sinkhole'],
): ContainerPlan {
  const byName = new Map((profiles ?? []).map((p) => [p.name, p]))
  const containers: ContainerEgress[] = []
  const missing: MissingProfile[] = []
  const held = new Map<string, Profile>()
  for (const r of [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const p = r.profile !== undefined ? byName.get(r.profile) : undefined
    if (p) held.set(r.id, p)
    else if (r.profile !== undefined) missing.push({ id: r.id, name: r.name, profile: r.profile })
    if (r.addresses.length === 0) continue
    const addresses = [...r.addresses]
    if (quarantined.has(r.id)) containers.push({ id: r.id, addresses, mode: 'quarantine', nets: [] })
    else if (p) {
      if (p.mode !== 'learn') containers.push({ id: r.id, addresses, mode: p.mode, nets: profileNets(p) })
    } else if (r.profile !== undefined) containers.push({ id: r.id, addresses, mode: 'enforce', nets: [] })
  }
  return { state: { containers, sinkhole }, missing, held }
}

/** The fleet-view line for a label naming no profile (report errors). */
export function missingProfileText(m: MissingProfile): string {
  return `container ${m.name} (${m.id.slice(0, 12)}): label egress-guard.profile=${JSON.stringify(m.profile)} names no profile: held to DNS to the sinkhole only`
}

/** Addresses held in `before` and no longer in `after` (stopped containers, lost addresses): their learned pairs go. */
export function leftAddresses(before: ContainerState | undefined, after: ContainerState): string[] {
  if (!before) return []
  const now = new Set(after.containers.flatMap((c) => c.addresses.map((a) => `${c.id}/${a}`)))
  const gone = new Set<string>()
  for (const c of before.containers) for (const a of c.addresses) if (!now.has(`${c.id}/${a}`)) gone.add(a)
  return [...gone].sort()
}
