// What changed between two policies, by entry identity: enforcers apply only the difference, and
// the server's audit log and the `plan` command show it.
import type { Entry } from './types.js'
import { entryKey } from './merge.js'

/** Same identity, but a different expiry, reason or force flag. */
export interface Changed {
  from: Entry
  to: Entry
}

function sameDetails(a: Entry, b: Entry): boolean {
  return a.expires === b.expires && a.reason === b.reason && Boolean(a.force) === Boolean(b.force)
}

/**
 * `added`: identities in `to` but not in `from`; `removed`: the reverse; `changed`: in both with other
 * details. Outputs keep the order of their input list. Duplicate identities in one list count once (first wins).
 */
export function diffPolicies(from: readonly Entry[], to: readonly Entry[]): { added: Entry[]; removed: Entry[]; changed: Changed[] } {
  const before = new Map<string, Entry>()
  for (const e of from) {
    const k = entryKey(e)
    if (!before.has(k)) before.set(k, e)
  }
  const after = new Map<string, Entry>()
  for (const e of to) {
    const k = entryKey(e)
    if (!after.has(k)) after.set(k, e)
  }
  const added: Entry[] = []
  const changed: Changed[] = []
  for (const [k, e] of after) {
    const old = before.get(k)
    if (old === undefined) added.push(e)
    else if (!sameDetails(old, e)) changed.push({ from: old, to: e })
  }
  const removed: Entry[] = []
  for (const [k, e] of before) if (!after.has(k)) removed.push(e)
  return { added, removed, changed }
}
