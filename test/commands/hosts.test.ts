// `egress-guard hosts` against a real server: agents report through the API client with their own
// per-host tokens; the table and --json show who is in sync, behind, or drifting.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { runCli } from '../helpers/cli.js'
import { startServer } from '../server/fixtures/process.js'
import { createApiClient } from '../../src/client/api-client.js'

t.test('hosts shows each agent and its state', async (t) => {
  const s = await startServer(t)
  const admin = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  const agent = async (host: string) => createApiClient({ url: s.url, token: (await admin.createToken({ role: 'agent', host })).token })
  const web1 = await agent('web1')
  const web2 = await agent('web2')
  const p = await web1.getPolicy()
  const counts = { entries: 1, domains: 1, nets: 0, v4: 0, v6: 0 }
  await web1.report({ host: 'web1', version: p.policy!.version, etag: p.etag, counts, repairs: 0, drift: [], errors: [], agentVersion: '0.1.0' })
  await web2.report({ host: 'web2', version: p.policy!.version, etag: p.etag, counts, repairs: 2, drift: ['rule OUTPUT missing'], errors: [], agentVersion: '0.1.0' })
  const spoof = await web2.report({ host: 'web1', version: 0, etag: 'x', counts, repairs: 0, drift: [], errors: [], agentVersion: '0' }).then(() => 'accepted', (e: { code: string }) => e.code)
  t.equal(spoof, 'EG_FORBIDDEN', 'web2 cannot report for web1')

  const table = await runCli(['hosts'], { cwd: s.dir, env: s.env })
  t.equal(table.code, 0, table.stderr)
  t.match(table.stdout, /^HOST\s+STATE\s+VERSION\s+LAST SEEN/)
  t.match(table.stdout, /web1\s+in-sync\s+1\s+\d+s ago/)
  t.match(table.stdout, /web2\s+drift\s+1\s+.*rule OUTPUT missing/)
  t.match(table.stderr, /2 hosts, 1 not in sync; current policy version 1/)

  await admin.addEntries([{ value: 'new.example', reason: 'r' }])
  const json = await runCli(['hosts', '--json'], { cwd: s.dir, env: s.env })
  const body = JSON.parse(json.stdout) as { current: { version: number }; hosts: { host: string; state: string }[] }
  t.equal(body.current.version, 2)
  t.same(body.hosts.map((h) => [h.host, h.state]), [['web1', 'behind'], ['web2', 'drift']])

  // A read token can look but not push.
  const read = createApiClient({ url: s.url, token: (await admin.createToken({ role: 'read', name: 'dashboard' })).token })
  t.equal((await read.hosts()).hosts.length, 2)
  t.equal(await read.addEntries([{ value: 'y.example', reason: 'r' }]).then(() => 'accepted', (e: { code: string }) => e.code), 'EG_FORBIDDEN')
})

t.test('admin commands read the server and token file from a config file', async (t) => {
  const s = await startServer(t)
  const { writeFile } = await import('node:fs/promises')
  const cfg = `${s.dir}/eg.json`
  await writeFile(cfg, JSON.stringify({ server: s.url, 'token-file': s.tokenFile }))
  const r = await runCli(['hosts', '--json', '--config', cfg], { cwd: s.dir, env: { EG_SERVER: '', EG_TOKEN_FILE: '' } })
  t.equal(r.code, 0, r.stderr)
  t.same(JSON.parse(r.stdout).hosts, [])
  const flagWins = await runCli(['hosts', '--config', cfg, '--server', 'http://127.0.0.1:9'], { cwd: s.dir, env: { EG_SERVER: '', EG_TOKEN_FILE: '' } })
  t.equal(flagWins.code, 1, 'the flag overrides the config file')
  t.match(flagWins.stderr, /127\.0\.0\.1:9/)
})
