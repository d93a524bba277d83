// Where a streaming load delivers what it parses: the sinkhole builds its matcher straight from the
// file bytes through this, so a million-line list never becomes a million Entry objects or strings.
import type { Entry } from './types.js'

export interface EntrySink {
  /**
   * A plain blocked name: what BlocklistParser would turn into an Entry with kind 'domain', allow
   * false, mode 'block', no reason, no expiry, no force, source `file:line` and id entryId(e).
   * bytes[start, end) is the name exactly as that Entry's value would be (lower-case ASCII, no
   * trailing dot, no `*.`); `subdomainsOnly` is true for a `*.name` line. The bytes are only valid
   * during the call (the buffer is reused for the next chunk).
   */
  name(bytes: Uint8Array, start: number, end: number, subdomainsOnly: boolean, file: string, line: number): void
  /** Any other entry, exactly as BlocklistParser makes it (onEntry). */
  entry(e: Entry, file: string, line: number): void
}
