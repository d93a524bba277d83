// The DNS-side decision of a profile: which names (and addresses) it allows and which line did.
import t from 'tap'
import { parseProfile } from '../../src/profiles/parse.js'
import { compileProfile, compileProfiles } from '../../src/profiles/decide.js'

const F = 'blocklists/profiles/web.txt'
const profile = parseProfile(
  [
    'mode=enforce',
    'api.example port=443 # the API',
    '*.cdn.example',
    'deep.cdn.example port=8443',
    'bücher.example',
    '198.51.100.0/24 port=5432',
    '2001:db8::/48',
  ].join('\n'),
  F,
  'web',
).profile
const c = compileProfile(profile)
const line = (name: string): string | undefined => {
  const d = c.decideName(name)
  return d.action === 'allow' ? d.rule.source : undefined
}

t.test('`name` allows the name and every name under it', async (t) => {
  t.equal(line('api.example'), `${F}:2`)
  t.equal(line('v1.api.example'), `${F}:2`)
  t.equal(line('a.b.c.api.example'), `${F}:2`)
  const d = c.decideName('api.example')
  t.equal(d.action, 'allow')
  t.same(d.rule?.ports, [443], 'the deciding line carries its ports')
  t.equal(d.rule?.reason, 'the API')
})

t.test('names beside it, above it, or that only end the same way are denied', async (t) => {
  for (const n of ['example', 'xapi.example', 'api.example.evil.example', 'api.examples', 'other.example', 'evil.example', '']) {
    t.same(c.decideName(n), { action: 'deny' }, JSON.stringify(n))
  }
})

t.test('`*.name` allows names under it, not the name itself; the most specific line wins', async (t) => {
  t.equal(line('cdn.example'), undefined)
  t.equal(line('img.cdn.example'), `${F}:3`)
  t.equal(line('deep.cdn.example'), `${F}:4`, 'the more specific line decides (its ports apply)')
  t.equal(line('x.deep.cdn.example'), `${F}:4`)
})

t.test('case, trailing dot and punycode do not change the answer', async (t) => {
  t.equal(line('API.Example.'), `${F}:2`)
  t.equal(line('Img.CDN.example.'), `${F}:3`)
  t.equal(line('bücher.example'), `${F}:5`)
  t.equal(line('xn--bcher-kva.example'), `${F}:5`)
  t.equal(line('WWW.XN--BCHER-KVA.EXAMPLE.'), `${F}:5`)
})

t.test('addresses: network lines allow their addresses, IPv4-mapped included', async (t) => {
  const ip = (a: string) => {
    const d = c.decideIp(a)
    return d.action === 'allow' ? d.rule.source : 'deny'
  }
  t.equal(ip('198.51.100.9'), `${F}:6`)
  t.equal(ip('::ffff:198.51.100.9'), `${F}:6`)
  t.equal(ip('198.51.101.9'), 'deny')
  t.equal(ip('2001:db8:0:1::5'), `${F}:7`)
  t.equal(ip('2001:db9::5'), 'deny')
  t.equal(ip('not an address'), 'deny')
})

t.test('a decision allocates nothing new: the same frozen object per line', async (t) => {
  const a = c.decideName('v1.api.example')
  t.equal(c.decideName('v2.api.example'), a)
  t.ok(Object.isFrozen(a))
})

t.test('an empty profile denies everything; compileProfiles indexes by name', async (t) => {
  const empty = compileProfile(parseProfile('mode=learn\n', 'p/empty.txt', 'empty').profile)
  t.same(empty.decideName('api.example'), { action: 'deny' })
  t.same(empty.decideIp('198.51.100.9'), { action: 'deny' })
  const m = compileProfiles([profile, empty.profile])
  t.same([...m.keys()], ['web', 'empty'])
  t.equal(m.get('web')!.decideName('api.example').action, 'allow')
  t.equal(compileProfiles(undefined).size, 0)
})
