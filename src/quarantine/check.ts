// Structural validation of the quarantines in a policy that came from outside the process (the
// server, the agent's cache): every field as the server makes it. The agent applies no policy whose
// quarantines fail this (src/agent/policy-check.ts): a quarantine it cannot read must not be dropped
// silently, and it must not guess which container a broken one meant.
import { isContainerText } from './match.js'
import type { Quarantine } from './types.js'

export const QUARANTINE_ID = /^q-[0-9a-f]{12}$/
/** The API's host-name rule (src/server/schemas.ts hostName). */
export const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
export const MAX_REASON = 1024

const isDate = (s: unknown): boolean => typeof s === 'string' && s.length <= 64 && !Number.isNaN(Date.parse(s))

function quarantineProblem(x: unknown): string | undefined {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'not an object'
  const q = x as Quarantine
  if (typeof q.id !== 'string' || !QUARANTINE_ID.test(q.id)) return 'id must be q- and 12 hex digits'
  if (typeof q.container !== 'string' || !isContainerText(q.container)) return 'container must be a container name, id prefix or compose service'
  if (q.host !== undefined && (typeof q.host !== 'string' || q.host.length > 253 || !HOST_NAME.test(q.host))) return 'host must be a host name'
  if (typeof q.reason !== 'string' || q.reason.length === 0 || q.reason.length > MAX_REASON) return `reason must be 1..${MAX_REASON} characters`
  if (q.expires !== undefined && !isDate(q.expires)) return 'expires is not a date'
  if (!isDate(q.added)) return 'added is not a date'
  if (typeof q.actor !== 'string' || q.actor.length > 256) return 'actor must be a string'
  return undefined
}

/** A list of quarantines: the problems found (empty when it may be applied). */
export function quarantinesProblems(x: unknown): string[] {
  if (x === undefined) return []
  if (!Array.isArray(x)) return ['quarantines must be a list']
  const out: string[] = []
  const ids = new Set<string>()
  x.forEach((q: unknown, i) => {
    const why = quarantineProblem(q)
    const label = `quarantines[${i}] ${JSON.stringify(String((q as Quarantine)?.id ?? '').slice(0, 20))}`
    if (why) return void out.push(`${label}: ${why}`)
    const id = (q as Quarantine).id
    if (ids.has(id)) out.push(`${label}: id given twice`)
    ids.add(id)
  })
  return out
}

/** Only the documented fields, so nothing unexpected from the wire travels further. */
export function cleanQuarantines(list: readonly Quarantine[]): Quarantine[] {
  return list.map((q) => ({
    id: q.id,
    container: q.container,
    ...(q.host !== undefined ? { host: q.host } : {}),
    reason: q.reason,
    ...(q.expires !== undefined ? { expires: q.expires } : {}),
    added: q.added,
    actor: q.actor,
  }))
}
