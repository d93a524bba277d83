// The sync loop against a fake client: 304, 200, diffs (verified by etag), backoff while the server is
// down, never un-enforcing, caching only after a successful apply, local directory merge.
import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPolicySync, backoffDelay, applyDiff, type PolicyClient } from '../../src/agent/sync.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { silentLogger } from '../../src/log.js'
import type { Entry, Policy } from '../../src/policy/types.js'
import type { PolicyDiffBody } from '../../src/client/api-types.js'

const etagOf = (entries: Entry[]): string =>
  createHash('sha256').update(JSON.stringify([...entries].sort((a, b) => (a.id! < b.id! ? -1 : 1)))).digest('hex').slice(0, 16)
const ent = (id: string, value: string): Entry =>
  value.includes('/') ? { kind: 'net', value, allow: false, mode: 'block', source: 'api:t', id } : { kind: 'domain', value, allow: false, mode: 'block', source: 'api:t', id }
const pol = (version: number, entries: Entry[]): Policy => ({ version, etag: etagOf(entries), generatedAt: '2026-11-21T00:00:00Z', entries })

type Answer = Awaited<ReturnType<PolicyClient['getPolicy']>> | Error
function fakeClient(answers: Answer[]) {
  const calls: Parameters<PolicyClient['getPolicy']>[0][] = []
  const client: PolicyClient = {
    async getPolicy(q) {
      calls.push(q)
      const a = answers.shift()
      if (!a) throw new Error('no more answers')
      if (a instanceof Error) throw a
      return a
    },
  }
  return { client, calls }
}

function setup(t: { teardown: (f: () => void) => void }, answers: Answer[], extra: Partial<Parameters<typeof createPolicySync>[0]> = {}) {
  const dir = mkdtempSync(join(tmpdir(), `eg-sync-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cache = createPolicyCache({ dir, log: silentLogger })
  const applied: Policy[] = []
  const { client, calls } = fakeClient(answers)
  const sync = createPolicySync({ client, cache, log: silentLogger, onPolicy: async (p) => void applied.push(p), etagOf, ...extra })
  return { sync, cache, applied, calls }
}

const p1 = pol(1, [ent('a', 'evil.example'), ent('b', '203.0.113.7/32')])
const p2 = pol(2, [ent('a', 'evil.example'), ent('c', '198.51.100.0/24')])

t.test('200 applies and caches; 304 with If-None-Match + wait changes nothing', async (t) => {
  const { sync, cache, applied, calls } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, { status: 304, etag: p1.etag }])
  t.equal(await sync.syncOnce(), 'updated')
  t.same(applied, [p1])
  t.same(await cache.read(), p1)
  t.same(calls[0], { signal: calls[0]!.signal }, 'first request: nothing to compare with, no wait')
  t.equal(await sync.syncOnce(), 'unchanged')
  t.equal(applied.length, 1)
  t.equal(calls[1]!.etag, p1.etag)
  t.equal(calls[1]!.waitSec, 30)
  t.equal(calls[1]!.since, 1)
  t.equal(sync.status().server?.version, 1)
})

t.test('a diff is applied on top of the current policy when its etag checks out', async (t) => {
  const diff: PolicyDiffBody = { version: 2, etag: p2.etag, generatedAt: p2.generatedAt, since: 1, added: [ent('c', '198.51.100.0/24')], removed: ['b'] }
  const { sync, applied, calls } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, { status: 200, diff, etag: p2.etag }])
  await sync.syncOnce()
  t.equal(await sync.syncOnce(), 'updated')
  t.equal(calls.length, 2, 'no full fetch needed')
  t.same(applied[1]!.entries.map((e) => e.id).sort(), ['a', 'c'])
  t.equal(applied[1]!.etag, p2.etag)
  t.equal(sync.status().diffs, 1)
})

t.test('a diff that does not reproduce the etag triggers a full fetch', async (t) => {
  const diff: PolicyDiffBody = { version: 2, etag: 'not-it', generatedAt: p2.generatedAt, since: 1, added: [], removed: ['b'] }
  const { sync, applied, calls } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, { status: 200, diff, etag: 'not-it' }, { status: 200, policy: p2, etag: p2.etag }])
  await sync.syncOnce()
  t.equal(await sync.syncOnce(), 'updated')
  t.equal(calls.length, 3)
  t.same(calls[2], { signal: calls[2]!.signal }, 'the full fetch asks for no diff')
  t.same(applied[1], p2)
  t.equal(sync.status().diffMismatches, 1)
})

t.test('applyDiff replaces an entry changed in place (same id in added)', async (t) => {
  const changed = { ...ent('a', 'evil.example'), reason: 'now with a reason' }
  const r = applyDiff(p1, { version: 2, etag: 'x', generatedAt: '', since: 1, added: [changed], removed: [] })
  t.equal(r?.length, 2)
  t.same(r?.find((e) => e.id === 'a'), changed)
})

t.test('applyDiff refuses diffs that do not fit', async (t) => {
  t.equal(applyDiff(p1, { version: 3, etag: 'x', generatedAt: '', since: 2, added: [], removed: [] }), undefined, 'other base version')
  t.equal(applyDiff(p1, { version: 2, etag: 'x', generatedAt: '', since: 1, added: [], removed: ['zzz'] }), undefined, 'unknown id')
})

t.test('server down: error, nothing removed, cache kept; back: catches up', async (t) => {
  const down = new Error('connect ECONNREFUSED 127.0.0.1:1')
  const { sync, cache, applied } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, down, down, { status: 200, policy: p2, etag: p2.etag }])
  await sync.syncOnce()
  t.equal(await sync.syncOnce(), 'error')
  t.equal(await sync.syncOnce(), 'error')
  t.equal(sync.status().failures, 2)
  t.match(sync.status().lastError, /ECONNREFUSED/)
  t.same(applied, [p1], 'the enforced policy was not touched (no empty policy applied)')
  t.same(await cache.read(), p1)
  t.equal(await sync.syncOnce(), 'updated')
  t.equal(sync.status().failures, 0)
  t.same(await cache.read(), p2)
})

t.test('the loop backs off with full jitter while the server is down', async (t) => {
  const down = new Error('ECONNREFUSED')
  const sleeps: number[] = []
  let stop: () => void = () => {}
  const done = new Promise<void>((r) => (stop = r))
  const { sync } = setup(t, [down, down, down, down, { status: 200, policy: p1, etag: p1.etag }], {
    backoff: { baseMs: 100, maxMs: 400, random: () => 0.999 },
    sleep: async (ms, signal) => {
      sleeps.push(ms)
      if (sleeps.length === 4) stop()
      if (sleeps.length > 4) await new Promise((r) => signal.addEventListener('abort', r, { once: true }))
    },
  })
  sync.start()
  await done
  await sync.stop()
  t.same(sleeps.slice(0, 4), [99, 199, 399, 399], 'doubling, capped at maxMs')
  t.ok(backoffDelay(3, { baseMs: 100, maxMs: 1000, random: () => 0 }) === 0, 'full jitter reaches zero')
  t.ok(backoffDelay(50, { baseMs: 100, maxMs: 1000, random: () => 0.5 }) === 500, 'large failure counts stay capped')
})

t.test('apply failure: not cached, retried next round', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-sync-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cache = createPolicyCache({ dir, log: silentLogger })
  let fail = true
  const applied: Policy[] = []
  const { client } = fakeClient([{ status: 200, policy: p1, etag: p1.etag }, { status: 200, policy: p1, etag: p1.etag }])
  const sync = createPolicySync({ client, cache, log: silentLogger, onPolicy: async (p) => {
    if (fail) throw new Error('iptables-restore exited 1')
    applied.push(p)
  } })
  t.equal(await sync.syncOnce(), 'error')
  t.notOk(existsSync(cache.file), 'a policy that was not applied is not cached')
  t.match(sync.status().lastError, /iptables-restore/)
  fail = false
  t.equal(await sync.syncOnce(), 'updated')
  t.same(await cache.read(), p1)
})

t.test('an invalid policy from the server is never applied', async (t) => {
  const bad = { ...p2, entries: [...p2.entries, { kind: 'net', value: '0.0.0.0/0', allow: false, mode: 'block', source: 'x' } as Entry] }
  const { sync, applied, cache } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, { status: 200, policy: bad, etag: bad.etag }])
  await sync.syncOnce()
  t.equal(await sync.syncOnce(), 'error')
  t.match(sync.status().lastError, /invalid policy/)
  t.same(applied, [p1])
  t.same(await cache.read(), p1)
})

t.test('applyCached enforces the cache before the server answers', async (t) => {
  const { sync, cache, applied, calls } = setup(t, [{ status: 304, etag: p1.etag }])
  await cache.write(p1)
  t.equal(await sync.applyCached(), true)
  t.same(applied, [p1])
  t.equal(calls.length, 0, 'the server was not asked')
  t.equal(await sync.syncOnce(), 'unchanged')
  t.equal(calls[0]!.etag, p1.etag, 'and the first request already carries the cached etag')
})

t.test('local directory entries are merged with the server policy', async (t) => {
  let localEntries = [ent('l1', 'local.example')]
  const combine = (srv: Policy | undefined, local: Entry[]): Policy => pol(srv?.version ?? 0, [...(srv?.entries ?? []), ...local])
  const { sync, applied, cache } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, { status: 304, etag: p1.etag }, { status: 304, etag: p1.etag }], {
    local: { load: async () => localEntries },
    combine,
  })
  t.equal(await sync.syncOnce(), 'updated')
  t.same(applied[0]!.entries.map((e) => e.value), ['evil.example', '203.0.113.7/32', 'local.example'])
  t.same(await cache.read(), p1, 'the cache holds the server policy only (local files are re-read)')
  t.equal(await sync.syncOnce(), 'unchanged')
  localEntries = [ent('l2', 'other.example')]
  t.equal(await sync.syncOnce(), 'updated', 'a change of the directory alone is applied')
  t.same(applied[1]!.entries.map((e) => e.value), ['evil.example', '203.0.113.7/32', 'other.example'])
})

t.test('directory-only sync (no server)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-sync-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const applied: Policy[] = []
  const sync = createPolicySync({
    cache: createPolicyCache({ dir, log: silentLogger }),
    log: silentLogger,
    onPolicy: async (p) => void applied.push(p),
    local: { load: async () => [ent('l1', 'local.example')] },
    combine: (_s, local) => pol(0, local),
  })
  t.equal(await sync.syncOnce(), 'updated')
  t.equal(await sync.syncOnce(), 'unchanged')
  t.equal(applied.length, 1)
})

t.test('wake() ends a long-poll wait and applies a local change at once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-sync-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  let localEntries = [ent('l1', 'local.example')]
  const applied: Policy[] = []
  let waits = 0
  const client: PolicyClient = {
    async getPolicy(q) {
      if (!q.etag) return { status: 200, policy: p1, etag: p1.etag }
      waits++
      // A long-poll that only ends when aborted (the server has nothing new).
      return new Promise((_resolve, reject) => q.signal!.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))
    },
  }
  const sync = createPolicySync({
    client,
    cache: createPolicyCache({ dir, log: silentLogger }),
    log: silentLogger,
    onPolicy: async (p) => void applied.push(p),
    local: { load: async () => localEntries },
    combine: (srv, local) => pol(srv?.version ?? 0, [...(srv?.entries ?? []), ...local]),
  })
  sync.start()
  t.teardown(() => sync.stop())
  for (let i = 0; i < 200 && (applied.length < 1 || waits < 1); i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(applied.length, 1)
  localEntries = [ent('l2', 'other.example')]
  const t0 = Date.now()
  sync.wake()
  for (let i = 0; i < 200 && applied.length < 2; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(applied.length, 2, 'applied without waiting for the long-poll to end')
  t.ok(Date.now() - t0 < 2000)
  t.same(applied[1]!.entries.map((e) => e.value), ['evil.example', '203.0.113.7/32', 'other.example'])
  t.equal(sync.status().failures, 0, 'a wake is not an error')
  await sync.stop()
  t.ok(waits >= 2, 'and the long-poll resumed')
})

t.test('booleans from the server must be booleans: force "no" or subdomainsOnly "false" refuse the policy', async (t) => {
  // Truthy strings: before the check, "no" passed as force (a /7 accepted) and "false" turned a block
  // of the name itself into a block of the names under it only.
  const notBool = [
    { kind: 'net', value: '10.0.0.0/7', allow: false, mode: 'block', source: 'api:t', id: 'x', force: 'no' },
    { kind: 'domain', value: 'evil.example', allow: false, mode: 'block', source: 'api:t', id: 'y', subdomainsOnly: 'false' },
  ] as unknown as Entry[]
  for (const e of notBool) {
    const bad = pol(2, [...p1.entries, e])
    const { sync, applied, cache } = setup(t, [{ status: 200, policy: p1, etag: p1.etag }, { status: 200, policy: bad, etag: bad.etag }])
    t.equal(await sync.syncOnce(), 'updated')
    t.equal(await sync.syncOnce(), 'error', `${e.value}: refused`)
    t.match(sync.status().lastError, /invalid policy.*(force|subdomainsOnly) must be a boolean/)
    t.same(applied, [p1], 'never applied')
    t.same(await cache.read(), p1, 'the last good policy stays cached')
  }
  // The same entries with real booleans are fine.
  const good = pol(2, [...p1.entries, { ...notBool[0]!, force: true }, { ...notBool[1]!, subdomainsOnly: false }])
  const { sync, applied } = setup(t, [{ status: 200, policy: good, etag: good.etag }])
  t.equal(await sync.syncOnce(), 'updated')
  t.same(applied, [good])
})
