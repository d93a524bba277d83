// Profiles (`<blocklists>/profiles/NAME.txt`) in the server's policy: a profile change is a new
// version with a new etag, served in full and in diffs, woken long-polls; bad, misnamed, unreadable
// and deleted profile files; GET /v1/profiles; the watcher sees a change inside profiles/.
import t from 'tap'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { makeServer, type Fixture } from './fixtures/server.js'
import { buildPolicy } from '../../src/policy/merge.js'
import type { Entry, Profile } from '../../src/policy/types.js'

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return
    await sleep(10)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const get = (f: Fixture, url: string, etag?: string) => f.app.inject({ url, headers: { ...f.auth.agent, ...(etag ? { 'if-none-match': `"${etag}"` } : {}) } })
const policy = async (f: Fixture) => (await get(f, '/v1/policy')).json() as { version: number; etag: string; entries: Entry[]; profiles?: Profile[] }

t.test('a profile change bumps the version and the etag, is served, and wakes a long-poll', async (t) => {
  const f = await makeServer(t)
  const v1 = await policy(f)
  t.equal(v1.profiles, undefined, 'no profiles directory: no profiles key (the body is what it was before profiles)')
  t.equal(v1.etag, buildPolicy(v1.entries).etag, 'and the etag is the entries\' own')

  const pdir = join(f.blocklists, 'profiles')
  await mkdir(pdir)
  await writeFile(join(pdir, 'web.txt'), 'mode=learn\n# the API\napi.example port=443\n198.51.100.0/24\n')
  const waiting = get(f, '/v1/policy?wait=30', v1.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the request to wait')
  await f.app.eg.reload()
  const r = await waiting
  t.equal(r.statusCode, 200, 'the long-poll is woken by a profile file')
  const v2 = r.json() as typeof v1
  t.equal(v2.version, v1.version + 1)
  t.not(v2.etag, v1.etag)
  t.equal(r.headers.etag, `"${v2.etag}"`)
  t.same(v2.profiles, [{
    name: 'web',
    mode: 'learn',
    source: 'blocklists/profiles/web.txt',
    modeSource: 'blocklists/profiles/web.txt:1',
    rules: [
      { kind: 'domain', value: 'api.example', ports: [443], reason: 'the API', source: 'blocklists/profiles/web.txt:3' },
      { kind: 'net', value: '198.51.100.0/24', source: 'blocklists/profiles/web.txt:4' },
    ],
  }])
  t.same(v2.entries, v1.entries, 'the entries did not change')
  t.equal((await get(f, '/v1/policy', v2.etag)).statusCode, 304)

  // Reading the same files again is not a new version.
  await f.app.eg.reload()
  t.equal((await policy(f)).version, v2.version)
  // Moving a line is not a new policy (as for blocklist lines); changing a port is.
  await writeFile(join(pdir, 'web.txt'), 'mode=learn\n198.51.100.0/24\n\n# the API\napi.example port=443\n')
  await f.app.eg.reload()
  t.equal((await policy(f)).etag, v2.etag, 'same meaning, same etag')
  await writeFile(join(pdir, 'web.txt'), 'mode=learn\n198.51.100.0/24\n# the API\napi.example port=8443\n')
  await f.app.eg.reload()
  const v3 = await policy(f)
  t.equal(v3.version, v2.version + 1)
  t.not(v3.etag, v2.etag)
  t.same(v3.profiles![0]!.rules.find((x) => x.value === 'api.example')!.ports, [8443])
  // Mode change alone.
  await writeFile(join(pdir, 'web.txt'), 'mode=enforce\n198.51.100.0/24\n# the API\napi.example port=8443\n')
  await f.app.eg.reload()
  const v4 = await policy(f)
  t.equal(v4.version, v3.version + 1)
  t.equal(v4.profiles![0]!.mode, 'enforce')

  // A diff since an older version carries the profiles whole.
  const d = await get(f, `/v1/policy?since=${v2.version}`)
  t.equal(d.headers['x-policy-diff'], '1')
  t.same([d.json().added, d.json().removed], [[], []], 'no entry changed')
  t.equal(d.json().etag, v4.etag)
  t.same(d.json().profiles, v4.profiles)

  // The profiles go: the etag is the entries' own again.
  await rm(pdir, { recursive: true })
  await f.app.eg.reload()
  const v5 = await policy(f)
  t.equal(v5.version, v4.version + 1)
  t.equal(v5.profiles, undefined)
  t.equal(v5.etag, v1.etag)
})

t.test('bad lines, misnamed, unreadable and deleted profile files; GET /v1/profiles', async (t) => {
  const f = await makeServer(t)
  const pdir = join(f.blocklists, 'profiles')
  await mkdir(pdir)
  await writeFile(join(pdir, 'web.txt'), 'api.example\n@@evil.example\nmode=alert\n')
  await writeFile(join(pdir, 'db.txt'), '198.51.100.0/24 port=5432\n')
  await writeFile(join(pdir, 'Web.txt'), 'everything.example\n')
  await writeFile(join(pdir, 'README.md'), 'profiles live here\n')
  await f.app.eg.reload()
  const p = await policy(f)
  t.same(p.profiles!.map((x) => [x.name, x.mode, x.rules.map((r) => r.value)]), [
    ['db', 'enforce', ['198.51.100.0/24']],
    ['web', 'alert', ['api.example']],
  ], 'the bad line is skipped, the misnamed file is no profile, README is ignored')
  const probs = (await f.app.inject({ url: '/v1/policy/problems', headers: f.auth.read })).json().problems as Array<{ text: string }>
  t.same(probs.map((x) => x.text).sort(), [
    'blocklists/profiles/Web.txt:0: "Web.txt" is not a profile file name: want NAME.txt, NAME of a-z 0-9 _ - starting with a letter or digit, at most 63 characters; skipped',
    'blocklists/profiles/web.txt:2: "@@" has no meaning in a profile: every line allows, and a fleet-wide block still wins',
  ])

  const list = await f.app.inject({ url: '/v1/profiles', headers: f.auth.read })
  t.equal(list.statusCode, 200)
  t.same(list.json().profiles.map((x: { name: string; mode: string; lines: number; source: string }) => [x.name, x.mode, x.lines, x.source]), [
    ['db', 'enforce', 1, 'blocklists/profiles/db.txt'],
    ['web', 'alert', 1, 'blocklists/profiles/web.txt'],
  ])
  t.equal(list.json().version, p.version)
  t.equal((await f.app.inject({ url: '/v1/profiles', headers: f.auth.agent })).statusCode, 403, 'agents get profiles with the policy, not here')
  t.equal((await f.app.inject({ url: '/v1/profiles' })).statusCode, 401)

  // A file that turns to binary garbage keeps its previous profile, and the version stays.
  await writeFile(join(pdir, 'db.txt'), Buffer.from([0x00, 0xff]))
  await f.app.eg.reload()
  const kept = await policy(f)
  t.equal(kept.version, p.version)
  t.same(kept.profiles!.map((x) => x.name), ['db', 'web'])
  const p2 = (await f.app.inject({ url: '/v1/policy/problems', headers: f.auth.read })).json().problems as Array<{ text: string }>
  t.ok(p2.some((x) => /profiles\/db\.txt:0: not a text file .*keeping its previous content/.test(x.text)), JSON.stringify(p2))
  // A deleted file takes its profile with it.
  await rm(join(pdir, 'db.txt'))
  await f.app.eg.reload()
  const gone = await policy(f)
  t.same(gone.profiles!.map((x) => x.name), ['web'])
  t.equal(gone.version, p.version + 1)
})

t.test('a profile name in two blocklist directories: the first directory\'s is used, the other is a problem', async (t) => {
  const f = await makeServer(t)
  const other = join(f.dir, 'more')
  await mkdir(join(other, 'profiles'), { recursive: true })
  await mkdir(join(f.blocklists, 'profiles'))
  await writeFile(join(f.blocklists, 'profiles', 'web.txt'), 'api.example\n')
  await writeFile(join(other, 'profiles', 'web.txt'), 'everything.example\n')
  await f.app.close()
  const g = await makeServer(t, { deps: { blocklistDirs: [f.blocklists, other] } })
  const p = await policy(g)
  t.same(p.profiles!.map((x) => [x.name, x.source, x.rules.map((r) => r.value)]), [['web', 'blocklists/profiles/web.txt', ['api.example']]])
  const probs = (await g.app.inject({ url: '/v1/policy/problems', headers: g.auth.read })).json().problems as Array<{ text: string }>
  t.same(probs.map((x) => x.text), ['more/profiles/web.txt:0: profile "web" is also defined in blocklists/profiles/web.txt, which is used; this file is ignored'])
})

t.test('the watcher sees a change inside profiles/, also when the directory appears later', async (t) => {
  const f = await makeServer(t, { deps: { watch: true } })
  const v1 = await policy(f)
  const pdir = join(f.blocklists, 'profiles')
  await mkdir(pdir)
  await writeFile(join(pdir, 'web.txt'), 'api.example\n')
  await until(() => f.app.eg.policy.current.profiles?.length === 1, 'the new profiles directory to be read')
  const v2 = await policy(f)
  t.ok(v2.version > v1.version)
  const waiting = get(f, '/v1/policy?wait=30', v2.etag)
  await until(() => f.app.eg.policy.waiters.size === 1, 'the request to wait')
  // A change to a file inside profiles/ (the blocklists directory itself does not change).
  await writeFile(join(pdir, 'web.txt'), 'api.example port=443\n')
  const r = await waiting
  t.equal(r.statusCode, 200, 'woken by the edit inside profiles/')
  t.same(r.json().profiles[0].rules[0].ports, [443])
})
