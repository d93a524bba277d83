// The server's policy: blocklist files (re-read on change or reload()) + API entries (store), merged
// into one versioned policy. Every content change bumps the persisted version, records the step for
// diffs, and wakes the long-polls. Rebuilds run one at a time, in the order they were asked for.
// A blocklist file that cannot be read keeps the entries it had; a deleted file drops them. Profiles
// (`<dir>/profiles/NAME.txt`) are read, kept and distributed the same way, inside the same version;
// so are the quarantines in force (from the store, like API entries; each leaves at its expiry).
// An API change of entries and the version it makes are one store write (changeEntries): all or nothing.
import { watch, type FSWatcher } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Logger } from '../log.js'
import type { Entry, Problem, Profile } from '../policy/types.js'
import type { PolicyBody } from '../client/api-types.js'
import type { ApiEntry, PolicySeal, Store } from '../store/types.js'
import { formatProblem } from '../policy/problems.js'
import { buildPolicy, entryId } from '../policy/merge.js'
import { loadBlocklists, pickBlocklistFiles } from '../policy/load.js'
import { PolicyHistory, type Diff } from './policy-history.js'
import { COVERS_PROTECTED, coveredProtected, protectedMessage, type ProtectedNet } from '../policy/protect-check.js'
import { ChangeWaiters } from './waiters.js'
import { PROFILES_DIR, pickProfileFiles, readProfileFile } from '../profiles/load.js'
import { policyEtag } from '../profiles/etag.js'
import { quarantineActive } from '../quarantine/match.js'
import type { Quarantine } from '../quarantine/types.js'

export interface PolicyServiceOptions {
  store: Store
  blocklistDirs: string[]
  log: Logger
  now?: () => Date
  /** Versions kept for diffs. */
  historyKeep?: number
  /** Watch the directories (fs.watch); off in unit tests that call reload() themselves. */
  watch?: boolean
  debounceMs?: number
  onChange?: (p: PolicyBody) => void
  /**
   * Networks a block entry must not cover without `force` (protected-addresses.ts): such a file line
   * is reported as `file:line: message` and not applied; with force it applies, with a warning.
   */
  protect?: readonly ProtectedNet[]
}

/** `blocklists/a.txt:12` -> file and line, for a problem about an entry. */
function sourceAt(source: string): { file: string; line: number } {
  const i = source.lastIndexOf(':')
  const line = i > 0 ? Number(source.slice(i + 1)) : NaN
  return Number.isInteger(line) ? { file: source.slice(0, i), line } : { file: source, line: 0 }
}

/** Entries that may apply, and a problem for each that covers a protected network. */
export function checkProtected(entries: readonly Entry[], protect: readonly ProtectedNet[]): { entries: Entry[]; problems: Problem[] } {
  if (protect.length === 0) return { entries: [...entries], problems: [] }
  const kept: Entry[] = []
  const problems: Problem[] = []
  for (const e of entries) {
    const p = coveredProtected(e, protect)
    if (p) problems.push({ ...sourceAt(e.source), severity: e.force ? 'warning' : 'error', code: COVERS_PROTECTED, message: protectedMessage(e, p) })
    if (!p || e.force) kept.push(e)
  }
  return { entries: kept, problems }
}

/** loadBlocklists problem codes that mean "could not take this file at all" (not a lint problem). */
const READ_FAILURES = new Set(['unreadable', 'file-too-large', 'not-text'])

/** File entries get the id merge derives from their identity: the same on every host and run. */
function withId(e: Entry): Entry {
  return e.id ? e : { ...e, id: entryId(e) }
}

const MAX_TIMER_MS = 2 ** 31 - 1

export class PolicyService {
  readonly waiters = new ChangeWaiters()
  readonly history: PolicyHistory
  #o: PolicyServiceOptions
  #now: () => Date
  #files = new Map<string, Entry[]>()
  #fileProblems = new Map<string, Problem[]>()
  /** Profile file path -> its profile (kept while the file cannot be read). */
  #profileFiles = new Map<string, Profile>()
  /** The profiles of the policy: the first directory's wins a name given in two. */
  #profiles: Profile[] = []
  /** Watched profiles directories (path -> watcher and the inode it watches). */
  #profileWatchers = new Map<string, { w: FSWatcher; ino: number }>()
  #storeProblems: Problem[] = []
  /** The store's quarantines (in force or not), as of the last rebuild. */
  #quarantines: Quarantine[] = []
  #current: PolicyBody = { version: 0, etag: '', generatedAt: new Date(0).toISOString(), entries: [] }
  #chain: Promise<unknown> = Promise.resolve()
  #watchers: FSWatcher[] = []
  #debounce: NodeJS.Timeout | undefined
  #expiryTimer: NodeJS.Timeout | undefined
  #closed = false

  constructor(o: PolicyServiceOptions) {
    this.#o = o
    this.#now = o.now ?? (() => new Date())
    this.history = new PolicyHistory(o.historyKeep ?? 50)
  }

  get current(): PolicyBody {
    return this.#current
  }

  /**
   * Lint problems of the blocklist files, then stored API entries that are not served (the store's
   * file named), as values and as `file:line: message` text.
   */
  get problems(): (Problem & { text: string })[] {
    return [...[...this.#fileProblems.values()].flat(), ...this.#storeProblems].map((p) => ({ ...p, text: formatProblem(p) }))
  }

  /** How many stored API entries are kept but not served (invalid): for /metrics. */
  get storeProblemCount(): number {
    return this.#storeProblems.length
  }

  diff(since: number): Diff | undefined {
    return this.history.diff(since)
  }

  async init(): Promise<void> {
    this.#storeProblems = await this.#o.store.problems()
    for (const p of this.#storeProblems) this.#o.log.error({ file: p.file, line: p.line, code: p.code }, `${formatProblem(p)}`)
    await this.reload('startup')
    if (this.#o.watch) this.#startWatching()
  }

  /** Re-read the blocklist files and rebuild (SIGHUP, file changes). */
  reload(why = 'reload'): Promise<PolicyBody> {
    return this.#serial(async () => {
      await this.#readFiles()
      return this.#rebuild(why)
    })
  }

  /** Rebuild from the current files and the store's entries (after an API change). */
  rebuild(why: string): Promise<PolicyBody> {
    return this.#serial(() => this.#rebuild(why))
  }

  /**
   * Change API entries and publish the policy they make, in one store write: `write` passes the seal
   * to the store's addEntries/removeEntries, which computes the etag of the policy-to-be with it and
   * writes the entries, the version and their audit records together. When the write fails, neither
   * the store nor the served policy changed.
   */
  changeEntries<R>(why: string, write: (seal: PolicySeal) => Promise<R>): Promise<{ result: R; policy: PolicyBody }> {
    return this.#serial(async () => {
      const now = this.#now()
      const fileEntries = this.#fileEntries()
      let built: { all: Entry[]; policy: ReturnType<typeof buildPolicy> } | undefined
      const seal: PolicySeal = {
        why,
        etagFor: (api: ApiEntry[]) => {
          const all = [...fileEntries, ...api]
          built = { all, policy: buildPolicy(all, { now }) }
          // The store versions the served etag, which covers the profiles too (src/profiles/etag.ts).
          return policyEtag(built.policy.etag, this.#profiles, this.#activeQuarantines(now))
        },
      }
      const result = await write(seal)
      this.#storeProblems = await this.#o.store.problems() // their lines move as the file is rewritten
      if (!built) return { result, policy: this.#current }
      const { version } = await this.#o.store.policyVersion()
      return { result, policy: this.#publish(built.all, built.policy, version, now, why) }
    })
  }

  close(): void {
    this.#closed = true
    for (const w of this.#watchers) w.close()
    this.#watchers = []
    for (const { w } of this.#profileWatchers.values()) w.close()
    this.#profileWatchers.clear()
    clearTimeout(this.#debounce)
    clearTimeout(this.#expiryTimer)
    this.waiters.close()
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn)
    this.#chain = p.catch(() => {})
    return p
  }

  async #readFiles(): Promise<void> {
    const log = this.#o.log
    const seen = new Set<string>()
    for (const dir of this.#o.blocklistDirs) {
      let names: string[]
      try {
        names = pickBlocklistFiles(await readdir(dir))
      } catch (e) {
        const err = e as NodeJS.ErrnoException
        if (err.code === 'ENOENT') {
          log.warn({ dir }, 'blocklist directory does not exist: no file entries from it')
          continue
        }
        // Unreadable directory: keep every file we had from it.
        log.error({ dir, err: err.message }, 'cannot read blocklist directory; keeping its previous entries')
        for (const f of this.#files.keys()) if (f.startsWith(join(dir, '/'))) seen.add(f)
        continue
      }
      for (const name of names) {
        const file = join(dir, name)
        seen.add(file)
        // loadBlocklists does the reading rules (size limit, UTF-8 only, file:0 problems on failure).
        const loaded = await loadBlocklists([file], { now: this.#now() })
        // Sources read `blocklists/evil.txt:12` (the checkout's own layout), not this server's full path.
        const label = `${basename(dir)}/${name}`
        const relabel = (src: string): string => (src.startsWith(file) ? label + src.slice(file.length) : src)
        const checked = checkProtected(loaded.entries.map((e) => ({ ...e, source: relabel(e.source) })), this.#o.protect ?? [])
        const entries = checked.entries
        const problems = [...loaded.problems.map((p) => ({ ...p, file: relabel(p.file) })), ...checked.problems]
        const failed = problems.find((p) => p.line === 0 && p.severity === 'error' && READ_FAILURES.has(p.code))
        if (failed) {
          if (/no such file/.test(failed.message)) {
            seen.delete(file) // removed between listing and reading: its entries go
            continue
          }
          // Keep the last good entries of this file; report why they are old.
          const kept = this.#files.get(file)?.length ?? 0
          this.#fileProblems.set(file, [{ ...failed, message: `${failed.message}; keeping its previous ${kept} entries` }])
          log.error({ file, problem: failed.message, kept }, 'cannot read blocklist file; keeping its previous entries')
          continue
        }
        this.#files.set(file, entries)
        this.#fileProblems.set(file, problems)
        for (const p of problems) log.warn({ file: p.file, line: p.line, code: p.code }, formatProblem(p))
      }
    }
    for (const dir of this.#o.blocklistDirs) await this.#readProfiles(dir, seen)
    for (const f of [...this.#files.keys()]) if (!seen.has(f)) this.#files.delete(f)
    for (const f of [...this.#profileFiles.keys()]) if (!seen.has(f)) this.#profileFiles.delete(f)
    for (const f of [...this.#fileProblems.keys()]) if (!seen.has(f)) this.#fileProblems.delete(f)
    // Directories in the configured order, files by name: a name given twice is the first one's.
    const byName = new Map<string, { profile: Profile; file: string }>()
    for (const [file, profile] of this.#profileFiles) {
      const first = byName.get(profile.name)
      if (first) {
        const p: Problem = { file: profile.source, line: 0, severity: 'error', code: 'duplicate-profile', message: `profile ${JSON.stringify(profile.name)} is also defined in ${first.profile.source}, which is used; this file is ignored` }
        this.#fileProblems.set(file, [...(this.#fileProblems.get(file) ?? []), p])
        log.warn({ file: p.file, code: p.code }, formatProblem(p))
        continue
      }
      byName.set(profile.name, { profile, file })
    }
    this.#profiles = [...byName.values()].map((x) => x.profile).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    if (this.#o.watch && !this.#closed) await this.#watchProfileDirs()
  }

  /** `<dir>/profiles/*.txt` into #profileFiles, with the reading rules of blocklist files. */
  async #readProfiles(dir: string, seen: Set<string>): Promise<void> {
    const log = this.#o.log
    const pdir = join(dir, PROFILES_DIR)
    let names: string[]
    try {
      names = []
      for (const d of await readdir(pdir, { withFileTypes: true })) if (d.isFile() || d.isSymbolicLink()) names.push(d.name)
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return // no profiles here
      log.error({ dir: pdir, err: err.message }, 'cannot read profiles directory; keeping its previous profiles')
      for (const f of this.#profileFiles.keys()) if (f.startsWith(join(pdir, '/'))) seen.add(f)
      return
    }
    const label = (name: string): string => `${basename(dir)}/${PROFILES_DIR}/${name}`
    const picked = pickProfileFiles(names)
    for (const m of picked.misnamed) {
      const file = join(pdir, m.fileName)
      seen.add(file)
      const p: Problem = { file: label(m.fileName), line: 0, severity: 'error', code: 'profile-file-name', message: m.message }
      this.#fileProblems.set(file, [p])
      log.warn({ file: p.file, code: p.code }, formatProblem(p))
    }
    for (const f of picked.files) {
      const file = join(pdir, f.fileName)
      seen.add(file)
      const r = await readProfileFile(file, label(f.fileName), f.name)
      if (r.failed) {
        if (r.failed.code === 'unreadable' && /no such file/.test(r.failed.message)) {
          seen.delete(file) // removed between listing and reading: its profile goes
          continue
        }
        const kept = this.#profileFiles.has(file)
        this.#fileProblems.set(file, [{ ...r.failed, message: `${r.failed.message}; ${kept ? 'keeping its previous content' : 'no profile from it'}` }])
        log.error({ file, problem: r.failed.message, kept }, 'cannot read profile file; keeping its previous content')
        continue
      }
      this.#profileFiles.set(file, r.profile!)
      this.#fileProblems.set(file, r.problems)
      for (const p of r.problems) log.warn({ file: p.file, line: p.line, code: p.code }, formatProblem(p))
    }
  }

  #fileEntries(): Entry[] {
    return [...this.#files.values()].flat().map(withId)
  }

  async #rebuild(why: string): Promise<PolicyBody> {
    const now = this.#now()
    const apiEntries = await this.#o.store.listEntries()
    const all: Entry[] = [...this.#fileEntries(), ...apiEntries]
    const built = buildPolicy(all, { now })
    // buildPolicy's etag covers what enforcement depends on, not sources or ids: moving a line in a
    // file is not a new policy, so it neither bumps the version nor wakes the fleet.
    // The version follows the served etag: entries and profiles (a profile change is a new version).
    this.#quarantines = await this.#o.store.listQuarantines()
    const version = await this.#o.store.commitPolicy(policyEtag(built.etag, this.#profiles, this.#activeQuarantines(now)), why)
    return this.#publish(all, built, version, now, why)
  }

  /** The quarantines in force at `now`, sorted by id (the order the etag covers). */
  #activeQuarantines(now: Date): Quarantine[] {
    return this.#quarantines.filter((q) => quarantineActive(q, now)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  /** Serve a built policy under its committed version (unchanged content: the same object). */
  #publish(all: Entry[], built: ReturnType<typeof buildPolicy>, version: number, now: Date, why: string): PolicyBody {
    const entries = built.entries.map(withId)
    const profiles = this.#profiles
    const quarantines = this.#activeQuarantines(now)
    // Without profiles and quarantines the etag is the entries' own; with them it covers all (src/profiles/etag.ts).
    const etag = policyEtag(built.etag, profiles, quarantines)
    const before = this.#current
    this.#scheduleExpiry([...all, ...this.#quarantines], now)
    if (etag === before.etag && version === before.version) return before
    this.#current = {
      version,
      etag,
      generatedAt: now.toISOString(),
      entries,
      ...(profiles.length > 0 ? { profiles } : {}),
      ...(quarantines.length > 0 ? { quarantines } : {}),
    }
    this.history.push(version, entries)
    this.#o.log.info({ version, entries: entries.length, profiles: profiles.length, why }, 'policy version')
    this.waiters.notify()
    this.#o.onChange?.(this.#current)
    return this.#current
  }

  /** Expired entries and quarantines leave the policy by a rebuild at the next expiry instant. */
  #scheduleExpiry(all: ReadonlyArray<{ expires?: string }>, now: Date): void {
    clearTimeout(this.#expiryTimer)
    if (this.#closed) return
    let next = Infinity
    for (const e of all) {
      if (!e.expires) continue
      const t = Date.parse(e.expires)
      if (t > now.getTime() && t < next) next = t
    }
    if (next === Infinity) return
    // +1 ms: an entry applies up to and including its expiry instant.
    const delay = Math.min(MAX_TIMER_MS, next - now.getTime() + 1)
    this.#expiryTimer = setTimeout(() => void this.rebuild('expiry').catch((e: Error) => this.#o.log.error({ err: e.message }, 'rebuild after expiry failed')), delay)
    this.#expiryTimer.unref()
  }

  #kick = (): void => {
    clearTimeout(this.#debounce)
    if (this.#closed) return
    this.#debounce = setTimeout(() => {
      void this.reload('files changed').catch((e: Error) => this.#o.log.error({ err: e.message }, 'reload after file change failed'))
    }, this.#o.debounceMs ?? 250)
  }

  /**
   * A watch on a blocklist directory does not see changes inside its profiles/ sub-directory: each
   * profiles directory gets its own, (re)made after every read (it may appear, vanish or be replaced
   * by a new directory of the same name, e.g. by a git checkout).
   */
  async #watchProfileDirs(): Promise<void> {
    for (const dir of this.#o.blocklistDirs) {
      const pdir = join(dir, PROFILES_DIR)
      const had = this.#profileWatchers.get(pdir)
      let ino: number | undefined
      try {
        const st = await stat(pdir)
        if (st.isDirectory()) ino = st.ino
      } catch {
        /* absent: nothing to watch; the parent's watch sees it appear */
      }
      if (had && had.ino === ino) continue
      had?.w.close()
      this.#profileWatchers.delete(pdir)
      if (ino === undefined || this.#closed) continue
      try {
        const w = watch(pdir, { persistent: false }, this.#kick)
        w.on('error', (e) => this.#o.log.warn({ dir: pdir, err: e.message }, 'watch error; SIGHUP still reloads'))
        this.#profileWatchers.set(pdir, { w, ino })
      } catch (e) {
        this.#o.log.warn({ dir: pdir, err: (e as Error).message }, 'cannot watch profiles directory; SIGHUP still reloads')
      }
    }
  }

  #startWatching(): void {
    const kick = this.#kick
    for (const dir of this.#o.blocklistDirs) {
      try {
        const w = watch(dir, { persistent: false }, kick)
        w.on('error', (e) => this.#o.log.warn({ dir, err: e.message }, 'watch error; SIGHUP still reloads'))
        this.#watchers.push(w)
      } catch (e) {
        this.#o.log.warn({ dir, err: (e as Error).message }, 'cannot watch blocklist directory; SIGHUP still reloads')
      }
    }
  }
}
