// printable(), terminalSafe() and isPrintable(): the one escaping rule the CLI and the dashboard share
// (src/server/ui/printable.js), checked on the sequences that attack a terminal and on every code point.
import t from 'tap'
import { isPrintable, printable, terminalSafe } from '../../src/server/ui/printable.js'
import { formatTable } from '../../src/client/admin-options.js'

const HIDDEN = /(?! )[\p{C}\p{Z}]/u
const ALL_HIDDEN_BUT_LAYOUT = /(?![ \n\t])[\p{C}\p{Z}]/u

t.test('terminal controls are written as escapes', async (t) => {
  t.equal(printable('\x1b]0;pwned\x07'), '\\x1b]0;pwned\\x07', 'OSC title')
  t.equal(printable('\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\'), '\\x1b]8;;https://evil.example/\\x1b\\click\\x1b]8;;\\x1b\\', 'OSC 8 hyperlink')
  t.equal(printable('a\x1b[8mhidden\x1b[0m'), 'a\\x1b[8mhidden\\x1b[0m', 'SGR hidden text')
  t.equal(printable('\u009b31mred'), '\\x9b31mred', 'C1 CSI')
  t.equal(printable('\u0085\u0090\u009d'), '\\x85\\x90\\x9d', 'C1 NEL, DCS, OSC')
  t.equal(printable('nul\0del\x7f'), 'nul\\x00del\\x7f')
  t.equal(printable('a\tb\nc\rd'), 'a\\tb\\nc\\rd', 'layout characters too: a cell is one line')
})

t.test('characters that make text read differently are escaped', async (t) => {
  t.equal(printable('invoice\u202egnp.exe'), 'invoice\\u202egnp.exe', 'bidi override')
  t.equal(printable('\u2066x\u2069\u200e\u200f\u061c'), '\\u2066x\\u2069\\u200e\\u200f\\u061c', 'isolates and marks')
  t.equal(printable('pay\u200bpal\ufeff\u00ad'), 'pay\\u200bpal\\ufeff\\xad', 'zero-width, BOM, soft hyphen')
  t.equal(printable('a\u2028b\u2029c'), 'a\\u2028b\\u2029c', 'line and paragraph separators')
  t.equal(printable('no\u00a0break\u3000wide'), 'no\\xa0break\\u3000wide', 'spaces other than U+0020')
  t.equal(printable('tag\u{e0041}\u{e007f}'), 'tag\\u{e0041}\\u{e007f}', 'tag characters')
  t.equal(printable('pua\ue000 \u0378'), 'pua\\ue000 \\u0378', 'private use and unassigned')
  t.equal(printable('lone\ud800'), 'lone\\ud800', 'lone surrogate')
})

t.test('printable text is left alone', async (t) => {
  for (const s of ['evil.example', 'a b  c', 'résumé', 'e\u0301', '中文 日本語', 'emoji 😀 ✓', 'C:\\temp \\x1b', '', '<img src=x>']) t.equal(printable(s), s, s)
  t.equal(printable(42), '42')
  t.ok(isPrintable('résumé 中文'))
  t.notOk(isPrintable('a\x1b'))
  t.notOk(isPrintable('\u202e'))
})

t.test('every code point in use (a sample of the rest): the output has no hidden character, is idempotent, and JSON through terminalSafe round-trips', async (t) => {
  let leaks = 0
  let notIdempotent = 0
  let jsonLoss = 0
  let streamLeaks = 0
  // Every code point of the planes in use (BMP, SMP, SIP, TIP, SSP: 0-3 and 14); planes 4-13 are
  // unassigned and 15-16 private use, so every 97th of those is enough (and keeps this under a second).
  const used = (cp: number): boolean => cp < 0x40000 || (cp >= 0xe0000 && cp < 0xf0000)
  for (let start = 0; start <= 0x10ffff; start += 0x1000) {
    let s = ''
    for (let cp = start; cp < start + 0x1000 && cp <= 0x10ffff; cp++) if (used(cp) || cp % 97 === 0) s += String.fromCodePoint(cp)
    const p = printable(s)
    if (HIDDEN.test(p)) leaks++
    if (printable(p) !== p) notIdempotent++
    const json = terminalSafe(JSON.stringify({ s }))
    if (ALL_HIDDEN_BUT_LAYOUT.test(json) || /[\n\t]/.test(json)) streamLeaks++
    if ((JSON.parse(json) as { s: string }).s !== s) jsonLoss++
  }
  t.equal(leaks, 0, 'printable leaves no hidden character')
  t.equal(notIdempotent, 0, 'escaping escaped text changes nothing')
  t.equal(streamLeaks, 0, 'JSON through terminalSafe carries no raw hidden character')
  t.equal(jsonLoss, 0, 'and parses back to exactly the same string')
})

t.test('terminalSafe keeps a stream\'s lines and tabs and nothing else', async (t) => {
  t.equal(terminalSafe('a\tb\nc\x1b[2J\u009b\u202e\n'), 'a\tb\nc\\u001b[2J\\u009b\\u202e\n')
  t.equal(terminalSafe('plain text\n'), 'plain text\n')
})

t.test('formatTable: cells escaped, one line each, columns aligned on the escaped text', async (t) => {
  const out = formatTable(['NAME', 'REASON'], [['x\x1b]0;t\x07.evil.example', 'two\nlines'], ['ok.example', 'fine']])
  t.equal(out, [
    'NAME                        REASON',
    'x\\x1b]0;t\\x07.evil.example  two\\nlines',
    'ok.example                  fine',
  ].join('\n') + '\n')
  t.notOk(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/.test(out), 'no raw control character')
})
