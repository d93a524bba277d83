// A blocklist directory read by the agent itself (`--blocklists DIR`): without a server it is the whole
// policy; with one, its entries are added to the server's (see combinePolicies). Bad lines are logged
// and skipped, an unreadable file keeps the entries it had the last time it was read.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import type { Entry, Policy } from '../policy/types.js'
import { parseBlocklist } from '../policy/parse.js'
import { buildPolicy } from '../policy/merge.js'
import { DEFAULT_MAX_BYTES, pickBlocklistFiles } from '../policy/load.js'
import type { LocalSource } from './sync.js'

/** A single blocklist file above this is refused (the same limit as `lint`). */
const MAX_FILE_BYTES = DEFAULT_MAX_BYTES

export function createLocalSource(opts: { dir: string; log: Logger; pollMs?: number }): LocalSource {
  const log = opts.log.child({ component: 'local-blocklists' })
  // Per file: the mtime+size it was parsed at and its entries, so an unchanged file is not re-parsed
  // and a file that becomes unreadable keeps its last good entries.
  const files = new Map<string, { sig: string; entries: Entry[] }>()
  return {
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
    async load() {
      // Same file selection as `lint` and the server (pickBlocklistFiles: known extensions, no README, no dot files).
      const names = pickBlocklistFiles((await readdir(opts.dir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name))
      for (const gone of [...files.keys()].filter((n) => !names.includes(n))) files.delete(gone)
      for (const name of names) {
        const path = join(opts.dir, name)
        try {
          const st = await stat(path)
          const sig = `${st.mtimeMs}:${st.size}`
          if (files.get(name)?.sig === sig) continue
          if (st.size > MAX_FILE_BYTES) throw new Error(`${st.size} bytes, the limit is ${MAX_FILE_BYTES}`)
          const { entries, problems } = parseBlocklist(await readFile(path, 'utf8'), path)
          for (const p of problems.slice(0, 50)) log.warn({ file: p.file, line: p.line, code: p.code }, `${p.file}:${p.line}: ${p.message}`)
          files.set(name, { sig, entries })
        } catch (e) {
          log.error({ file: path, err: (e as Error).message }, 'blocklist file unreadable; keeping its previous entries')
        }
      }
      return [...files.values()].flatMap((f) => f.entries)
    },
  }
}

/**
 * Server policy + local entries -> the policy this host enforces. Union of both lists through
 * buildPolicy (so duplicates merge and allow entries win across sources as everywhere else); the
 * version stays the server's so reports compare with the fleet; the etag is that of the union.
 */
export function combinePolicies(server: Policy | undefined, local: Entry[]): Policy {
  if (local.length === 0 && server) return server
  const p = buildPolicy([...(server?.entries ?? []), ...local], server ? { version: server.version } : {})
  return p
}

/** The etag the server computes for an entry list (used to verify diffs). */
export function serverEtag(entries: Entry[]): string {
  return buildPolicy(entries, { version: 0 }).etag
}
