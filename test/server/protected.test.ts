// A block entry that covers what the fleet must keep reaching (the server's own addresses, its
// resolvers, --protect): the API refuses it without force (409 EG_PROTECTED, nothing changes) and
// takes it with force (with a warning); a blocklist file line is reported as `file:line: message` and
// skipped, the rest of the file applies. The protected list comes from interfaces and resolv.conf.
import t from 'tap'
import { makeServer } from './fixtures/server.js'
import { protectedNets } from '../../src/policy/protect-check.js'
import { serverProtected } from '../../src/server/protected-addresses.js'

const PROTECT = protectedNets([
  { value: '198.51.100.1', why: "this server's address" },
  { value: '192.0.2.53', why: "this server's resolver" },
  { value: '2001:db8:53::/48', why: '--protect' },
])

t.test('API: a block covering a protected address is refused without force, accepted with it', async (t) => {
  const f = await makeServer(t, { deps: { protect: PROTECT } })
  const add = (entries: unknown[]) => f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries } })
  const before = await f.snapshot()
  const version = (await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })).json().version

  for (const value of ['198.51.100.0/24', '198.51.100.1', '192.0.2.0/25', '2001:db8:53:1::/64']) {
    const r = await add([{ value, reason: 'hostile push' }])
    t.equal(r.statusCode, 409, `${value}: refused`)
    t.equal(r.json().code, 'EG_PROTECTED')
    t.match(r.json().message, /covers .* add "force"/)
    t.equal(r.json().details.problems[0].code, 'covers-protected')
  }
  // All or nothing: one protected entry among valid ones refuses the batch.
  const mixed = await add([{ value: '203.0.113.9', reason: 'fine' }, { value: '198.51.100.0/24', reason: 'not fine' }])
  t.equal(mixed.statusCode, 409)
  t.equal(mixed.json().details.problems[0].index, 1)
  t.equal(await f.snapshot(), before, 'nothing was stored, no version bumped')
  t.equal((await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })).json().version, version)

  // Not covering anything protected, or not a block: accepted as before.
  for (const e of [{ value: '198.51.101.0/24', reason: 'next door' }, { value: '198.51.100.0/24', reason: 'watch it', mode: 'alert' }, { value: '198.51.100.1', reason: 'never block', allow: true }]) {
    t.equal((await add([e])).statusCode, 201, `${JSON.stringify(e)} accepted`)
  }

  const forced = await add([{ value: '198.51.100.0/24', reason: 'really', force: true }])
  t.equal(forced.statusCode, 201, forced.body)
  t.equal(forced.json().warnings[0].code, 'covers-protected')
  t.match(forced.json().warnings[0].message, /applied because of force/)
  const entries = (await f.app.inject({ url: '/v1/entries?source=api', headers: f.auth.read })).json().entries
  t.ok(entries.some((e: { value: string; force?: boolean; mode: string }) => e.value === '198.51.100.0/24' && e.force && e.mode === 'block'), 'the forced block is in the policy')
})

t.test('blocklist files: a covering line is reported as file:line and skipped, the rest applies; force applies it with a warning', async (t) => {
  const f = await makeServer(t, {
    deps: { protect: PROTECT },
    files: { 'a.txt': 'evil.example\n198.51.100.0/24\n203.0.113.0/24\n192.0.2.53 force ; we mean it\n' },
  })
  const policy = (await f.app.inject({ url: '/v1/policy', headers: f.auth.agent })).json()
  const values = policy.entries.map((e: { value: string }) => e.value).sort()
  t.same(values, ['192.0.2.53/32', '203.0.113.0/24', 'evil.example'], 'the covering line without force is not applied; the rest is')
  const problems = (await f.app.inject({ url: '/v1/policy/problems', headers: f.auth.read })).json().problems as Array<{ text: string; severity: string; code: string; line: number }>
  const covering = problems.filter((p) => p.code === 'covers-protected')
  t.same(covering.map((p) => [p.line, p.severity]), [[2, 'error'], [4, 'warning']])
  t.match(covering[0]!.text, /^blocklists\/a\.txt:2: 198\.51\.100\.0\/24 covers 198\.51\.100\.1\/32 \(this server's address\); add "force"/)
  t.match(covering[1]!.text, /^blocklists\/a\.txt:4: .*applied because of force/)
})

t.test("the server's protected list: its interfaces (not loopback or link-local), its resolvers, --protect", async (t) => {
  const ifaces = {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [
      { address: '198.51.100.1', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '198.51.100.1/24' },
      { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
    ],
  } as unknown as Parameters<typeof serverProtected>[0]
  const list = serverProtected(ifaces, 'search example\nnameserver 192.0.2.53\nnameserver 127.0.0.53\n', ['10.20.0.0/16'])
  t.same(list.map((p) => [p.text, p.why]), [
    ['10.20.0.0/16', '--protect'],
    ['198.51.100.1/32', "this server's address"],
    ['192.0.2.53/32', "this server's resolver"],
  ])
})
