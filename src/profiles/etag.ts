// How profiles enter the policy's etag: a policy without profiles keeps the etag of its entries alone
// (so agents, caches and tests that predate profiles see the same etags), and any change to a
// profile's meaning gives a new etag, which bumps the server's version and wakes the long-polls.
// Quarantines (src/quarantine/) enter it the same way: none keeps the etag it had without them.
import { createHash } from 'node:crypto'
import type { Profile } from './types.js'
import type { Quarantine } from '../quarantine/types.js'

/**
 * The meaning of the profiles as one string: name, mode and each rule's destination, ports, force and
 * reason, sorted, so neither the order of files nor the order of lines matters. Sources are left out,
 * as for entries (buildPolicy): moving a line is not a new policy.
 */
export function profilesKey(profiles: readonly Profile[]): string {
  const byName = [...profiles].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return byName
    .map((p) => {
      const rules = p.rules
        .map((r) => [r.kind, (r.subdomainsOnly ? '*.' : '') + r.value, (r.ports ?? []).join(','), r.force ? 'force' : '', r.reason ?? ''].join('\t'))
        .sort()
      return [`${p.name}\t${p.mode}`, ...rules].join('\n')
    })
    .join('\n\u0002\n')
}

/**
 * The quarantines as one string, sorted by id. Every field is in it (added and actor too): the policy
 * carries them whole, and the agent checks a diff's quarantines against the etag.
 */
export function quarantinesKey(quarantines: readonly Quarantine[]): string {
  return [...quarantines]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((q) => [q.id, q.container, q.host ?? '', q.reason, q.expires ?? '', q.added, q.actor].join('\t'))
    .join('\n')
}

/**
 * The etag of a policy: `entriesEtag` itself when there are neither profiles nor quarantines, else a
 * hash of all three (a policy with profiles and no quarantine keeps the etag it had before quarantines).
 */
export function policyEtag(entriesEtag: string, profiles: readonly Profile[] | undefined, quarantines?: readonly Quarantine[]): string {
  const hasProfiles = profiles !== undefined && profiles.length > 0
  const hasQuarantines = quarantines !== undefined && quarantines.length > 0
  if (!hasProfiles && !hasQuarantines) return entriesEtag
  const h = createHash('sha256').update(entriesEtag)
  if (hasProfiles) h.update('\n\u0003profiles\n').update(profilesKey(profiles))
  if (hasQuarantines) h.update('\n\u0003quarantines\n').update(quarantinesKey(quarantines))
  return h.digest('hex')
}
