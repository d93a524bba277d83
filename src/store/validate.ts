// Store files come from disk, where a person, a restore or another tool may have changed them since
// this server wrote them. Pure checks, used when the store opens: the shape of each file (a wrong type
// anywhere means the file was not written by egress-guard: the caller stops start-up with
// EG_STORE_CORRUPT and never overwrites it), and every API entry validated again exactly like API
// input (entryFromFields). An entry of the right shape that fails validation (a network that covers
// 0.0.0.0/0, a name with shell characters, a rule tightened since it was added) is reported as a
// `file:line` problem and not served, and the rest of the store still is: agents refuse a whole
// policy over one bad entry, so serving it would hold the fleet on its old policy without a word.
import type { Entry, Problem } from '../policy/types.js'
import { entryFromFields } from '../policy/parse.js'
import { isRelativeExpiry } from '../policy/expiry.js'
import type { ApiEntry } from './types.js'

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const str = (v: unknown): boolean => typeof v === 'string'
const optStr = (v: unknown): boolean => v === undefined || typeof v === 'string'
const optBool = (v: unknown): boolean => v === undefined || typeof v === 'boolean'
const num = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v)
const strList = (v: unknown): boolean => Array.isArray(v) && v.every(str)

/** Field -> check, per record type; the first failing field is reported. */
type Shape = Record<string, (v: unknown) => boolean>

const ENTRY: Shape = {
  kind: (v) => v === 'domain' || v === 'net',
  value: str,
  allow: (v) => typeof v === 'boolean',
  mode: (v) => v === 'block' || v === 'alert',
  subdomainsOnly: optBool,
  force: optBool,
  reason: optStr,
  expires: optStr,
  source: str,
  id: str,
  added: str,
  actor: str,
}
const TOKEN: Shape = {
  id: str,
  hash: (v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v),
  role: (v) => v === 'admin' || v === 'agent' || v === 'read',
  host: optStr,
  name: optStr,
  created: str,
  createdBy: str,
}
const AGENT: Shape = {
  host: str,
  lastSeen: str,
  version: num,
  etag: str,
  counts: isObj,
  repairs: num,
  drift: strList,
  errors: strList,
  agentVersion: str,
}
const AUDIT: Shape = { time: str, actor: str, action: str, target: str, reason: optStr }
const HIT: Shape = {
  time: str,
  lastTime: str,
  count: num,
  client: str,
  name: str,
  qtype: str,
  action: str,
  answer: str,
  host: optStr,
  entry: (v) => isObj(v) && str(v.value) && str(v.source),
  container: (v) => v === undefined || (isObj(v) && str(v.id) && str(v.name) && optStr(v.service)),
}

function recordProblem(list: unknown[], name: string, shape: Shape): string | undefined {
  for (let i = 0; i < list.length; i++) {
    const r = list[i]
    if (!isObj(r)) return `${name}[${i}] is not an object`
    for (const [k, ok] of Object.entries(shape)) {
      if (!ok(r[k])) return `${name}[${i}].${k} is ${r[k] === undefined ? 'missing' : `not valid (${JSON.stringify(r[k])?.slice(0, 60)})`}`
    }
  }
  return undefined
}

/** The main file's shape (lists already checked to be lists): undefined when sound, else where not. */
export function mainShapeProblem(d: Obj): string | undefined {
  if (typeof d.version !== 'number' || !Number.isSafeInteger(d.version) || d.version < 0) return '"version" is missing or not a whole number'
  if (typeof d.etag !== 'string') return '"etag" is missing or not a string'
  return (
    recordProblem(d.entries as unknown[], 'entries', ENTRY) ??
    recordProblem(d.tokens as unknown[], 'tokens', TOKEN) ??
    recordProblem(d.agents as unknown[], 'agents', AGENT) ??
    recordProblem(d.audit as unknown[], 'audit', AUDIT)
  )
}

export function hitsShapeProblem(d: Obj): string | undefined {
  return recordProblem(d.hits as unknown[], 'hits', HIT)
}

/** The store's own ids are `api-` + 12 hex digits; anything that is safe in a URL path and a terminal is kept. */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/** Why a stored entry of the right shape cannot be served, or its entry as served (normalised). */
export function checkEntry(raw: ApiEntry, seen: { has(id: string): boolean }): { entry: ApiEntry } | { code: string; message: string } {
  if (!SAFE_ID.test(raw.id)) return { code: 'invalid-id', message: `id ${JSON.stringify(raw.id.slice(0, 80))} is not a store id` }
  if (seen.has(raw.id)) return { code: 'duplicate-id', message: `id ${raw.id} is used by an earlier entry too` }
  if (raw.actor === '' || raw.actor.length > 256 || CONTROL.test(raw.actor)) return { code: 'invalid-actor', message: `actor ${JSON.stringify(raw.actor.slice(0, 80))} is not a valid actor` }
  if (Number.isNaN(Date.parse(raw.added))) return { code: 'invalid-added', message: `added ${JSON.stringify(raw.added.slice(0, 80))} is not a time` }
  // An absolute instant only: a relative one ("4h") was resolved when the entry was added.
  if (raw.expires !== undefined && isRelativeExpiry(raw.expires)) return { code: 'bad-expires', message: `expires ${JSON.stringify(raw.expires)} is not a date or time` }
  // The same function that validates API input. `now` at the epoch: an entry that has expired since it
  // was added is still a valid entry (it simply no longer applies), not a problem.
  const r = entryFromFields(
    {
      value: raw.subdomainsOnly ? `*.${raw.value}` : raw.value,
      allow: raw.allow,
      mode: raw.mode,
      ...(raw.reason !== undefined ? { reason: raw.reason } : {}),
      ...(raw.expires !== undefined ? { expires: raw.expires } : {}),
      ...(raw.force !== undefined ? { force: raw.force } : {}),
    },
    `api:${raw.actor}`,
    new Date(0),
  )
  const bad = r.problems.find((p) => p.severity === 'error')
  if (bad || !r.entry) return { code: bad?.code ?? 'invalid-entry', message: bad?.message ?? 'not a valid entry' }
  const e: Entry = r.entry
  // The stored fields must say what the value says (`"kind": "net"` on a name, `@@` inside a value
  // that claims to be a block): otherwise which one the author meant is a guess.
  if (e.kind !== raw.kind || e.allow !== raw.allow || !!e.subdomainsOnly !== !!raw.subdomainsOnly) {
    return { code: 'invalid-entry', message: `the value is a ${e.allow ? 'allowed ' : ''}${e.kind}${e.subdomainsOnly ? ' (subdomains only)' : ''}, its fields say ${raw.allow ? 'allowed ' : ''}${raw.kind}${raw.subdomainsOnly ? ' (subdomains only)' : ''}` }
  }
  // Served as validation normalised it (case, trailing dot, punycode); the store's own fields kept.
  const { id: _derived, ...fields } = e
  return { entry: { ...fields, id: raw.id, added: raw.added, actor: raw.actor, source: `api:${raw.actor}` } }
}

export interface CheckedEntries {
  /** The entries to serve, by id, each mapped to its record in the file (what removal removes). */
  served: Map<string, { entry: ApiEntry; raw: ApiEntry }>
  /** One error per entry that is kept in the file but not served. */
  problems: Problem[]
}

/** Validate every stored API entry; `text` (the file as read or written) gives each problem its line. */
export function checkStoredEntries(raw: readonly ApiEntry[], file: string, text: string): CheckedEntries {
  const served = new Map<string, { entry: ApiEntry; raw: ApiEntry }>()
  const problems: Problem[] = []
  const seen = new Set<string>()
  const nth = new Map<string, number>()
  raw.forEach((r, i) => {
    const k = (nth.get(r.id) ?? 0) + 1
    nth.set(r.id, k)
    const c = checkEntry(r, seen)
    seen.add(r.id)
    if ('entry' in c) served.set(r.id, { entry: c.entry, raw: r })
    else problems.push({ file, line: lineOf(text, r.id, k), severity: 'error', code: c.code, message: `entries[${i}] ${JSON.stringify(r.value.slice(0, 120))} (id ${JSON.stringify(r.id.slice(0, 80))}): ${c.message}; not served (it stays in the file until removed from it)` })
  })
  return { served, problems }
}

/**
 * The line of the k-th entry with this id: the k-th `"id": "<id>"` after the `"entries"` key (the
 * audit log repeats ids, but the store writes it after the entries). 0 when it cannot be told.
 */
export function lineOf(text: string, id: string, k = 1): number {
  const start = text.indexOf('"entries"')
  if (start < 0) return 0
  const re = new RegExp(`"id"\\s*:\\s*${JSON.stringify(id).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'g')
  re.lastIndex = start
  let m: RegExpExecArray | null = null
  for (let n = 0; n < k; n++) if (!(m = re.exec(text))) return 0
  let line = 1
  for (let i = text.indexOf('\n'); i >= 0 && i < m!.index; i = text.indexOf('\n', i + 1)) line++
  return line
}
