// Quarantines on the agent side of the policy: the check refuses a policy with a malformed
// quarantine, the cache keeps them (a hand edit that drops one fails the checksum), a quarantine made
// through a real server arrives as a diff whose etag the agent reproduces, and a local --blocklists
// directory combined with the server's policy keeps the server's quarantines.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeServer } from '../server/fixtures/server.js'
import { createApiClient } from '../../src/client/api-client.js'
import { createPolicySync } from '../../src/agent/sync.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { cleanPolicy, policyProblems } from '../../src/agent/policy-check.js'
import { combinePolicies, serverEtag } from '../../src/agent/local-source.js'
import { createReporter, emptyState } from '../../src/agent/reporter.js'
import type { ReportBody } from '../../src/client/api-types.js'
import { silentLogger } from '../../src/log.js'
import type { Policy, Quarantine } from '../../src/policy/types.js'

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), `eg-aquar-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

const q: Quarantine = { id: 'q-0123456789ab', container: 'shop-web-1', host: 'web1', reason: 'miner', added: '2026-06-01T12:00:00.000Z', actor: 'alice' }
const base: Policy = { version: 3, etag: 'e', generatedAt: '2026-06-01T00:00:00.000Z', entries: [], quarantines: [q] }

t.test('policy check and cleanPolicy', async (t) => {
  t.same(policyProblems(base), [])
  t.match(policyProblems({ ...base, quarantines: [{ ...q, container: 'a b' }] })[0], /quarantines\[0\] "q-0123456789ab": container must be/)
  t.match(policyProblems({ ...base, quarantines: 'x' })[0], /quarantines must be a list/)
  t.same(cleanPolicy({ ...base, extra: 1, quarantines: [{ ...q, junk: 1 }] } as unknown as Policy), base)
  t.notOk('quarantines' in cleanPolicy({ ...base, quarantines: [] }), 'an empty list adds no key (the cache bytes stay as before)')
})

t.test('the cache keeps quarantines; dropping one by hand fails the checksum', async (t) => {
  const c = createPolicyCache({ dir: tmp(t), log: silentLogger })
  await c.write(base)
  t.same(await c.read(), base)
  const raw = JSON.parse(readFileSync(c.file, 'utf8'))
  raw.policy.quarantines = []
  writeFileSync(c.file, JSON.stringify(raw))
  await t.rejects(c.read(), { code: 'EG_CACHE_CORRUPT', message: /checksum mismatch/ })
})

t.test('sync against a real server: a quarantine arrives as a diff, and its removal too', async (t) => {
  const f = await makeServer(t)
  const url = await f.app.listen({ host: '127.0.0.1', port: 0 })
  const agent = createApiClient({ url, token: f.auth.agent.authorization.slice('Bearer '.length), timeoutMs: 5000 })
  const admin = createApiClient({ url, token: f.auth.admin.authorization.slice('Bearer '.length), timeoutMs: 5000 })
  const cache = createPolicyCache({ dir: tmp(t), log: silentLogger })
  const applied: Policy[] = []
  const sync = createPolicySync({ client: agent, cache, log: silentLogger, onPolicy: async (p) => void applied.push(p), etagOf: serverEtag, waitSec: 20 })
  t.equal(await sync.syncOnce(), 'updated')
  const round = sync.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  const made = await admin.addQuarantine({ container: 'shop-web-1', reason: 'miner download' })
  t.equal(await round, 'updated', 'the long-poll returns with the quarantine')
  t.same(applied[1]!.quarantines, [made.quarantine])
  t.equal(applied[1]!.version, made.version)
  t.equal(sync.status().diffs, 1, 'as a diff')
  t.equal(sync.status().diffMismatches, 0, 'whose etag the agent reproduces over entries and quarantines')
  t.same((await cache.read())?.quarantines, [made.quarantine], 'cached')

  const round2 = sync.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  await admin.removeQuarantine(made.quarantine.id, 'reimaged')
  t.equal(await round2, 'updated')
  t.equal(applied[2]!.quarantines, undefined, 'lifted')
  t.equal(sync.status().diffMismatches, 0)

  // Control: an etag over entries and profiles alone does not verify a diff that adds a quarantine.
  const blind = createPolicySync({ client: agent, cache: createPolicyCache({ dir: tmp(t), log: silentLogger }), log: silentLogger, onPolicy: async () => {}, etagOf: (e, p) => serverEtag(e, p), waitSec: 20 })
  t.equal(await blind.syncOnce(), 'updated')
  const r3 = blind.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  await admin.addQuarantine({ container: 'db', reason: 'r' })
  t.equal(await r3, 'updated')
  t.equal(blind.status().diffMismatches, 1)
})

t.test('combinePolicies keeps the server\'s quarantines beside local entries', async (t) => {
  const server: Policy = { version: 42, etag: 'x', generatedAt: '', entries: [], quarantines: [q] }
  const local = [{ kind: 'domain' as const, value: 'local.example', allow: false, mode: 'block' as const, source: 'l:1' }]
  const both = combinePolicies(server, local, [])
  t.same(both.quarantines, [q])
  t.equal(both.version, 42)
  t.equal(both.etag, serverEtag(both.entries, undefined, [q]))
  t.not(both.etag, serverEtag(both.entries))
})

t.test('the reporter sends held containers, at most the 4096 the API takes', async (t) => {
  const sent: ReportBody[] = []
  const many = Array.from({ length: 5000 }, (_, i) => ({ id: i.toString(16).padStart(12, '0'), name: `c${i}`, quarantineId: q.id }))
  const r = createReporter({ client: { report: async (b) => void sent.push(b) }, host: 'web1', agentVersion: '1', log: silentLogger, state: () => ({ ...emptyState(base), containers: many }) })
  t.equal(await r.reportNow(), true)
  t.equal(sent[0]!.containers!.length, 4096)
  t.same(sent[0]!.containers![0], many[0])
  const none = createReporter({ client: { report: async (b) => void sent.push(b) }, host: 'web1', agentVersion: '1', log: silentLogger, state: () => emptyState(base) })
  await none.reportNow()
  t.notOk('containers' in sent[1]!, 'an agent that does not follow containers sends no containers key')
})
