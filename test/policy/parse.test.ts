// Every blocklist line form, every rejection with its file:line message, reasons, allow, expiry and
// normalisation, through the pure parser (parseBlocklist) and the API form (entryFromFields).
import t, { type Test } from 'tap'
import { parseBlocklist, entryFromFields, fastV4 } from '../../src/policy/parse.js'
import { parseCidr, reservedOverlap } from '../../src/policy/net.js'
import { formatProblem } from '../../src/policy/problems.js'
import { normalizeName } from '../../src/policy/names.js'
import type { Entry, Problem } from '../../src/policy/types.js'

const NOW = new Date('2026-06-01T12:00:00Z')
const parse = (text: string): { entries: Entry[]; problems: Problem[] } => parseBlocklist(text, 'list.txt', { now: NOW })
/** The single entry of a one-line list, failing the test when there are problems. */
function one(t: Test, line: string): Entry {
  const r = parse(line)
  t.same(r.problems, [], `no problems for ${JSON.stringify(line)}`)
  t.equal(r.entries.length, 1, `one entry for ${JSON.stringify(line)}`)
  return r.entries[0]!
}
/** The formatted problems of a list. */
const msgs = (text: string): string[] => parse(text).problems.map(formatProblem)

t.test('plain names block the name and all under it; *. only the names under it', async (t) => {
  const e = one(t, 'Evil.Example.')
  t.match(e, { kind: 'domain', value: 'evil.example', allow: false, mode: 'block', source: 'list.txt:1' })
  t.notOk(e.subdomainsOnly)
  t.match(e.id, /^f[0-9a-z]{11}$/)
  const w = one(t, '*.evil.example')
  t.match(w, { kind: 'domain', value: 'evil.example', subdomainsOnly: true })
  t.not(w.id, e.id, '*. and plain are different entries')
  t.equal(one(t, 'under_score.example').value, 'under_score.example', 'underscores are allowed')
})

t.test('hosts-file lines: every name after the address, localhost-style names skipped', async (t) => {
  const r = parse('0.0.0.0 a.example B.example c.example\n127.0.0.1 d.example\n:: e.example\n::1 f.example\n127.0.0.1 localhost\n0.0.0.0 0.0.0.0\n')
  t.same(r.entries.map((e) => [e.value, e.source]), [
    ['a.example', 'list.txt:1'], ['b.example', 'list.txt:1'], ['c.example', 'list.txt:1'],
    ['d.example', 'list.txt:2'], ['e.example', 'list.txt:3'], ['f.example', 'list.txt:4'],
  ])
  t.same(r.problems.map(formatProblem), [
    'list.txt:5: warning: hosts-file name "localhost" is the machine itself; skipped',
    'list.txt:6: warning: hosts-file name "0.0.0.0" is the machine itself; skipped',
  ])
  t.ok(r.problems.every((p) => p.severity === 'warning' && p.code === 'hosts-local-name'))
  t.same(msgs('192.0.2.1 a.example'), ['list.txt:1: unexpected text "a.example" after "192.0.2.1" (a hosts-file line starts with 0.0.0.0, 127.0.0.1, :: or ::1)'])
  t.same(msgs('0.0.0.0 a.example bad$name.example'), ['list.txt:1: invalid character "$" in name "bad$name.example" (allowed: a-z 0-9 - _ . and a leading *.)'])
  t.equal(parse('0.0.0.0 a.example bad$name.example').entries.length, 1, 'the good names of a hosts line still count')
})

t.test('hosts-file local names are skipped in every spelling (trailing dot, case)', async (t) => {
  const r = parse('127.0.0.1 localhost.\n0.0.0.0 LOCALHOST.LOCALDOMAIN.\n::1 ip6-localhost. real.example\n')
  t.same(r.entries.map((e) => e.value), ['real.example'], 'localhost. never becomes a blocked name')
  t.same(r.problems.map((p) => p.code), ['hosts-local-name', 'hosts-local-name', 'hosts-local-name'])
  t.same(r.problems.map((p) => p.line), [1, 2, 3])
})

t.test('adblock ||name^ and @@||name^; $options skip the line with a warning', async (t) => {
  t.match(one(t, '||ads.example^'), { kind: 'domain', value: 'ads.example', allow: false })
  t.match(one(t, '@@||good.example^'), { kind: 'domain', value: 'good.example', allow: true })
  t.match(one(t, '||noanchor.example'), { value: 'noanchor.example' })
  const r = parse('||tracker.example^$third-party\n')
  t.equal(r.entries.length, 0)
  t.same(r.problems.map(formatProblem), ['list.txt:1: warning: adblock options "$third-party" cannot be enforced by DNS or IP blocking; line skipped'])
  t.same(msgs('||evil.example/path^'), ['list.txt:1: invalid character "/" in name "evil.example/path" (allowed: a-z 0-9 - _ . and a leading *.)'])
  t.same(msgs('example.com##.ad-banner'), ['list.txt:1: invalid character "#" in name "example.com##.ad-banner" (allowed: a-z 0-9 - _ . and a leading *.)'], 'cosmetic rules are not names')
  t.same(parse('[Adblock Plus 2.0]\n! Title: x\n||a.example^\n').problems, [], 'adblock header and ! comments')
})

t.test('addresses and networks in canonical CIDR form', async (t) => {
  t.match(one(t, '203.0.113.7'), { kind: 'net', value: '203.0.113.7/32' })
  t.match(one(t, '198.51.100.0/24'), { kind: 'net', value: '198.51.100.0/24' })
  t.match(one(t, '2001:DB8:0::/48'), { kind: 'net', value: '2001:db8::/48' }, 'IPv6 spelling canonicalised silently')
  t.match(one(t, '2001:db8::1'), { value: '2001:db8::1/128' })
  t.match(one(t, '77.110.110.55'), { value: '77.110.110.55/32' })
})

t.test('DROP-list lines: text after ; is the reason', async (t) => {
  const e = one(t, '1.2.3.0/24 ; SBL123')
  t.match(e, { value: '1.2.3.0/24', reason: 'SBL123' })
  t.match(one(t, '5.6.7.0/24;SBL9'), { reason: 'SBL9' })
  t.same(parse('; Spamhaus DROP List 2026/06/01\n; Expires: x\n').problems, [], '; header lines are comments')
})

t.test('@@ allow on any form', async (t) => {
  t.match(one(t, '@@good.example'), { allow: true, value: 'good.example' })
  t.match(one(t, '@@*.cdn.example'), { allow: true, subdomainsOnly: true })
  t.match(one(t, '@@203.0.113.0/24'), { allow: true, kind: 'net' })
  const r = parse('@@0.0.0.0 a.example b.example')
  t.ok(r.entries.length === 2 && r.entries.every((e) => e.allow))
  t.not(one(t, '@@x.example').id, one(t, 'x.example').id, 'allow and block are different entries')
  t.same(msgs('@@x.example mode=alert'), ['list.txt:1: mode=alert has no meaning on an allow (@@) entry: an allow never blocks'])
})

t.test('trailing tokens: expires=, mode=alert, force', async (t) => {
  t.match(one(t, 'a.example expires=2026-12-31'), { expires: '2026-12-31T23:59:59Z' })
  t.match(one(t, 'a.example expires=2026-12-31T18:00:00+02:00'), { expires: '2026-12-31T16:00:00Z' })
  t.match(one(t, 'a.example mode=alert'), { mode: 'alert' })
  t.match(one(t, 'a.example mode=block'), { mode: 'block' })
  t.match(one(t, '202.0.0.0/7 force # whole range'), { value: '202.0.0.0/7', force: true, reason: 'whole range' })
  t.match(one(t, '2001:db8::/31 force'), { value: '2001:db8::/31', force: true })
  t.match(one(t, 'b.example mode=alert expires=2027-01-01 # trial'), { mode: 'alert', expires: '2027-01-01T23:59:59Z', reason: 'trial' })
  t.not(one(t, 'a.example mode=alert').id, one(t, 'a.example').id)
})

t.test('reasons: trailing #, ;, the comment directly above, a blank line breaks it', async (t) => {
  const r = parse([
    '# header of the file',
    '',
    '# first line of a run',
    '# the dropper host',
    'a.example',
    'b.example',
    '# orphan',
    '',
    'c.example',
    '# above',
    'd.example # trailing wins',
    'e.example;semi reason',
    'f.example #',
    '#  spaced   comment  ',
    '0.0.0.0 g.example h.example',
  ].join('\n'))
  t.same(r.problems, [])
  const reasons = Object.fromEntries(r.entries.map((e) => [e.value, e.reason]))
  t.same(reasons, {
    'a.example': 'the dropper host',
    'b.example': undefined,
    'c.example': undefined,
    'd.example': 'trailing wins',
    'e.example': 'semi reason',
    'f.example': undefined,
    'g.example': 'spaced   comment',
    'h.example': 'spaced   comment',
  })
  t.equal(one(t, 'x.example # \u001b[31mred').reason, '[31mred', 'control characters never reach terminals or logs')
})

t.test('punycode and normalisation', async (t) => {
  t.equal(one(t, 'bücher.example').value, 'xn--bcher-kva.example')
  t.equal(one(t, 'BÜCHER.Example.').value, 'xn--bcher-kva.example')
  t.match(one(t, '*.bücher.example'), { value: 'xn--bcher-kva.example', subdomainsOnly: true })
  t.equal(one(t, 'xn--bcher-kva.example').value, 'xn--bcher-kva.example', 'already punycode stays')
  t.equal(one(t, 'ｅｘａｍｐｌｅ.com').value, 'example.com', 'full-width letters map (UTS #46)')
  t.same(parse('\ufeffa.example\r\nb.example\r\n').entries.map((e) => e.value), ['a.example', 'b.example'], 'BOM and CRLF')
  t.equal(one(t, '\t  spaced.example \t').value, 'spaced.example')
})

t.test('rejections: each an error with file:line, the line not applied, the rest still applied', async (t) => {
  const cases: Array<[string, string]> = [
    ['$(curl evil.sh)', 'unexpected text "evil.sh)" after "$(curl"; put a reason after "#" or ";"'],
    ['$(id).example', 'invalid character "$" in name "$(id).example" (allowed: a-z 0-9 - _ . and a leading *.)'],
    ['`id`.example', 'invalid character "`" in name "`id`.example" (allowed: a-z 0-9 - _ . and a leading *.)'],
    ['a;rm.example', ''], // `;` starts a reason: "a" is a bare label (warning), handled below
    ['"quoted".example', 'invalid character "\\"" in name "\\"quoted\\".example" (allowed: a-z 0-9 - _ . and a leading *.)'],
    ["it's.example", 'invalid character "\'" in name "it\'s.example" (allowed: a-z 0-9 - _ . and a leading *.)'],
    ['a|b.example', 'invalid character "|" in name "a|b.example" (allowed: a-z 0-9 - _ . and a leading *.)'],
    ['ev*il.example', '"ev*il.example": * is only allowed as a leading "*." (names under it)'],
    ['a.*.example', '"a.*.example": * is only allowed as a leading "*." (names under it)'],
    ['*', '"*": * is only allowed as a leading "*." (names under it)'],
    ['a..example', 'empty label in name "a..example"'],
    ['.a.example', 'empty label in name ".a.example"'],
    ['-rf.example', 'label "-rf" in "-rf.example" starts or ends with a hyphen'],
    [`${'a'.repeat(64)}.example`, `label "${'a'.repeat(20)}..." is 64 characters long, the limit is 63`],
    [`${Array(64).fill('abc').join('.')}.example`, 'name is 263 characters long, the limit is 253'],
    ['1.2.3', 'invalid IP address "1.2.3" in "1.2.3"'],
    ['256.1.1.1', 'invalid IP address "256.1.1.1" in "256.1.1.1"'],
    ['2001:db8::zz', 'invalid IP address "2001:db8::zz" in "2001:db8::zz"'],
    ['203.0.113.0/33', 'invalid prefix length "33" (0..32) in "203.0.113.0/33"'],
    ['0.0.0.0/0', '0.0.0.0/0 covers every address; never accepted'],
    ['::/0', '::/0 covers every address; never accepted'],
    ['0.0.0.0/0 force', '0.0.0.0/0 covers every address; never accepted'],
    ['127.0.0.1', '127.0.0.1/32 overlaps loopback addresses; never accepted (it would cut the host off itself)'],
    ['::1', '::1/128 overlaps loopback addresses; never accepted (it would cut the host off itself)'],
    ['169.254.169.254', '169.254.169.254/32 overlaps link-local addresses; never accepted (it would cut the host off itself)'],
    ['fe80::/64', 'fe80::/64 overlaps link-local addresses; never accepted (it would cut the host off itself)'],
    ['224.0.0.0/8', '224.0.0.0/8 overlaps multicast addresses; never accepted (it would cut the host off itself)'],
    ['ff02::1', 'ff02::1/128 overlaps multicast addresses; never accepted (it would cut the host off itself)'],
    ['0.0.0.0', '0.0.0.0/32 overlaps unspecified addresses; never accepted (it would cut the host off itself)'],
    ['96.0.0.0/3', '96.0.0.0/3 overlaps loopback addresses; never accepted (it would cut the host off itself)'],
    ['16.0.0.0/4', '16.0.0.0/4 is broader than /8; add "force" to the line if you really mean it'],
    ['2001::/16', '2001::/16 is broader than /32; add "force" to the line if you really mean it'],
    ['203.0.113.7/24', '203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?'],
    ['2001:db8::1/48', '2001:db8::1/48 has host bits set; did you mean 2001:db8::/48?'],
    ['a.example expires=2026-13-01', 'invalid expires=2026-13-01 (want 2026-12-31 or 2026-12-31T18:00:00Z)'],
    ['a.example expires=tomorrow', 'invalid expires=tomorrow (want 2026-12-31 or 2026-12-31T18:00:00Z)'],
    ['a.example expires=4h', 'expires=4h: a file needs a date (2026-12-31) or an RFC 3339 time; a duration would restart every time the file is read'],
    ['a.example mode=loud', 'invalid mode=loud (want alert or block)'],
    ['a.example color=red', 'unknown option "color=" (known: expires=, mode=, force)'],
    ['a.example expires=2027-01-01 expires=2027-01-02', 'expires= given twice'],
    ['a.example b.example', 'unexpected text "b.example" after "a.example"; put a reason after "#" or ";"'],
    ['x'.repeat(4097), 'line is 4097 characters long, the limit is 4096'],
    ['@@', 'no entry on the line'],
    ['; only a comment', ''],
  ]
  for (const [line, message] of cases) {
    if (message === '') continue
    const r = parseBlocklist(`good1.example\n${line}\ngood2.example\n`, 'f.txt', { now: NOW })
    t.same(r.problems.map(formatProblem), [`f.txt:2: ${message}`], `rejects ${JSON.stringify(line.slice(0, 40))}`)
    t.equal(r.problems[0]?.severity, 'error')
    t.same(r.entries.map((e) => e.value), ['good1.example', 'good2.example'], 'the other lines still apply')
  }
  // Codes are stable (scripts and the API use them).
  const code = (l: string): string | undefined => parse(l).problems[0]?.code
  t.equal(code('203.0.113.7/24'), 'non-canonical-cidr')
  t.equal(code('16.0.0.0/4'), 'too-broad')
  t.equal(code('127.0.0.0/8'), 'reserved-range')
  t.equal(code('0.0.0.0/0'), 'everything')
  t.equal(code('a$b.example'), 'invalid-name')
  t.equal(code('a.example expires=x'), 'bad-expires')
  t.equal(code('a.example k=v'), 'unknown-option')
})

t.test('a bare TLD is applied with a warning; already-expired entries warn and are not applied', async (t) => {
  const r = parse('zip\n')
  t.equal(r.entries.length, 1)
  t.same(r.problems.map(formatProblem), ['list.txt:1: warning: "zip" is a single label (a whole top-level domain?): every name under it is affected'])
  const x = parse('old.example expires=2026-01-01\nnew.example expires=2027-01-01\nold2.example expires=2026-06-01T11:59:59Z')
  t.same(x.entries.map((e) => e.value), ['new.example'])
  t.same(x.problems.map(formatProblem), [
    'list.txt:1: warning: entry expired at 2026-01-01T23:59:59Z; not applied',
    'list.txt:3: warning: entry expired at 2026-06-01T11:59:59Z; not applied',
  ])
})

t.test('duplicates: warning, across forms that mean the same entry', async (t) => {
  const r = parse('a.example\n||a.example^\n0.0.0.0 A.EXAMPLE\n*.a.example\n203.0.113.7\n203.0.113.7/32\n')
  t.same(r.problems.map(formatProblem), [
    'list.txt:2: warning: duplicate of list.txt:1 (a.example)',
    'list.txt:3: warning: duplicate of list.txt:1 (a.example)',
    'list.txt:6: warning: duplicate of list.txt:5 (203.0.113.7/32)',
  ])
  t.equal(r.entries.length, 6, 'duplicates are kept for buildPolicy to merge (it keeps their reasons)')
  const shared = new Map<string, string>()
  parseBlocklist('a.example\n', 'one.txt', { seen: shared })
  t.same(parseBlocklist('a.example\n', 'two.txt', { seen: shared }).problems.map(formatProblem), ['two.txt:1: warning: duplicate of one.txt:1 (a.example)'])
  t.same(parseBlocklist('a.example\na.example\n', 'x', { seen: false }).problems, [], 'seen: false skips the check')
})

t.test('ids are stable and derived from identity only', async (t) => {
  const a = parseBlocklist('a.example # one', 'x.txt').entries[0]!
  const b = parseBlocklist('\n\n0.0.0.0 a.example', 'y.txt').entries[0]!
  t.equal(a.id, b.id)
  t.equal(a.id, 'f' + a.id!.slice(1))
})

t.test('comments, blanks and line numbers', async (t) => {
  const r = parse('# c\n\n  # indented comment\n! adblock comment\n\na.example\n')
  t.same(r.entries.map((e) => e.source), ['list.txt:6'])
  t.same(parse('').entries, [])
  t.same(parse('\n\n\n').problems, [])
})

t.test('entryFromFields: the API form, validated like a line', async (t) => {
  const ok = entryFromFields({ value: 'Bücher.Example', reason: 'phishing', expires: '4h' }, 'api:alice', NOW)
  t.same(ok.problems, [])
  t.match(ok.entry, { kind: 'domain', value: 'xn--bcher-kva.example', reason: 'phishing', expires: '2026-06-01T16:00:00Z', source: 'api:alice', allow: false, mode: 'block' })
  t.equal(ok.entry!.id, parseBlocklist('bücher.example', 'f').entries[0]!.id, 'same id as the file entry')
  t.match(entryFromFields({ value: '203.0.113.0/24', allow: true }, 'api:x', NOW).entry, { kind: 'net', allow: true })
  t.match(entryFromFields({ value: '*.evil.example', mode: 'alert' }, 'api:x', NOW).entry, { subdomainsOnly: true, mode: 'alert' })
  t.match(entryFromFields({ value: '10.0.0.0/7', force: true }, 'api:x', NOW).entry, { value: '10.0.0.0/7', force: true })
  t.match(entryFromFields({ value: 'a.example', expires: '2026-12-31' }, 'api:x', NOW).entry, { expires: '2026-12-31T23:59:59Z' })
  const bad = (f: Parameters<typeof entryFromFields>[0]): string[] => {
    const r = entryFromFields(f, 'api:x', NOW)
    t.equal(r.entry, undefined, `no entry for ${JSON.stringify(f)}`)
    return r.problems.map((p) => `${p.severity} ${p.code}: ${p.message}`)
  }
  t.same(bad({ value: 'a.example; rm -rf /' }), ['error unexpected-text: value "a.example; rm -rf /" contains whitespace; give one name, address or network'])
  t.same(bad({ value: '$(reboot)' }), ['error invalid-name: invalid character "$" in name "$(reboot)" (allowed: a-z 0-9 - _ . and a leading *.)'])
  t.same(bad({ value: '203.0.113.7/24' }), ['error non-canonical-cidr: 203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?'])
  t.same(bad({ value: '10.0.0.0/7' }), ['error too-broad: 10.0.0.0/7 is broader than /8; add "force" to the line if you really mean it'])
  t.same(bad({ value: 'a.example', expires: 'soon' }), ['error bad-expires: invalid expires "soon" (want 4h, 7d, 2026-12-31 or 2026-12-31T18:00:00Z)'])
  t.same(bad({ value: 'a.example', expires: '2020-01-01' }), ['error expired: expires 2020-01-01T23:59:59Z is already past'])
  t.same(bad({ value: 'a.example', reason: 'two\nlines' }), ['error invalid-reason: reason must be one line without control characters'])
  t.same(bad({ value: 'a.example', reason: 'x'.repeat(1025) }), ['error invalid-reason: reason is 1025 characters long, the limit is 1024'])
  t.same(bad({ value: 'a.example', mode: 'loud' as 'alert' }), ['error bad-mode: invalid mode "loud" (want alert or block)'])
  t.same(bad({ value: '' }), ['error empty-entry: empty value'])
  t.same(bad({ value: '||ads.example^$third-party' }), ['error adblock-options: adblock options "$third-party" cannot be enforced by DNS or IP blocking; line skipped'])
  t.same(bad({ value: 42 as unknown as string }), ['error invalid-entry: value must be a string'])
  t.same(bad({ value: 'a.example', allow: true, mode: 'alert' }), ['error bad-mode: mode=alert has no meaning on an allow (@@) entry: an allow never blocks'])
  const tld = entryFromFields({ value: 'zip' }, 'api:x', NOW)
  t.ok(tld.entry, 'a bare TLD is accepted')
  t.same(tld.problems.map((p) => p.code), ['bare-tld'])
  t.equal(tld.problems[0]!.severity, 'warning')
})

t.test('normalizeName directly', async (t) => {
  t.same(normalizeName('*.X.Example.'), { ok: true, name: 'x.example', subdomainsOnly: true })
  t.match(normalizeName('a b'), { ok: false, code: 'invalid-name' })
  t.match(normalizeName('\u200b.com'), { ok: false, code: 'empty-label' }, 'zero-width space maps to nothing')
  t.match(normalizeName('*.'), { ok: false })
})

t.test('the IPv4 fast path agrees with the general path (net.ts)', async (t) => {
  const general = (text: string, force: boolean): string | undefined => {
    const r = parseCidr(text)
    if (!r.ok || !r.exact || r.cidr.family !== 4 || r.cidr.prefix === 0 || reservedOverlap(r.cidr)) return undefined
    if (r.cidr.prefix < 8 && !force) return undefined
    return r.canonical
  }
  const edge = ['1.2.3.4', '1.2.3.4/32', '1.2.3.0/24', '01.2.3.4', '1.2.3.4/024', '1.2.3.4/33', '1.2.3.4/', '1.2.3', '1.2.3.4.5', '256.1.1.1',
    '127.0.0.1', '126.255.255.255', '128.0.0.0', '96.0.0.0/3', '0.0.0.0', '0.0.0.1', '255.255.255.255', '255.255.255.254', '224.0.0.0',
    '223.255.255.255', '169.254.0.1', '169.253.255.255', '4.0.0.0/6', '8.0.0.0/8', '1.2.3.4/0', '0.0.0.0/0', '1..2.3', '.1.2.3', '1.2.3.4 ']
  let r = 1
  const rand = (): number => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0) / 4294967296)
  const inputs = [...edge]
  for (let i = 0; i < 20000; i++) {
    const o = Array.from({ length: 4 }, () => Math.floor(rand() * (rand() < 0.1 ? 300 : 256)))
    const p = Math.floor(rand() * 34)
    inputs.push(o.join('.') + (rand() < 0.3 ? '' : `/${p}`))
  }
  let mismatches = 0
  for (const s of inputs) {
    for (const force of [false, true]) {
      const got = fastV4(s, force)
      // The fast path may decline (undefined) what the general path accepts, never the reverse or differ.
      if (got !== undefined && got !== general(s, force)) {
        if (mismatches++ < 5) t.fail(`fastV4(${JSON.stringify(s)}, ${force}) = ${got}, general = ${general(s, force)}`)
      }
      if (got === undefined && general(s, force) !== undefined && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(s)) {
        if (mismatches++ < 5) t.fail(`fastV4 declines ${JSON.stringify(s)} (force ${force}) that is valid`)
      }
    }
  }
  t.equal(mismatches, 0, `${inputs.length} inputs agree`)
})
