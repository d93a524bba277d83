// The I/O edge of profiles: finds `<blocklists dir>/profiles/NAME.txt`, applies the reading rules of
// blocklist files (size limit, UTF-8 text only) and hands the text to the pure parser. Every failure
// is a `file:0` Problem, never an exception.
import { readdir, readFile, stat } from 'node:fs/promises'
import { isUtf8 } from 'node:buffer'
import { join } from 'node:path'
import type { Problem } from '../policy/types.js'
import { parseProfile, profileNameOf } from './parse.js'
import type { Profile } from './types.js'

/** The sub-directory of a blocklists directory that holds profiles. */
export const PROFILES_DIR = 'profiles'
/** Far above any hand-written profile; a bigger file is not one. */
export const MAX_PROFILE_BYTES = 1024 * 1024

export interface ProfileFile {
  /** The file name in the directory (`web.txt`). */
  fileName: string
  /** The profile's name (`web`). */
  name: string
}

/**
 * Members of a profiles directory: dot files and README* are skipped (as in blocklist directories);
 * every other name must be NAME.txt, else it is a problem (a misnamed profile would silently hold its
 * containers to nothing). Sorted by name (code-unit order).
 */
export function pickProfileFiles(names: readonly string[]): { files: ProfileFile[]; misnamed: Array<{ fileName: string; message: string }> } {
  const files: ProfileFile[] = []
  const misnamed: Array<{ fileName: string; message: string }> = []
  for (const fileName of [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (fileName.startsWith('.') || /^readme/i.test(fileName)) continue
    const n = profileNameOf(fileName)
    if (n.ok) files.push({ fileName, name: n.name })
    else misnamed.push({ fileName, message: n.message })
  }
  return { files, misnamed }
}

export interface ProfileFileResult {
  profile?: Profile
  problems: Problem[]
  /** Set when the file could not be taken at all (missing, unreadable, too large, not text): no profile. */
  failed?: Problem
}

function fileProblem(file: string, code: string, message: string): Problem {
  return { file, line: 0, severity: 'error', code, message }
}

function ioMessage(e: unknown): string {
  const err = e as NodeJS.ErrnoException
  if (err?.code === 'ENOENT') return 'no such file or directory'
  if (err?.code === 'EACCES') return 'permission denied'
  if (err?.code === 'EISDIR') return 'is a directory'
  return err?.code ? `cannot read (${err.code})` : `cannot read: ${String(err?.message ?? e)}`
}

/** Read and parse one profile file. `label` is the file as sources and problems name it. */
export async function readProfileFile(path: string, label: string, name: string, maxBytes = MAX_PROFILE_BYTES): Promise<ProfileFileResult> {
  const fail = (code: string, message: string): ProfileFileResult => {
    const p = fileProblem(label, code, message)
    return { problems: [p], failed: p }
  }
  let buf: Buffer
  try {
    const st = await stat(path)
    if (!st.isFile()) return fail('unreadable', 'not a regular file')
    if (st.size > maxBytes) return fail('file-too-large', `file is ${st.size} bytes, larger than the limit of ${maxBytes} bytes for a profile`)
    buf = await readFile(path)
  } catch (e) {
    return fail('unreadable', ioMessage(e))
  }
  if (buf.length > maxBytes) return fail('file-too-large', `file is ${buf.length} bytes, larger than the limit of ${maxBytes} bytes for a profile`)
  const nul = buf.indexOf(0)
  if (nul >= 0) return fail('not-text', `not a text file (NUL byte at offset ${nul}); skipped`)
  if (!isUtf8(buf)) return fail('not-text', 'not a text file (invalid UTF-8); skipped')
  return parseProfile(buf.toString('utf8'), label, name)
}

export interface LoadedProfiles {
  profiles: Profile[]
  problems: Problem[]
  /** Every file examined (labels), misnamed ones included. */
  files: string[]
  /** False when the directory does not exist (no profiles: not a problem). */
  exists: boolean
}

/**
 * Every profile of one profiles directory. `label(fileName)` names a file in sources and problems
 * (default: its path). A directory that does not exist has no profiles; one that cannot be read is a
 * `dir:0` problem.
 */
export async function loadProfileDir(dir: string, opts: { label?: (fileName: string) => string; maxBytes?: number } = {}): Promise<LoadedProfiles> {
  const label = opts.label ?? ((f: string) => join(dir, f))
  const out: LoadedProfiles = { profiles: [], problems: [], files: [], exists: true }
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...out, exists: false }
    out.problems.push(fileProblem(dir, 'unreadable', ioMessage(e)))
    return out
  }
  // Sub-directories are not profiles and not problems (profiles are not nested).
  const regular: string[] = []
  for (const n of names) {
    try {
      if ((await stat(join(dir, n))).isFile()) regular.push(n)
    } catch {
      if (!n.startsWith('.')) regular.push(n) // a dangling link: reported by the read below or as misnamed
    }
  }
  const picked = pickProfileFiles(regular)
  const good = new Map(picked.files.map((f) => [f.fileName, f.name]))
  const bad = new Map(picked.misnamed.map((m) => [m.fileName, m.message]))
  // In file-name order, misnamed files among the others (as lint prints them).
  for (const fileName of [...good.keys(), ...bad.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const l = label(fileName)
    out.files.push(l)
    const name = good.get(fileName)
    if (name === undefined) {
      out.problems.push(fileProblem(l, 'profile-file-name', bad.get(fileName)!))
      continue
    }
    const r = await readProfileFile(join(dir, fileName), l, name, opts.maxBytes)
    if (r.profile) out.profiles.push(r.profile)
    for (const p of r.problems) out.problems.push(p)
  }
  return out
}
