// Profile files: destination lines in the blocklist syntax, port= and one mode= line; what has no
// meaning in a profile is refused by line (file:line: message) and the rest of the file still applies.
import t from 'tap'
import { parseProfile, parsePorts, profileNameOf, isProfileName } from '../../src/profiles/parse.js'
import { pickProfileFiles } from '../../src/profiles/load.js'
import { policyEtag, profilesKey } from '../../src/profiles/etag.js'
import { formatProblem } from '../../src/policy/problems.js'

const F = 'blocklists/profiles/web.txt'
const parse = (text: string) => parseProfile(text, F, 'web')
const texts = (text: string) => parse(text).problems.map(formatProblem)

t.test('destinations: name, *.name, adblock, address, CIDR, IPv6; reasons from comments', async (t) => {
  const { profile, problems } = parse(
    [
      '# the payment provider',
      'API.Payments.Example.',
      '*.cdn.example # static assets',
      '||registry.example^',
      '203.0.113.7',
      '198.51.100.0/24 ; partner network',
      '2001:DB8::/48',
      'bücher.example',
    ].join('\n') + '\n',
  )
  t.same(problems, [])
  t.equal(profile.name, 'web')
  t.equal(profile.mode, 'enforce', 'no mode= line: enforce')
  t.equal(profile.source, F)
  t.same(profile.rules, [
    { kind: 'domain', value: 'api.payments.example', source: `${F}:2`, reason: 'the payment provider' },
    { kind: 'domain', value: 'cdn.example', subdomainsOnly: true, source: `${F}:3`, reason: 'static assets' },
    { kind: 'domain', value: 'registry.example', source: `${F}:4` },
    { kind: 'net', value: '203.0.113.7/32', source: `${F}:5` },
    { kind: 'net', value: '198.51.100.0/24', source: `${F}:6`, reason: 'partner network' },
    { kind: 'net', value: '2001:db8::/48', source: `${F}:7` },
    { kind: 'domain', value: 'xn--bcher-kva.example', source: `${F}:8` },
  ])
})

t.test('port= on name and network lines: sorted, unique; bad values are errors on their line', async (t) => {
  const { profile, problems } = parse(
    [
      'api.example port=443',
      'web.example port=443,80,443',
      '198.51.100.0/24 port=5432 # the database',
      'a.example port=0',
      'b.example port=65536',
      'c.example port=80-90',
      'd.example port=',
      'e.example port=0443',
      'f.example port=443 port=80',
      'g.example port=' + Array.from({ length: 33 }, (_, i) => i + 1).join(','),
      'h.example',
    ].join('\n'),
  )
  t.same(profile.rules.map((r) => [r.value, r.ports]), [
    ['api.example', [443]],
    ['web.example', [80, 443]],
    ['198.51.100.0/24', [5432]],
    ['h.example', undefined],
  ], 'the good lines apply; the bad ones do not')
  t.same(problems.map(formatProblem), [
    `${F}:4: invalid port "0" in port=0 (want 1..65535)`,
    `${F}:5: invalid port "65536" in port=65536 (want 1..65535)`,
    `${F}:6: port ranges are not supported (80-90); list the ports: port=80,443`,
    `${F}:7: port= needs a value: port=443 or port=80,443`,
    `${F}:8: invalid port "0443" in port=0443 (want 1..65535)`,
    `${F}:9: port= given twice`,
    `${F}:10: port= lists 33 ports, the limit is 32 a line`,
  ])
  t.ok(problems.every((p) => p.severity === 'error'))
  t.same(parsePorts('22,1,65535'), { ok: true, ports: [1, 22, 65535] })
})

t.test('mode= line: learn/alert/enforce, once per file; a bad or second one never loosens the profile', async (t) => {
  t.equal(parse('mode=learn\napi.example\n').profile.mode, 'learn')
  t.equal(parse('api.example\nmode=alert # trying it first\n').profile.mode, 'alert', 'anywhere in the file, with a comment')
  t.equal(parse('mode=enforce\n').profile.modeSource, `${F}:1`)
  const bad = parse('mode=block\nmode=learn\napi.example\n')
  t.equal(bad.profile.mode, 'enforce', 'an invalid mode claims the line: the profile stays enforce (fail closed)')
  t.same(bad.problems.map(formatProblem), [
    `${F}:1: invalid mode=block (want learn, alert or enforce); the profile stays in enforce mode`,
    `${F}:2: mode= given twice in a profile (first at ${F}:1); this line is ignored`,
  ])
  const twice = parse('mode=learn\nmode=enforce\n')
  t.equal(twice.profile.mode, 'learn', 'the first mode line wins')
  t.equal(twice.problems[0]!.code, 'duplicate-mode')
  t.same(texts('mode=learn api.example\napi.example mode=alert\nok.example\n'), [
    `${F}:1: mode= goes on a line of its own in a profile (it sets the mode of the whole profile: mode=learn, mode=alert or mode=enforce)`,
    `${F}:2: mode= goes on a line of its own in a profile (it sets the mode of the whole profile: mode=learn, mode=alert or mode=enforce)`,
  ])
  // A comment above the mode line is not the reason of the next destination.
  t.equal(parse('# learning first\nmode=learn\napi.example\n').profile.rules[0]!.reason, undefined)
})

t.test('blocklist syntax without meaning in a profile is refused by line; the rest applies', async (t) => {
  const { profile, problems } = parse(
    [
      '@@api.example',
      'old.example expires=2027-01-01',
      '0.0.0.0 a.example b.example',
      'x.example y.example',
      'z.example color=red',
      'ok.example',
      '203.0.113.7/24',
      '4.0.0.0/7',
      '2.0.0.0/7 force',
      '127.0.0.1',
      'bad..example',
      '||ads.example^$third-party',
      'com',
    ].join('\n'),
  )
  t.same(profile.rules.map((r) => r.value), ['ok.example', '2.0.0.0/7', 'com'])
  t.equal(profile.rules[1]!.force, true)
  t.same(problems.map(formatProblem), [
    `${F}:1: "@@" has no meaning in a profile: every line allows, and a fleet-wide block still wins`,
    `${F}:2: expires= is not supported in a profile: a line applies until it is removed from the file`,
    `${F}:3: a profile line holds one destination; the hosts-file form (0.0.0.0 NAME...) is not accepted in a profile`,
    `${F}:4: unexpected text "y.example" after "x.example"; put a reason after "#" or ";"`,
    `${F}:5: unknown option "color=" in a profile (known: port=, force; mode= on a line of its own)`,
    `${F}:7: 203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?`,
    `${F}:8: 4.0.0.0/7 is broader than /8; add "force" to the line if you really mean it`,
    `${F}:10: 127.0.0.1/32 overlaps loopback addresses; never accepted (it would cut the host off itself)`,
    `${F}:11: empty label in name "bad..example"`,
    `${F}:12: warning: adblock options "$third-party" cannot be enforced by DNS or IP blocking; line skipped`,
    `${F}:13: warning: "com" is a single label (a whole top-level domain?): every name under it is affected`,
  ])
})

t.test('duplicates merge into the first line: ports united, any-port wins; a warning names the first', async (t) => {
  const { profile, problems } = parse('api.example port=443\napi.example port=80\n*.api.example\nweb.example port=443\nweb.example\n')
  t.same(profile.rules.map((r) => [r.value, r.subdomainsOnly ?? false, r.ports, r.source]), [
    ['api.example', false, [80, 443], `${F}:1`],
    ['api.example', true, undefined, `${F}:3`],
    ['web.example', false, undefined, `${F}:4`],
  ], '`*.api.example` is a different destination from `api.example`')
  t.same(problems.map(formatProblem), [
    `${F}:2: warning: duplicate of ${F}:1 (api.example); its ports are merged into that line`,
    `${F}:5: warning: duplicate of ${F}:4 (web.example); its ports are merged into that line`,
  ])
})

t.test('an enforce profile that allows nothing is a warning; a learn one is the usual start', async (t) => {
  t.same(texts('# nothing yet\n'), [`${F}:0: warning: the profile allows nothing: containers held to it reach only the DNS sinkhole`])
  t.same(texts('mode=learn\n'), [])
  t.same(texts(''), [`${F}:0: warning: the profile allows nothing: containers held to it reach only the DNS sinkhole`])
})

t.test('line handling as in blocklists: BOM, CRLF, blank line ends a pending comment, long lines', async (t) => {
  const { profile, problems } = parse('\ufeff# kept\r\napi.example\r\n# dropped\r\n\r\nweb.example\r\n' + 'x'.repeat(5000) + '\n')
  t.same(profile.rules.map((r) => [r.value, r.reason, r.source]), [
    ['api.example', 'kept', `${F}:2`],
    ['web.example', undefined, `${F}:5`],
  ])
  t.same(problems.map(formatProblem), [`${F}:6: line is 5000 characters long, the limit is 4096`])
})

t.test('profile names: from NAME.txt; other names in a profiles directory are problems', async (t) => {
  t.same(profileNameOf('web-1_a.txt'), { ok: true, name: 'web-1_a' })
  for (const bad of ['Web.txt', '-web.txt', '_web.txt', 'web.list', 'web', 'we b.txt', '.txt', 'a.b.txt', 'x'.repeat(64) + '.txt']) {
    t.equal(profileNameOf(bad).ok, false, bad)
  }
  t.ok(isProfileName('x'.repeat(63)))
  t.notOk(isProfileName('web;rm -rf /'))
  t.same(pickProfileFiles(['web.txt', '.web.txt.swp', 'README.md', 'Api.txt', 'db.txt', 'notes.md']), {
    files: [{ fileName: 'db.txt', name: 'db' }, { fileName: 'web.txt', name: 'web' }],
    misnamed: [
      { fileName: 'Api.txt', message: '"Api.txt" is not a profile file name: want NAME.txt, NAME of a-z 0-9 _ - starting with a letter or digit, at most 63 characters; skipped' },
      { fileName: 'notes.md', message: '"notes.md" is not a profile file name: want NAME.txt, NAME of a-z 0-9 _ - starting with a letter or digit, at most 63 characters; skipped' },
    ],
  })
})

t.test('etag: unchanged without profiles; any change of meaning changes it, moving lines does not', async (t) => {
  t.equal(policyEtag('abc', []), 'abc')
  t.equal(policyEtag('abc', undefined), 'abc')
  const a = parse('api.example port=443\nweb.example\n').profile
  const base = policyEtag('abc', [a])
  t.not(base, 'abc')
  t.equal(policyEtag('abc', [parse('\n\nweb.example\napi.example port=443\n').profile]), base, 'order and line numbers do not matter')
  t.not(policyEtag('abd', [a]), base, 'the entries still count')
  for (const changed of ['api.example port=80\nweb.example\n', 'api.example port=443\nweb.example\nmode=learn\n', 'api.example port=443\n*.web.example\n', 'api.example port=443\nweb.example # why\n']) {
    t.not(policyEtag('abc', [parse(changed).profile]), base, changed)
  }
  t.not(policyEtag('abc', [{ ...a, name: 'other' }]), base, 'the name counts')
  t.equal(profilesKey([{ ...a, name: 'b' }, a]), profilesKey([a, { ...a, name: 'b' }]), 'profile order does not matter')
})
