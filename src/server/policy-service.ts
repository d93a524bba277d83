// The server's policy: blocklist files (re-read on change or reload()) + API entries (store), merged
// into one versioned policy. Every content change bumps the persisted version, records the step for
// diffs, and wakes the long-polls. Rebuilds run one at a time, in the order they were asked for.
// A blocklist file that cannot be read keeps the entries it had; a deleted file drops them.
import { watch, type FSWatcher } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Logger } from '../log.js'
import type { Entry, Problem } from '../policy/types.js'
import type { PolicyBody } from '../client/api-types.js'
import type { Store } from '../store/types.js'
import { formatProblem } from '../policy/problems.js'
import { buildPolicy, entryId } from '../policy/merge.js'
import { loadBlocklists, pickBlocklistFiles } from '../policy/load.js'
import { PolicyHistory, type Diff } from './policy-history.js'
import { COVERS_PROTECTED, coveredProtected, protectedMessage, type ProtectedNet } from '../policy/protect-check.js'
import { ChangeWaiters } from './waiters.js'

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

  /** Lint problems of the blocklist files, as values and as `file:line: message` text. */
  get problems(): (Problem & { text: string })[] {
    return [...this.#fileProblems.values()].flat().map((p) => ({ ...p, text: formatProblem(p) }))
  }

  diff(since: number): Diff | undefined {
    return this.history.diff(since)
  }

  async init(): Promise<void> {
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

  close(): void {
    this.#closed = true
    for (const w of this.#watchers) w.close()
    this.#watchers = []
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
    for (const f of [...this.#files.keys()]) if (!seen.has(f)) this.#files.delete(f)
    for (const f of [...this.#fileProblems.keys()]) if (!seen.has(f)) this.#fileProblems.delete(f)
  }

  async #rebuild(why: string): Promise<PolicyBody> {
    const now = this.#now()
    const fileEntries = [...this.#files.values()].flat().map(withId)
    const apiEntries = await this.#o.store.listEntries()
    const all: Entry[] = [...fileEntries, ...apiEntries]
    const built = buildPolicy(all, { now })
    // buildPolicy's etag covers what enforcement depends on, not sources or ids: moving a line in a
    // file is not a new policy, so it neither bumps the version nor wakes the fleet.
    const entries = built.entries.map(withId)
    const etag = built.etag
    const before = this.#current
    const version = await this.#o.store.commitPolicy(etag, why)
    this.#scheduleExpiry(all, now)
    if (etag === before.etag && version === before.version) return before
    this.#current = { version, etag, generatedAt: now.toISOString(), entries }
    this.history.push(version, entries)
    this.#o.log.info({ version, entries: entries.length, why }, 'policy version')
    this.waiters.notify()
    this.#o.onChange?.(this.#current)
    return this.#current
  }

  /** Expired entries leave the policy by a rebuild at the next expiry instant. */
  #scheduleExpiry(all: Entry[], now: Date): void {
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

  #startWatching(): void {
    const debounceMs = this.#o.debounceMs ?? 250
    const kick = (): void => {
      clearTimeout(this.#debounce)
      this.#debounce = setTimeout(() => {
        void this.reload('files changed').catch((e: Error) => this.#o.log.error({ err: e.message }, 'reload after file change failed'))
      }, debounceMs)
    }
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
