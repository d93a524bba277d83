// loadBlocklists: which files a directory contributes, and files that are not text, too big or
// missing each give one `file:0` problem while the others still load.
import t from 'tap'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadBlocklists, pickBlocklistFiles } from '../../src/policy/load.js'
import { parseBlocklist } from '../../src/policy/parse.js'
import { formatProblem } from '../../src/policy/problems.js'
import { buildPolicy } from '../../src/policy/merge.js'

const NOW = new Date('2026-06-01T12:00:00Z')

function tempDir(t: Tap): string {
  const d = mkdtempSync(join(tmpdir(), `eg-load-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}
type Tap = { teardown: (fn: () => void) => void }

t.test('a directory: known extensions, sorted, README* and sub-directories skipped', async (t) => {
  const d = tempDir(t)
  writeFileSync(join(d, 'b.txt'), 'b.example\n')
  writeFileSync(join(d, 'a.list'), 'a.example\n')
  writeFileSync(join(d, 'c.hosts'), '0.0.0.0 c.example\n')
  writeFileSync(join(d, 'd.conf'), '203.0.113.0/24 ; SBL1\n')
  writeFileSync(join(d, 'e.md'), 'not.loaded.example\n')
  writeFileSync(join(d, 'README.txt'), 'readme.example\n')
  writeFileSync(join(d, 'readme.list'), 'readme2.example\n')
  writeFileSync(join(d, '.hidden.txt'), 'hidden.example\n')
  mkdirSync(join(d, 'sub.txt'))
  writeFileSync(join(d, 'sub.txt', 'x.txt'), 'nested.example\n')
  const r = await loadBlocklists([d], { now: NOW })
  t.same(r.files, ['a.list', 'b.txt', 'c.hosts', 'd.conf'].map((f) => join(d, f)))
  t.same(r.entries.map((e) => e.value), ['a.example', 'b.example', 'c.example', '203.0.113.0/24'])
  t.same(r.entries.map((e) => e.source), [`${join(d, 'a.list')}:1`, `${join(d, 'b.txt')}:1`, `${join(d, 'c.hosts')}:1`, `${join(d, 'd.conf')}:1`])
  t.same(r.problems, [])
  t.same(pickBlocklistFiles(['Z.TXT', 'a.txt', 'README', 'x.json', 'B.Hosts']), ['B.Hosts', 'Z.TXT', 'a.txt'], 'code-unit order, extension case ignored')
  // The repository's own blocklists/ directory: its README.md is skipped and the list is clean.
  const own = await loadBlocklists([new URL('../../blocklists', import.meta.url).pathname], { now: NOW })
  t.same(own.problems, [])
  t.ok(own.files.every((f) => !/README/i.test(f)))
  t.ok(own.entries.some((e) => e.value === 'abcdefghijklmnopqrst.net' && e.reason), 'the incident dropper domain, with its reason')
  t.ok(own.entries.some((e) => e.value === '77.110.110.55/32' && e.reason), 'the incident address, with its reason')
})

t.test('not text, too big, missing: one file:0 problem each, other files still load', async (t) => {
  const d = tempDir(t)
  writeFileSync(join(d, 'good.txt'), 'good.example\nbad$.example\nalso.example\n')
  writeFileSync(join(d, 'binary.txt'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0x0a, 0x61]))
  writeFileSync(join(d, 'latin1.txt'), Buffer.from('b\xfccher.example\n', 'latin1'))
  writeFileSync(join(d, 'big.txt'), 'x.example\n'.repeat(100))
  const r = await loadBlocklists([d, join(d, 'missing.txt')], { now: NOW, maxBytes: 500 })
  t.same(r.problems.map(formatProblem), [
    `${join(d, 'big.txt')}:0: file is 1000 bytes, larger than the limit of 500 bytes`,
    `${join(d, 'binary.txt')}:0: not a text file (NUL byte at offset 6); skipped`,
    `${join(d, 'good.txt')}:2: invalid character "$" in name "bad$.example" (allowed: a-z 0-9 - _ . and a leading *.)`,
    `${join(d, 'latin1.txt')}:0: not a text file (invalid UTF-8); skipped`,
    `${join(d, 'missing.txt')}:0: no such file or directory`,
  ])
  t.ok(r.problems.every((p) => p.severity === 'error'))
  t.same(r.entries.map((e) => e.value), ['good.example', 'also.example'])
  t.same(r.files.length, 4)
  const named = await loadBlocklists([join(d, 'good.txt'), join(d, 'good.txt')], { now: NOW })
  t.equal(named.entries.length, 2, 'a file named twice is read once')
})

t.test('duplicates across files warn (unless turned off); files named explicitly load whatever their extension', async (t) => {
  const d = tempDir(t)
  writeFileSync(join(d, 'one.txt'), 'a.example\n')
  writeFileSync(join(d, 'two.data'), '# note\n||a.example^\n')
  const r = await loadBlocklists([join(d, 'one.txt'), join(d, 'two.data')], { now: NOW })
  t.same(r.problems.map(formatProblem), [`${join(d, 'two.data')}:2: warning: duplicate of ${join(d, 'one.txt')}:1 (a.example)`])
  t.equal(r.entries.length, 2)
  t.same((await loadBlocklists([join(d, 'one.txt'), join(d, 'two.data')], { duplicates: false })).problems, [])
})

t.test('pieces cut at newlines read exactly like the whole text', async (t) => {
  const d = tempDir(t)
  const lines: string[] = []
  for (let i = 0; i < 2000; i++) lines.push(i % 7 === 0 ? `# reason ${i}` : i % 11 === 0 ? '' : i % 13 === 0 ? `bad line ${i}` : `n${i}.bücher.example`)
  const text = lines.join('\r\n')
  writeFileSync(join(d, 'x.txt'), text)
  const whole = parseBlocklist(text, join(d, 'x.txt'), { now: NOW })
  const r = await loadBlocklists([join(d, 'x.txt')], { now: NOW, chunkBytes: 97 })
  t.same(r.entries, whole.entries)
  t.same(r.problems, whole.problems)
})

t.test('a 1,000,000-line list loads', async (t) => {
  const d = tempDir(t)
  const parts: string[] = []
  for (let i = 0; i < 1_000_000; i++) parts.push(`h${i}.example`)
  writeFileSync(join(d, 'million.txt'), parts.join('\n') + '\n')
  const r = await loadBlocklists([join(d, 'million.txt')], { now: NOW, duplicates: false })
  t.equal(r.entries.length, 1_000_000)
  t.same(r.problems, [])
  t.equal(r.entries[999_999]!.source, `${join(d, 'million.txt')}:1000000`)
  t.equal(buildPolicy(r.entries, { now: NOW }).entries.length, 1_000_000)
})
