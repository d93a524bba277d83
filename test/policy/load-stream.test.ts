// loadBlocklists with a sink (the streaming, byte-level load) against the whole-file load: same
// entries in the same order, same problems, whatever the read size; the fast path really fires.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadBlocklists, type LoadOptions } from '../../src/policy/load.js'
import { LONG_LINE, ReadError, streamFile } from '../../src/policy/load-stream.js'
import { BlocklistParser } from '../../src/policy/parse.js'
import { open } from 'node:fs/promises'
import { MAX_LINE } from '../../src/policy/parse.js'
import { entryId } from '../../src/policy/merge.js'
import type { EntrySink } from '../../src/policy/entry-sink.js'
import type { Entry, Problem } from '../../src/policy/types.js'
import { generateListParts } from '../../bench/lib/gen-list.js'
import { lineGen } from './lines-gen.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20261122)
const NOW = new Date('2026-06-01T12:00:00Z')
const CHUNKS = [7, 64, 1000, undefined]

type Tap = { teardown: (fn: () => void) => void }
function tempDir(t: Tap): string {
  const d = mkdtempSync(join(tmpdir(), `eg-stream-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

interface Recorded {
  entries: Entry[]
  names: number
  starts: Array<[string, number, number]>
  /** A call whose file/line did not match the entry's source, or came before its onFileStart. */
  misfits: string[]
}

/** A sink that turns name() calls back into the Entry BlocklistParser would have made. */
function recorder(): { sink: EntrySink; rec: Recorded; onFileStart: NonNullable<LoadOptions['onFileStart']> } {
  const rec: Recorded = { entries: [], names: 0, starts: [], misfits: [] }
  const started = new Set<string>()
  const sink: EntrySink = {
    name(bytes, start, end, subdomainsOnly, file, line) {
      rec.names++
      if (!started.has(file)) rec.misfits.push(`name before onFileStart: ${file}:${line}`)
      const e: Entry = { kind: 'domain', value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8', start, end), allow: false, mode: 'block', source: `${file}:${line}`, id: '' }
      if (subdomainsOnly) e.subdomainsOnly = true
      e.id = entryId(e)
      rec.entries.push(e)
    },
    entry(e, file, line) {
      if (e.source !== `${file}:${line}`) rec.misfits.push(`entry ${e.source} reported as ${file}:${line}`)
      if (!started.has(file)) rec.misfits.push(`entry before onFileStart: ${file}:${line}`)
      rec.entries.push(e)
    },
  }
  const onFileStart = (file: string, lines: number, bytes: number): void => {
    started.add(file)
    rec.starts.push([file, lines, bytes])
  }
  return { sink, rec, onFileStart }
}

/** Loads `paths` both ways and asserts the same entries (same order) and problems; returns the streamed record. */
async function same(t: Tap & { equal: Function; strictSame: Function; same: Function }, paths: string[], chunkBytes: number | undefined, label: string): Promise<Recorded> {
  const whole = await loadBlocklists(paths, { now: NOW, duplicates: false })
  const { sink, rec, onFileStart } = recorder()
  const streamed = await loadBlocklists(paths, { now: NOW, sink, onFileStart, ...(chunkBytes ? { chunkBytes } : {}) })
  t.same(rec.misfits, [], `${label}: file/line passed with each call, after onFileStart`)
  t.equal(streamed.entries.length, 0, `${label}: entries go to the sink only`)
  t.equal(rec.entries.length, whole.entries.length, `${label}: entry count`)
  const n = Math.min(rec.entries.length, whole.entries.length)
  let i = 0
  while (i < n && JSON.stringify(rec.entries[i]) === JSON.stringify(whole.entries[i])) i++
  // Compare the first differing entry (or none) field by field: a whole-array diff would be unreadable.
  t.strictSame(rec.entries[i], whole.entries[i], `${label}: entries identical, in order (first difference at ${i})`)
  t.strictSame(streamed.problems, whole.problems, `${label}: problems identical`)
  t.same(streamed.files, whole.files, `${label}: files`)
  return rec
}

function problemsOf(ps: Problem[]): string[] {
  return ps.map((p) => `${p.line}:${p.code}`)
}

t.test('differential: generated and mutated lines, CRLF, BOM, comments, across read sizes', async (t) => {
  const d = tempDir(t)
  const g = lineGen(SEED)
  const files: string[] = []
  for (let f = 0; f < 8; f++) {
    const lines: string[] = []
    const count = 2500 + Math.floor(g.r() * 2500)
    for (let i = 0; i < count; i++) lines.push(g.any())
    // Line ends: LF, CRLF, mixed; with or without a BOM and a final newline.
    const crlf = f % 3
    let text = ''
    for (let i = 0; i < lines.length; i++) {
      const end = crlf === 0 ? '\n' : crlf === 1 ? '\r\n' : g.r() < 0.5 ? '\n' : '\r\n'
      text += lines[i] + (i < lines.length - 1 || f % 2 === 0 ? end : '')
    }
    if (f === 1 || f === 4) text = '\ufeff' + text
    const file = join(d, `f${f}.txt`)
    writeFileSync(file, text)
    files.push(file)
  }
  let names = 0
  let total = 0
  for (const chunk of CHUNKS) {
    // 7-byte reads are one promise each: three files (still every line form) keep the test quick.
    const rec = await same(t, chunk === 7 ? files.slice(0, 3) : files, chunk, `chunkBytes ${chunk ?? 'default'}`)
    names = rec.names
    total = rec.entries.length
  }
  t.ok(total > 10_000, `${total} entries compared`)
  t.ok(names > total * 0.4, `${names} of ${total} entries came through the fast path`)
})

t.test('a generated list: the fast path takes most lines, and onFileStart counts lines and bytes first', async (t) => {
  const d = tempDir(t)
  const list = generateListParts({ domains: 20_000, cidrs: 2_000, seed: SEED })
  const file = join(d, 'gen.txt')
  writeFileSync(file, list.text)
  const rec = await same(t, [file], 4096, 'generated list')
  const lines = list.text.split('\n').length - 1
  t.same(rec.starts, [[file, lines, Buffer.byteLength(list.text)]])
  t.ok(rec.names > rec.entries.length * 0.85, `${rec.names} of ${rec.entries.length} entries through the fast path`)
  const r = await loadBlocklists([file], { sink: recorder().sink })
  t.equal(r.lines, lines, 'Loaded.lines')
})

t.test('hosts-file local names with a trailing dot are skipped on the streaming path too (the sinkhole loads this way)', async (t) => {
  const d = tempDir(t)
  const file = join(d, 'hosts.txt')
  writeFileSync(file, '127.0.0.1 localhost.\n0.0.0.0 localhost.localdomain.\n0.0.0.0 ads.example\n')
  const rec = await same(t, [file], undefined, 'local names')
  t.same(rec.entries.map((e) => e.value), ['ads.example'], 'localhost. and localhost.localdomain. are skipped')
  const r = await loadBlocklists([file], { now: NOW, sink: recorder().sink })
  t.same(r.problems.map((p) => p.code), ['hosts-local-name', 'hosts-local-name'])
})

t.test('a comment directly above a plain line becomes its reason (slow path); a blank line or `#` alone does not', async (t) => {
  const d = tempDir(t)
  const file = join(d, 'c.txt')
  writeFileSync(file, '# dropper\na.example\nb.example\n# gone\n\nc.example\n#\nd.example\n! adblock note\n||e.example^\n')
  const { sink, rec } = recorder()
  await loadBlocklists([file], { now: NOW, sink })
  t.same(rec.entries.map((e) => [e.value, e.reason]), [['a.example', 'dropper'], ['b.example', undefined], ['c.example', undefined], ['d.example', undefined], ['e.example', 'adblock note']])
  t.equal(rec.names, 3, 'b, c and d are plain')
  for (const chunk of CHUNKS) await same(t, [file], chunk, `comments, chunk ${chunk}`)
})

t.test('a NUL byte or invalid UTF-8 in the middle: nothing from that file, the other file loads', async (t) => {
  const d = tempDir(t)
  const good = join(d, 'good.txt')
  writeFileSync(good, 'good.example\n0.0.0.0 other.example\n')
  const body = Array.from({ length: 3000 }, (_, i) => `n${i}.example`).join('\n')
  const nul = join(d, 'nul.txt')
  writeFileSync(nul, Buffer.concat([Buffer.from(body + '\n'), Buffer.from([0x61, 0x00, 0x0a]), Buffer.from(body + '\n')]))
  const latin1 = join(d, 'latin1.txt')
  writeFileSync(latin1, Buffer.concat([Buffer.from(body + '\n'), Buffer.from('b\xfccher.example\n', 'latin1'), Buffer.from(body)]))
  // A truncated sequence at the very end, and a 4-byte sequence split by every read size.
  const cut = join(d, 'cut.txt')
  writeFileSync(cut, Buffer.concat([Buffer.from(body + '\n\u{1f600}.example\n'), Buffer.from([0xf0, 0x9f, 0x98])]))
  const both = join(d, 'both.txt')
  writeFileSync(both, Buffer.concat([Buffer.from([0xff, 0x0a]), Buffer.from(body), Buffer.from([0x00])]))
  for (const chunk of CHUNKS) {
    const { sink, rec } = recorder()
    const r = await loadBlocklists([nul, good, latin1, cut, both], { now: NOW, sink, ...(chunk ? { chunkBytes: chunk } : {}) })
    t.same(rec.entries.map((e) => e.value), ['good.example', 'other.example'], `chunk ${chunk}: only the good file's entries`)
    t.same(r.problems.map((p) => `${p.file.slice(d.length + 1)}:${p.line}: ${p.message}`), [
      `nul.txt:0: not a text file (NUL byte at offset ${body.length + 2}); skipped`,
      'latin1.txt:0: not a text file (invalid UTF-8); skipped',
      'cut.txt:0: not a text file (invalid UTF-8); skipped',
      `both.txt:0: not a text file (NUL byte at offset ${body.length + 2}); skipped`,
    ], 'the same file:0 problems as the whole-file load, NUL first')
    await same(t, [nul, good, latin1, cut, both], chunk, `not text, chunk ${chunk}`)
  }
})

t.test('a line longer than MAX_LINE spanning reads: line-too-long at its line, later lines still load', async (t) => {
  const d = tempDir(t)
  const emoji = '\u{1f600}' // 4 bytes, 2 UTF-16 units
  const lines = [
    'first.example',
    'x'.repeat(MAX_LINE), // exactly the limit: not too long (an invalid name)
    'y'.repeat(MAX_LINE + 1), // decoded, then rejected by the parser
    'ü'.repeat(MAX_LINE + 5), // 2 bytes each, still under LONG_LINE bytes
    emoji.repeat(2100), // 8400 bytes, 4200 units: too long, decoded
    emoji.repeat(1500), // 6000 bytes but 3000 units: not too long
    'z'.repeat(LONG_LINE + 10), // counted, never kept
    'ü'.repeat(LONG_LINE) + '\r', // counted, its \r not
    emoji.repeat(LONG_LINE), // counted as 2 units per 4 bytes
    'a'.repeat(100_000), // far more than most reads
    '# why',
    'after.example',
    '0.0.0.0 hosts.example',
  ]
  const file = join(d, 'long.txt')
  writeFileSync(file, lines.join('\n') + '\n' + 'q'.repeat(LONG_LINE * 2)) // and one at the end without a newline
  for (const chunk of [7, 64, 5000, undefined]) {
    const rec = await same(t, [file], chunk, `long lines, chunk ${chunk}`)
    t.same(rec.entries.map((e) => `${e.source.slice(d.length + 1)} ${e.value} ${e.reason ?? ''}`), ['long.txt:1 first.example ', 'long.txt:12 after.example why', 'long.txt:13 hosts.example '])
  }
  const { sink } = recorder()
  const r = await loadBlocklists([file], { now: NOW, sink, chunkBytes: 64 })
  t.same(problemsOf(r.problems), ['2:label-too-long', '3:line-too-long', '4:line-too-long', '5:line-too-long', '6:label-too-long', '7:line-too-long', '8:line-too-long', '9:line-too-long', '10:line-too-long', '14:line-too-long'])
  t.match(r.problems[8]!.message, `line is 100000 characters long`)
  t.match(r.problems[7]!.message, `line is ${LONG_LINE * 2} characters long`)
})

t.test('files that are missing, too big, empty, a BOM only, or a directory', async (t) => {
  const d = tempDir(t)
  writeFileSync(join(d, 'a.txt'), 'a.example\n')
  writeFileSync(join(d, 'big.txt'), 'x.example\n'.repeat(100))
  writeFileSync(join(d, 'empty.txt'), '')
  writeFileSync(join(d, 'bom.txt'), '\ufeff')
  writeFileSync(join(d, 'bomline.txt'), '\ufeffbom.example')
  const paths = [d, join(d, 'missing.txt'), join(d, 'a.txt')]
  for (const chunk of [1, 2, 7, undefined]) {
    const whole = await loadBlocklists(paths, { now: NOW, duplicates: false, maxBytes: 500 })
    const { sink, rec } = recorder()
    const r = await loadBlocklists(paths, { now: NOW, sink, maxBytes: 500, ...(chunk ? { chunkBytes: chunk } : {}) })
    t.strictSame(r.problems, whole.problems, `chunk ${chunk}`)
    t.strictSame(rec.entries, whole.entries)
    t.same(r.files, whole.files)
    t.equal(rec.names, 2)
  }
})

t.test('a sink with duplicate warnings or onEntry is a programming error', async (t) => {
  const { sink } = recorder()
  await t.rejects(loadBlocklists([], { sink, duplicates: true }), TypeError)
  await t.rejects(loadBlocklists([], { sink, onEntry: () => {} }), TypeError)
})

t.test('a failed read is a ReadError (a problem for loadBlocklists); what the sink throws is not swallowed', async (t) => {
  const d = tempDir(t)
  const fh = await open(d, 'r') // a directory opens, and its reads fail with EISDIR
  t.teardown(() => fh.close().catch(() => {}))
  const { sink } = recorder()
  await t.rejects(streamFile(fh, d, { chunkBytes: 64, maxBytes: 1000, parser: new BlocklistParser(d), sink }), ReadError)
  const file = join(d, 'a.txt')
  writeFileSync(file, 'a.example\n')
  const bad = new Error('sink bug')
  await t.rejects(loadBlocklists([file], { sink: { name: () => { throw bad }, entry: () => {} } }), bad)
})
