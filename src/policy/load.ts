// The I/O edge of the policy core: finds blocklist files, rejects what is not text, and feeds the
// rest to the pure parser. Every failure is a `file:0` Problem, never an exception or a stack trace.
import { open, readdir, readFile, stat } from 'node:fs/promises'
import { isUtf8 } from 'node:buffer'
import { basename, extname, join } from 'node:path'
import type { Entry, Problem } from './types.js'
import { BlocklistParser } from './parse.js'
import type { EntrySink } from './entry-sink.js'
import { ReadError, streamFile } from './load-stream.js'

/** Extensions read from a directory (non-recursively). A file named on the command line is read whatever its name. */
export const BLOCKLIST_EXTENSIONS: readonly string[] = ['.txt', '.list', '.hosts', '.conf']
/** Default size limit per file: far above any real list (a 1M-line list is ~25 MiB). */
export const DEFAULT_MAX_BYTES = 512 * 1024 * 1024
/**
 * Decode big files in pieces cut at newlines: a JavaScript string holds at most ~512 Mi characters,
 * and smaller strings keep the peak memory down.
 */
const CHUNK = 64 * 1024 * 1024
/** Read size of the streaming load (with a sink): big enough that reads cost nothing (~90 reads for a 22 MB list), small enough to stay out of RSS (1 MiB cost 0.8 MiB more RSS at the first answer). */
const STREAM_CHUNK = 256 * 1024

export interface LoadOptions {
  /** Per-file size limit in bytes (default 512 MiB). */
  maxBytes?: number
  now?: Date
  /**
   * Warn about duplicates within and across files (default true). Callers that run buildPolicy anyway
   * can pass false and report its onDuplicate instead, which is cheaper on huge lists (lint does).
   */
  duplicates?: boolean
  /** Receive each entry instead of collecting it in `entries` (then empty); see ParseOptions.onEntry. */
  onEntry?: (e: Entry, file: string, line: number) => void
  /**
   * Decode piece size (default 64 MiB), or with a sink the read size (default 1 MiB); tests set it
   * small to exercise the cuts.
   */
  chunkBytes?: number
  /**
   * Stream instead of reading whole files (the sinkhole's load, see load-stream.ts): plain blocked
   * names go to sink.name() as bytes, every other entry to sink.entry(); `entries` stays empty. Each
   * file is read twice in fixed-size pieces (validation, then lines), never whole, and still contributes
   * nothing if it is not text. No duplicate warnings are made (a sink's table finds duplicates itself):
   * passing `duplicates: true` or `onEntry` together with a sink is a programming error (TypeError).
   */
  sink?: EntrySink
  /**
   * With a sink: called once per file after it passed validation and before its first name or entry,
   * with its number of lines (an upper bound on its sink.name() calls; a hosts line naming several
   * hosts gives several sink.entry() calls) and its size in bytes, so a table can be sized once.
   */
  onFileStart?: (file: string, lines: number, bytes: number) => void
}

export interface Loaded {
  entries: Entry[]
  problems: Problem[]
  /** Every file that was examined, in the order read (failed ones included; their problems say why). */
  files: string[]
  /** With a sink: lines read from the files that loaded (the sum of onFileStart's counts). */
  lines?: number
}

/** Directory members that are blocklists: known extensions, README* skipped, sorted by name (code-unit order). */
export function pickBlocklistFiles(names: readonly string[]): string[] {
  return names
    .filter((n) => !/^readme/i.test(n) && !n.startsWith('.') && BLOCKLIST_EXTENSIONS.includes(extname(n).toLowerCase()))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
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

/**
 * Read blocklist files and directories (directories: see BLOCKLIST_EXTENSIONS, non-recursive, sorted).
 * A file that is missing, unreadable, larger than the limit, or not UTF-8 text (a NUL byte or an invalid
 * sequence) gives one `file:0` problem and contributes nothing; the other files still load. Duplicate
 * warnings span all files.
 */
export async function loadBlocklists(paths: readonly string[], opts: LoadOptions = {}): Promise<Loaded> {
  const sink = opts.sink
  if (sink && (opts.duplicates === true || opts.onEntry)) {
    throw new TypeError('loadBlocklists: a sink makes no duplicate warnings and takes every entry itself (no duplicates: true, no onEntry)')
  }
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES
  const chunk = opts.chunkBytes ?? (sink ? STREAM_CHUNK : CHUNK)
  const now = opts.now ?? new Date()
  const seen = opts.duplicates === false || sink ? false : new Map<string, string>()
  const out: Loaded = { entries: [], problems: [], files: [] }
  if (sink) out.lines = 0
  const done = new Set<string>()

  const streamOne = async (file: string): Promise<void> => {
    const parser = new BlocklistParser(file, { now, seen: false, onEntry: (e, f, l) => sink!.entry(e, f, l) })
    let fh
    try {
      fh = await open(file, 'r')
    } catch (e) {
      out.problems.push(fileProblem(file, 'unreadable', ioMessage(e)))
      return
    }
    try {
      const rejected = await streamFile(fh, file, {
        chunkBytes: chunk,
        maxBytes,
        parser,
        sink: sink!,
        onFileStart: (f, lines, bytes) => {
          out.lines! += lines
          opts.onFileStart?.(f, lines, bytes)
        },
      })
      if (rejected?.code === 'file-too-large') {
        out.problems.push(fileProblem(file, 'file-too-large', `file is ${rejected.bytes} bytes, larger than the limit of ${maxBytes} bytes`))
      } else if (rejected) {
        out.problems.push(fileProblem(file, 'not-text', rejected.nulAt >= 0 ? `not a text file (NUL byte at offset ${rejected.nulAt}); skipped` : 'not a text file (invalid UTF-8); skipped'))
      }
    } catch (e) {
      // A read error (after validation, what was already emitted stays: the disk failed mid-file).
      if (!(e instanceof ReadError)) throw e
      out.problems.push(fileProblem(file, 'unreadable', ioMessage(e.cause)))
    } finally {
      await fh.close().catch(() => {})
    }
    for (const p of parser.problems) out.problems.push(p)
  }

  const loadFile = async (file: string, size: number): Promise<void> => {
    if (done.has(file)) return
    done.add(file)
    out.files.push(file)
    if (size > maxBytes) {
      out.problems.push(fileProblem(file, 'file-too-large', `file is ${size} bytes, larger than the limit of ${maxBytes} bytes`))
      return
    }
    if (sink) return streamOne(file)
    let buf: Buffer
    try {
      buf = await readFile(file)
    } catch (e) {
      out.problems.push(fileProblem(file, 'unreadable', ioMessage(e)))
      return
    }
    if (buf.length > maxBytes) {
      out.problems.push(fileProblem(file, 'file-too-large', `file is ${buf.length} bytes, larger than the limit of ${maxBytes} bytes`))
      return
    }
    const nul = buf.indexOf(0)
    if (nul >= 0) {
      out.problems.push(fileProblem(file, 'not-text', `not a text file (NUL byte at offset ${nul}); skipped`))
      return
    }
    if (!isUtf8(buf)) {
      out.problems.push(fileProblem(file, 'not-text', 'not a text file (invalid UTF-8); skipped'))
      return
    }
    const parser = new BlocklistParser(file, { now, seen, ...(opts.onEntry ? { onEntry: opts.onEntry } : {}) })
    for (let start = 0; start < buf.length; ) {
      // Cut after a newline byte: 0x0a never occurs inside a multi-byte UTF-8 sequence.
      let end = buf.length
      if (buf.length - start > chunk) {
        const nl = buf.indexOf(0x0a, start + chunk)
        end = nl < 0 ? buf.length : nl + 1
      }
      parser.feed(buf.toString('utf8', start, end))
      start = end
    }
    const r = parser.finish()
    // push in a loop: spreading a million-element array into push() overflows the call stack.
    for (const e of r.entries) out.entries.push(e)
    for (const p of r.problems) out.problems.push(p)
  }

  for (const path of paths) {
    let st
    try {
      st = await stat(path)
    } catch (e) {
      out.problems.push(fileProblem(path, 'unreadable', ioMessage(e)))
      continue
    }
    if (st.isDirectory()) {
      let names: string[]
      try {
        names = await readdir(path)
      } catch (e) {
        out.problems.push(fileProblem(path, 'unreadable', ioMessage(e)))
        continue
      }
      for (const name of pickBlocklistFiles(names)) {
        const file = join(path, name)
        let fst
        try {
          fst = await stat(file)
        } catch (e) {
          out.problems.push(fileProblem(file, 'unreadable', ioMessage(e)))
          continue
        }
        if (fst.isFile()) await loadFile(file, fst.size)
      }
    } else if (st.isFile()) {
      await loadFile(path, st.size)
    } else {
      out.problems.push(fileProblem(path, 'unreadable', `not a regular file or directory (${basename(path)})`))
    }
  }
  return out
}
