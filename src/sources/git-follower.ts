// Follows a blocklist repository's branch (--blocklists-git): fetches into its own bare repository
// under the data directory, checks each new commit out into its own tree, lints it, and only then
// points `current` at it (one rename) so the policy service reads it. Fast-forward only. A commit
// with lint errors, a force-push or a commit without the blocklist directory keeps the last good
// tree and is reported. Git runs through src/enforce/exec.ts with argument arrays; credentials come
// from git's own mechanisms (the environment the server was started with: GIT_SSH_COMMAND, a
// credential helper in the user's git config), never from the URL or the command line.
import { mkdir, readFile, readlink, readdir, rename, rm, stat, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import type { Problem } from '../policy/types.js'
import { errors } from '../errors.js'
import { run } from '../enforce/exec.js'
import { loadBlocklists } from '../policy/load.js'
import { PROFILES_DIR, loadProfileDir } from '../profiles/load.js'
import { FEEDS_FILE, parseFeedsFile } from './feed-config.js'

export interface CommitInfo {
  sha: string
  author: string
  /** Author time, RFC 3339. */
  time: string
  subject: string
}

export type GitRejection =
  | { kind: 'lint'; commit: CommitInfo; problems: Problem[] }
  | { kind: 'non-fast-forward'; commit: CommitInfo; served: string }
  | { kind: 'fetch'; message: string }

export interface GitFollowerOptions {
  /** Repository URL or local path (no credentials in it). */
  url: string
  branch: string
  /** Our directory under the data directory (repo.git, trees/, current). */
  dir: string
  /** The blocklist directory inside the repository (default `blocklists`). */
  subdir?: string
  log: Logger
  timeoutMs?: number
}

export interface GitHandlers {
  /** A new good commit is `current`: reload the policy from it. */
  commit: (c: CommitInfo) => Promise<void>
  /** A commit (or fetch) was refused; the last good tree stays. Called once per refused commit. */
  rejected: (r: GitRejection) => Promise<void>
}

const SHA = /^[0-9a-f]{40,64}$/
/** Transports git may use: no `ext::` (runs a command) or `fd::`. */
const ALLOWED_PROTOCOLS = 'file:git:http:https:ssh'

/** Refuse what would put a secret on a command line or let the URL be read as an option. */
export function checkGitUrl(url: string): void {
  if (url.startsWith('-')) throw errors.config(`--blocklists-git ${JSON.stringify(url)}: must not start with "-"`)
  if (/^[a-z][a-z0-9+.-]*::/i.test(url)) throw errors.config(`--blocklists-git: transport "${url.split('::')[0]}::" is not allowed`)
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/@]*)@/i.exec(url)
  if (m && m[1]!.includes(':')) {
    throw errors.config('--blocklists-git: the URL holds a password; give credentials through git (a credential helper, or GIT_SSH_COMMAND with a key file), never in the URL')
  }
}

export function checkBranch(branch: string): void {
  if (!/^[A-Za-z0-9._/-]{1,200}$/.test(branch) || branch.startsWith('-') || branch.includes('..')) throw errors.config(`--git-branch ${JSON.stringify(branch)}: not a branch name`)
}

export class GitFollower {
  #o: GitFollowerOptions
  #chain: Promise<unknown> = Promise.resolve()
  #timer: NodeJS.Timeout | undefined
  /** The last commit refused (reported once, not on every fetch). */
  #refused: string | undefined
  #closed = false
  #served: string | undefined
  #fetchError: string | undefined
  readonly subdir: string
  /** Set by the server before the first sync (src/sources/git-policy.ts). */
  handlers: GitHandlers = { commit: async () => {}, rejected: async () => {} }

  constructor(o: GitFollowerOptions) {
    checkGitUrl(o.url)
    checkBranch(o.branch)
    this.#o = o
    this.subdir = o.subdir ?? 'blocklists'
  }

  get #repo(): string {
    return join(this.#o.dir, 'repo.git')
  }

  /** The served blocklist directory (through the `current` link). */
  get servedDir(): string {
    return join(this.#o.dir, 'current', this.subdir)
  }

  /** The commit `current` points at (read by init(), then kept). */
  get served(): string | undefined {
    return this.#served
  }

  /** Read which commit `current` points at: a restart serves it at once, without fetching. */
  async init(): Promise<string | undefined> {
    const t = await readlink(join(this.#o.dir, 'current')).catch(() => undefined)
    const sha = t?.split('/').pop()
    this.#served = sha && SHA.test(sha) ? sha : undefined
    return this.#served
  }

  async commitInfo(sha: string): Promise<CommitInfo> {
    const r = await this.#git(['log', '-1', '--format=%H%x00%an <%ae>%x00%aI%x00%s', sha, '--'])
    const [h, author, time, subject] = r.stdout.trim().split('\0')
    return { sha: h!, author: author ?? '', time: time ?? '', subject: subject ?? '' }
  }

  /** Fetch on this interval until close(). */
  start(intervalMs: number): void {
    const tick = (): void => {
      if (this.#closed) return
      this.#timer = setTimeout(() => void this.sync().finally(tick), intervalMs)
      this.#timer.unref()
    }
    tick()
  }

  close(): void {
    this.#closed = true
    clearTimeout(this.#timer)
  }

  /** Fetch the branch and take its head if it is new, good and a fast-forward. One at a time. */
  sync(): Promise<'unchanged' | 'updated' | 'refused'> {
    const p = this.#chain.then(() => this.#sync())
    this.#chain = p.catch(() => {})
    return p.then(
      (r) => {
        this.#fetchError = undefined
        return r
      },
      async (e: Error) => {
        this.#o.log.error({ err: e.message }, 'git sync failed; keeping the last good commit')
        // Reported once per distinct failure, not every interval while the remote is down.
        if (this.#fetchError !== e.message) await this.handlers.rejected({ kind: 'fetch', message: e.message }).catch(() => {})
        this.#fetchError = e.message
        return 'refused' as const
      },
    )
  }

  async #sync(): Promise<'unchanged' | 'updated' | 'refused'> {
    const o = this.#o
    await mkdir(join(o.dir, 'trees'), { recursive: true })
    if (!(await stat(join(this.#repo, 'HEAD')).catch(() => undefined))) await run('git', ['init', '--quiet', '--bare', this.#repo], this.#runOpts())
    // `+`: a rewritten branch is fetched too, so the refusal can name the commit it would have been.
    await this.#git(['fetch', '--quiet', '--no-tags', '--no-recurse-submodules', '--', o.url, `+refs/heads/${o.branch}:refs/eg/fetched`])
    const head = (await this.#git(['rev-parse', '--verify', 'refs/eg/fetched^{commit}'])).stdout.trim()
    const served = this.#served
    if (head === served || head === this.#refused) return 'unchanged'
    const commit = await this.commitInfo(head)
    if (served) {
      const ff = await this.#git(['merge-base', '--is-ancestor', served, head], false)
      if (ff.exitCode !== 0) {
        this.#refused = head
        o.log.error({ commit: head, served }, 'git: branch was rewritten (not a fast-forward); refused, keeping the served commit')
        await this.handlers.rejected({ kind: 'non-fast-forward', commit, served })
        return 'refused'
      }
    }
    const tree = join(o.dir, 'trees', head)
    await rm(tree, { recursive: true, force: true })
    await this.#checkout(head, tree)
    const problems = await this.#lint(tree)
    if (problems.some((p) => p.severity === 'error')) {
      this.#refused = head
      await rm(tree, { recursive: true, force: true })
      o.log.error({ commit: head, author: commit.author, errors: problems.length }, 'git: commit has lint errors; keeping the last good commit')
      await this.handlers.rejected({ kind: 'lint', commit, problems })
      return 'refused'
    }
    // One rename swaps what is served: a reader sees the old tree or the new one, never a mix.
    const link = join(o.dir, 'current')
    await rm(`${link}.tmp`, { force: true })
    await symlink(join('trees', head), `${link}.tmp`)
    await rename(`${link}.tmp`, link)
    this.#served = head
    this.#refused = undefined
    o.log.info({ commit: head, author: commit.author, subject: commit.subject }, 'git: new commit served')
    await this.handlers.commit(commit)
    for (const d of await readdir(join(o.dir, 'trees'))) if (d !== head) await rm(join(o.dir, 'trees', d), { recursive: true, force: true })
    return 'updated'
  }

  /** The commit's files into `tree`, through a private index (the bare repository keeps none). */
  async #checkout(sha: string, tree: string): Promise<void> {
    const env = { GIT_INDEX_FILE: join(this.#o.dir, 'checkout.index') }
    await rm(env.GIT_INDEX_FILE, { force: true })
    await this.#git(['read-tree', sha], true, env)
    // core.symlinks=false: a symbolic link in the repository is written as a small file holding its
    // target, so a commit cannot make the server read /etc/shadow or another file outside the tree.
    await mkdir(tree, { recursive: true })
    await this.#git(['-c', 'core.symlinks=false', `--work-tree=${tree}`, 'checkout-index', '--all', '--force'], true, env)
    await rm(env.GIT_INDEX_FILE, { force: true })
  }

  /** What lint would say about the commit's blocklist directory, files named as in the repository. */
  async #lint(tree: string): Promise<Problem[]> {
    const dir = join(tree, this.subdir)
    const rel = (f: string): string => (f.startsWith(tree + '/') ? f.slice(tree.length + 1) : f)
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
      // A commit that removes the directory would empty the policy: refused like a lint error.
      return [{ file: this.subdir, line: 0, severity: 'error', code: 'unreadable', message: `no directory ${this.subdir}/ in this commit` }]
    }
    const lists = await loadBlocklists([dir], { duplicates: false })
    const profiles = await loadProfileDir(join(dir, PROFILES_DIR)).catch(() => ({ problems: [] as Problem[] }))
    const feedsText = await readFile(join(dir, FEEDS_FILE), 'utf8').catch(() => undefined)
    const feeds = feedsText === undefined ? [] : parseFeedsFile(feedsText, join(dir, FEEDS_FILE)).problems
    return [...lists.problems, ...profiles.problems, ...feeds].map((p) => ({ ...p, file: rel(p.file) }))
  }

  #runOpts(env: Record<string, string> = {}): { timeoutMs: number; env: Record<string, string> } {
    // GIT_TERMINAL_PROMPT=0: a missing credential fails the fetch instead of waiting on a prompt.
    return { timeoutMs: this.#o.timeoutMs ?? 120_000, env: { GIT_TERMINAL_PROMPT: '0', GIT_ALLOW_PROTOCOL: ALLOWED_PROTOCOLS, ...env } }
  }

  #git(args: string[], reject = true, env: Record<string, string> = {}) {
    return run('git', [`--git-dir=${this.#repo}`, ...args], { ...this.#runOpts(env), reject })
  }
}
