// Feeds: the parsers on fixtures of each format (Spamhaus drop_v4.json NDJSON with its metadata line
// included), feeds.txt, and the fetcher against a local HTTP server: 304 changes nothing, 200 updates,
// HTML / empty / truncated / 500 / timeout / shrink keep the last good copy and say why, max and min
// are honoured, a feed entry covering a protected address is refused.
import t from 'tap'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseFeed, notAList, type FeedFormat } from '../../src/sources/feed-parse.js'
import { parseFeedsFile, type FeedSpec } from '../../src/sources/feed-config.js'
import { feedEntries } from '../../src/sources/feed-entries.js'
import { FeedFetcher } from '../../src/sources/feed-fetcher.js'

const FIX = fileURLToPath(new URL('./fixtures', import.meta.url))
const fx = (f: string) => readFileSync(join(FIX, f), 'utf8')
const values = (file: string, format: FeedFormat) => feedEntries('x', parseFeed(fx(file), format).values, 'block').entries.map((e) => (e.subdomainsOnly ? '*.' : '') + e.value)

t.test('parsers: one fixture per format', async (t) => {
  t.same(values('domains.txt', { kind: 'domains' }), ['bad-one.example', 'bad-two.example'], 'comments, blank lines and localhost skipped')
  t.same(values('hosts.txt', { kind: 'hosts' }), ['ads.example', 'track.example', 'more.example'])
  t.same(values('adblock.txt', { kind: 'adblock' }), ['ad.example', 'sub.ad2.example'], 'only ||name^ rules: no @@, cosmetic or $option rules')
  t.same(values('drop.txt', { kind: 'drop' }), ['198.18.100.0/24', '203.0.113.0/24'])
  const j = parseFeed(fx('drop_v4.json'), { kind: 'drop-json' })
  t.same(j, { values: ['198.18.100.0/24', '203.0.113.0/24'], skipped: 0 }, 'NDJSON: the metadata line is neither an entry nor a skip')
  t.same(values('urlhaus.csv', { kind: 'csv', column: 'url' }), ['mal1.example', 'mal2.example'], 'csv:url by header name (in a # comment); the host of a URL')
  t.same(values('urlhaus.csv', { kind: 'csv', column: '3' }), ['mal1.example', 'mal2.example'], 'csv:3 by position')
  t.same(parseFeed('', { kind: 'domains' }).values, [])
})

t.test('not a list: HTML, binary', async (t) => {
  t.match(notAList('<!DOCTYPE html><html><body>502</body></html>'), /HTML/)
  t.match(notAList('\n  <html lang="en"><head>'), /HTML/)
  t.match(notAList('a\0b'), /binary/)
  t.match(notAList('\ufffd'.repeat(100)), /binary/)
  t.equal(notAList('evil.example\n'), undefined)
})

t.test('feed entries never cover protected or reserved addresses, never allow, never broad', async (t) => {
  const r = feedEntries('f', ['127.0.0.0/8', '10.1.0.0/16', '8.8.8.8', '192.0.2.53', '0.0.0.0/0', '20.0.0.0/6', '@@good.example', '198.51.100.0/24', 'evil.example'], 'block', ['192.0.2.53'])
  t.same(r.entries.map((e) => e.value), ['198.51.100.0/24', 'evil.example'])
  t.equal(r.refused, 7)
  t.match(r.refusedExamples.join('\n'), /192\.0\.2\.53\/32: covers a protected address/)
  t.equal(r.entries[0]!.source, 'feed:f')
})

t.test('feeds.txt', async (t) => {
  const r = parseFeedsFile([
    '# threat feeds',
    'drop https://www.spamhaus.org/drop/drop_v4.json format=drop-json every=12h',
    'urlhaus https://urlhaus.abuse.ch/downloads/csv_online/ format=csv:url mode=alert max=100000 min=10 resolve=yes',
    'bad http://x.example format=rss',
    'drop https://other.example/ format=drop',
    'creds https://u:p@x.example/ format=domains',
    'small https://x.example/ format=domains every=5s',
  ].join('\n'), 'blocklists/feeds.txt')
  t.same(r.feeds.map((f) => [f.name, f.format, f.everyMs, f.mode, f.max, f.min, f.resolve, f.source]), [
    ['drop', { kind: 'drop-json' }, 12 * 3600_000, 'block', 500_000, 1, false, 'blocklists/feeds.txt:2'],
    ['urlhaus', { kind: 'csv', column: 'url' }, 6 * 3600_000, 'alert', 100_000, 10, true, 'blocklists/feeds.txt:3'],
  ])
  t.same(r.problems.map((p) => `${p.file}:${p.line}: ${p.message}`), [
    'blocklists/feeds.txt:4: feed bad: format=rss: want domains, hosts, adblock, drop, drop-json or csv:COLUMN',
    'blocklists/feeds.txt:5: feed drop is defined twice',
    'blocklists/feeds.txt:6: feed creds: no credentials in the URL',
    'blocklists/feeds.txt:7: feed small: every=5s: a duration of at least 1m, like 30m, 6h, 1d',
  ])
})

t.test('fetcher against a local HTTP server', async (t) => {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, s) => s.end()
  const seen: IncomingMessage[] = []
  const srv = createServer((req, res) => {
    seen.push(req)
    handler(req, res)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()) }))
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/drop_v4.json`
  const dir = mkdtempSync(join(tmpdir(), `eg-feeds-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fetcher = new FeedFetcher({ dir, timeoutMs: 500, protect: ['192.0.2.53'] })
  const feed: FeedSpec = { name: 'drop', url, format: { kind: 'drop-json' }, everyMs: 3600_000, mode: 'block', max: 500_000, min: 1, resolve: false, source: 'feeds.txt:1' }
  const body = fx('drop_v4.json')
  const serve = (text: string, headers: Record<string, string> = {}) => (handler = (req, res) => {
    if (req.headers['if-none-match'] === '"v1"' && headers.etag === '"v1"') return void res.writeHead(304).end()
    res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(text)
  })
  const got = async () => (await fetcher.entries(feed)).map((e) => e.value)

  serve(body, { etag: '"v1"', 'last-modified': 'Sun, 06 Dec 2026 00:00:00 GMT' })
  t.match(await fetcher.refresh(feed), { status: 'updated', count: 2 })
  t.same(await got(), ['198.18.100.0/24', '203.0.113.0/24'])
  t.equal((await fetcher.entries(feed))[0]!.source, 'feed:drop')

  t.same(await fetcher.refresh(feed), { status: 'unchanged' }, '304: nothing changes')
  t.equal(seen.at(-1)!.headers['if-none-match'], '"v1"', 'conditional GET: ETag')
  t.equal(seen.at(-1)!.headers['if-modified-since'], 'Sun, 06 Dec 2026 00:00:00 GMT', 'and If-Modified-Since')

  const more = body.replace('{"type"', '{"cidr":"198.51.100.0/24","sblid":"SBL333"}\n{"type"')
  serve(more, { etag: '"v2"' })
  t.match(await fetcher.refresh(feed), { status: 'updated', count: 3 }, '200 with new entries updates')
  t.same(await got(), ['198.18.100.0/24', '203.0.113.0/24', '198.51.100.0/24'])

  const keeps = async (why: RegExp, what: string) => {
    const r = await fetcher.refresh(feed)
    t.match(r, { status: 'rejected', reason: why }, what)
    t.same(await got(), ['198.18.100.0/24', '203.0.113.0/24', '198.51.100.0/24'], `${what}: the last good copy stays`)
  }
  serve('<!DOCTYPE html><html><body>Service Unavailable</body></html>')
  await keeps(/HTML/, 'an HTML error page')
  serve('')
  await keeps(/no entries \(empty body\)/, 'an empty body')
  handler = (_q, res) => res.writeHead(500).end('oops')
  await keeps(/HTTP 500/, 'a 500')
  handler = (_q, res) => {
    res.writeHead(200, { 'content-length': String(body.length * 10) })
    res.write(body.slice(0, 40))
    setTimeout(() => res.destroy(), 20)
  }
  await keeps(/fetch failed|terminated|truncated/, 'a truncated body')
  handler = () => {} // never answers
  await keeps(/timed out after 500 ms/, 'a timeout')
  serve('{"cidr":"198.18.100.0/24"}\n')
  await keeps(/1 entries against 3 in the last good copy: shrinks by more than 50%/, 'shrinking by more than half')
  serve(more.replace('198.51.100.0/24', '127.0.0.0/8'))
  const r = await fetcher.refresh(feed)
  t.match(r, { status: 'updated', count: 2, refused: 1, refusedExamples: [/127\.0\.0\.0\/8/] }, 'an entry covering a protected address is refused (the rest kept)')
  t.notOk((await got()).includes('127.0.0.0/8'))

  const capped = { ...feed, max: 1 }
  serve(more)
  t.match(await fetcher.refresh(capped), { status: 'rejected', reason: '3 entries, more than max=1' }, 'max honoured')
  t.match(await fetcher.refresh({ ...feed, min: 5 }), { status: 'rejected', reason: '3 entries, fewer than min=5' }, 'min honoured')

  // A restart: a new fetcher serves the copy on disk without fetching.
  const n = seen.length
  t.same((await new FeedFetcher({ dir }).entries(feed)).length, 2)
  t.equal(seen.length, n, 'no request')
})
