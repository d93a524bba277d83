// The agent's last good policy on disk, so a host enforces at boot and while the server is down.
// Written atomically (atomic-write.ts: temp file, fsync, rename, fsync of the directory); a
// corrupt file stops startup with a coded error naming it and is never overwritten unless discarded.
import { createHash } from 'node:crypto'
import { readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import type { Policy } from '../policy/types.js'
import { errors } from '../errors.js'
import { cleanPolicy, policyProblems } from './policy-check.js'
import { writeFileAtomic } from './atomic-write.js'

/** Bump when the file layout changes; an unknown format is treated as corrupt (never guessed at). */
export const CACHE_FORMAT = 1

interface CacheFile {
  format: number
  /** sha256 (hex) of JSON.stringify(policy): catches truncation and hand edits. */
  checksum: string
  savedAt: string
  policy: Policy
}

export interface PolicyCache {
  readonly file: string
  /** The cached policy, undefined when there is none; throws EG_CACHE_CORRUPT when unreadable. */
  read(): Promise<Policy | undefined>
  /** Replace the cache atomically. Refuses while a corrupt file is in place and not discarded. */
  write(policy: Policy): Promise<void>
}

export interface PolicyCacheOptions {
  /** The state directory; the cache is `<dir>/policy-cache.json`. */
  dir: string
  /** Move a corrupt cache aside (`.corrupt-<time>`) and start empty instead of failing. */
  discardCorrupt?: boolean
  log: Logger
}

function checksum(p: Policy): string {
  return createHash('sha256').update(JSON.stringify(p)).digest('hex')
}

/** Serialize a policy into the cache file layout (exported for tests that craft files). */
export function encodeCache(policy: Policy, now = new Date()): string {
  const p = cleanPolicy(policy)
  const body: CacheFile = { format: CACHE_FORMAT, checksum: checksum(p), savedAt: now.toISOString(), policy: p }
  return JSON.stringify(body) + '\n'
}

/** Parse and verify cache text; returns the policy or the reason it cannot be used. */
export function decodeCache(text: string): { policy: Policy } | { problem: string } {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (e) {
    return { problem: `not JSON (${(e as Error).message})` }
  }
  if (raw === null || typeof raw !== 'object') return { problem: 'not an object' }
  const f = raw as Partial<CacheFile>
  if (f.format !== CACHE_FORMAT) return { problem: `unknown format ${JSON.stringify(f.format)} (expected ${CACHE_FORMAT})` }
  const problems = policyProblems(f.policy)
  if (problems.length) return { problem: `invalid policy: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ''}` }
  const p = cleanPolicy(f.policy as Policy)
  if (checksum(p) !== f.checksum) return { problem: 'checksum mismatch (truncated or edited)' }
  return { policy: p }
}

export function createPolicyCache(opts: PolicyCacheOptions): PolicyCache {
  const file = join(opts.dir, 'policy-cache.json')
  const log = opts.log.child({ component: 'policy-cache' })
  // Set when read() found a corrupt file: write() refuses, so the evidence is kept for a human.
  let corrupt: string | undefined

  async function read(): Promise<Policy | undefined> {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw errors.cacheCorrupt(`${file}: cannot read the policy cache: ${(e as Error).message}`, { file })
    }
    const r = decodeCache(text)
    if ('policy' in r) {
      corrupt = undefined
      return r.policy
    }
    if (opts.discardCorrupt) {
      const aside = `${file}.corrupt-${Date.now()}`
      await rename(file, aside)
      log.warn({ file, aside, problem: r.problem }, 'corrupt policy cache moved aside (discard requested)')
      return undefined
    }
    corrupt = r.problem
    throw errors.cacheCorrupt(
      `${file}: corrupt policy cache: ${r.problem}. It is left untouched; inspect it, then delete it or start with --discard-cache`,
      { file, problem: r.problem },
    )
  }

  async function write(policy: Policy): Promise<void> {
    if (corrupt !== undefined) throw errors.cacheCorrupt(`${file}: refusing to overwrite a corrupt policy cache (${corrupt})`, { file })
    await writeFileAtomic(file, encodeCache(policy))
    log.debug({ version: policy.version, etag: policy.etag }, 'policy cached')
  }

  return { file, read, write }
}
