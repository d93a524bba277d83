// Streaming load of one blocklist file into an EntrySink: fixed-size reads into one reused buffer,
// plain lines straight from the bytes (fast-line.ts), the rest through the parser. The whole file is
// never in memory, which is what lets the sinkhole load a million-name list in little time and RSS.
import type { FileHandle } from 'node:fs/promises'
import { isUtf8 } from 'node:buffer'
import type { BlocklistParser } from './parse.js'
import { MAX_LINE } from './parse.js'
import type { EntrySink } from './entry-sink.js'
import { NOT_FAST, fastLine, fastNameEnd, fastNameStart, fastSubdomainsOnly } from './fast-line.js'

/**
 * A line whose first LONG_LINE bytes (without any `\r`) are not all of it is longer than MAX_LINE
 * characters whatever they are: a UTF-8 sequence of n bytes is at most n/2 UTF-16 units and at least
 * n/3, so LONG_LINE - 1 = 3 * MAX_LINE + 1 bytes are more than MAX_LINE characters. Such a line is
 * only counted, never kept, so memory stays at one read plus this much.
 */
export const LONG_LINE = 3 * MAX_LINE + 2

/** Why a file contributes nothing (loadBlocklists turns it into its `file:0` problem). */
export type Rejected =
  | { code: 'file-too-large'; bytes: number }
  /** nulAt: the file offset of the first NUL byte, or -1 for invalid UTF-8 (and no NUL). */
  | { code: 'not-text'; nulAt: number }

export interface StreamFileOptions {
  /** Bytes per read (the buffer is this plus LONG_LINE). */
  chunkBytes: number
  maxBytes: number
  /** Gets the lines that are not plain (and their problems); its onEntry should go to sink.entry. */
  parser: BlocklistParser
  sink: EntrySink
  /** After the file passed validation and before its first name or entry: its line count and size. */
  onFileStart?: ((file: string, lines: number, bytes: number) => void) | undefined
}

const BOM = [0xef, 0xbb, 0xbf]

/**
 * Index in b[0, end) where an incomplete UTF-8 sequence at the end starts (`end` if there is none), so
 * validating in pieces cut there gives the answer validating the whole would: a valid text is cut only
 * between sequences. Four continuation bytes in a row are invalid wherever the cut falls.
 */
function utf8Cut(b: Uint8Array, end: number): number {
  let i = end - 1
  const lo = Math.max(0, end - 4)
  while (i >= lo && (b[i]! & 0xc0) === 0x80) i--
  if (i < lo) return end
  const lead = b[i]!
  const need = lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4
  return end - i >= need ? end : i
}

/** UTF-16 code units that the valid UTF-8 in b[start, end) decodes to (a 4-byte sequence is a surrogate pair). */
function utf16Length(b: Uint8Array, start: number, end: number): number {
  let n = 0
  for (let i = start; i < end; i++) {
    const c = b[i]!
    if ((c & 0xc0) !== 0x80) n += c >= 0xf0 ? 2 : 1
  }
  return n
}

/** A failed read, told apart from an exception thrown by the sink or the parser (those are bugs, not problems). */
export class ReadError extends Error {
  override readonly name = 'ReadError'
  constructor(override readonly cause: unknown) {
    super('read failed')
  }
}

async function readAt(fh: FileHandle, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  try {
    return (await fh.read(buf, offset, length, position)).bytesRead
  } catch (e) {
    throw new ReadError(e)
  }
}

interface Scan {
  bytes: number
  /** File offset of the first NUL byte, or -1. */
  nul: number
  utf8: boolean
  lines: number
}

/**
 * Pass 1: size, first NUL, UTF-8 validity and the number of lines, reading the whole file once in
 * pieces. Pieces are cut at a character boundary (an incomplete sequence is carried to the next read),
 * not at a newline: a line may be longer than a piece.
 */
async function scan(fh: FileHandle, buf: Buffer, chunk: number, bom: boolean): Promise<Scan> {
  let pos = 0
  let carry = 0
  let nul = -1
  let utf8 = true
  let newlines = 0
  let last = -1
  for (;;) {
    const bytesRead = await readAt(fh, buf, carry, chunk, pos)
    if (bytesRead === 0) break
    const filled = carry + bytesRead
    const view = buf.subarray(0, filled)
    if (nul < 0) {
      const i = view.indexOf(0, carry)
      if (i >= 0) nul = pos + i - carry
    }
    // indexOf (memchr) per line is about twice as fast as a JavaScript loop over every byte.
    for (let i = view.indexOf(10, carry); i >= 0; i = view.indexOf(10, i + 1)) newlines++
    last = view[filled - 1]!
    pos += bytesRead
    if (utf8) {
      const cut = utf8Cut(view, filled)
      if (!isUtf8(view.subarray(0, cut))) utf8 = false
      buf.copyWithin(0, cut, filled)
      carry = filled - cut
    } else carry = 0
  }
  // What is still carried at the end is a sequence cut short by the end of the file.
  if (carry > 0) utf8 = false
  // feed() counts a last line without a newline, but not the empty "line" after a final newline.
  const content = pos - (bom ? 3 : 0)
  const lines = newlines + (content > 0 && last !== 10 ? 1 : 0)
  return { bytes: pos, nul, utf8, lines }
}

/**
 * Load one open file into `opts.sink` (plain lines) and `opts.parser` (every other line, whose entries
 * its onEntry passes on, and all problems). Returns why the file was rejected before anything was
 * emitted, or undefined when it was loaded. Both passes read through the one open handle, so a list
 * replaced by rename meanwhile is read as it was; one that grows is read up to the size the first pass
 * saw (one rewritten in place between the passes is not re-validated: no tool should do that); a failed read throws ReadError (the caller makes it a problem), and
 * whatever the sink or the parser throws passes through.
 */
export async function streamFile(fh: FileHandle, file: string, opts: StreamFileOptions): Promise<Rejected | undefined> {
  const chunk = Math.max(1, Math.floor(opts.chunkBytes))
  const buf = Buffer.allocUnsafe(chunk + LONG_LINE)
  const bom = (await readAt(fh, buf, 0, 3, 0)) === 3 && buf[0] === BOM[0] && buf[1] === BOM[1] && buf[2] === BOM[2]
  const s = await scan(fh, buf, chunk, bom)
  // The order of today's whole-file checks: size, then NUL, then UTF-8.
  if (s.bytes > opts.maxBytes) return { code: 'file-too-large', bytes: s.bytes }
  if (s.nul >= 0) return { code: 'not-text', nulAt: s.nul }
  if (!s.utf8) return { code: 'not-text', nulAt: -1 }
  opts.onFileStart?.(file, s.lines, s.bytes)

  const { parser, sink } = opts
  const lines: Lines = { file, parser, sink, lineNo: 0 }

  // Pass 2. buf[0, filled) holds the unfinished line carried over plus the latest read; a carried line
  // is shorter than LONG_LINE, so there is always room for a full read behind it.
  let pos = bom ? 3 : 0
  let filled = 0
  /** >= 0 while inside a line known to be too long: its length so far, in UTF-16 code units. */
  let longChars = -1
  let longLast = 0
  let lineNo = 0
  while (pos < s.bytes) {
    const bytesRead = await readAt(fh, buf, filled, Math.min(chunk, s.bytes - pos), pos)
    if (bytesRead === 0) break // the file shrank since pass 1
    pos += bytesRead
    filled += bytesRead
    const view = buf.subarray(0, filled)
    let start = 0
    if (longChars >= 0) {
      const nl = view.indexOf(10)
      const stop = nl < 0 ? filled : nl
      longChars += utf16Length(view, 0, stop)
      if (stop > 0) longLast = view[stop - 1]!
      if (nl < 0) {
        filled = 0
        continue
      }
      parser.longLineAt(longChars - (longLast === 13 ? 1 : 0), ++lineNo)
      longChars = -1
      start = nl + 1
    }
    lines.lineNo = lineNo
    start = completeLines(lines, view, start)
    lineNo = lines.lineNo
    const tail = filled - start
    if (tail >= LONG_LINE) {
      longChars = utf16Length(view, start, filled)
      longLast = view[filled - 1]!
      filled = 0
    } else {
      buf.copyWithin(0, start, filled)
      filled = tail
    }
  }
  if (longChars >= 0) parser.longLineAt(longChars - (longLast === 13 ? 1 : 0), ++lineNo)
  else if (filled > 0) {
    lines.lineNo = lineNo + 1
    oneLine(lines, buf, 0, filled)
  }
  return undefined
}

/** Where pass 2's lines go, and the number of the last line handed out. */
interface Lines {
  file: string
  parser: BlocklistParser
  sink: EntrySink
  lineNo: number
}

/**
 * Every complete line of b from `start` on (each ends at a `\n`); returns where the unfinished rest
 * starts. Synchronous and free of closures so that the per-line loop stays in optimised code, with
 * the line number in a local.
 */
function completeLines(l: Lines, b: Buffer, start: number): number {
  const { file, parser, sink } = l
  let lineNo = l.lineNo
  for (let nl = b.indexOf(10, start); nl >= 0; nl = b.indexOf(10, start)) {
    lineNo++
    const r = parser.commentPending ? NOT_FAST : fastLine(b, start, nl)
    if (r !== NOT_FAST) sink.name(b, start + fastNameStart(r), start + fastNameEnd(r), fastSubdomainsOnly(r), file, lineNo)
    else parser.lineAt(b.toString('utf8', start, nl > start && b[nl - 1] === 13 ? nl - 1 : nl), lineNo)
    start = nl + 1
  }
  l.lineNo = lineNo
  return start
}

/** One line b[start, end) whose number is already in l.lineNo (the last line of a file without a final newline). */
function oneLine(l: Lines, b: Buffer, start: number, end: number): void {
  const r = l.parser.commentPending ? NOT_FAST : fastLine(b, start, end)
  if (r !== NOT_FAST) l.sink.name(b, start + fastNameStart(r), start + fastNameEnd(r), fastSubdomainsOnly(r), l.file, l.lineNo)
  else l.parser.lineAt(b.toString('utf8', start, end > start && b[end - 1] === 13 ? end - 1 : end), l.lineNo)
}
