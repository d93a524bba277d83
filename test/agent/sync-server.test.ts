// The sync loop against the real server (buildServer + lowdb store, listening on loopback) through the
// real API client: full fetch, long-poll woken by a push, diffs whose recomputed etag matches the
// server's (no full re-fetch), 304 after the wait, and the server going away.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeServer } from '../server/fixtures/server.js'
import { createApiClient } from '../../src/client/api-client.js'
import { createPolicySync } from '../../src/agent/sync.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { serverEtag } from '../../src/agent/local-source.js'
import { silentLogger } from '../../src/log.js'
import type { Policy } from '../../src/policy/types.js'

t.test('sync against a real server', async (t) => {
  const f = await makeServer(t)
  const url = await f.app.listen({ host: '127.0.0.1', port: 0 })
  const bearer = (h: { authorization: string }) => h.authorization.slice('Bearer '.length)
  const admin = createApiClient({ url, token: bearer(f.auth.admin) })
  const client = createApiClient({ url, token: bearer(f.auth.agent), timeoutMs: 5000 })
  const dir = mkdtempSync(join(tmpdir(), `eg-syncsrv-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cache = createPolicyCache({ dir, log: silentLogger })
  const applied: Policy[] = []
  const sync = createPolicySync({ client, cache, log: silentLogger, onPolicy: async (p) => void applied.push(p), etagOf: serverEtag, waitSec: 20 })

  t.equal(await sync.syncOnce(), 'updated')
  const first = applied[0]!
  t.same(first.entries.map((e) => e.value).sort(), ['203.0.113.0/24', 'evil.example'])

  // A long-poll in flight is woken by the push and answered with a diff.
  const round = sync.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  const added = await admin.addEntries([{ value: '198.51.100.7', reason: 'sync test' }])
  t.equal(await round, 'updated')
  t.equal(applied[1]!.version, added.version)
  t.same(applied[1]!.entries.map((e) => e.value).sort(), ['198.51.100.7/32', '203.0.113.0/24', 'evil.example'])
  t.equal(sync.status().diffs, 1, 'applied as a diff')
  t.equal(sync.status().diffMismatches, 0, 'the etag recomputed from the diff is the server\'s')
  const current = await client.getPolicy()
  t.equal(applied[1]!.etag, current.etag)

  // Removal: a diff with `removed` ids.
  const round2 = sync.syncOnce()
  await new Promise((r) => setTimeout(r, 200))
  await admin.removeEntry('198.51.100.7', 'done')
  t.equal(await round2, 'updated')
  t.same(applied[2]!.entries.map((e) => e.value).sort(), ['203.0.113.0/24', 'evil.example'])
  t.equal(sync.status().diffs, 2)
  t.equal(sync.status().diffMismatches, 0)
  t.same((await cache.read())?.etag, applied[2]!.etag, 'cached after the apply')

  // The server goes away: an error, and nothing else happens to what is enforced.
  await f.app.close()
  t.equal(await sync.syncOnce(), 'error')
  t.equal(applied.length, 3)
})
