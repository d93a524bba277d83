// Which containers a quarantine names: a name (with or without `/`), an id prefix of at least 12 hex
// digits, a compose service; a host restriction; the earliest quarantine when several match; and the
// structural check the agent runs on quarantines from the wire.
import t from 'tap'
import { containerMatches, isContainerText, quarantineActive, quarantineFor, quarantineMatches } from '../../src/quarantine/match.js'
import { cleanQuarantines, quarantinesProblems } from '../../src/quarantine/check.js'
import type { Quarantine } from '../../src/quarantine/types.js'

const id = '3f2a9c8b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a'
const web = { id, name: 'shop-web-1', service: 'web' }
const q = (over: Partial<Quarantine> = {}): Quarantine => ({ id: 'q-000000000001', container: 'shop-web-1', reason: 'miner', added: '2026-06-01T12:00:00.000Z', actor: 'alice', ...over })

t.test('a container text matches by name, compose service or id prefix', async (t) => {
  t.ok(containerMatches('shop-web-1', web), 'name')
  t.ok(containerMatches('/shop-web-1', web), 'name with the leading / Docker puts on it')
  t.ok(containerMatches('web', web), 'compose service')
  t.ok(containerMatches(id.slice(0, 12), web), '12-digit id prefix (docker ps)')
  t.ok(containerMatches(id.slice(0, 12).toUpperCase(), web), 'hex in any case')
  t.ok(containerMatches(id, web), 'the whole id')
  t.notOk(containerMatches(id.slice(0, 11), web), 'an 11-digit prefix is too short to name a container fleet-wide')
  t.notOk(containerMatches(id.slice(0, 4), web))
  t.notOk(containerMatches('shop-web', web), 'a name is matched whole, not as a prefix')
  t.notOk(containerMatches('Shop-web-1', web), 'names are case-sensitive, as in Docker')
  t.notOk(containerMatches('web', { id, name: 'web-2' }), 'no service label: no service match')
  t.notOk(containerMatches('/', web))
  t.notOk(containerMatches('', web))
  // A 12-digit hex text that is also somebody's name matches both ways (fail closed).
  const hexName = id.slice(0, 12)
  t.ok(containerMatches(hexName, { id: 'f'.repeat(64), name: hexName }))
})

t.test('container texts the API accepts', async (t) => {
  for (const ok of ['web', '/web', 'shop_web.1-a', 'A1', id]) t.ok(isContainerText(ok), ok)
  for (const bad of ['', '/', '-web', '.web', 'web 1', 'web;rm', 'a/b', '$(x)', 'x'.repeat(257)]) t.notOk(isContainerText(bad), bad)
})

t.test('quarantineMatches: host restriction; quarantineFor picks the earliest', async (t) => {
  t.ok(quarantineMatches(q(), web, 'web1'), 'no host: every host')
  t.ok(quarantineMatches(q({ host: 'web1' }), web, 'web1'))
  t.ok(quarantineMatches(q({ host: 'WEB1' }), web, 'web1'), 'host names compare without case')
  t.notOk(quarantineMatches(q({ host: 'web2' }), web, 'web1'), 'another host: not here')
  t.notOk(quarantineMatches(q({ container: 'db' }), web, 'web1'))
  const later = q({ id: 'q-000000000002', container: 'web', added: '2026-06-01T13:00:00.000Z' })
  const earlier = q({ id: 'q-000000000003', container: id.slice(0, 12), added: '2026-06-01T11:00:00.000Z' })
  t.equal(quarantineFor([later, earlier, q({ id: 'q-000000000004', container: 'db' })], web, 'web1')?.id, 'q-000000000003')
  t.equal(quarantineFor([later], { id, name: 'other' }, 'web1'), undefined)
  t.equal(quarantineFor(undefined, web, 'web1'), undefined)
})

t.test('quarantineActive: up to and including the expiry instant', async (t) => {
  const e = { expires: '2026-06-01T16:00:00Z' }
  t.ok(quarantineActive({}, new Date('2100-01-01')))
  t.ok(quarantineActive(e, new Date('2026-06-01T16:00:00Z')))
  t.notOk(quarantineActive(e, new Date('2026-06-01T16:00:00.001Z')))
})

t.test('the agent\'s check: every field as the server makes it', async (t) => {
  t.same(quarantinesProblems(undefined), [])
  t.same(quarantinesProblems([q(), q({ id: 'q-0000000000ff', host: 'web1', expires: '2026-06-02T00:00:00Z' })]), [])
  t.match(quarantinesProblems('x')[0], /must be a list/)
  const bad = (over: object) => quarantinesProblems([{ ...q(), ...over }])[0]
  t.match(bad({ id: 'api-1' }), /id must be q-/)
  t.match(bad({ container: 'a b' }), /container must be/)
  t.match(bad({ container: '$(reboot)' }), /container must be/)
  t.match(bad({ host: 'a b' }), /host must be/)
  t.match(bad({ reason: '' }), /reason must be/)
  t.match(bad({ expires: 'soon' }), /expires is not a date/)
  t.match(bad({ added: 3 }), /added is not a date/)
  t.match(bad({ actor: {} }), /actor/)
  t.match(quarantinesProblems([q(), q()])[0], /id given twice/)
  t.match(quarantinesProblems([null])[0], /not an object/)
  t.same(cleanQuarantines([{ ...q({ host: 'web1' }), junk: 1 } as Quarantine]), [q({ host: 'web1' })], 'unknown fields are dropped')
})
