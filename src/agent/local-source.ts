// A blocklist directory read by the agent itself (`--blocklists DIR`): without a server it is the whole
// policy; with one, its entries are added to the server's (see combinePolicies). Bad lines are logged
// and skipped, an unreadable file keeps the entries it had the last time it was read. Its profiles
// (`DIR/profiles/NAME.txt`) are read the same way.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import type { Entry, Policy, Profile, Quarantine } from '../policy/types.js'
import { parseBlocklist } from '../policy/parse.js'
import { buildPolicy } from '../policy/merge.js'
import { DEFAULT_MAX_BYTES, pickBlocklistFiles } from '../policy/load.js'
import type { LocalSource } from './sync.js'
import { PROFILES_DIR, pickProfileFiles, readProfileFile } from '../profiles/load.js'
import { policyEtag } from '../profiles/etag.js'

/** A single blocklist file above this is refused (the same limit as `lint`). */
const MAX_FILE_BYTES = DEFAULT_MAX_BYTES

export function createLocalSource(opts: { dir: string; log: Logger; pollMs?: number }): LocalSource {
  const log = opts.log.child({ component: 'local-blocklists' })
  // Per file: the mtime+size it was parsed at and its entries, so an unchanged file is not re-parsed
  // and a file that becomes unreadable keeps its last good entries.
  const files = new Map<string, { sig: string; entries: Entry[] }>()
  // Per profile file, the same: mtime+size and the profile parsed from it.
  const profileFiles = new Map<string, { sig: string; profile: Profile }>()

  async function loadProfiles(): Promise<void> {
    const pdir = join(opts.dir, PROFILES_DIR)
    let names: string[]
    try {
      names = (await readdir(pdir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return void profileFiles.clear()
      // An unreadable directory keeps every profile it had (never a silent widening or narrowing).
      log.error({ dir: pdir, err: (e as Error).message }, 'profiles directory unreadable; keeping its previous profiles')
      return
    }
    const picked = pickProfileFiles(names)
    for (const m of picked.misnamed) log.warn({ file: join(pdir, m.fileName), code: 'profile-file-name' }, `${join(pdir, m.fileName)}:0: ${m.message}`)
    const wanted = new Set(picked.files.map((f) => f.fileName))
    for (const gone of [...profileFiles.keys()].filter((n) => !wanted.has(n))) profileFiles.delete(gone)
    for (const f of picked.files) {
      const path = join(pdir, f.fileName)
      try {
        const st = await stat(path)
        const sig = `${st.mtimeMs}:${st.size}`
        if (profileFiles.get(f.fileName)?.sig === sig) continue
        const r = await readProfileFile(path, path, f.name)
        if (r.failed) throw new Error(r.failed.message)
        for (const p of r.problems.slice(0, 50)) log.warn({ file: p.file, line: p.line, code: p.code }, `${p.file}:${p.line}: ${p.message}`)
        profileFiles.set(f.fileName, { sig, profile: r.profile! })
      } catch (e) {
        log.error({ file: path, err: (e as Error).message }, 'profile file unreadable; keeping its previous content')
      }
    }
  }

  return {
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
    profiles: () => [...profileFiles.values()].map((f) => f.profile).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    async load() {
      await loadProfiles()
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
 * Server policy + local entries and profiles -> the policy this host enforces. Entries: the union of
 * both lists through buildPolicy (so duplicates merge and allow entries win across sources as
 * everywhere else). Profiles: the server's, plus local ones of other names; a local profile named
 * like one of the server's is ignored (the fleet's profile is the contract: a host cannot widen it).
 * The version stays the server's so reports compare with the fleet (without a server it derives from
 * the content); the etag is that of the union.
 */
export function combinePolicies(server: Policy | undefined, local: Entry[], localProfiles: Profile[] = []): Policy {
  if (local.length === 0 && localProfiles.length === 0 && server) return server
  const p = buildPolicy([...(server?.entries ?? []), ...local], server ? { version: server.version } : {})
  const byName = new Map<string, Profile>()
  for (const pr of server?.profiles ?? []) byName.set(pr.name, pr)
  for (const pr of localProfiles) if (!byName.has(pr.name)) byName.set(pr.name, pr)
  // Quarantines come from the server only (they are made through its API); a local directory has none.
  const quarantines = server?.quarantines ?? []
  if (byName.size === 0 && quarantines.length === 0) return p
  const profiles = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const etag = policyEtag(p.etag, profiles, quarantines)
  return {
    ...p,
    etag,
    ...(profiles.length > 0 ? { profiles } : {}),
    ...(quarantines.length > 0 ? { quarantines } : {}),
    version: server ? server.version : parseInt(etag.slice(0, 12), 16),
  }
}

/** The etag the server computes for an entry list, its profiles and quarantines (used to verify diffs). */
export function serverEtag(entries: Entry[], profiles?: Profile[], quarantines?: Quarantine[]): string {
  return policyEtag(buildPolicy(entries, { version: 0 }).etag, profiles, quarantines)
}
