// Connects a GitFollower to the policy service and the audit log: a served commit reloads the policy
// with its provenance (SHA, author, time, subject in the version's audit record, plus the file entries
// it added and removed); a refused commit keeps the last good policy and shows up in the audit log and
// in GET /v1/policy/problems (cleared by the next good commit).
import type { Logger } from '../log.js'
import type { Entry, Problem } from '../policy/types.js'
import type { Store } from '../store/types.js'
import type { PolicyService } from '../server/policy-service.js'
import type { CommitInfo, GitFollower, GitRejection } from './git-follower.js'

/** Listed per audit record at most; the counts are always exact. */
const MAX_LISTED = 1000

const key = (e: Entry): string => `${e.allow ? '@@' : ''}${e.kind === 'domain' && e.subdomainsOnly ? '*.' : ''}${e.value}${e.mode === 'alert' ? ' alert' : ''}`

/** `value (file:line@sha)` of the file entries from the followed directory. */
function fileEntries(entries: readonly Entry[], label: string): Map<string, string> {
  const m = new Map<string, string>()
  for (const e of entries) if (e.source.startsWith(label + '/')) m.set(key(e), `${key(e)} (${e.source})`)
  return m
}

export const short = (sha: string): string => sha.slice(0, 12)

/** The `why` of a policy version built from a commit (the store's policy.version audit reason). */
export function commitWhy(c: CommitInfo): string {
  return `git ${c.sha} by ${c.author} at ${c.time}: ${c.subject}`
}

/** The problems a refused commit shows in /v1/policy/problems. */
export function rejectionProblems(r: GitRejection, subdir: string, served: string | undefined): Problem[] {
  const keeping = served ? `keeping commit ${short(served)}` : 'no commit served yet'
  if (r.kind === 'fetch') return [{ file: 'git', line: 0, severity: 'error', code: 'git-fetch', message: `fetch failed: ${r.message}; ${keeping}` }]
  const who = `commit ${short(r.commit.sha)} by ${r.commit.author} (${JSON.stringify(r.commit.subject)})`
  if (r.kind === 'non-fast-forward') {
    return [{ file: 'git', line: 0, severity: 'error', code: 'git-non-fast-forward', message: `${who} is not a fast-forward of the served ${short(r.served)} (force-push); refused, ${keeping}` }]
  }
  const errs = r.problems.filter((p) => p.severity === 'error')
  return [{ file: subdir, line: 0, severity: 'error', code: 'git-lint', message: `${who} has ${errs.length} lint error${errs.length === 1 ? '' : 's'}; refused, ${keeping}` }, ...errs]
}

export function connectGit(follower: GitFollower, policy: PolicyService, store: Store, log: Logger): void {
  const label = follower.subdir.split('/').pop()!
  follower.handlers = {
    commit: async (c) => {
      const before = fileEntries(policy.current.entries, label)
      const p = await policy.reload(commitWhy(c))
      policy.setExternalProblems('git', [])
      const after = fileEntries(p.entries, label)
      const added = [...after].filter(([k]) => !before.has(k)).map(([, v]) => v)
      const removed = [...before].filter(([k]) => !after.has(k)).map(([, v]) => v)
      await store.appendAudit({
        actor: 'git',
        action: 'git.commit',
        target: c.sha,
        reason: c.subject,
        details: { sha: c.sha, author: c.author, time: c.time, subject: c.subject, version: p.version, addedCount: added.length, removedCount: removed.length, added: added.slice(0, MAX_LISTED), removed: removed.slice(0, MAX_LISTED) },
      })
      log.info({ commit: c.sha, version: p.version, added: added.length, removed: removed.length }, 'policy from git commit')
    },
    rejected: async (r) => {
      const problems = rejectionProblems(r, follower.subdir, follower.served)
      policy.setExternalProblems('git', problems)
      await store.appendAudit({
        actor: 'git',
        action: `git.refused`,
        target: r.kind === 'fetch' ? 'fetch' : r.commit.sha,
        reason: problems[0]!.message,
        details: r.kind === 'fetch' ? { kind: r.kind } : { kind: r.kind, ...r.commit, problems: problems.slice(1, 1 + MAX_LISTED).map((p) => `${p.file}:${p.line}: ${p.message}`) },
      })
    },
  }
}
