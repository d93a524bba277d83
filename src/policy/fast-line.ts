// Byte-level recogniser for the plain lines that make up almost all of a big blocklist, so the
// streaming load hands their names to the sink without decoding a string or building an Entry.
import { HOSTS_LOCAL_NAMES, MAX_LABEL, MAX_NAME } from './names.js'
import { MAX_LINE } from './parse.js'

/** fastLine's answer for every line it does not take: the caller runs the parser on it. */
export const NOT_FAST = -1

// Result layout (a non-negative int, so nothing is allocated per line): name start relative to the
// line start in bits 14.., name end relative to the line start in bits 1..13, subdomainsOnly in bit 0.
// Both offsets are <= MAX_LINE (4096) because longer lines are never fast: 13 bits hold 0..8191.
const END_BITS = 13
const END_MASK = (1 << END_BITS) - 1
const START_SHIFT = END_BITS + 1

/** Where the name starts, relative to the line start given to fastLine. */
export const fastNameStart = (r: number): number => r >>> START_SHIFT
/** Where the name ends (exclusive), relative to the line start given to fastLine. */
export const fastNameEnd = (r: number): number => (r >>> 1) & END_MASK
/** The line was `*.name`: names under it only. */
export const fastSubdomainsOnly = (r: number): boolean => (r & 1) === 1

/**
 * The names of HOSTS_LOCAL_NAMES that would otherwise pass as plain names (they have a dot), as bytes.
 * The parser skips them with a warning on a hosts line, so the fast path must leave them alone.
 */
const LOCAL_DOTTED: readonly Uint8Array[] = [...HOSTS_LOCAL_NAMES]
  .filter((n) => n.includes('.'))
  .map((n) => Uint8Array.from(n, (c) => c.charCodeAt(0)))

const SPACE = 32
const TAB = 9
const DOT = 46
const HYPHEN = 45
const STAR = 42
const PIPE = 124
const CARET = 94
const CR = 13

/** `0.0.0.0` and `127.0.0.1` as bytes: the two hosts-file sink addresses real lists use. */
const HOSTS_ZERO = Uint8Array.from('0.0.0.0', (c) => c.charCodeAt(0))
const HOSTS_LOOPBACK = Uint8Array.from('127.0.0.1', (c) => c.charCodeAt(0))

function startsWith(b: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (b[start + i] !== prefix[i]) return false
  return true
}

/**
 * One line's bytes b[start, end) (without its `\n`; one trailing `\r` is allowed, as the parser drops
 * it). Returns NOT_FAST unless BlocklistParser would turn exactly this line into exactly one plain
 * entry with no problem or warning: kind 'domain', blocked, no allow, reason, expiry or force. Else the
 * name's position (see fastNameStart/fastNameEnd/fastSubdomainsOnly), with one trailing dot and a
 * leading `*.` already left out, so the bytes are that entry's value.
 *
 * Taken: `name`, `*.name`, `0.0.0.0 name` and `127.0.0.1 name` (one run of spaces or tabs, one name),
 * `||name^` and `||name^|`. Everything else is the parser's, including lines it would accept but that
 * are rare (upper case, surrounding blanks, `||name` without `^`, other sink addresses), and every
 * name it would warn about (a single label, a hosts-file local name). The caller must also check that
 * no comment is pending (BlocklistParser.commentPending): it would become this entry's reason.
 *
 * The name checks mirror names.ts checkLabels (a-z 0-9 - _, labels 1..63 without a leading or trailing
 * hyphen, at most 253 characters, last label not all digits) plus at least two labels (bare-tld).
 */
export function fastLine(b: Uint8Array, start: number, end: number): number {
  let e = end
  if (e > start && b[e - 1] === CR) e--
  if (e - start > MAX_LINE || e === start) return NOT_FAST
  let p = start
  let hosts = false
  const c0 = b[p]
  if (c0 === PIPE) {
    // Adblock: checkValue strips `^|` or `^` after `||`; a `$` (options) is not a name character.
    if (e - p < 4 || b[p + 1] !== PIPE) return NOT_FAST
    p += 2
    if (b[e - 1] === PIPE) {
      if (b[e - 2] !== CARET) return NOT_FAST
      e -= 2
    } else if (b[e - 1] === CARET) e--
    else return NOT_FAST
  } else if (c0 === 48 /* 0 */ || c0 === 49 /* 1 */) {
    // `0.0.0.0 name`: an address and one name. A line like `0day.example` is a bare name.
    const addr = startsWith(b, p, e, HOSTS_ZERO) ? HOSTS_ZERO.length : startsWith(b, p, e, HOSTS_LOOPBACK) ? HOSTS_LOOPBACK.length : 0
    if (addr > 0 && p + addr < e && (b[p + addr] === SPACE || b[p + addr] === TAB)) {
      p += addr + 1
      while (p < e && (b[p] === SPACE || b[p] === TAB)) p++
      hosts = true
    }
  }
  // normalizeName: one trailing dot goes, then a leading `*.` (stripping `*.` first gives the same
  // result whenever anything is left, and an empty rest is rejected either way).
  let sub = 0
  if (e - p >= 2 && b[p] === STAR && b[p + 1] === DOT) {
    sub = 1
    p += 2
  }
  if (e > p && b[e - 1] === DOT) e--
  const n = e - p
  if (n === 0 || n > MAX_NAME) return NOT_FAST
  let labelStart = p
  let labels = 1
  let numeric = true
  for (let i = p; i < e; i++) {
    const c = b[i]!
    if (c === DOT) {
      const len = i - labelStart
      if (len === 0 || len > MAX_LABEL || b[labelStart] === HYPHEN || b[i - 1] === HYPHEN) return NOT_FAST
      labels++
      labelStart = i + 1
      numeric = true
    } else if ((c >= 97 && c <= 122) || c === HYPHEN || c === 95 /* _ */) {
      numeric = false
    } else if (c < 48 || c > 57) {
      return NOT_FAST // anything else, including blanks, `#`, `;`, `$`, `^`, `*`, upper case, non-ASCII
    }
  }
  const len = e - labelStart
  if (len === 0 || len > MAX_LABEL || b[labelStart] === HYPHEN || b[e - 1] === HYPHEN) return NOT_FAST
  // A numeric last label is an error (a broken address); a single label is a bare-tld warning.
  if (numeric || labels < 2) return NOT_FAST
  // The parser compares the raw token (before any stripping) with HOSTS_LOCAL_NAMES; leaving every
  // spelling of those names to it is simpler and still exact.
  if (hosts) {
    for (const local of LOCAL_DOTTED) {
      if (local.length === n && startsWith(b, p, e, local)) return NOT_FAST
    }
  }
  return ((p - start) << START_SHIFT) | ((e - start) << 1) | sub
}
