// Feeds on the server, against a local HTTP server: a feed line in feeds.txt is fetched and served
// with `source: feed:NAME`; an `@@` in the repository wins over the feed's block; a refused refresh
// keeps the served entries and shows in /v1/policy/problems, the audit log and /metrics; a bad
// feeds.txt line is a lint problem; a restart serves the copy on disk without fetching.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeServer, type Fixture } from '../server/fixtures/server.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { until } from '../helpers/wait.js'
import { protectedNets } from '../../src/policy/protect-check.js'

t.test('a feed is served, loses to @@, and a refused refresh keeps it', async (t) => {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end('feedbad.example\nshared.example\n')
  let requests = 0
  const srv = createServer((req, res) => {
    requests++
    handler(req, res)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()) }))
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/list.txt`
  const feedDir = mkdtempSync(join(tmpdir(), `eg-feedsrv-${process.pid}-`))
  t.teardown(() => rmSync(feedDir, { recursive: true, force: true }))
  const files = { 'allow.txt': '@@shared.example\nfilebad.example\n', 'feeds.txt': `mal ${url} format=domains every=1m\nbroken ${url} format=rss\n` }
  const f = await makeServer(t, { files, deps: { feeds: { dir: feedDir, timeoutMs: 2000 } } })
  const entries = (x: Fixture) => x.app.eg.policy.current.entries
  await until('the feed is served', () => entries(f).some((e) => e.value === 'feedbad.example'), 5000, 20)
  t.match(entries(f).find((e) => e.value === 'feedbad.example'), { source: 'feed:mal', mode: 'block' })
  t.notOk(entries(f).some((e) => e.value === 'feeds.txt' || e.source.includes('feeds.txt')), 'feeds.txt is not read as a blocklist')
  const byFeed = (await f.app.inject({ url: '/v1/entries?source=feed', headers: f.auth.read })).json().entries as { value: string }[]
  t.same(byFeed.map((e) => e.value).sort(), ['feedbad.example', 'shared.example'], 'block ls --source feed: the feed entries only')
  const byFile = (await f.app.inject({ url: '/v1/entries?source=file', headers: f.auth.read })).json().entries as { value: string }[]
  t.same(byFile.map((e) => e.value).sort(), ['filebad.example', 'shared.example'], '--source file: not the feed ones')
  const m = buildMatcher(entries(f))
  t.equal(m.matchName('feedbad.example')?.action, 'block', 'the feed blocks')
  t.not(m.matchName('shared.example')?.action, 'block', 'an @@ in the repository wins over the feed')
  t.equal(m.matchName('filebad.example')?.action, 'block')
  const problems = async (x: Fixture) => (await x.app.inject({ url: '/v1/policy/problems', headers: x.auth.read })).json().problems as { code: string; text: string }[]
  t.match((await problems(f)).map((p) => p.text), [/^blocklists\/feeds\.txt:2: feed broken: format=rss/], 'a bad feeds.txt line is a problem')

  // A refresh answered with an HTML page: refused, reported, the feed's entries stay.
  handler = (_q, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><html><body>rate limited</body></html>')
  const version = f.app.eg.policy.current.version
  // An edited feed line is fetched at once (otherwise it waits for `every`).
  writeFileSync(join(f.blocklists, 'feeds.txt'), `mal ${url} format=domains every=2m\n`)
  await f.app.eg.reload()
  await until('the refused refresh is reported', async () => (await problems(f)).some((p) => p.code === 'feed-rejected'), 5000, 20)
  t.match((await problems(f)).find((p) => p.code === 'feed-rejected')?.text, /^blocklists\/feeds\.txt:1: feed mal: refresh at .* refused: HTML body \(an error page\?\); serving its last good copy \(2 entries\)$/)
  t.ok(entries(f).some((e) => e.value === 'feedbad.example'), 'the last good copy is still served')
  t.equal(f.app.eg.policy.current.version, version, 'no new version')
  t.match((await f.store.listAudit(50)).find((a) => a.action === 'feed.refused'), { actor: 'feed:mal', reason: 'HTML body (an error page?)' })
  t.match(await f.registry.metrics(), /eg_feed_refreshes_total\{feed="mal",result="rejected"\} 1/)
  t.match(await f.registry.metrics(), /eg_feed_entries\{feed="mal"\} 2/)

  // Restart: the copy on disk is served at once, no request (it is younger than `every`).
  const before = requests
  const f2 = await makeServer(t, { files: { 'feeds.txt': `mal ${url} format=domains every=1h\n` }, deps: { feeds: { dir: feedDir } } })
  t.ok(entries(f2).some((e) => e.value === 'feedbad.example' && e.source === 'feed:mal'), 'served from disk')
  t.equal(requests, before, 'without fetching')
})

t.test("the server's protected addresses (--protect, its own, its resolvers) are never covered by a feed", async (t) => {
  const srv = createServer((_q, res) => res.end('198.51.100.0/24 ; SBL1\n203.0.113.0/24 ; SBL2\n'))
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()) }))
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/drop.txt`
  const feedDir = mkdtempSync(join(tmpdir(), `eg-feedprot-${process.pid}-`))
  t.teardown(() => rmSync(feedDir, { recursive: true, force: true }))
  const protect = protectedNets([{ value: '198.51.100.7', why: '--protect' }])
  const f = await makeServer(t, { files: { 'feeds.txt': `drop ${url} format=drop\n` }, deps: { feeds: { dir: feedDir, timeoutMs: 2000 }, protect } })
  await until('the feed is served', () => f.app.eg.policy.current.entries.some((e) => e.source === 'feed:drop'), 5000, 20)
  t.same(f.app.eg.policy.current.entries.filter((e) => e.source === 'feed:drop').map((e) => e.value), ['203.0.113.0/24'], 'the range covering a protected address is refused, the rest served')
})
