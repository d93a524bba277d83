// The embedded Store: lowdb JSON files in a data directory (egress-guard.json for entries, tokens,
// agents, quarantines, audit and the version counter; hits.json for hits, capped, and learned.json for
// learn mode's records, bounded per profile, so the main file stays small).
// Writes are atomic because lowdb's writer (steno) writes `.<name>.tmp` beside the file and renames
// it over the old one: a process killed mid-write leaves the last complete file (rename(2) is atomic
// on one filesystem). steno does not fsync, so a power cut can still lose the last writes; a crash
// of this process cannot tear the file. A file that cannot be read or parsed stops startup with
// EG_STORE_CORRUPT naming it, and is never written over.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Low } from 'lowdb'
import { JSONFile } from 'lowdb/node'
import { errors } from '../errors.js'
import type { Entry } from '../policy/types.js'
import type { Hit } from '../sinkhole/types.js'
import type { AuditEvent } from '../client/api-types.js'
import type { NewQuarantine, Quarantine } from '../quarantine/types.js'
import { mergeLearned, type LearnedRecord, type StoredLearned } from '../profiles/learned.js'
import { STORE_SCHEMA, type Actor, type AgentRecord, type ApiEntry, type HitFilter, type Store, type StoredToken } from './types.js'

interface MainData {
  schema: number
  version: number
  etag: string
  entries: ApiEntry[]
  tokens: StoredToken[]
  agents: AgentRecord[]
  audit: AuditEvent[]
  /** Added with quarantines; absent from older files (read as none). */
  quarantines?: Quarantine[]
}

interface HitsData {
  schema: number
  hits: Hit[]
}

/** learned.json: profile name -> its records (each list bounded by mergeLearned). */
interface LearnedData {
  schema: number
  profiles: Record<string, StoredLearned[]>
}

export interface LowdbStoreOptions {
  /** Retention of hits: at most this many (oldest dropped first). */
  maxHits?: number
  /** Retention of hits: none older than this (by lastTime). */
  maxHitAgeMs?: number
  now?: () => Date
  /**
   * Agents' reports and hits are soft state written by every agent every few seconds: they are
   * written at most this often (ms), not once per request, so a large fleet does not rewrite the
   * files hundreds of times a second. A crash loses at most this much of them. 0: write at once.
   * Entries, tokens and the version are always written before the request is answered.
   */
  softFlushMs?: number
  /**
   * Take DIR/.lock (holding this pid) so two processes cannot write the same store: lowdb keeps the
   * data in memory and the last writer would win. A lock whose pid is gone is taken over.
   */
  lock?: boolean
}

export const LOCK_FILE = '.lock'

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function takeLock(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, LOCK_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 })
      return async () => {
        await rm(file, { force: true })
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw errors.storeCorrupt(`store directory ${dir}: cannot create ${file}: ${(e as Error).message}`)
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim())
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
        throw errors.conflict(`store directory ${dir} is in use by process ${pid} (a running server?); stop it first, or use --server with the running one`)
      }
      // Stale: the process that held it is gone (killed). Take it over.
      await rm(file, { force: true })
    }
  }
  throw errors.conflict(`store directory ${dir}: could not take ${file}`)
}

export const MAIN_FILE = 'egress-guard.json'
export const HITS_FILE = 'hits.json'
export const LEARNED_FILE = 'learned.json'

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Read one lowdb file; ENOENT means a new store, anything else unreadable is fatal and leaves the file alone. */
async function openFile<T extends { schema: number }>(file: string, fresh: T, arrays: (keyof T)[]): Promise<{ db: Low<T>; created: boolean }> {
  const db = new Low<T>(new JSONFile<T>(file), fresh)
  try {
    await db.read()
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    const what = err instanceof SyntaxError ? `not valid JSON (${err.message})` : `cannot read it (${err.code ?? err.message})`
    throw errors.storeCorrupt(`store file ${file}: ${what}; the server will not start and will not overwrite it: restore it from a backup or move it away`)
  }
  const data: unknown = db.data
  if (data === fresh) return { db, created: true }
  if (!isObj(data) || typeof data.schema !== 'number') {
    throw errors.storeCorrupt(`store file ${file}: not an egress-guard store (no schema version); not starting and not overwriting it`)
  }
  if (data.schema > STORE_SCHEMA) {
    throw errors.storeCorrupt(`store file ${file}: schema ${data.schema} is newer than this egress-guard understands (${STORE_SCHEMA}); upgrade egress-guard`)
  }
  for (const k of arrays) {
    if (!Array.isArray(data[k as string])) throw errors.storeCorrupt(`store file ${file}: "${String(k)}" is missing or not a list; not starting and not overwriting it`)
  }
  return { db, created: false }
}

/** Open (or create) the store in `dir`. */
export async function openLowdbStore(dir: string, opts: LowdbStoreOptions = {}): Promise<Store> {
  const now = opts.now ?? (() => new Date())
  const maxHits = opts.maxHits ?? 50_000
  const maxHitAgeMs = opts.maxHitAgeMs ?? 7 * 86_400_000
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    throw errors.storeCorrupt(`store directory ${dir}: ${(e as Error).message}`)
  }
  const unlock = opts.lock ? await takeLock(dir) : async () => {}
  const mainFile = join(dir, MAIN_FILE)
  const hitsFile = join(dir, HITS_FILE)
  const learnedFile = join(dir, LEARNED_FILE)
  let main: Awaited<ReturnType<typeof openFile<MainData>>>
  let hitsDb: Awaited<ReturnType<typeof openFile<HitsData>>>
  let learnedDb: Awaited<ReturnType<typeof openFile<LearnedData>>>
  try {
    main = await openFile<MainData>(mainFile, { schema: STORE_SCHEMA, version: 0, etag: '', entries: [], tokens: [], agents: [], audit: [], quarantines: [] }, ['entries', 'tokens', 'agents', 'audit'])
    hitsDb = await openFile<HitsData>(hitsFile, { schema: STORE_SCHEMA, hits: [] }, ['hits'])
    learnedDb = await openFile<LearnedData>(learnedFile, { schema: STORE_SCHEMA, profiles: {} }, [])
    const q: unknown = main.db.data.quarantines
    if (q !== undefined && !Array.isArray(q)) throw errors.storeCorrupt(`store file ${mainFile}: "quarantines" is not a list; not starting and not overwriting it`)
    const lp: unknown = learnedDb.db.data.profiles
    if (lp === null || typeof lp !== 'object' || Array.isArray(lp) || Object.values(lp).some((v) => !Array.isArray(v))) {
      throw errors.storeCorrupt(`store file ${learnedFile}: "profiles" is missing or not an object of lists; not starting and not overwriting it`)
    }
  } catch (e) {
    await unlock()
    throw e
  }
  if (main.created) await main.db.write()
  if (hitsDb.created) await hitsDb.db.write()
  if (learnedDb.created) await learnedDb.db.write()
  const m = main.db
  const h = hitsDb.db
  const l = learnedDb.db
  // Older files have no quarantines list: none. A null-prototype map keeps a profile name from ever
  // reaching Object.prototype (names are [a-z0-9][a-z0-9_-]*, so none can be __proto__ anyway).
  m.data.quarantines ??= []
  l.data.profiles = Object.assign(Object.create(null) as Record<string, StoredLearned[]>, l.data.profiles)
  if (typeof m.data.version !== 'number') m.data.version = 0
  if (typeof m.data.etag !== 'string') m.data.etag = ''

  const softFlushMs = opts.softFlushMs ?? 2000
  const timers = new Map<Low<unknown>, NodeJS.Timeout>()
  /** Write soft state later (coalesced); a forced write of the same file cancels the pending one. */
  const soon = async (db: Low<MainData> | Low<HitsData> | Low<LearnedData>): Promise<void> => {
    if (softFlushMs <= 0) return db.write()
    const key = db as Low<unknown>
    if (timers.has(key)) return
    const t = setTimeout(() => {
      timers.delete(key)
      void db.write().catch(() => {})
    }, softFlushMs)
    t.unref()
    timers.set(key, t)
  }
  const iso = (): string => now().toISOString()
  const audit = (e: Omit<AuditEvent, 'time'> & { time?: string }): void => {
    m.data.audit.push({ time: e.time ?? iso(), actor: e.actor, action: e.action, target: e.target, ...(e.reason !== undefined ? { reason: e.reason } : {}), ...(e.details !== undefined ? { details: e.details } : {}) })
  }

  function trimHits(): void {
    const cutoff = now().getTime() - maxHitAgeMs
    let drop = Math.max(0, h.data.hits.length - maxHits)
    // Arrival order is close to time order; drop from the front while too many or too old.
    while (drop < h.data.hits.length && Date.parse(h.data.hits[drop]!.lastTime) < cutoff) drop++
    if (drop > 0) h.data.hits.splice(0, drop)
  }

  return {
    schema: STORE_SCHEMA,
    location: dir,
    async listEntries() {
      return m.data.entries.map((e) => ({ ...e }))
    },
    async addEntries(entries: Entry[], by: Actor) {
      const time = iso()
      const added: ApiEntry[] = entries.map((e) => ({
        ...e,
        id: `api-${randomBytes(6).toString('hex')}`,
        added: time,
        actor: by.actor,
        source: `api:${by.actor}`,
      }))
      m.data.entries.push(...added)
      for (const e of added) audit({ time, actor: by.actor, action: 'entry.add', target: e.value, reason: e.reason ?? by.reason, details: { id: e.id, kind: e.kind, mode: e.mode, allow: e.allow, ...(e.expires ? { expires: e.expires } : {}) } })
      await m.write()
      return added.map((e) => ({ ...e }))
    },
    async removeEntries(ids: string[], by: Actor) {
      const want = new Set(ids)
      const removed = m.data.entries.filter((e) => want.has(e.id))
      if (removed.length === 0) return []
      m.data.entries = m.data.entries.filter((e) => !want.has(e.id))
      const time = iso()
      for (const e of removed) audit({ time, actor: by.actor, action: 'entry.remove', target: e.value, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { id: e.id, addedBy: e.actor, added: e.added } })
      await m.write()
      return removed
    },
    async policyVersion() {
      return { version: m.data.version, etag: m.data.etag }
    },
    async commitPolicy(etag: string, why: string) {
      if (etag === m.data.etag) return m.data.version
      m.data.version += 1
      m.data.etag = etag
      audit({ actor: 'server', action: 'policy.version', target: String(m.data.version), reason: why, details: { etag } })
      await m.write()
      return m.data.version
    },
    async appendAudit(e) {
      audit(e)
      await m.write()
    },
    async listAudit(limit: number) {
      return m.data.audit.slice(-Math.max(0, limit)).reverse()
    },
    async upsertAgent(r: AgentRecord) {
      const i = m.data.agents.findIndex((a) => a.host === r.host)
      if (i >= 0) m.data.agents[i] = r
      else m.data.agents.push(r)
      await soon(m)
    },
    async listAgents() {
      return m.data.agents.map((a) => ({ ...a }))
    },
    async appendHits(hits: Hit[]) {
      h.data.hits.push(...hits)
      trimHits()
      await soon(h)
      // The batch sits at the end and trimming only drops from the front.
      return Math.min(hits.length, h.data.hits.length)
    },
    async queryHits(f: HitFilter) {
      const out: Hit[] = []
      const since = f.since?.getTime()
      const limit = f.limit ?? 1000
      const dom = f.domain?.toLowerCase().replace(/\.$/, '')
      const c = f.container?.toLowerCase()
      for (let i = h.data.hits.length - 1; i >= 0 && out.length < limit; i--) {
        const x = h.data.hits[i]!
        if (since !== undefined && Date.parse(x.lastTime) < since) continue
        if (f.host !== undefined && x.host !== f.host) continue
        if (dom !== undefined && x.name !== dom && !x.name.endsWith('.' + dom)) continue
        if (c !== undefined) {
          const k = x.container
          if (!k || !(k.id.startsWith(c) || k.name.toLowerCase() === c || k.name.toLowerCase() === '/' + c || k.service?.toLowerCase() === c)) continue
        }
        out.push(x)
      }
      // Arrival order is not exactly time order across hosts: sort the page newest first.
      return out.sort((a, b) => Date.parse(b.lastTime) - Date.parse(a.lastTime))
    },
    async listQuarantines() {
      return (m.data.quarantines ?? []).map((q) => ({ ...q }))
    },
    async addQuarantine(n: NewQuarantine, by: Actor) {
      const time = iso()
      const q: Quarantine = {
        id: `q-${randomBytes(6).toString('hex')}`,
        container: n.container,
        ...(n.host !== undefined ? { host: n.host } : {}),
        reason: n.reason,
        ...(n.expires !== undefined ? { expires: n.expires } : {}),
        added: time,
        actor: by.actor,
      }
      m.data.quarantines!.push(q)
      audit({ time, actor: by.actor, action: 'quarantine.add', target: q.container, reason: q.reason, details: { id: q.id, ...(q.host ? { host: q.host } : {}), ...(q.expires ? { expires: q.expires } : {}) } })
      await m.write()
      return { ...q }
    },
    async removeQuarantines(ids: string[], by: Actor) {
      const want = new Set(ids)
      const removed = m.data.quarantines!.filter((q) => want.has(q.id))
      if (removed.length === 0) return []
      m.data.quarantines = m.data.quarantines!.filter((q) => !want.has(q.id))
      const time = iso()
      for (const q of removed) audit({ time, actor: by.actor, action: 'quarantine.remove', target: q.container, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { id: q.id, ...(q.host ? { host: q.host } : {}), addedBy: q.actor, added: q.added } })
      await m.write()
      return removed.map((q) => ({ ...q }))
    },
    async mergeLearned(host: string, records: LearnedRecord[]) {
      const byProfile = new Map<string, LearnedRecord[]>()
      for (const r of records) {
        const list = byProfile.get(r.profile)
        if (list) list.push(r)
        else byProfile.set(r.profile, [r])
      }
      let evicted = 0
      for (const [profile, list] of byProfile) {
        const r = mergeLearned(l.data.profiles[profile] ?? [], host, list, { now: now() })
        l.data.profiles[profile] = r.records
        evicted += r.evicted
      }
      await soon(l)
      return { accepted: records.length, evicted }
    },
    async listLearned(f: { profile: string; since?: Date }) {
      const since = f.since?.getTime()
      return (l.data.profiles[f.profile] ?? []).filter((r) => since === undefined || Date.parse(r.lastSeen) >= since).map((r) => ({ ...r, containers: [...r.containers], answers: [...r.answers], hosts: [...r.hosts] }))
    },
    async addToken(t: StoredToken, by: Actor) {
      m.data.tokens.push({ ...t })
      audit({ actor: by.actor, action: 'token.create', target: t.id, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { role: t.role, ...(t.host ? { host: t.host } : {}), ...(t.name ? { name: t.name } : {}) } })
      await m.write()
    },
    async listTokens() {
      return m.data.tokens.map((t) => ({ ...t }))
    },
    async removeToken(id: string, by: Actor) {
      const t = m.data.tokens.find((x) => x.id === id)
      if (!t) return undefined
      m.data.tokens = m.data.tokens.filter((x) => x.id !== id)
      audit({ actor: by.actor, action: 'token.remove', target: id, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { role: t.role, ...(t.host ? { host: t.host } : {}) } })
      await m.write()
      return { ...t }
    },
    async close() {
      // Flush soft state that is still waiting for its timer, then let go of the directory.
      for (const t of timers.values()) clearTimeout(t)
      timers.clear()
      await Promise.all([m.write(), h.write(), l.write()])
      await unlock()
    },
  }
}
