// `egress-guard match` end to end: the built CLI against a temporary blocklist directory.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), `eg-match-${process.pid}-`))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const lists = join(dir, 'blocklists')
mkdirSync(lists)
writeFileSync(
  join(lists, 'incident.txt'),
  [
    '# The dropper download host',
    'evil.example', // line 2
    '@@good.evil.example # our own CDN', // line 3
    '*.tracker.example ; SBL42', // line 4
    'trial.example mode=alert # try before enforcing', // line 5
    '',
    '203.0.113.0/24 ; SBL123', // line 7
    '203.0.113.7 # the C2 host', // line 8
    '2001:db8:bad::/48', // line 9
    'old.example expires=2020-01-01', // line 10
    'this is not a valid entry', // line 11
  ].join('\n') + '\n',
)
writeFileSync(join(lists, 'more.list'), 'x.good.evil.example\n')
const run = (args: string[]) => runCli(['match', ...args, '--blocklists', lists])

t.test('blocked: exit 0, prints value, file:line, reason, mode', async (t) => {
  const r = await run(['www.Evil.Example.'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /www\.Evil\.Example\.: blocked by evil\.example/)
  t.match(r.stdout, new RegExp(`source  ${lists}/incident\\.txt:2\\n`))
  t.match(r.stdout, /reason  The dropper download host/)
  t.match(r.stdout, /mode    block/)
  t.match(r.stderr, /incident\.txt:11: /, 'lint problems go to stderr')
  t.notMatch(r.stdout, /incident\.txt:11/, 'and not to stdout')

  const ip = await run(['203.0.113.7'])
  t.equal(ip.code, 0)
  t.match(ip.stdout, /blocked by 203\.0\.113\.7\/32/, 'the most specific network')
  t.match(ip.stdout, /incident\.txt:8\n/)
  t.match(ip.stdout, /reason  the C2 host/)
  const net = await run(['203.0.113.200'])
  t.equal(net.code, 0)
  t.match(net.stdout, /blocked by 203\.0\.113\.0\/24[\s\S]*reason  SBL123/)
  const v6 = await run(['2001:db8:bad::1'])
  t.equal(v6.code, 0)
  t.match(v6.stdout, /blocked by 2001:db8:bad::\/48/)
  const mapped = await run(['::ffff:203.0.113.9'])
  t.equal(mapped.code, 0)
  const sub = await run(['a.tracker.example'])
  t.equal(sub.code, 0)
  t.match(sub.stdout, /blocked by \*\.tracker\.example[\s\S]*reason  SBL42/)
})

t.test('not blocked: exit 1 and says why (no match, allow, alert only, expired)', async (t) => {
  const none = await run(['notevil.example'])
  t.equal(none.code, 1)
  t.match(none.stdout, /not blocked: no entry matches/)
  const allow = await run(['x.good.evil.example'])
  t.equal(allow.code, 1, 'the allow beats the more specific block in another file')
  t.match(allow.stdout, /not blocked: allowed by @@good\.evil\.example/)
  t.match(allow.stdout, /reason  our own CDN/)
  const alert = await run(['trial.example'])
  t.equal(alert.code, 1)
  t.match(alert.stdout, /not blocked: alert only/)
  t.match(alert.stdout, /mode    alert/)
  const bare = await run(['tracker.example'])
  t.equal(bare.code, 1, '*.tracker.example does not cover tracker.example')
  const old = await run(['old.example'])
  t.equal(old.code, 1, 'expired entries do not match')
  const ip = await run(['198.51.100.1'])
  t.equal(ip.code, 1)
})

t.test('--json prints the verdict', async (t) => {
  const r = await run(['www.evil.example', '--json'])
  t.equal(r.code, 0)
  const j = JSON.parse(r.stdout)
  t.equal(j.blocked, true)
  t.equal(j.kind, 'name')
  t.equal(j.verdict.action, 'block')
  t.match(j.verdict.entry, { kind: 'domain', value: 'evil.example', source: `${lists}/incident.txt:2`, reason: 'The dropper download host', mode: 'block', allow: false })
  const a = JSON.parse((await run(['good.evil.example', '--json'])).stdout)
  t.equal(a.blocked, false)
  t.equal(a.verdict.action, 'allow')
  const n = await run(['nothing.example', '--json'])
  t.equal(n.code, 1)
  t.same(JSON.parse(n.stdout), { query: 'nothing.example', normalized: 'nothing.example', kind: 'name', blocked: false, verdict: null })
})

t.test('bad input: exit 2 with a clear message', async (t) => {
  for (const [q, msg] of [
    ['bad name!', /invalid character/],
    ['1.2.3', /neither a valid IP address nor a name/],
    ['203.0.113.0/24', /is a network/],
    ['2001:db8::zz', /not a valid IPv6 address/],
    ['*.evil.example', /belongs in blocklist entries/],
    ['', /empty query/],
  ] as const) {
    const r = await run([q])
    t.equal(r.code, 2, `exit 2 for ${JSON.stringify(q)}`)
    t.match(r.stderr, msg)
    t.equal(r.stdout, '')
  }
  const j = await run(['a..b', '--json'])
  t.equal(j.code, 2)
  t.equal(JSON.parse(j.stdout).error.code, 'EG_BAD_INPUT')
  const none = await runCli(['match'])
  t.equal(none.code, 2, 'no query')
  const missing = await runCli(['match', 'evil.example', '--blocklists', join(dir, 'nope')])
  t.equal(missing.code, 2, 'no readable blocklist')
  t.match(missing.stderr, /no blocklist could be read/)
})

t.test('default directory is ./blocklists', async (t) => {
  const r = await runCli(['match', 'evil.example'], { cwd: dir })
  t.equal(r.code, 0)
  t.match(r.stdout, /source  blocklists\/incident\.txt:2/)
})
