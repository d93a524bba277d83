// The one rule for showing text that came from outside (DNS names as they arrived, agent reports,
// reasons, container labels) to a person: the CLI's tables and everything it writes, and the
// dashboard, which loads this file as /ui/printable.js. Plain JavaScript so the browser runs it as
// is and the CLI imports the same file; types in printable.d.ts.

/**
 * Never shown raw: \p{C} (C0 controls, DEL, C1 controls, format characters such as the bidi
 * overrides and isolates U+202A-U+202E and U+2066-U+2069, zero-width characters, the soft hyphen,
 * BOM and tag characters, lone surrogates, private use and unassigned code points) and \p{Z} but the
 * plain space (U+2028/U+2029 line and paragraph separators, no-break and odd-width spaces that fake
 * column alignment). A terminal acts on C0/C1 (colours, titles, OSC 8 links, hidden text); the rest
 * makes text read differently from what it is. Backslash is not doubled: agents send their own
 * control characters already escaped, and `\x1b` should read the same either way (--json is exact).
 */
const HIDDEN = /(?! )[\p{C}\p{Z}]/u
const HIDDEN_ALL = /(?! )[\p{C}\p{Z}]/gu
/** The same, less the newline and tab that lay out a stream. */
const STREAM = /(?![ \n\t])[\p{C}\p{Z}]/u
const STREAM_ALL = /(?![ \n\t])[\p{C}\p{Z}]/gu

/** @type {Record<string, string>} */
const SHORT = { '\t': '\\t', '\n': '\\n', '\r': '\\r' }

/** `\x1b` below U+0100, `\u202e` in the BMP, `\u{e0041}` above it. */
function escapeChar(c) {
  const short = SHORT[c]
  if (short) return short
  const cp = c.codePointAt(0)
  if (cp < 0x100) return `\\x${cp.toString(16).padStart(2, '0')}`
  if (cp < 0x10000) return `\\u${cp.toString(16).padStart(4, '0')}`
  return `\\u{${cp.toString(16)}}`
}

/** True when the text has no hidden character (the API's `printable` format). */
export function isPrintable(text) {
  return !HIDDEN.test(String(text))
}

/** The text with every hidden character written as an escape; the text itself when it has none. */
export function printable(text) {
  const s = String(text)
  return HIDDEN.test(s) ? s.replace(HIDDEN_ALL, escapeChar) : s
}

/**
 * For a whole output stream (the CLI's stdout and stderr): every hidden character but newline and tab
 * as \uXXXX (UTF-16 units). Outside its strings JSON text is ASCII punctuation, digits and
 * whitespace, and \uXXXX is a JSON string escape, so --json output stays valid JSON that parses back
 * to exactly the same value, while a terminal showing it gets no control sequence.
 */
export function terminalSafe(text) {
  const s = String(text)
  if (!STREAM.test(s)) return s
  return s.replace(STREAM_ALL, (c) => {
    let out = ''
    for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`
    return out
  })
}
