// `egress-guard hits` against a real server: an agent uploads a batch of hits with its token; the
// command filters by time, host, container and domain, as a table or JSON.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { runCli } from '../helpers/cli.js'
import { startServer } from '../server/fixtures/process.js'
import { createApiClient } from '../../src/client/api-client.js'
import type { Hit } from '../../src/sinkhole/types.js'

t.test('hits lists uploaded hits with filters', async (t) => {
  const s = await startServer(t)
  const admin = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  const web1 = createApiClient({ url: s.url, token: (await admin.createToken({ role: 'agent', host: 'web1' })).token })
  const ago = (min: number) => new Date(Date.now() - min * 60_000).toISOString()
  const hit = (name: string, min: number, container?: Hit['container']): Hit => ({
    time: ago(min), lastTime: ago(min), count: 3, client: '172.17.0.7', ...(container ? { container } : {}), name, qtype: 'A', action: 'block',
    entry: { value: 'evil.example', source: 'blocklists/base.txt:1', reason: 'miner pool', mode: 'block' }, answer: 'null',
  })
  const miner = { id: 'f00dcafe1234', name: 'miner-box', image: 'alpine:3.20', service: 'worker' }
  const r = await web1.uploadHits('web1', [hit('evil.example', 1, miner), hit('cdn.evil.example', 5, miner), hit('evil.example', 120)])
  t.same(r, { accepted: 3 })

  const table = await runCli(['hits'], { cwd: s.dir, env: s.env })
  t.equal(table.code, 0, table.stderr)
  t.match(table.stdout, /^TIME\s+HOST\s+CONTAINER\s+NAME/)
  t.match(table.stdout, /web1\s+miner-box \(alpine:3\.20\)\s+evil\.example\s+A\s+block\s+3\s+evil\.example blocklists\/base\.txt:1\s+miner pool/)
  t.match(table.stderr, /^2 hits/, 'default --since 1h leaves out the 2 h old hit')

  const json = async (args: string[]) => JSON.parse((await runCli(['hits', '--json', ...args], { cwd: s.dir, env: s.env })).stdout).hits as Hit[]
  t.equal((await json(['--since', '3h'])).length, 3)
  t.same((await json(['--container', 'worker'])).map((h) => h.name), ['evil.example', 'cdn.evil.example'], 'newest first')
  t.same((await json(['--domain', 'cdn.evil.example'])).map((h) => h.name), ['cdn.evil.example'])
  t.equal((await json(['--host', 'web2'])).length, 0)
  t.equal((await json(['--limit', '1'])).length, 1)
  const bad = await runCli(['hits', '--since', 'last tuesday'], { cwd: s.dir, env: s.env })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /since: want a duration like 1h or an RFC 3339 time/)
})
