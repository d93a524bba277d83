// The last-good policy cache: round trip, atomic replace, corrupt files stop startup and are never overwritten.
import t from 'tap'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPolicyCache, encodeCache, decodeCache } from '../../src/agent/policy-cache.js'
import { policyProblems } from '../../src/agent/policy-check.js'
import { silentLogger } from '../../src/log.js'
import type { Policy } from '../../src/policy/types.js'

const policy: Policy = {
  version: 7,
  etag: 'abc123',
  generatedAt: '2026-11-21T00:00:00.000Z',
  entries: [
    { kind: 'domain', value: 'evil.example', allow: false, mode: 'block', source: 'blocklists/a.txt:1', reason: 'dropper', id: 'd1' },
    { kind: 'net', value: '203.0.113.7/32', allow: false, mode: 'block', source: 'api:alice', id: 'n1' },
    { kind: 'net', value: '2001:db8::/48', allow: true, mode: 'block', source: 'api:alice', id: 'n2' },
  ],
}

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), `eg-cache-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('missing cache reads as undefined; write then read round-trips', async (t) => {
  const dir = tmp(t)
  const c = createPolicyCache({ dir, log: silentLogger })
  t.equal(await c.read(), undefined)
  await c.write(policy)
  t.same(await c.read(), policy)
  // No temp files left beside it: the write was temp + rename.
  t.same(readdirSync(dir), ['policy-cache.json'])
  const raw = JSON.parse(readFileSync(c.file, 'utf8'))
  t.equal(raw.format, 1)
  t.match(raw.checksum, /^[0-9a-f]{64}$/)
})

t.test('a second write replaces the first completely', async (t) => {
  const dir = tmp(t)
  const c = createPolicyCache({ dir, log: silentLogger })
  await c.write(policy)
  await c.write({ ...policy, version: 8, etag: 'def', entries: policy.entries.slice(0, 1) })
  const r = await c.read()
  t.equal(r?.version, 8)
  t.equal(r?.entries.length, 1)
})

for (const [name, mutate] of [
  ['truncated', (s: string) => s.slice(0, s.length / 2)],
  ['not JSON', () => 'garbage'],
  ['checksum mismatch', (s: string) => s.replace('evil.example', 'evel.example')],
  ['unknown format', (s: string) => s.replace('"format":1', '"format":99')],
  ['invalid entry', (s: string) => {
    const o = JSON.parse(s)
    o.policy.entries[0].value = 'bad name; rm -rf /'
    return JSON.stringify(o)
  }],
  ['reserved net', (s: string) => {
    const o = JSON.parse(s)
    o.policy.entries[1].value = '0.0.0.0/0'
    return JSON.stringify(o)
  }],
] as const) {
  t.test(`corrupt cache (${name}): coded error naming the file, never overwritten`, async (t) => {
    const dir = tmp(t)
    const c = createPolicyCache({ dir, log: silentLogger })
    const bad = mutate(encodeCache(policy))
    writeFileSync(c.file, bad)
    await t.rejects(c.read(), { code: 'EG_CACHE_CORRUPT', message: new RegExp(c.file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')) })
    await t.rejects(c.write(policy), { code: 'EG_CACHE_CORRUPT' })
    t.equal(readFileSync(c.file, 'utf8'), bad, 'the corrupt file is untouched')
  })
}

t.test('discardCorrupt moves the bad file aside and starts empty', async (t) => {
  const dir = tmp(t)
  const c = createPolicyCache({ dir, log: silentLogger, discardCorrupt: true })
  writeFileSync(c.file, '{"format":1')
  t.equal(await c.read(), undefined)
  t.notOk(existsSync(c.file))
  t.equal(readdirSync(dir).filter((f) => f.includes('.corrupt-')).length, 1, 'kept aside for a human')
  await c.write(policy)
  t.same(await c.read(), policy)
})

t.test('policy checks', async (t) => {
  t.same(policyProblems(policy), [])
  t.match(policyProblems({ ...policy, entries: [{ kind: 'net', value: '203.0.113.7', allow: false, mode: 'block', source: 'x' }] })[0], /not canonical/)
  t.match(policyProblems({ ...policy, entries: [{ kind: 'net', value: '10.0.0.0/4', allow: false, mode: 'block', source: 'x' }] })[0], /broader|canonical/)
  t.match(policyProblems({ ...policy, entries: [{ kind: 'net', value: '127.0.0.1/32', allow: false, mode: 'block', source: 'x' }] })[0], /loopback/)
  t.match(policyProblems({ ...policy, entries: [{ kind: 'domain', value: 'a b', allow: false, mode: 'block', source: 'x' }] })[0], /invalid character/)
  t.match(policyProblems({ ...policy, entries: [{ kind: 'domain', value: 'ok.example', allow: 'no', mode: 'block', source: 'x' }] })[0], /allow/)
  t.match(policyProblems({ ...policy, version: -1 })[0], /version/)
  t.match(policyProblems(null)[0], /not an object/)
  t.same(decodeCache(encodeCache(policy)), { policy })
})
