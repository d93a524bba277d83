// fastLine against the parser, one line at a time: every line it takes must be exactly one plain
// entry with no problem, and it must take the plain forms (else the streaming load gains nothing).
import t from 'tap'
import { NOT_FAST, fastLine, fastNameEnd, fastNameStart, fastSubdomainsOnly } from '../../src/policy/fast-line.js'
import { parseBlocklist } from '../../src/policy/parse.js'
import { lineGen } from './lines-gen.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20261122)
const NOW = new Date('2026-06-01T12:00:00Z')

/** fastLine on a line placed inside a bigger buffer (offsets are relative, and bytes around must not matter). */
function fast(line: string): { value: string; sub: boolean } | undefined {
  const before = Buffer.from('x y\n')
  const bytes = Buffer.concat([before, Buffer.from(line), Buffer.from(' a.b\n')])
  const start = before.length
  const r = fastLine(bytes, start, start + Buffer.byteLength(line))
  if (r === NOT_FAST) return undefined
  if (r < 0) throw new Error(`fastLine returned ${r} for ${JSON.stringify(line)}: a taken line is a non-negative number`)
  return { value: bytes.toString('utf8', start + fastNameStart(r), start + fastNameEnd(r)), sub: fastSubdomainsOnly(r) }
}

/** What the parser makes of the line, as fastLine would have to report it, or why it is not plain. */
function plainByParser(line: string): { value: string; sub: boolean } | string {
  const p = parseBlocklist(line, 'f', { now: NOW, seen: false })
  if (p.problems.length > 0) return `problems: ${p.problems.map((x) => x.code).join(',')}`
  if (p.entries.length !== 1) return `${p.entries.length} entries`
  const e = p.entries[0]!
  if (e.kind !== 'domain' || e.allow || e.mode !== 'block' || e.reason !== undefined || e.expires !== undefined || e.force) return 'not plain'
  return { value: e.value, sub: e.subdomainsOnly === true }
}

t.test('each plain form, and the value is the entry value', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['ads.example', 'ads.example', false],
    ['ads.example.', 'ads.example', false],
    ['ads.example\r', 'ads.example', false],
    ['*.ads.example', 'ads.example', true],
    ['*.ads.example.\r', 'ads.example', true],
    ['0.0.0.0 ads.example', 'ads.example', false],
    ['127.0.0.1\tads.example', 'ads.example', false],
    ['0.0.0.0 \t \tads.example.\r', 'ads.example', false],
    ['0.0.0.0 *.ads.example', 'ads.example', true],
    ['||ads.example^', 'ads.example', false],
    ['||ads.example^|', 'ads.example', false],
    ['||ads.example.^\r', 'ads.example', false],
    ['||*.ads.example^', 'ads.example', true],
    ['0day.example', '0day.example', false],
    ['127.0.0.1.example', '127.0.0.1.example', false],
    ['_dmarc.a-b.x1', '_dmarc.a-b.x1', false],
    ['a.b_', 'a.b_', false],
    [`${'a'.repeat(63)}.com`, `${'a'.repeat(63)}.com`, false],
  ]
  for (const [line, value, sub] of cases) {
    t.same(fast(line), { value, sub }, JSON.stringify(line))
    t.same(plainByParser(line), { value, sub }, `parser agrees on ${JSON.stringify(line)}`)
  }
})

t.test('lines it leaves to the parser', async (t) => {
  const long = (n: number): string => {
    let s = 'com'
    while (s.length < n) s = 'c'.repeat(Math.min(63, n - s.length - 1)) + '.' + s
    return s
  }
  t.equal(long(253).length, 253)
  t.equal(long(254).length, 254)
  t.ok(fast(long(253)), 'a 253-character name is plain')
  const cases = [
    '', '\r', ' ', 'Ads.example', 'ads.EXAMPLE', 'bücher.example', ' ads.example', 'ads.example ', 'ads.example\r\r',
    '# ads.example', '! x', '; x', '@@ads.example', '@@||ads.example^', 'ads.example # why', 'ads.example ; SBL1',
    'ads.example mode=alert', 'ads.example expires=2027-01-01', 'ads.example force', '0.0.0.0 a.example b.example',
    '0.0.0.0 localhost.localdomain', '127.0.0.1 localhost.localdomain.', '0.0.0.0 *.localhost.localdomain', '0.0.0.0 localhost',
    '::1 ads.example', '0.0.0.1 ads.example', '0.0.0.0', '0.0.0.0 ', '0.0.0.0x ads.example', 'bare-tld', 'example',
    'a.123', '1.2.3.4', '203.0.113.7', '2001:db8::1', `${'a'.repeat(64)}.com`, long(254), '-a.example', 'a-.example',
    'a.-b.example', 'a..example', '.a.example', 'a.example..', '*.', '*..', '*.*.a.example', '**.a.example', 'a.*.example',
    '||', '||^', '||^|', '||ads.example', '||ads.example|', '||ads.example^^', '||ads.example^$third-party', '||ads.example$script',
    '|ads.example^', '[Adblock Plus 2.0]', 'ads.example##.ad', 'ads.example/path', 'ads.example:443', '\ufeffads.example',
    'a.b.c.4', '0.0.0.0 ' + ' '.repeat(4100) + 'ads.example',
  ]
  for (const line of cases) t.equal(fast(line), undefined, JSON.stringify(line.length > 80 ? line.slice(0, 40) + '...' : line))
})

t.test('differential: tens of thousands of generated and mutated lines never disagree with the parser', async (t) => {
  const g = lineGen(SEED)
  let taken = 0
  let plainLines = 0
  let plainTaken = 0
  let failures = 0
  for (let i = 0; i < 60_000 && failures < 10; i++) {
    const line = g.any()
    const got = fast(line)
    if (got) {
      taken++
      const want = plainByParser(line)
      if (typeof want === 'string' || want.value !== got.value || want.sub !== got.sub) {
        failures++
        t.fail(`fastLine takes ${JSON.stringify(line)} as ${JSON.stringify(got)}, parser: ${JSON.stringify(want)} (FUZZ_SEED=${SEED})`)
      }
    }
    const p = g.plain()
    plainLines++
    const pf = fast(p)
    const pw = plainByParser(p)
    if (pf) plainTaken++
    if (typeof pw !== 'string' ? pf?.value !== pw.value || pf.sub !== pw.sub : pf !== undefined) {
      failures++
      t.fail(`plain-form line ${JSON.stringify(p)}: fastLine ${JSON.stringify(pf)}, parser ${JSON.stringify(pw)} (FUZZ_SEED=${SEED})`)
    }
  }
  t.equal(failures, 0)
  t.ok(taken > 10_000, `fastLine took ${taken} of 60,000 mixed lines`)
  // A generated plain form is rejected only when its name is broken (a label over 63 characters).
  t.ok(plainTaken > plainLines * 0.8, `fastLine took ${plainTaken} of ${plainLines} plain-form lines`)
})
