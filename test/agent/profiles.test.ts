// Profiles on the agent side: the policy check refuses a policy with a malformed profile, the cache
// keeps profiles, the sync applies profile changes that arrive as diffs from a real server (the etag
// recomputed over entries and profiles matches), and a local --blocklists directory's profiles/ are
// read and combined with the server's.
import t from 'tap'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeServer } from '../server/fixtures/server.js'
import { createApiClient } from '../../src/client/api-client.js'
import { createPolicySync } from '../../src/agent/sync.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { policyProblems, cleanPolicy } from '../../src/agent/policy-check.js'
import { combinePolicies, createLocalSource, serverEtag } from '../../src/agent/local-source.js'
import { silentLogger } from '../../src/log.js'
import type { Policy, Profile } from '../../src/policy/types.js'

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), `eg-aprof-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

const web: Profile = {
  name: 'web',
  mode: 'enforce',
  source: 'blocklists/profiles/web.txt',
  rules: [
    { kind: 'domain', value: 'api.example', ports: [443], source: 'blocklists/profiles/web.txt:1', reason: 'the API' },
    { kind: 'domain', value: 'cdn.example', subdomainsOnly: true, source: 'blocklists/profiles/web.txt:2' },
    { kind: 'net', value: '198.51.100.0/24', source: 'blocklists/profiles/web.txt:3' },
  ],
}
const base: Policy = { version: 3, etag: 'e', generatedAt: '2026-06-01T00:00:00.000Z', entries: [], profiles: [web] }

t.test('policy check: valid profiles pass; any malformed profile rejects the policy', async (t) => {
  t.same(policyProblems(base), [])
  t.same(policyProblems({ ...base, profiles: undefined }), [])
  const bad = (p: unknown) => policyProblems({ ...base, profiles: [p] })
  const rule = (r: object) => bad({ ...web, rules: [{ ...web.rules[0], ...r }] })
  t.match(policyProblems({ ...base, profiles: 'x' })[0], /profiles must be a list/)
  t.match(bad({ ...web, name: 'Web' })[0], /name must match/)
  t.match(bad({ ...web, name: 'a;rm -rf /' })[0], /name must match/)
  t.match(bad({ ...web, mode: 'block' })[0], /mode must be learn, alert or enforce/)
  t.match(bad({ ...web, rules: 'x' })[0], /rules must be a list/)
  t.match(policyProblems({ ...base, profiles: [web, web] })[0], /name given twice/)
  t.match(rule({ value: 'API.example' })[0], /not in normal form/)
  t.match(rule({ value: '*.api.example' })[0], /not in normal form/)
  t.match(rule({ value: 'a b' })[0], /invalid character/)
  t.match(rule({ ports: [443, 80] })[0], /sorted and unique/)
  t.match(rule({ ports: [0] })[0], /1\.\.65535/)
  t.match(rule({ ports: [] })[0], /list of 1\.\.32 ports/)
  t.match(rule({ kind: 'net', value: '198.51.100.7' })[0], /not canonical/)
  t.match(rule({ kind: 'net', value: '127.0.0.0/8' })[0], /loopback/)
  t.match(rule({ kind: 'net', value: '0.0.0.0/0' })[0], /every address/)
  t.match(rule({ kind: 'net', value: '4.0.0.0/7' })[0], /broader/)
  t.same(rule({ kind: 'net', value: '4.0.0.0/7', force: true }), [])
  t.match(rule({ kind: 'other' })[0], /kind/)
  t.match(rule({ source: 3 })[0], /source/)
  // cleanPolicy keeps the documented fields only, and adds no key to a policy without profiles.
  const dirty = { ...base, extra: 1, profiles: [{ ...web, junk: true, rules: [{ ...web.rules[0]!, junk: 1 }] }] } as unknown as Policy
  t.same(cleanPolicy(dirty), { ...base, profiles: [{ ...web, rules: [web.rules[0]] }] })
  t.notOk('profiles' in cleanPolicy({ ...base, profiles: [] }))
})

t.test('the last-good cache keeps profiles and refuses a tampered one', async (t) => {
  const dir = tmp(t)
  const c = createPolicyCache({ dir, log: silentLogger })
  await c.write(base)
  t.same(await c.read(), base)
  // A hand edit that widens a profile (any port instead of 443) fails the checksum.
  const raw = JSON.parse(readFileSync(c.file, 'utf8'))
  delete raw.policy.profiles[0].rules[0].ports
  writeFileSync(c.file, JSON.stringify(raw))
  await t.rejects(c.read(), { code: 'EG_CACHE_CORRUPT', message: /checksum mismatch/ })
})

t.test('sync against a real server: a profile change arrives as a diff whose etag the agent reproduces', async (t) => {
  const f = await makeServer(t)
  const url = await f.app.listen({ host: '127.0.0.1', port: 0 })
  const client = createApiClient({ url, token: f.auth.agent.authorization.slice('Bearer '.length), timeoutMs: 5000 })
  const cache = createPolicyCache({ dir: tmp(t), log: silentLogger })
  const applied: Policy[] = []
  const sync = createPolicySync({ client, cache, log: silentLogger, onPolicy: async (p) => void applied.push(p), etagOf: serverEtag, waitSec: 20 })
  t.equal(await sync.syncOnce(), 'updated')
  t.equal(applied[0]!.profiles, undefined)

  const pdir = join(f.blocklists, 'profiles')
  await mkdir(pdir)
  await writeFile(join(pdir, 'web.txt'), 'mode=alert\napi.example port=443\n')
  const round = sync.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  await f.app.eg.reload()
  t.equal(await round, 'updated')
  const got = applied[1]!
  t.same(got.profiles?.map((p) => [p.name, p.mode, p.rules.map((r) => [r.value, r.ports])]), [['web', 'alert', [['api.example', [443]]]]])
  t.equal(sync.status().diffs, 1, 'applied as a diff (no entry changed, the profiles came whole)')
  t.equal(sync.status().diffMismatches, 0, 'the etag recomputed over entries and profiles is the server\'s')
  t.equal(got.etag, f.app.eg.policy.current.etag)
  t.same((await cache.read())?.profiles, got.profiles, 'cached with the profiles')

  // Without the profiles in the recomputed etag the diff would not verify (the agent refetches).
  const blind = createPolicySync({ client, cache: createPolicyCache({ dir: tmp(t), log: silentLogger }), log: silentLogger, onPolicy: async () => {}, etagOf: (e) => serverEtag(e), waitSec: 20 })
  t.equal(await blind.syncOnce(), 'updated')
  const r2 = blind.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  await writeFile(join(pdir, 'web.txt'), 'mode=enforce\napi.example port=443\n')
  await f.app.eg.reload()
  t.equal(await r2, 'updated')
  t.equal(blind.status().diffMismatches, 1, 'control: an etag over the entries alone does not match')
})

t.test('local --blocklists directory: profiles/ read, kept while unreadable, combined with the server\'s', async (t) => {
  const d = tmp(t)
  writeFileSync(join(d, 'a.txt'), 'evil.example\n')
  mkdirSync(join(d, 'profiles'))
  writeFileSync(join(d, 'profiles', 'web.txt'), 'mode=learn\nlocal-api.example\n')
  writeFileSync(join(d, 'profiles', 'db.txt'), '198.51.100.0/24 port=5432\n')
  writeFileSync(join(d, 'profiles', 'Bad.txt'), 'x.example\n')
  const src = createLocalSource({ dir: d, log: silentLogger })
  const entries = await src.load()
  const local = src.profiles!()
  t.same(local.map((p) => [p.name, p.mode, p.rules.map((r) => r.value)]), [['db', 'enforce', ['198.51.100.0/24']], ['web', 'learn', ['local-api.example']]])
  t.equal(local[0]!.rules[0]!.source, `${join(d, 'profiles', 'db.txt')}:1`)

  // Directory-only: the policy is the local one, its etag covers the profiles, its version derives from it.
  const alone = combinePolicies(undefined, entries, local)
  t.same(alone.profiles?.map((p) => p.name), ['db', 'web'])
  t.equal(alone.etag, serverEtag(alone.entries, local))
  t.equal(alone.version, parseInt(alone.etag.slice(0, 12), 16))
  t.not(combinePolicies(undefined, entries, []).etag, alone.etag)

  // With a server: its profiles win a name; the others are added; the version is the server's.
  const server: Policy = { version: 42, etag: 'x', generatedAt: '', entries: [], profiles: [web] }
  const both = combinePolicies(server, [], local)
  t.equal(both.version, 42)
  t.same(both.profiles?.map((p) => [p.name, p.source]), [['db', join(d, 'profiles', 'db.txt')], ['web', 'blocklists/profiles/web.txt']], 'a host cannot replace the fleet\'s profile of the same name')
  t.equal(combinePolicies(server, [], []), server, 'nothing local: the server policy as it is')

  // An unreadable file keeps its previous profile; a deleted one goes.
  writeFileSync(join(d, 'profiles', 'db.txt'), Buffer.from([0, 1, 2]))
  await src.load()
  t.same(src.profiles!().map((p) => p.name), ['db', 'web'])
  rmSync(join(d, 'profiles', 'web.txt'))
  await src.load()
  t.same(src.profiles!().map((p) => p.name), ['db'])
  rmSync(join(d, 'profiles'), { recursive: true })
  await src.load()
  t.same(src.profiles!(), [])
})

t.test('sync with a local directory only: a profile edit is a new policy', async (t) => {
  const d = tmp(t)
  writeFileSync(join(d, 'a.txt'), 'evil.example\n')
  const applied: Policy[] = []
  const sync = createPolicySync({
    cache: createPolicyCache({ dir: tmp(t), log: silentLogger }),
    log: silentLogger,
    onPolicy: async (p) => void applied.push(p),
    local: createLocalSource({ dir: d, log: silentLogger }),
    combine: combinePolicies,
  })
  t.equal(await sync.syncOnce(), 'updated')
  t.equal(applied[0]!.profiles, undefined)
  mkdirSync(join(d, 'profiles'))
  writeFileSync(join(d, 'profiles', 'web.txt'), 'api.example\n')
  t.equal(await sync.syncOnce(), 'updated', 'a new profile file alone is picked up')
  t.same(applied[1]!.profiles?.map((p) => p.name), ['web'])
  t.not(applied[1]!.etag, applied[0]!.etag)
  t.equal(await sync.syncOnce(), 'unchanged')
})
