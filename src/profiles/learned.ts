// Learn mode's records: every name the containers held to a profile looked up, per (profile, name),
// with when, how often, by which containers and what the answers were. Agents upload them in
// batches; the server merges them here (pure) and keeps a bounded number per profile, the input of
// `profile suggest`. Validation is exported so the agent can drop what the server would refuse.
import { normalizeName } from '../policy/names.js'
import { formatIp, parseIp } from '../policy/net.js'
import { isProfileName } from './parse.js'

/** One name as an agent uploads it: what its containers did since its last successful upload. */
export interface LearnedRecord {
  profile: string
  /** The name looked up: lower case, no trailing dot, punycode (normalizeName's normal form). */
  name: string
  /** RFC 3339: the first and last lookup in this record. */
  firstSeen: string
  lastSeen: string
  /** Lookups in this record (the server adds them up: records are increments, not totals). */
  count: number
  /** Names of the containers that looked it up (at most MAX_RECORD_CONTAINERS). */
  containers: string[]
  /** Addresses in the answers (canonical text, at most MAX_ANSWERS). */
  answers: string[]
}

/** What the server keeps per (profile, name): the merge of every upload, and the hosts they came from. */
export interface StoredLearned extends LearnedRecord {
  hosts: string[]
}

/** Per record: containers listed (the most recent first are kept when merging). */
export const MAX_RECORD_CONTAINERS = 16
/** Per record: answer addresses. */
export const MAX_ANSWERS = 8
/** Per stored record: hosts. */
export const MAX_RECORD_HOSTS = 16
/**
 * Names kept per profile. Past it the names with the oldest lastSeen go: a profile that looks up
 * more distinct names than this is not one a list of names can describe (a crawler, a mail relay).
 */
export const MAX_LEARNED_PER_PROFILE = 5000
/** Records per upload. */
export const MAX_LEARNED_PER_BATCH = 1000

const CONTAINER_NAME = /^\/?[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/
const isTime = (s: unknown): s is string => typeof s === 'string' && s.length <= 64 && !Number.isNaN(Date.parse(s))

/** Why a record would be refused (undefined: acceptable). The agent filters with it before uploading. */
export function learnedRecordProblem(x: unknown): string | undefined {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'not an object'
  const r = x as LearnedRecord
  if (typeof r.profile !== 'string' || !isProfileName(r.profile)) return 'profile must be a profile name'
  if (typeof r.name !== 'string') return 'name must be a string'
  const n = normalizeName(r.name)
  if (!n.ok) return n.message
  if (n.subdomainsOnly || n.name !== r.name) return `name not in normal form (expected ${JSON.stringify(n.name)})`
  if (!isTime(r.firstSeen) || !isTime(r.lastSeen)) return 'firstSeen and lastSeen must be RFC 3339 times'
  if (Date.parse(r.firstSeen) > Date.parse(r.lastSeen)) return 'firstSeen is after lastSeen'
  if (typeof r.count !== 'number' || !Number.isSafeInteger(r.count) || r.count < 1) return 'count must be a whole number >= 1'
  if (!Array.isArray(r.containers) || r.containers.length > MAX_RECORD_CONTAINERS) return `containers must be a list of at most ${MAX_RECORD_CONTAINERS} names`
  for (const c of r.containers) if (typeof c !== 'string' || !CONTAINER_NAME.test(c)) return `invalid container name ${JSON.stringify(String(c).slice(0, 80))}`
  if (!Array.isArray(r.answers) || r.answers.length > MAX_ANSWERS) return `answers must be a list of at most ${MAX_ANSWERS} addresses`
  for (const a of r.answers) {
    const ip = typeof a === 'string' ? parseIp(a) : undefined
    if (!ip) return `invalid answer address ${JSON.stringify(String(a).slice(0, 80))}`
    if (formatIp(ip) !== a) return `answer address not canonical (expected ${formatIp(ip)})`
  }
  return undefined
}

/** `a` then the items of `b` not in it, at most `max` (the first ones are kept). */
function union(a: readonly string[], b: readonly string[], max: number): string[] {
  const out = [...a]
  for (const x of b) {
    if (out.length >= max) break
    if (!out.includes(x)) out.push(x)
  }
  return out.slice(0, max)
}

const strip = (c: string): string => (c.startsWith('/') ? c.slice(1) : c)

/**
 * Merge an upload from `host` into one profile's stored records (pure: returns a new list).
 * Per name: firstSeen the earliest, lastSeen the latest, counts added, containers/answers/hosts united
 * with the newer record's first (bounded). Times in the future of `now` are taken as `now` (an agent's
 * clock must not pin a name at the top forever). Past `cap` names, the oldest lastSeen go.
 */
export function mergeLearned(
  existing: readonly StoredLearned[],
  host: string,
  incoming: readonly LearnedRecord[],
  opts: { now: Date; cap?: number },
): { records: StoredLearned[]; evicted: number } {
  const cap = opts.cap ?? MAX_LEARNED_PER_PROFILE
  const nowIso = opts.now.toISOString()
  const clamp = (t: string): string => (Date.parse(t) > opts.now.getTime() ? nowIso : new Date(Date.parse(t)).toISOString())
  const byName = new Map<string, StoredLearned>()
  for (const r of existing) byName.set(r.name, r)
  for (const r of incoming) {
    const first = clamp(r.firstSeen)
    const last = clamp(r.lastSeen)
    const containers = r.containers.map(strip)
    const had = byName.get(r.name)
    if (!had) {
      byName.set(r.name, {
        profile: r.profile,
        name: r.name,
        firstSeen: first,
        lastSeen: last,
        count: r.count,
        containers: union([], containers, MAX_RECORD_CONTAINERS),
        answers: union([], r.answers, MAX_ANSWERS),
        hosts: [host],
      })
      continue
    }
    byName.set(r.name, {
      profile: had.profile,
      name: had.name,
      firstSeen: Date.parse(first) < Date.parse(had.firstSeen) ? first : had.firstSeen,
      lastSeen: Date.parse(last) > Date.parse(had.lastSeen) ? last : had.lastSeen,
      count: Math.min(Number.MAX_SAFE_INTEGER, had.count + r.count),
      containers: union(containers, had.containers, MAX_RECORD_CONTAINERS),
      answers: union(r.answers, had.answers, MAX_ANSWERS),
      hosts: union([host], had.hosts, MAX_RECORD_HOSTS),
    })
  }
  let records = [...byName.values()]
  let evicted = 0
  if (records.length > cap) {
    // Newest lastSeen first; ties by name so the choice is the same on every run.
    records.sort((a, b) => Date.parse(b.lastSeen) - Date.parse(a.lastSeen) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    evicted = records.length - cap
    records = records.slice(0, cap)
  }
  records.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return { records, evicted }
}
