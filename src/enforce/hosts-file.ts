// The managed /etc/hosts block: blocked names pointed at 0.0.0.0 and :: between two marker lines,
// written atomically (temp file in the same directory, fsync, rename) so a crash never leaves a
// half-written hosts file, and every byte outside the block is kept as it was.
import { open, readFile, readdir, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import { errors } from '../errors.js'
import { HOSTS_LOCAL_NAMES } from '../policy/names.js'
import type { Drift } from './types.js'

export const BEGIN_MARKER = '# BEGIN egress-guard managed block (do not edit)'
export const END_MARKER = '# END egress-guard managed block'

/**
 * Names that may be written: plain DNS names in the parser's normal form. Anything else (a `*.`
 * wildcard, which a hosts file cannot express, whitespace or a newline that would forge a line, the
 * machine's own names like `localhost`) is left out rather than written.
 */
const NAME_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$/

export function writableNames(names: readonly string[]): string[] {
  return [...new Set(names)].filter((n) => NAME_RE.test(n) && !HOSTS_LOCAL_NAMES.has(n)).sort()
}

/** The block's text, markers included, ending in a newline; empty for no names (no block at all). */
export function renderBlock(names: readonly string[]): string {
  const list = writableNames(names)
  if (list.length === 0) return ''
  const lines = [BEGIN_MARKER]
  for (const n of list) lines.push(`0.0.0.0 ${n}`, `:: ${n}`)
  lines.push(END_MARKER)
  return lines.join('\n') + '\n'
}

interface Region {
  start: number
  /** Offset just past the END line's newline (or the end of the text). */
  end: number
}

/** Locate managed blocks (byte offsets). A BEGIN with no END after it is an error: we never guess. */
export function findBlocks(text: string, path = 'hosts file'): Region[] {
  const out: Region[] = []
  let open: number | undefined
  let pos = 0
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos)
    const next = nl < 0 ? text.length : nl + 1
    const line = text.slice(pos, nl < 0 ? text.length : nl).replace(/\r$/, '').trimEnd()
    if (line === BEGIN_MARKER && open === undefined) open = pos
    else if (line === END_MARKER && open !== undefined) {
      out.push({ start: open, end: next })
      open = undefined
    }
    pos = next
  }
  if (open !== undefined) {
    throw errors.badInput(`${path}: "${BEGIN_MARKER}" has no matching end marker; remove the partial block by hand, then apply again`)
  }
  return out
}

/**
 * `text` with the managed block set to `names` (removed when empty). The first existing block is
 * replaced in place, any further ones removed; with none, the block is appended (after a newline
 * if the file did not end in one). Everything else is kept byte for byte.
 */
export function withBlock(text: string, names: readonly string[], path?: string): string {
  const block = renderBlock(names)
  const regions = findBlocks(text, path)
  if (regions.length === 0) {
    if (!block) return text
    return text + (text.length > 0 && !text.endsWith('\n') ? '\n' : '') + block
  }
  let out = text.slice(0, regions[0]!.start) + block
  for (let i = 0; i < regions.length; i++) out += text.slice(regions[i]!.end, regions[i + 1]?.start ?? text.length)
  return out
}

/** Names currently in the managed block(s). */
export function blockNames(text: string, path?: string): string[] {
  const names = new Set<string>()
  for (const r of findBlocks(text, path)) {
    for (const line of text.slice(r.start, r.end).split('\n')) {
      const m = /^(?:0\.0\.0\.0|::)\s+(\S+)\s*$/.exec(line.replace(/\r$/, ''))
      if (m) names.add(m[1]!)
    }
  }
  return [...names].sort()
}

export interface HostsFileOptions {
  /** Test hook: runs after the temp file is written and synced, before the rename. */
  beforeRename?: (tmpPath: string) => Promise<void> | void
}

export interface HostsFile {
  readonly path: string
  /** Make the block hold exactly `names` (no block when empty). Writes only when something changes. */
  apply(names: readonly string[]): Promise<{ changed: boolean }>
  /** Drift between the file and `names` (kind `hosts-block`); empty when it matches. */
  verify(names: readonly string[]): Promise<Drift[]>
  /** Names an apply would add and remove, without writing (for `plan`). */
  plan(names: readonly string[]): Promise<{ add: string[]; remove: string[] }>
  /** Remove the managed block, leaving the rest of the file as it is. */
  remove(): Promise<void>
}

export function createHostsFile(path: string, opts: HostsFileOptions = {}): HostsFile {
  /**
   * Where writes go: the file a symlinked hosts file points at (renaming over the link itself would
   * replace it with a regular file). Resolved on every write: the link may be changed meanwhile.
   */
  async function target(): Promise<{ file: string; dir: string; tmpPrefix: string }> {
    const file = await realpath(path).catch(() => path)
    return { file, dir: dirname(file), tmpPrefix: `.${basename(file)}.egress-guard-` }
  }
  /** Serialise writers within this process: two overlapping applies would race on the rename. */
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn)
    queue = p.catch(() => undefined)
    return p
  }

  // The file is bytes, not UTF-8: a Latin-1 comment or any stray byte outside the managed block must
  // survive a rewrite unchanged. 'latin1' maps each byte to one code unit and back, and everything the
  // block itself holds (markers, punycode names, addresses) is ASCII.
  async function read(): Promise<string> {
    try {
      return await readFile(path, 'latin1')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return ''
      throw errors.fileUnreadable(`${path}: cannot read: ${(e as Error).message}`)
    }
  }

  /** Leftovers of a writer that died between write and rename: ours by name, safe to delete. */
  async function cleanStaleTemps(dir: string, tmpPrefix: string): Promise<void> {
    let list: string[]
    try {
      list = await readdir(dir)
    } catch {
      return
    }
    await Promise.all(list.filter((f) => f.startsWith(tmpPrefix) && f.endsWith('.tmp')).map((f) => unlink(join(dir, f)).catch(() => undefined)))
  }

  async function write(text: string): Promise<void> {
    const { file, dir, tmpPrefix } = await target()
    let mode = 0o644
    let owner: { uid: number; gid: number } | undefined
    try {
      const st = await stat(file)
      mode = st.mode & 0o7777
      owner = { uid: st.uid, gid: st.gid }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw errors.fileUnreadable(`${path}: ${(e as Error).message}`)
    }
    await cleanStaleTemps(dir, tmpPrefix)
    const tmp = join(dir, `${tmpPrefix}${process.pid}-${randomBytes(4).toString('hex')}.tmp`)
    let renamed = false
    try {
      const fh = await open(tmp, 'wx', mode)
      try {
        await fh.writeFile(text, 'latin1')
        // The umask trimmed the mode given to open(); set it exactly, then the owner.
        await fh.chmod(mode)
        if (owner && (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.())) await fh.chown(owner.uid, owner.gid)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await opts.beforeRename?.(tmp)
      try {
        await rename(tmp, file)
        renamed = true
      } catch (e) {
        // A bind-mounted file (a container's /etc/hosts) cannot be replaced by rename (EBUSY):
        // fall back to rewriting it in place, which is not crash-safe but is the only way there.
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e
        await writeFile(file, text, 'latin1')
      }
      // fsync the directory so the rename itself survives a power cut.
      const dh = await open(dir, 'r').catch(() => undefined)
      if (dh) await dh.sync().catch(() => undefined).finally(() => dh.close())
    } catch (e) {
      throw errors.fileUnreadable(`${path}: cannot write: ${(e as Error).message}`)
    } finally {
      if (!renamed) await unlink(tmp).catch(() => undefined)
    }
  }

  return {
    path,
    apply: (names) =>
      serial(async () => {
        const before = await read()
        const after = withBlock(before, names, path)
        if (after === before) return { changed: false }
        await write(after)
        return { changed: true }
      }),
    async verify(names) {
      const text = await read()
      const want = writableNames(names)
      const have = blockNames(text, path)
      if (withBlock(text, names, path) === text) return []
      if (findBlocks(text, path).length === 0) return [{ kind: 'hosts-block', detail: `${path}: managed block missing (${want.length} names expected)` }]
      const add = want.filter((n) => !have.includes(n))
      const rm = have.filter((n) => !want.includes(n))
      return [{ kind: 'hosts-block', detail: `${path}: managed block differs (${add.length} missing, ${rm.length} extra${add.length + rm.length === 0 ? ', edited lines' : ''})` }]
    },
    async plan(names) {
      const text = await read()
      const want = writableNames(names)
      const have = blockNames(text, path)
      return { add: want.filter((n) => !have.includes(n)), remove: have.filter((n) => !want.includes(n)) }
    },
    remove: () =>
      serial(async () => {
        const before = await read()
        const after = withBlock(before, [], path)
        if (after !== before) await write(after)
      }),
  }
}
