// createAgent with fakes: the cached policy is enforced before the server is asked, each new policy goes
// to the sinkhole at once and then to the controller (in background-resolution mode), a report follows
// each apply, hits are uploaded, rules stay on stop unless on-exit is remove, a corrupt cache stops
// startup, and the controller's standing problems are reported as errors.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createAgent, type AgentDeps } from '../../src/agent/agent.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { silentLogger } from '../../src/log.js'
import type { Entry, Matcher, Policy } from '../../src/policy/types.js'
import type { Hit } from '../../src/sinkhole/types.js'
import type { ReportBody } from '../../src/client/api-types.js'

const ent = (value: string): Entry => ({ kind: 'domain', value, allow: false, mode: 'block', source: 'api:t', id: value })
const pol = (version: number, names: string[]): Policy => ({ version, etag: `e${version}`, generatedAt: '2026-11-21T00:00:00Z', entries: names.map(ent) })

function world(t: { teardown: (f: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), `eg-agent-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const events: string[] = []
  const reports: ReportBody[] = []
  const uploaded: Hit[] = []
  const answers: Array<Policy | Error | 304> = []
  let hitCb: ((h: Hit) => void) | undefined
  let removed = 0
  const deps: AgentDeps = {
    log: silentLogger,
    cache: createPolicyCache({ dir, log: silentLogger }),
    controller: {
      async setPolicy(p, opts) {
        events.push(`apply:${p.version}:${opts?.resolution ?? 'wait'}`)
        return { warnings: [] }
      },
      async reconcileOnce() {},
      start: () => void events.push('controller:start'),
      stop: () => void events.push('controller:stop'),
      stats: () => ({ repairs: 2, drift: [{ kind: 'jump-missing', detail: 'OUTPUT' }] }),
    },
    client: {
      async getPolicy(q) {
        events.push(`get:${q.etag ?? '-'}`)
        const a = answers.shift()
        if (a === undefined) throw new Error('ECONNREFUSED')
        if (a instanceof Error) throw a
        if (a === 304) return { status: 304, etag: q.etag ?? '' }
        return { status: 200, policy: a, etag: a.etag }
      },
      async report(body) {
        reports.push(body)
      },
      async uploadHits(_host, hits) {
        uploaded.push(...hits)
        return { accepted: hits.length }
      },
    },
    sinkhole: {
      start: async () => void events.push('sinkhole:start'),
      stop: async () => void events.push('sinkhole:stop'),
      setMatcher: (m: Matcher) => void events.push(`matcher:${(m as unknown as { n: number }).n}`),
    },
    buildMatcher: (entries) => ({ n: entries.length }) as unknown as Matcher,
    hits: { onHit: (cb) => ((hitCb = cb), () => (hitCb = undefined)) },
    remove: async () => void removed++,
  }
  return { dir, deps, events, reports, uploaded, answers, hit: (h: Hit) => hitCb?.(h), removed: () => removed }
}

const cfg = (dir: string, extra = {}) => ({ host: 'web1', agentVersion: '0.1.0', stateDir: dir, waitSec: 1, reportIntervalMs: 3_600_000, reportJitterMs: 0, ...extra })

t.test('cached policy first, then the server; sinkhole before kernel; report after apply', async (t) => {
  const w = world(t)
  await w.deps.cache.write(pol(3, ['a.example', 'b.example']))
  // The server is slow to answer: the first getPolicy never resolves before start() returns.
  const agent = createAgent(cfg(w.dir), { ...w.deps, sleep: (ms, s) => new Promise((r) => (s.aborted ? r() : s.addEventListener('abort', () => r(), { once: true }))) })
  w.answers.push(pol(4, ['a.example', 'b.example', 'c.example']))
  await agent.start()
  // The sinkhole's matcher needs no lookups: it switches first (issue 15 item 10; it used to wait for the kernel).
  t.same(w.events.slice(0, 3), ['matcher:2', 'apply:3:background', 'sinkhole:start'], 'cache enforced before anything else')
  // Let the loop's first round finish.
  // (The cache is written right after the apply returns: wait for the sync to record the new version.)
  for (let i = 0; i < 200 && agent.status().sync.server?.version !== 4; i++) await new Promise((r) => setTimeout(r, 10))
  t.ok(w.events.indexOf('get:e3') > w.events.indexOf('apply:3:background'), 'the first request carries the cached etag')
  t.ok(w.events.indexOf('matcher:3') < w.events.indexOf('apply:4:background'), 'sinkhole matcher switched before the kernel apply, not after the lookups')
  await agent.reportNow()
  const last = w.reports.at(-1)!
  t.equal(last.host, 'web1')
  t.equal(last.version, 4)
  t.equal(last.etag, 'e4')
  t.same(last.counts, { entries: 3, domains: 3, nets: 0, v4: 0, v6: 0 })
  t.equal(last.repairs, 2)
  t.same(last.drift, ['jump-missing: OUTPUT'])
  t.same((await w.deps.cache.read())?.version, 4)
  await agent.stop()
  t.equal(w.removed(), 0, 'rules stay in place on stop (on-exit keep)')
})

t.test('server down at start: cache enforced, errors reported, nothing removed', async (t) => {
  const w = world(t)
  await w.deps.cache.write(pol(3, ['a.example']))
  const agent = createAgent(cfg(w.dir, { backoff: { baseMs: 5, maxMs: 10 } }), w.deps)
  await agent.start()
  t.equal(await agent.syncOnce(), 'error')
  t.same(w.events.filter((e) => e.startsWith('apply')), ['apply:3:background'])
  await agent.reportNow()
  t.match(w.reports.at(-1)!.errors.join('\n'), /ECONNREFUSED/)
  t.equal(w.reports.at(-1)!.version, 3)
  await agent.stop()
  t.equal(w.removed(), 0)
})

t.test('hits from the hit log are uploaded with the host name', async (t) => {
  const w = world(t)
  w.answers.push(pol(1, ['a.example']))
  const agent = createAgent(cfg(w.dir, { hitUploadIntervalMs: 10 }), w.deps)
  await agent.start()
  w.hit({ time: 'x', lastTime: 'x', count: 1, client: '172.17.0.2', name: 'a.example', qtype: 'A', action: 'block', entry: { value: 'a.example', source: 'api:t', mode: 'block' }, answer: 'null' })
  for (let i = 0; i < 100 && w.uploaded.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(w.uploaded.length, 1)
  t.equal(w.uploaded[0]!.host, 'web1')
  await agent.stop()
})

t.test('on-exit remove takes the rules away on stop', async (t) => {
  const w = world(t)
  w.answers.push(pol(1, ['a.example']))
  const agent = createAgent(cfg(w.dir, { onExit: 'remove' }), w.deps)
  await agent.start()
  await agent.stop()
  t.equal(w.removed(), 1)
})

t.test('a corrupt cache stops startup with a coded error and nothing is applied', async (t) => {
  const w = world(t)
  writeFileSync(w.deps.cache.file, '{"format":1,"checksum":"x"')
  const agent = createAgent(cfg(w.dir), w.deps)
  await t.rejects(agent.start(), { code: 'EG_CACHE_CORRUPT' })
  t.same(w.events, [], 'no apply, no sinkhole, no server request')
})

t.test("the controller's standing problems are reported as errors", async (t) => {
  const w = world(t)
  w.answers.push(pol(1, ['a.example']))
  const problem = 'resolved-address cache /x unusable (not JSON): blocked names are resolved again'
  w.deps.controller.stats = () => ({ repairs: 0, problems: [problem] })
  const agent = createAgent(cfg(w.dir), w.deps)
  await agent.start()
  await agent.reportNow()
  t.ok(w.reports.at(-1)!.errors.includes(problem), 'in the report')
  w.deps.controller.stats = () => ({ repairs: 0, problems: [] })
  await agent.reportNow()
  t.notOk(w.reports.at(-1)!.errors.includes(problem), 'gone once the controller clears it')
  await agent.stop()
})

t.test('container egress: the cached policy\'s profiles before its start, every policy\'s profiles, its problems in the report', async (t) => {
  const w = world(t)
  const web = { name: 'web', mode: 'enforce' as const, rules: [], source: 'blocklists/profiles/web.txt' }
  await w.deps.cache.write({ ...pol(3, []), profiles: [web] })
  let problems: string[] = []
  const agent = createAgent(cfg(w.dir), {
    ...w.deps,
    containerEgress: {
      start: async () => void w.events.push('containers:start'),
      stop: async () => void w.events.push('containers:stop'),
      setProfiles: async (ps) => void w.events.push(`profiles:${(ps ?? []).map((p) => p.name).join(',')}`),
      problems: () => problems,
      stats: () => ({ held: 1 }),
    },
  })
  w.answers.push({ ...pol(4, []), profiles: [web, { ...web, name: 'db' }] })
  await agent.start()
  t.ok(w.events.indexOf('profiles:web') < w.events.indexOf('containers:start'), 'cached profiles set before the seam starts')
  t.ok(w.events.indexOf('containers:start') < w.events.indexOf('sinkhole:start'), 'containers held before the sinkhole answers')
  for (let i = 0; i < 200 && !w.events.includes('profiles:web,db'); i++) await new Promise((r) => setTimeout(r, 10))
  t.ok(w.events.includes('profiles:web,db'), 'a new policy\'s profiles reach the seam')
  problems = ['container typo (cccccccccccc): label egress-guard.profile="wbe" names no profile: held to DNS to the sinkhole only']
  await agent.reportNow()
  t.ok(w.reports.at(-1)!.errors.includes(problems[0]!), 'in the fleet view\'s errors')
  t.same(agent.status().containerEgress, { held: 1 })
  await agent.stop()
  t.ok(w.events.includes('containers:stop'))
})
