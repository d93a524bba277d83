// The sinkhole builds its matcher straight from the files' bytes (loadBlocklists with a sink into a
// MatcherBuilder); the agent and `match` build from parsed entries. Both must give the same verdicts,
// entries included (source, id, reason), for every line form, duplicates and limits of the inline form.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { buildMatcher, MatcherBuilder, type CompactMatcher } from '../../src/policy/matcher.js'
import { loadBlocklists } from '../../src/policy/load.js'
import { parseBlocklist } from '../../src/policy/parse.js'
import { prng } from '../helpers/prng.js'
import type { Verdict } from '../../src/policy/types.js'

const NOW = new Date('2026-06-15T12:00:00Z')

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), `eg-mbuild-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

async function streamed(files: string[], chunkBytes?: number): Promise<{ m: CompactMatcher; count: number; lines: number }> {
  const b = new MatcherBuilder({ now: NOW })
  let lines = 0
  await loadBlocklists(files, { now: NOW, duplicates: false, sink: b, onFileStart: (_f, n, bytes) => { lines += n; b.reserve(n, bytes) }, ...(chunkBytes ? { chunkBytes } : {}) })
  return { m: b.build(), count: b.count, lines }
}

function fromEntries(files: Array<[string, string]>): CompactMatcher {
  return buildMatcher(files.flatMap(([path, text]) => parseBlocklist(text, path, { now: NOW, seen: false }).entries), { now: NOW })
}

function compare(t: Test, a: CompactMatcher, b: CompactMatcher, names: string[]): number {
  let hits = 0
  const bad: unknown[] = []
  // Compared as plain {action, entry}: an inline entry's Verdict builds `entry` when it is read.
  const plain = (v: Verdict | undefined) => v && { action: v.action, entry: v.entry }
  for (const q of names) {
    const x = plain(a.matchName(q))
    const y = plain(b.matchName(q))
    if (x) hits++
    if (!isDeepStrictEqual(x, y)) bad.push({ q, streamed: x, parsed: y })
  }
  t.same(bad.slice(0, 3), [], 'streamed and parsed matchers agree, whole entries included')
  return hits
}

t.test('every line form, duplicates and comments: streamed == parsed', async (t) => {
  const d = dir()
  const a = [
    '# a comment becomes the next line\'s reason', 'reasoned.example', 'plain.example', '*.wild.example', '0.0.0.0 hosts.example',
    '127.0.0.1 other-hosts.example', '||adblock.example^', '@@ok.plain.example', 'alert.example mode=alert', 'dup.example',
    'dup.example # second, with a reason', 'later.example # reason first', 'later.example', 'EXAMPLE-UPPER.Example',
    'trailing-dot.example.', 'old.example expires=2001-01-01', 'new.example expires=2999-01-01', '*.both.example', 'both.example',
    '0.0.0.0 multi1.example multi2.example', '203.0.113.0/24', 'bücher.example',
  ].join('\n')
  const b = ['dup.example # from b', 'plain.example', '@@*.wild.example'].join('\r\n')
  writeFileSync(join(d, 'a.txt'), a)
  writeFileSync(join(d, 'b.txt'), b)
  const s = await streamed([join(d, 'a.txt'), join(d, 'b.txt')])
  const p = fromEntries([[join(d, 'a.txt'), a], [join(d, 'b.txt'), b]])
  const names = ['reasoned.example', 'plain.example', 'x.plain.example', 'ok.plain.example', 'wild.example', 'a.wild.example', 'hosts.example', 'other-hosts.example',
    'adblock.example', 'www.adblock.example', 'alert.example', 'dup.example', 'later.example', 'example-upper.example', 'trailing-dot.example', 'old.example',
    'new.example', 'both.example', 'x.both.example', 'multi1.example', 'multi2.example', 'xn--bcher-kva.example', 'free.example']
  const hits = compare(t, s.m, p, names)
  t.equal(hits, 20, 'the listed names are found (the comparison is not vacuous)')
  t.equal(s.m.matchName('dup.example')?.entry.source, `${join(d, 'a.txt')}:10`, 'a name listed twice: the first line decides')
  t.equal(s.m.matchName('dup.example')?.entry.reason, undefined, 'and it had no reason')
  t.equal(s.m.matchName('later.example')?.entry.reason, 'reason first')
  t.equal(s.m.matchName('reasoned.example')?.entry.reason, "a comment becomes the next line's reason")
  t.equal(s.m.matchName('a.wild.example')?.action, 'allow', 'an allow in another file wins')
  t.equal(s.m.matchIp('203.0.113.9')?.action, 'block')
  t.ok(s.m.inlineCount >= 8, `plain lines are kept inline (${s.m.inlineCount})`)
})

t.test('a generated list, with lines across read chunks: streamed == parsed', async (t) => {
  const d = dir()
  const r = prng(5)
  const labels = ['ads', 'cdn', 'x-1', 'evil', 'track', 'a', 'b2', 'img']
  const lines: string[] = []
  const names: string[] = []
  for (let i = 0; i < 4000; i++) {
    const n = `${labels[Math.floor(r() * 8)]}${Math.floor(r() * 300)}.${labels[Math.floor(r() * 8)]}.example`
    names.push(n, `www.${n}`, `no${n}`)
    const x = r()
    lines.push(x < 0.5 ? n : x < 0.6 ? `*.${n}` : x < 0.7 ? `0.0.0.0 ${n}` : x < 0.8 ? `||${n}^` : x < 0.85 ? `@@${n}` : x < 0.9 ? `${n} # r${i}` : x < 0.95 ? `# c${i}\n${n}` : `${n} mode=alert`)
  }
  const text = lines.join('\n') + '\n'
  writeFileSync(join(d, 'gen.txt'), text)
  const p = fromEntries([[join(d, 'gen.txt'), text]])
  for (const chunk of [97, 4096, undefined]) {
    const s = await streamed([join(d, 'gen.txt')], chunk)
    const hits = compare(t, s.m, p, names)
    t.ok(hits > 4000, `chunk ${chunk ?? 'default'}: names hit (${hits}) and miss`)
    t.ok(s.m.inlineCount > 1500, `chunk ${chunk ?? 'default'}: most entries inline (${s.m.inlineCount})`)
    t.ok(s.lines >= 4000, 'onFileStart reported the line count')
  }
})

t.test('beyond the inline form: line numbers over 2^22 and more than 63 files take table rows, still exact', async (t) => {
  const entries = []
  for (let f = 0; f < 70; f++) {
    const text = `file${f}.example\n`
    entries.push(...parseBlocklist(text, `lists/f${f}.txt`, { now: NOW, seen: false }).entries)
  }
  const far = parseBlocklist('far.example\n', 'lists/far.txt', { now: NOW, seen: false }).entries[0]!
  entries.push({ ...far, source: 'lists/far.txt:5000000' })
  const m = buildMatcher(entries, { now: NOW })
  for (let f = 0; f < 70; f++) t.equal(m.matchName(`www.file${f}.example`)?.entry.source, `lists/f${f}.txt:1`)
  t.equal(m.matchName('far.example')?.entry.source, 'lists/far.txt:5000000')
  t.ok(m.inlineCount > 0 && m.inlineCount < 71, `some inline (${m.inlineCount}), some not`)
  const b = new MatcherBuilder({ now: NOW })
  const bytes = Buffer.from('xx streamed.example yy')
  b.name(bytes, 3, 19, false, 'lists/big.txt', 4_194_304)
  b.name(bytes, 3, 19, true, 'lists/big.txt', 4_194_305)
  const s = b.build()
  t.equal(s.matchName('streamed.example')?.entry.source, 'lists/big.txt:4194304', 'a line past the inline limit keeps its number')
  t.equal(s.matchName('a.streamed.example')?.entry.source, 'lists/big.txt:4194304', 'the first entry of the chain decides')
  t.equal(s.inlineCount, 0)
})

t.test('the entry of an inline entry is built when read, kept by its verdict only', async (t) => {
  const m = fromEntries([['a.txt', 'one.example\ntwo.example\n']])
  const v = m.matchName('one.example')!
  t.equal(v.action, 'block')
  t.ok(Object.isFrozen(v.entry), 'frozen: read-only for every caller')
  t.equal(v.entry, v.entry, 'built once per verdict')
  t.same(m.matchName('www.one.example')!.entry, v.entry, 'the same entry for the same deciding line')
  t.not(m.matchName('www.one.example')!.entry, v.entry, 'but not retained by the matcher (it dies with its verdict)')
  t.equal(m.matchName('two.example')!.entry.value, 'two.example')
  t.same(Object.keys(v), ['action'], 'nothing else is enumerable (the matcher is a private field)')
  t.same(JSON.parse(JSON.stringify(v)), { action: 'block', entry: { ...v.entry } }, 'JSON carries the entry')
  t.equal(m.matchName('two.example')?.entry.id, parseBlocklist('two.example\n', 'a.txt', { seen: false }).entries[0]!.id, 'the id is the derived one')
})

t.test('the name table grows from nothing: bytes and strings intern to the same keys, duplicates once', async (t) => {
  const { DomainTable } = await import('../../src/policy/domain-table.js')
  const d = new DomainTable(1, 1)
  const r = prng(9)
  const names: string[] = []
  for (let i = 0; i < 5000; i++) names.push(`n${Math.floor(r() * 3000)}.x${i % 7}.example`)
  const keys = new Map<string, number>()
  const buf = Buffer.from(' ' + names.join(' ').toUpperCase() + ' ', 'latin1')
  let at = 1
  for (const n of names) {
    const k = d.internBytes(buf, at, at + n.length)
    at += n.length + 1
    if (keys.has(n)) t.equal(k, keys.get(n), `a repeated name gets its first key (${n})`)
    keys.set(n, k)
  }
  t.equal(d.size, keys.size, 'one key per distinct name')
  for (const [n, k] of keys) {
    if (d.intern(n) !== k) t.fail(`intern(${n}) disagrees with internBytes`)
    if (d.value(k) !== n) t.fail(`value(${k}) is ${d.value(k)}, not ${n}`)
  }
  t.equal(d.find('nope.example', 0, 12, DomainTable.hashOf('nope.example')), -1, 'an absent name is not found')
  t.ok(keys.size > 2000, `many distinct names (${keys.size}), stored lower-case`)
})
