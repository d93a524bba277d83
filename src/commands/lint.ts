// `egress-guard lint [PATH...]`: check blocklist files and profiles before they reach the fleet (CI,
// pre-commit). Problems go to stdout as `file:line: message`, the summary to stderr; exit 1 on any error.
import { stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { loadBlocklists, DEFAULT_MAX_BYTES, BLOCKLIST_EXTENSIONS } from '../policy/load.js'
import { buildPolicy } from '../policy/merge.js'
import { countProblems, formatGithubAnnotation, formatProblem } from '../policy/problems.js'
import { duplicateProblem } from '../policy/parse.js'
import type { Problem, Profile } from '../policy/types.js'
import { PROFILES_DIR, loadProfileDir, readProfileFile } from '../profiles/load.js'
import { profileNameOf } from '../profiles/parse.js'
import { policyEtag } from '../profiles/etag.js'

const spec = {
  format: { type: 'string', help: 'text (default): file:line: message; json (same as --json); github: ::error file=F,line=N::message annotations', noEnv: true },
  'max-file-size': { type: 'string', help: `per-file size limit: bytes, or with K/M/G (binary) suffix (default ${DEFAULT_MAX_BYTES / 1024 / 1024}M)` },
} as const satisfies Spec

const USAGE = `usage: egress-guard lint [PATH...]   (default ./blocklists)

Checks blocklist files, and directories of them (${BLOCKLIST_EXTENSIONS.map((e) => '*' + e).join(' ')}, README* skipped),
and profiles: a directory's ${PROFILES_DIR}/ sub-directory (${PROFILES_DIR}/NAME.txt), a ${PROFILES_DIR} directory itself,
or a file inside one named on the command line.
Prints one "file:line: message" per problem (--format github: one GitHub Actions annotation each). Exit 1 on any error, 0 with warnings only, 2 on usage errors.`

/** `1048576`, `512K`, `64M`, `1G` -> bytes. */
export function parseSize(v: string): number | undefined {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(v.trim())
  if (!m) return undefined
  const mult = m[2] ? 1024 ** ('KMG'.indexOf(m[2][0]!.toUpperCase()) + 1) : 1
  const n = Number(m[1]) * mult
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}

/** Add `extra` to `problems` in place, ordered as the files were read, then by line (stable otherwise). */
function sortProblems(problems: Problem[], extra: Problem[], files: readonly string[]): void {
  const order = new Map(files.map((f, i) => [f, i]))
  const all = [...problems, ...extra]
  all.sort((a, b) => (order.get(a.file) ?? -1) - (order.get(b.file) ?? -1) || a.line - b.line)
  problems.length = 0
  for (const p of all) problems.push(p)
}

const isDir = async (p: string): Promise<boolean> => (await stat(p).catch(() => undefined))?.isDirectory() === true

/**
 * Which paths are profiles: a directory named `profiles`, a file inside one, and the `profiles`
 * sub-directory of a blocklist directory (checked beside it). The rest are blocklists.
 */
async function splitPaths(paths: readonly string[]): Promise<{ lists: string[]; profileDirs: string[]; profileFiles: string[] }> {
  const out = { lists: [] as string[], profileDirs: [] as string[], profileFiles: [] as string[] }
  for (const p of paths) {
    const dir = await isDir(p)
    if (dir && basename(p.replace(/\/+$/, '')) === PROFILES_DIR) out.profileDirs.push(p)
    else if (!dir && basename(dirname(p)) === PROFILES_DIR) out.profileFiles.push(p)
    else {
      out.lists.push(p)
      if (dir && (await isDir(join(p, PROFILES_DIR)))) out.profileDirs.push(join(p, PROFILES_DIR))
    }
  }
  return out
}

/** Every profile of the given directories and files, with problems (a name defined twice is one). */
async function lintProfiles(dirs: readonly string[], files: readonly string[]): Promise<{ profiles: Profile[]; problems: Problem[]; files: string[] }> {
  const out = { profiles: [] as Profile[], problems: [] as Problem[], files: [] as string[] }
  const add = (profile: Profile | undefined, problems: Problem[]): void => {
    for (const p of problems) out.problems.push(p)
    if (!profile) return
    const first = out.profiles.find((x) => x.name === profile.name)
    if (first) {
      out.problems.push({ file: profile.source, line: 0, severity: 'error', code: 'duplicate-profile', message: `profile ${JSON.stringify(profile.name)} is also defined in ${first.source}; the server would use that one and ignore this file` })
      return
    }
    out.profiles.push(profile)
  }
  for (const d of dirs) {
    const l = await loadProfileDir(d)
    for (const f of l.files) out.files.push(f)
    // Per file, in order: each profile with its own problems.
    for (const f of l.files) add(l.profiles.find((p) => p.source === f), l.problems.filter((p) => p.file === f))
    for (const p of l.problems) if (!l.files.includes(p.file)) out.problems.push(p)
  }
  for (const f of files) {
    if (out.files.includes(f)) continue
    out.files.push(f)
    const n = profileNameOf(basename(f))
    if (!n.ok) {
      out.problems.push({ file: f, line: 0, severity: 'error', code: 'profile-file-name', message: n.message })
      continue
    }
    const r = await readProfileFile(f, f, n.name)
    add(r.profile, r.problems)
  }
  return out
}

const command: Command = {
  summary: 'check blocklist files and profiles: file:line: message per problem; exit 1 on any error',
  async run(argv, io) {
    const { options, positionals } = loadOptions(argv, spec, { env: io.env, section: 'lint' })
    if (options.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const format = options.format ?? (options.json ? 'json' : 'text')
    if (!['text', 'json', 'github'].includes(format)) throw errors.usage(`--format must be text, json or github; got ${JSON.stringify(format)}`)
    if (options.json && format !== 'json') throw errors.usage(`--json and --format ${format} disagree; give one`)
    const json = format === 'json'
    const line = format === 'github' ? formatGithubAnnotation : formatProblem
    let maxBytes = DEFAULT_MAX_BYTES
    if (options['max-file-size'] !== undefined) {
      const n = parseSize(options['max-file-size'])
      if (n === undefined) throw errors.usage(`--max-file-size must be a size like 1048576, 512K, 64M or 1G; got ${JSON.stringify(options['max-file-size'])}`)
      maxBytes = n
    }
    const split = await splitPaths(positionals.length > 0 ? [...positionals] : ['blocklists'])
    // Only profile paths given: no blocklist summary of nothing.
    const paths = split.lists
    const now = new Date()
    let loaded
    let policy
    let entryCount: number
    if (json) {
      // --json prints the merged policy and its etag, so it needs buildPolicy (sort + merge + hash);
      // its onDuplicate reports duplicates, which makes the loader's own check redundant.
      loaded = await loadBlocklists(paths, { maxBytes, now, duplicates: false })
      const dups: Problem[] = []
      policy = buildPolicy(loaded.entries, { now, onDuplicate: (kept, dup) => dups.push(duplicateProblem(kept, dup)) })
      if (dups.length > 0) sortProblems(loaded.problems, dups, loaded.files)
      entryCount = policy.entries.length
    } else {
      // Text output needs only the duplicate warnings and the merged count: the loader's first-seen map
      // gives both (same messages, same file/line order; expired entries are never added, as in
      // buildPolicy), and skips the sort and sha256 that dominate buildPolicy at a million entries.
      // Entries are only counted, not kept (onEntry): a million objects then die young instead of
      // being copied into old space, which was much of the collector's time.
      let listed = 0
      loaded = await loadBlocklists(paths, { maxBytes, now, duplicates: true, onEntry: () => void listed++ })
      let dups = 0
      for (const p of loaded.problems) if (p.code === 'duplicate') dups++
      entryCount = listed - dups
    }
    const prof = await lintProfiles(split.profileDirs, split.profileFiles)
    for (const p of prof.problems) loaded.problems.push(p)
    const counts = countProblems(loaded.problems)
    const summary = { entries: entryCount, files: loaded.files.length, profiles: prof.profiles.length, errors: counts.error, warnings: counts.warning }
    if (json) {
      io.stdout(JSON.stringify({ entries: policy!.entries, files: loaded.files, problems: loaded.problems, summary, etag: policyEtag(policy!.etag, prof.profiles), profiles: prof.profiles, profileFiles: prof.files }) + '\n')
    } else {
      // Built in pieces: one write per problem would be slow for a list with many thousands of them.
      let text = ''
      for (const p of loaded.problems) {
        text += line(p) + '\n'
        if (text.length > 1 << 16) {
          io.stdout(text)
          text = ''
        }
      }
      if (text) io.stdout(text)
    }
    const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`
    const profiles = prof.files.length > 0 ? `, ${plural(summary.profiles, 'profile')}` : ''
    io.stderr(`${plural(summary.entries, 'entry').replace('entrys', 'entries')} from ${plural(summary.files, 'file')}${profiles}: ${plural(summary.errors, 'error')}, ${plural(summary.warnings, 'warning')}\n`)
    return counts.error > 0 ? 1 : 0
  },
}
export default command
