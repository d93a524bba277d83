// `egress-guard lint` end to end through the built CLI (dist/cli.js): output, --json, exit codes.
import t from 'tap'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { formatProblem } from '../../src/policy/problems.js'
import type { Problem } from '../../src/policy/types.js'

const dir = mkdtempSync(join(tmpdir(), `eg-lint-${process.pid}-`))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const clean = join(dir, 'clean')
mkdirSync(clean)
writeFileSync(join(clean, 'a.txt'), '# the dropper\nabcdefghijklmnopqrst.net\n77.110.110.55 # its address\n')
writeFileSync(join(clean, 'README.md'), 'not a list $(x)\n')

const warn = join(dir, 'warn')
mkdirSync(warn)
writeFileSync(join(warn, 'w.txt'), 'a.example\n0.0.0.0 a.example\nold.example expires=2020-01-01\n')

const bad = join(dir, 'bad')
mkdirSync(bad)
writeFileSync(join(bad, 'one-bad-line.txt'), 'good1.example\n203.0.113.7/24\ngood2.example\n198.51.100.0/24\n')
writeFileSync(join(bad, 'binary.list'), Buffer.from([0x00, 0x01, 0x02, 0xff, 0x0a]))

t.test('clean directory: exit 0, no problems, summary on stderr', async (t) => {
  const r = await runCli(['lint', clean])
  t.equal(r.code, 0)
  t.equal(r.stdout, '')
  t.equal(r.stderr, '2 entries from 1 file: 0 errors, 0 warnings\n')
})

t.test('default path is ./blocklists (the repository list is clean)', async (t) => {
  const r = await runCli(['lint'], { cwd: new URL('../..', import.meta.url).pathname })
  t.equal(r.code, 0, r.stdout + r.stderr)
  t.match(r.stderr, /^\d+ entries from \d+ files?: 0 errors, 0 warnings\n$/)
  const none = await runCli(['lint'], { cwd: dir })
  t.equal(none.code, 1, 'no ./blocklists here: an error, not silence')
  t.equal(none.stdout, 'blocklists:0: no such file or directory\n')
})

t.test('warnings only: exit 0, each warning as file:line: warning: message', async (t) => {
  const r = await runCli(['lint', warn])
  t.equal(r.code, 0)
  t.equal(r.stdout, [
    `${join(warn, 'w.txt')}:2: warning: duplicate of ${join(warn, 'w.txt')}:1 (a.example)`,
    `${join(warn, 'w.txt')}:3: warning: entry expired at 2020-01-01T23:59:59Z; not applied`,
    '',
  ].join('\n'))
  t.equal(r.stderr, '1 entry from 1 file: 0 errors, 2 warnings\n')
})

t.test('errors: exit 1; a binary file is one problem; the good lines still count', async (t) => {
  const r = await runCli(['lint', bad])
  t.equal(r.code, 1)
  t.equal(r.stdout, [
    `${join(bad, 'binary.list')}:0: not a text file (NUL byte at offset 0); skipped`,
    `${join(bad, 'one-bad-line.txt')}:2: 203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?`,
    '',
  ].join('\n'))
  t.equal(r.stderr, '3 entries from 2 files: 2 errors, 0 warnings\n')
  t.notMatch(r.stdout + r.stderr, /at .*\.js:\d+/, 'no stack trace')
})

t.test('--json prints {entries, files, problems}', async (t) => {
  const r = await runCli(['lint', '--json', bad, join(clean, 'a.txt')])
  t.equal(r.code, 1)
  const j = JSON.parse(r.stdout) as { entries: Array<Record<string, unknown>>; files: string[]; problems: Array<Record<string, unknown>>; summary: Record<string, number> }
  t.same(j.files, [join(bad, 'binary.list'), join(bad, 'one-bad-line.txt'), join(clean, 'a.txt')])
  t.equal(j.entries.length, 5)
  t.match(j.entries.find((e) => e.value === 'abcdefghijklmnopqrst.net'), { kind: 'domain', allow: false, mode: 'block', reason: 'the dropper', source: `${join(clean, 'a.txt')}:2` })
  t.match(j.problems, [
    { file: join(bad, 'binary.list'), line: 0, severity: 'error', code: 'not-text' },
    { file: join(bad, 'one-bad-line.txt'), line: 2, severity: 'error', code: 'non-canonical-cidr', message: '203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?' },
  ])
  t.same(j.summary, { entries: 5, files: 3, profiles: 0, errors: 2, warnings: 0 })
})

t.test('usage errors: exit 2', async (t) => {
  const r = await runCli(['lint', '--no-such-flag'])
  t.equal(r.code, 2)
  t.match(r.stderr, /no-such-flag/)
  const s = await runCli(['lint', '--max-file-size', 'lots', clean])
  t.equal(s.code, 2)
  t.match(s.stderr, /--max-file-size must be a size/)
  const h = await runCli(['lint', '--help'])
  t.equal(h.code, 0)
  t.match(h.stdout, /usage: egress-guard lint/)
})

t.test('--max-file-size (flag and EG_ environment)', async (t) => {
  const r = await runCli(['lint', '--max-file-size', '10', clean])
  t.equal(r.code, 1)
  t.match(r.stdout, /a\.txt:0: file is \d+ bytes, larger than the limit of 10 bytes/)
  const e = await runCli(['lint', clean], { env: { EG_MAX_FILE_SIZE: '1K' } })
  t.equal(e.code, 0)
})

t.test('text and --json report the same duplicates and count (text skips buildPolicy)', async (t) => {
  const d = join(dir, 'dups')
  mkdirSync(d)
  // Cross-file, non-plain variants (allow, *., mode=alert, networks), an expired twin that is no
  // duplicate, and a name that differs only in mode (not a duplicate).
  writeFileSync(join(d, 'a.txt'), 'x.example\n@@y.example\n*.z.example\n203.0.113.0/24\nm.example mode=alert\nm.example\ngone.example\n')
  writeFileSync(join(d, 'b.txt'), 'X.example\n@@y.example\n*.z.example\n203.0.113.0/24 # again\nm.example mode=alert\ngone.example expires=2020-01-01\n198.51.100.9\n')
  const text = await runCli(['lint', d])
  const json = await runCli(['lint', '--json', d])
  const lines = text.stdout.trim().split('\n')
  t.equal(lines.filter((l) => l.includes('duplicate of')).length, 5, text.stdout)
  const fromJson = (JSON.parse(json.stdout) as { problems: Array<{ file: string; line: number; severity: string; message: string }> }).problems
    .map((p) => formatProblem(p as Problem))
  t.same(lines, fromJson)
  t.equal(text.stderr, json.stderr)
  t.match(text.stderr, /^8 entries from 2 files: 0 errors, 6 warnings/)
  t.equal(text.code, json.code)
})

t.test('profiles: a directory\'s profiles/ beside its lists, a profiles directory, one profile file', async (t) => {
  const d = join(dir, 'withprof')
  const pd = join(d, 'profiles')
  mkdirSync(pd, { recursive: true })
  writeFileSync(join(d, 'a.txt'), 'evil.example\n')
  writeFileSync(join(pd, 'web.txt'), '# the API\napi.example port=443\n@@cdn.example\nstatic.example port=99999\nmode=learn\nmode=enforce\nold.example expires=2030-01-01\n')
  writeFileSync(join(pd, 'db.txt'), 'mode=alert\n198.51.100.0/24 port=5432 # the database\n')
  writeFileSync(join(pd, 'Bad Name.txt'), 'x.example\n')
  writeFileSync(join(pd, 'README.md'), 'how profiles work\n')
  writeFileSync(join(pd, '.web.txt.swp'), 'junk\n')
  const web = join(pd, 'web.txt')
  const r = await runCli(['lint', d])
  t.equal(r.code, 1, r.stdout + r.stderr)
  t.equal(r.stdout, [
    `${join(pd, 'Bad Name.txt')}:0: "Bad Name.txt" is not a profile file name: want NAME.txt, NAME of a-z 0-9 _ - starting with a letter or digit, at most 63 characters; skipped`,
    `${web}:3: "@@" has no meaning in a profile: every line allows, and a fleet-wide block still wins`,
    `${web}:4: invalid port "99999" in port=99999 (want 1..65535)`,
    `${web}:6: mode= given twice in a profile (first at ${web}:5); this line is ignored`,
    `${web}:7: expires= is not supported in a profile: a line applies until it is removed from the file`,
    '',
  ].join('\n'))
  t.equal(r.stderr, '1 entry from 1 file, 2 profiles: 5 errors, 0 warnings\n')

  const json = await runCli(['lint', '--json', d])
  const j = JSON.parse(json.stdout) as { summary: Record<string, number>; profiles: Array<{ name: string; mode: string; rules: Array<{ value: string; ports?: number[]; reason?: string }> }> }
  t.same(j.summary, { entries: 1, files: 1, profiles: 2, errors: 5, warnings: 0 })
  t.same(j.profiles.map((p) => [p.name, p.mode, p.rules.map((r) => [r.value, r.ports, r.reason])]), [
    ['db', 'alert', [['198.51.100.0/24', [5432], 'the database']]],
    ['web', 'learn', [['api.example', [443], 'the API']]],
  ], 'the good lines apply; a second mode= line does not change the first')

  // The profiles directory itself: its files are profiles, not blocklists.
  const only = await runCli(['lint', pd])
  t.equal(only.code, 1)
  t.equal(only.stdout, r.stdout)
  t.equal(only.stderr, '0 entries from 0 files, 2 profiles: 5 errors, 0 warnings\n')
  // One profile file named on the command line.
  const one = await runCli(['lint', join(pd, 'db.txt')])
  t.equal(one.code, 0, one.stdout)
  t.equal(one.stdout, '')
  t.equal(one.stderr, '0 entries from 0 files, 1 profile: 0 errors, 0 warnings\n')
  const misnamed = await runCli(['lint', join(pd, 'Bad Name.txt')])
  t.equal(misnamed.code, 1)
  t.match(misnamed.stdout, /Bad Name\.txt:0: "Bad Name\.txt" is not a profile file name/)
  // Without a profiles/ sub-directory nothing about profiles is said (the existing output holds).
  const plain = await runCli(['lint', clean])
  t.equal(plain.stderr, '2 entries from 1 file: 0 errors, 0 warnings\n')
})

t.test('--format github: one ::error/::warning annotation per problem, escaped; exit codes as text', async (t) => {
  const r = await runCli(['lint', '--format', 'github', bad])
  t.equal(r.code, 1)
  t.equal(r.stdout, [
    `::error file=${join(bad, 'binary.list')}::not a text file (NUL byte at offset 0); skipped`,
    `::error file=${join(bad, 'one-bad-line.txt')},line=2::203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?`,
    '',
  ].join('\n'), 'a whole-file problem (line 0) names the file only')
  const w = await runCli(['lint', '--format', 'github', warn])
  t.equal(w.code, 0, 'warnings only still pass')
  t.match(w.stdout, /^::warning file=[^\n]*w\.txt,line=2::duplicate of /)
  const c = await runCli(['lint', '--format', 'github', clean])
  t.equal(c.code, 0)
  t.equal(c.stdout, '')
  const odd = join(dir, 'odd,dir:x')
  mkdirSync(odd)
  writeFileSync(join(odd, 'l.txt'), '203.0.113.7/24\n')
  const e = await runCli(['lint', '--format', 'github', odd])
  t.match(e.stdout, /^::error file=[^\n]*odd%2Cdir%3Ax\/l\.txt,line=1::203\.0\.113\.7\/24 has host bits set/, 'property values escape , and :')
  const j = await runCli(['lint', '--format', 'json', bad])
  t.equal(JSON.parse(j.stdout).summary.errors, 2, '--format json is --json')
  const u = await runCli(['lint', '--format', 'xml', bad])
  t.equal(u.code, 2)
  t.match(u.stderr, /--format must be text, json or github/)
})
