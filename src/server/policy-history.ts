// Remembers enough of the last N policy versions to answer "what changed since version V" without
// keeping N copies of a large policy: the current id -> fingerprint map plus, per version step, only
// the ids that changed in that step and their state before it (reverse deltas). Memory is the
// current policy plus the sum of the changes, not N times the policy. Pure; no I/O.
import { createHash } from 'node:crypto'
import type { Entry } from '../policy/types.js'

/**
 * What identifies an entry's content for diffs: every field but where it came from (`source`,
 * `added`, `actor`), matching the policy etag, so moving a line in a file is not a change.
 */
export function fingerprint(e: Entry): string {
  const { source: _s, added: _a, actor: _c, ...rest } = e
  const keys = Object.keys(rest).sort() as (keyof typeof rest)[]
  return createHash('sha1').update(JSON.stringify(keys.map((k) => [k, rest[k]]))).digest('base64url').slice(0, 16)
}

interface Step {
  /** The version this step leads away from. */
  from: number
  /** For each id that changed in the step: its fingerprint at `from` (undefined: absent at `from`). */
  before: Map<string, string | undefined>
}

export interface Diff {
  since: number
  /** Entries new or changed since `since` (a changed entry keeps its id: agents replace by id). */
  added: Entry[]
  /** Ids present at `since` and absent now. */
  removed: string[]
}

export class PolicyHistory {
  #version = -1
  #current = new Map<string, string>()
  #entries = new Map<string, Entry>()
  #steps: Step[] = []
  readonly #keep: number

  constructor(keep = 50) {
    this.#keep = keep
  }

  get version(): number {
    return this.#version
  }

  /** The oldest version a diff can be computed from. */
  get oldest(): number {
    return this.#steps.length ? this.#steps[0]!.from : this.#version
  }

  /** Record `entries` (each with an id) as `version`. Versions only grow. */
  push(version: number, entries: Entry[]): void {
    const next = new Map<string, string>()
    const byId = new Map<string, Entry>()
    for (const e of entries) {
      if (!e.id) continue
      next.set(e.id, fingerprint(e))
      byId.set(e.id, e)
    }
    if (this.#version >= 0 && version !== this.#version) {
      const before = new Map<string, string | undefined>()
      for (const [id, fp] of this.#current) if (next.get(id) !== fp) before.set(id, fp)
      for (const id of next.keys()) if (!this.#current.has(id)) before.set(id, undefined)
      this.#steps.push({ from: this.#version, before })
      if (this.#steps.length > this.#keep) this.#steps.splice(0, this.#steps.length - this.#keep)
    }
    this.#version = version
    this.#current = next
    this.#entries = byId
  }

  /** undefined when `since` is unknown (too old, or in the future): the caller sends the full policy. */
  diff(since: number): Diff | undefined {
    if (since === this.#version) return { since, added: [], removed: [] }
    const start = this.#steps.findIndex((s) => s.from === since)
    if (start < 0) return undefined
    // The first record of an id from `since` onward is its state at `since`.
    const atSince = new Map<string, string | undefined>()
    for (let i = start; i < this.#steps.length; i++) {
      for (const [id, fp] of this.#steps[i]!.before) if (!atSince.has(id)) atSince.set(id, fp)
    }
    const added: Entry[] = []
    const removed: string[] = []
    for (const [id, fp] of atSince) {
      const now = this.#current.get(id)
      if (now === undefined) {
        if (fp !== undefined) removed.push(id)
      } else if (now !== fp) {
        added.push(this.#entries.get(id)!)
      }
    }
    return { since, added, removed }
  }
}
