// How profiles enter the policy's etag: a policy without profiles keeps the etag of its entries alone
// (so agents, caches and tests that predate profiles see the same etags), and any change to a
// profile's meaning gives a new etag, which bumps the server's version and wakes the long-polls.
import { createHash } from 'node:crypto'
import type { Profile } from './types.js'

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

/** The etag of a policy: `entriesEtag` itself when there are no profiles, else a hash of both. */
export function policyEtag(entriesEtag: string, profiles: readonly Profile[] | undefined): string {
  if (!profiles || profiles.length === 0) return entriesEtag
  return createHash('sha256').update(entriesEtag).update('\n\u0003profiles\n').update(profilesKey(profiles)).digest('hex')
}
