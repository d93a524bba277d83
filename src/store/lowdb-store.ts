// The embedded Store: JSON files in a data directory (egress-guard.json for entries, tokens, agents,
// quarantines, audit and the version counter; hits.json for hits, capped, and learned.json for learn
// mode's records, bounded per profile, so the main file stays small).
// A change is all or nothing: each one builds the next state beside the current one, writes it
// (atomic-file.ts: temp file, fsync, rename) and only then makes it current, one write at a time, so
// a write that fails (a full disk) leaves memory and the file as they were, and the caller gets
// EG_STORE_WRITE. A process killed mid-write leaves the last complete file and a temp file that the
// next open removes. Agents' reports and hits are soft state: kept in memory at once, written within
// softFlushMs, and a failed flush is retried by the next. A file that cannot be read, parsed, or has
// the wrong shape stops startup with EG_STORE_CORRUPT naming it, and is never written over; an API
// entry that fails validation (validate.ts) is reported and not served.
import { mkdir } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { errors } from '../errors.js'
import type { Entry, Problem } from '../policy/types.js'
import type { Hit } from '../sinkhole/types.js'
import type { AuditEvent } from '../client/api-types.js'
import { readJsonFile, removeStaleTemp, writeFileAtomic } from './atomic-file.js'
import { lockDirectory } from './dir-lock.js'
import { checkEntry, checkStoredEntries, hitsShapeProblem, mainShapeProblem, type CheckedEntries } from './validate.js'
import type { NewQuarantine, Quarantine } from '../quarantine/types.js'
import { mergeLearned, type LearnedRecord, type StoredLearned } from '../profiles/learned.js'
import { STORE_SCHEMA, type Actor, type AgentRecord, type ApiEntry, type HitFilter, type PolicySeal, type Store, type StoredToken } from './types.js'

interface MainData {
  schema: number
  version: number
  etag: string
  entries: ApiEntry[]
  tokens: StoredToken[]
  agents: AgentRecord[]
  audit: AuditEvent[]
  /** Quarantines in force or expired (absent in files from before quarantine: none). */
  quarantines?: Quarantine[]
}

interface HitsData {
  schema: number
  hits: Hit[]
}

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
   * Lock the directory (dir-lock.ts) so two processes cannot write the same store: lowdb keeps the
   * data in memory and the last writer would win. The lock dies with the process that holds it.
   */
  lock?: boolean
}

export { LOCK_FILE } from './dir-lock.js'

export const MAIN_FILE = 'egress-guard.json'
export const HITS_FILE = 'hits.json'
export const LEARNED_FILE = 'learned.json'

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Read one store file; ENOENT means a new store, anything unreadable or misshapen is fatal and leaves the file alone. */
async function openFile<T extends { schema: number }>(file: string, arrays: (keyof T)[], shape: (d: Record<string, unknown>) => string | undefined): Promise<{ data: T; text: string } | undefined> {
  let read: Awaited<ReturnType<typeof readJsonFile>>
  try {
    read = await readJsonFile(file)
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    const what = err instanceof SyntaxError ? `not valid JSON (${err.message})` : `cannot read it (${err.code ?? err.message})`
    throw errors.storeCorrupt(`store file ${file}: ${what}; the server will not start and will not overwrite it: restore it from a backup or move it away`)
  }
  if (!read) return undefined
  const data = read.value
  if (!isObj(data) || typeof data.schema !== 'number') {
    throw errors.storeCorrupt(`store file ${file}: not an egress-guard store (no schema version); not starting and not overwriting it`)
  }
  if (data.schema > STORE_SCHEMA) {
    throw errors.storeCorrupt(`store file ${file}: schema ${data.schema} is newer than this egress-guard understands (${STORE_SCHEMA}); upgrade egress-guard`)
  }
  for (const k of arrays) {
    if (!Array.isArray(data[k as string])) throw errors.storeCorrupt(`store file ${file}: "${String(k)}" is missing or not a list; not starting and not overwriting it`)
  }
  const bad = shape(data)
  if (bad) throw errors.storeCorrupt(`store file ${file}: ${bad}; not as egress-guard writes it: not starting and not overwriting it (fix or restore it, or move it away)`)
  return { data: data as unknown as T, text: read.text }
}

/** One file of the store: its current (committed) data, written whole, one write at a time. */
class StoreFile<T> {
  data: T
  #chain: Promise<unknown> = Promise.resolve()
  constructor(
    readonly file: string,
    data: T,
  ) {
    this.data = data
  }

  /**
   * Run `fn` after every earlier change of this file. It gets the current data and returns the next
   * (a new object: the current one is never modified) or undefined for "no change"; the next becomes
   * current only once it is on disk. `onWritten` sees the text written (for line numbers).
   */
  change<R>(fn: (cur: T) => { next?: T; result: R }, onWritten?: (next: T, text: string) => void): Promise<R> {
    const p = this.#chain.then(async () => {
      const { next, result } = fn(this.data)
      if (next !== undefined) {
        const text = await this.#write(next)
        this.data = next
        onWritten?.(next, text)
      }
      return result
    })
    this.#chain = p.catch(() => {})
    return p
  }

  /** Write the current data as it is (soft state changed in place, a new file, close). */
  flush(): Promise<void> {
    return this.change((cur) => ({ next: cur, result: undefined }))
  }

  async #write(next: T): Promise<string> {
    const text = JSON.stringify(next, null, 2)
    try {
      await writeFileAtomic(this.file, text)
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      throw errors.storeWrite(`store file ${this.file}: cannot write it (${err.code ?? err.message}); the change was not made`)
    }
    return text
  }
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
  const unlock = opts.lock ? await lockDirectory(dir) : async () => {}
  const mainFile = join(dir, MAIN_FILE)
  const hitsFile = join(dir, HITS_FILE)
  const learnedFile = join(dir, LEARNED_FILE)
  let mainRead: Awaited<ReturnType<typeof openFile<MainData>>>
  let hitsRead: Awaited<ReturnType<typeof openFile<HitsData>>>
  let learnedRead: Awaited<ReturnType<typeof openFile<LearnedData>>>
  try {
    mainRead = await openFile<MainData>(mainFile, ['entries', 'tokens', 'agents', 'audit'], (d) =>
      d.quarantines !== undefined && !Array.isArray(d.quarantines) ? '"quarantines" is not a list' : mainShapeProblem(d),
    )
    hitsRead = await openFile<HitsData>(hitsFile, ['hits'], hitsShapeProblem)
    learnedRead = await openFile<LearnedData>(learnedFile, [], (d) => {
      const lp = d.profiles
      return lp === null || typeof lp !== 'object' || Array.isArray(lp) || Object.values(lp).some((v) => !Array.isArray(v)) ? '"profiles" is missing or not an object of lists' : undefined
    })
    // After the lock (the server always takes it): a temp file is then a write that a crash cut short,
    // never one in flight.
    await removeStaleTemp(mainFile)
    await removeStaleTemp(hitsFile)
    await removeStaleTemp(learnedFile)
  } catch (e) {
    await unlock()
    throw e
  }
  const m = new StoreFile<MainData>(mainFile, mainRead?.data ?? { schema: STORE_SCHEMA, version: 0, etag: '', entries: [], tokens: [], agents: [], audit: [] })
  const h = new StoreFile<HitsData>(hitsFile, hitsRead?.data ?? { schema: STORE_SCHEMA, hits: [] })
  // A null-prototype map keeps a profile name from ever reaching Object.prototype (names are
  // [a-z0-9][a-z0-9_-]*, so none can be __proto__ anyway).
  const l = new StoreFile<LearnedData>(learnedFile, {
    schema: STORE_SCHEMA,
    profiles: Object.assign(Object.create(null) as Record<string, StoredLearned[]>, learnedRead?.data.profiles ?? {}),
  })
  let checked: CheckedEntries = checkStoredEntries(m.data.entries, mainFile, mainRead?.text ?? '')
  try {
    if (!mainRead) await m.flush()
    if (!hitsRead) await h.flush()
    if (!learnedRead) await l.flush()
  } catch (e) {
    await unlock()
    throw e
  }
  /** After a write of the main file: the invalid entries' problems follow their lines (rare: only when there are some). */
  const reline = (next: MainData, text: string): void => {
    if (checked.problems.length > 0) checked = checkStoredEntries(next.entries, mainFile, text)
  }

  const softFlushMs = opts.softFlushMs ?? 2000
  const timers = new Map<StoreFile<unknown>, NodeJS.Timeout>()
  /** Write soft state later (coalesced); a failed write leaves it in memory for the next flush. */
  const soon = async (f: StoreFile<MainData> | StoreFile<HitsData> | StoreFile<LearnedData>): Promise<void> => {
    if (softFlushMs <= 0) return f.flush()
    const key = f as StoreFile<unknown>
    if (timers.has(key)) return
    const t = setTimeout(() => {
      timers.delete(key)
      void f.flush().catch(() => {})
    }, softFlushMs)
    t.unref()
    timers.set(key, t)
  }
  /** learned.json is written at close only when learn records arrived (it is rarely used). */
  let learnedChanged = false
  const iso = (): string => now().toISOString()
  const auditEvent = (e: Omit<AuditEvent, 'time'> & { time?: string }): AuditEvent => ({
    time: e.time ?? iso(),
    actor: e.actor,
    action: e.action,
    target: e.target,
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
    ...(e.details !== undefined ? { details: e.details } : {}),
  })
  /** The version fields and audit record a change of entries makes, when sealed with the policy. */
  const sealed = (cur: MainData, served: ApiEntry[], seal: PolicySeal | undefined): Pick<MainData, 'version' | 'etag'> & { events: AuditEvent[] } => {
    if (!seal) return { version: cur.version, etag: cur.etag, events: [] }
    const etag = seal.etagFor(served)
    if (etag === cur.etag) return { version: cur.version, etag, events: [] }
    const version = cur.version + 1
    return { version, etag, events: [auditEvent({ actor: 'server', action: 'policy.version', target: String(version), reason: seal.why, details: { etag } })] }
  }
  const servedEntries = (): ApiEntry[] => [...checked.served.values()].map((s) => s.entry)

  function trimHits(): void {
    const hits = h.data.hits
    const cutoff = now().getTime() - maxHitAgeMs
    let drop = Math.max(0, hits.length - maxHits)
    // Arrival order is close to time order; drop from the front while too many or too old.
    while (drop < hits.length && Date.parse(hits[drop]!.lastTime) < cutoff) drop++
    if (drop > 0) hits.splice(0, drop)
  }

  return {
    schema: STORE_SCHEMA,
    location: dir,
    async listEntries() {
      return servedEntries().map((e) => ({ ...e }))
    },
    addEntries(entries: Entry[], by: Actor, seal?: PolicySeal) {
      let served: { entry: ApiEntry; raw: ApiEntry }[] = []
      const done = (next: MainData, text: string): void => {
        for (const x of served) checked.served.set(x.entry.id, x)
        reline(next, text)
      }
      return m.change((cur) => {
        const time = iso()
        const added: ApiEntry[] = entries.map((e) => ({ ...e, id: `api-${randomBytes(6).toString('hex')}`, added: time, actor: by.actor, source: `api:${by.actor}` }))
        // What the store would not serve after a restart it does not take now (the API has validated
        // these already: this is the same check, so the two cannot drift apart).
        served = added.map((raw) => {
          const c = checkEntry(raw, checked.served)
          if ('code' in c) throw errors.badInput(`entry ${JSON.stringify(raw.value.slice(0, 120))}: ${c.message}; nothing was added`)
          return { entry: c.entry, raw }
        })
        const v = sealed(cur, [...servedEntries(), ...served.map((x) => x.entry)], seal)
        const events = added.map((e) => auditEvent({ time, actor: by.actor, action: 'entry.add', target: e.value, reason: e.reason ?? by.reason, details: { id: e.id, kind: e.kind, mode: e.mode, allow: e.allow, ...(e.expires ? { expires: e.expires } : {}) } }))
        const next: MainData = { ...cur, version: v.version, etag: v.etag, entries: [...cur.entries, ...added], audit: [...cur.audit, ...events, ...v.events] }
        return { next, result: served.map((x) => ({ ...x.entry })) }
      }, done)
    },
    removeEntries(ids: string[], by: Actor, seal?: PolicySeal) {
      let removed: { entry: ApiEntry; raw: ApiEntry }[] = []
      const done = (next: MainData, text: string): void => {
        for (const x of removed) checked.served.delete(x.entry.id)
        reline(next, text)
      }
      return m.change((cur) => {
        const want = new Set(ids)
        removed = [...checked.served.values()].filter((x) => want.has(x.entry.id))
        if (removed.length === 0) return { result: [] as ApiEntry[] }
        const raws = new Set(removed.map((x) => x.raw))
        const time = iso()
        const v = sealed(cur, servedEntries().filter((e) => !want.has(e.id)), seal)
        const events = removed.map(({ entry: e }) => auditEvent({ time, actor: by.actor, action: 'entry.remove', target: e.value, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { id: e.id, addedBy: e.actor, added: e.added } }))
        const next: MainData = { ...cur, version: v.version, etag: v.etag, entries: cur.entries.filter((r) => !raws.has(r)), audit: [...cur.audit, ...events, ...v.events] }
        return { next, result: removed.map((x) => ({ ...x.entry })) }
      }, done)
    },
    async problems(): Promise<Problem[]> {
      return checked.problems.map((p) => ({ ...p }))
    },
    async policyVersion() {
      return { version: m.data.version, etag: m.data.etag }
    },
    commitPolicy(etag: string, why: string) {
      return m.change((cur) => {
        if (etag === cur.etag) return { result: cur.version }
        const version = cur.version + 1
        const event = auditEvent({ actor: 'server', action: 'policy.version', target: String(version), reason: why, details: { etag } })
        return { next: { ...cur, version, etag, audit: [...cur.audit, event] }, result: version }
      })
    },
    appendAudit(e) {
      return m.change((cur) => ({ next: { ...cur, audit: [...cur.audit, auditEvent(e)] }, result: undefined }))
    },
    async listAudit(limit: number) {
      return m.data.audit.slice(-Math.max(0, limit)).reverse()
    },
    async upsertAgent(r: AgentRecord) {
      // Soft state: changed in place at once (the next write of the file, of any kind, carries it).
      const agents = m.data.agents
      const i = agents.findIndex((a) => a.host === r.host)
      if (i >= 0) agents[i] = r
      else agents.push(r)
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
      const all = h.data.hits
      for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
        const x = all[i]!
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
    addQuarantine(n: NewQuarantine, by: Actor) {
      return m.change((cur) => {
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
        const event = auditEvent({ time, actor: by.actor, action: 'quarantine.add', target: q.container, reason: q.reason, details: { id: q.id, ...(q.host ? { host: q.host } : {}), ...(q.expires ? { expires: q.expires } : {}) } })
        return { next: { ...cur, quarantines: [...(cur.quarantines ?? []), q], audit: [...cur.audit, event] }, result: { ...q } }
      })
    },
    removeQuarantines(ids: string[], by: Actor) {
      return m.change((cur) => {
        const want = new Set(ids)
        const all = cur.quarantines ?? []
        const removed = all.filter((q) => want.has(q.id))
        if (removed.length === 0) return { result: [] as Quarantine[] }
        const time = iso()
        const events = removed.map((q) => auditEvent({ time, actor: by.actor, action: 'quarantine.remove', target: q.container, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { id: q.id, ...(q.host ? { host: q.host } : {}), addedBy: q.actor, added: q.added } }))
        return { next: { ...cur, quarantines: all.filter((q) => !want.has(q.id)), audit: [...cur.audit, ...events] }, result: removed.map((q) => ({ ...q })) }
      })
    },
    async mergeLearned(host: string, records: LearnedRecord[]) {
      // Soft state like hits: merged in place at once, written within softFlushMs.
      const byProfile = new Map<string, LearnedRecord[]>()
      for (const r of records) {
        const list = byProfile.get(r.profile)
        if (list) list.push(r)
        else byProfile.set(r.profile, [r])
      }
      let evicted = 0
      learnedChanged = true
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
    addToken(t: StoredToken, by: Actor) {
      return m.change((cur) => {
        const event = auditEvent({ actor: by.actor, action: 'token.create', target: t.id, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { role: t.role, ...(t.host ? { host: t.host } : {}), ...(t.name ? { name: t.name } : {}) } })
        return { next: { ...cur, tokens: [...cur.tokens, { ...t }], audit: [...cur.audit, event] }, result: undefined }
      })
    },
    async listTokens() {
      return m.data.tokens.map((t) => ({ ...t }))
    },
    removeToken(id: string, by: Actor) {
      return m.change((cur) => {
        const t = cur.tokens.find((x) => x.id === id)
        if (!t) return { result: undefined }
        const event = auditEvent({ actor: by.actor, action: 'token.remove', target: id, ...(by.reason !== undefined ? { reason: by.reason } : {}), details: { role: t.role, ...(t.host ? { host: t.host } : {}) } })
        return { next: { ...cur, tokens: cur.tokens.filter((x) => x.id !== id), audit: [...cur.audit, event] }, result: { ...t } }
      })
    },
    async close() {
      // Flush soft state that is still waiting for its timer, then let go of the directory.
      for (const t of timers.values()) clearTimeout(t)
      timers.clear()
      try {
        await Promise.all([m.flush(), h.flush(), ...(learnedChanged ? [l.flush()] : [])])
      } finally {
        await unlock()
      }
    },
  }
}
