// `egress-guard quarantine add|rm|ls` and the fleet views of held containers, end to end: a real
// server process, the built CLI, agents reporting through the API client with their own tokens.
import t from 'tap'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startServer } from '../server/fixtures/process.js'
import { until } from '../helpers/wait.js'
import { createApiClient } from '../../src/client/api-client.js'

const ID = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'
const counts = { entries: 1, domains: 1, nets: 0, v4: 0, v6: 0 }

t.test('quarantine add, ls (no match yet, then matched), rm; hosts and profile ls show held containers', async (t) => {
  const s = await startServer(t)
  await mkdir(join(s.blocklists, 'profiles'))
  await writeFile(join(s.blocklists, 'profiles', 'web.txt'), 'mode=enforce\napi.example\n')
  s.child.kill('SIGHUP')
  const cli = (args: string[]) => runCli(args, { cwd: s.dir, env: s.env })
  const admin = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  await until('the server to read the profile', async () => (await admin.listProfiles()).profiles.length === 1, 15_000)

  const usage = await cli(['quarantine', 'add', 'shop-web-1'])
  t.equal(usage.code, 2, 'no reason: usage error')
  t.match(usage.stderr, /quarantine add needs --reason TEXT/)
  t.equal((await cli(['quarantine', 'rm', 'shop-web-1'])).code, 2, 'rm needs a reason too')
  t.equal((await cli(['quarantine', 'frob'])).code, 2)
  const bad = await cli(['quarantine', 'add', 'web;reboot', '--reason', 'x'])
  t.equal(bad.code, 1, 'the server refuses a bad container text')
  t.match(bad.stderr, /container/)

  const added = await cli(['quarantine', 'add', 'shop-web-1', '--host', 'web1', '--reason', 'miner download', '--expires', '4h'])
  t.equal(added.code, 0, added.stderr)
  t.match(added.stdout, /^ID\s+CONTAINER\s+HOST\s+EXPIRES\s+ADDED\s+BY\s+REASON\nq-[0-9a-f]{12}\s+shop-web-1\s+web1\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\s+\d+s ago\s+admin\s+miner download\n$/)
  t.match(added.stderr, /quarantined "shop-web-1" on web1; policy version 3\./)
  const id = /q-[0-9a-f]{12}/.exec(added.stdout)![0]
  const again = await cli(['quarantine', 'add', 'shop-web-1', '--host', 'web1', '--reason', 'again'])
  t.equal(again.code, 1)
  t.match(again.stderr, new RegExp(`already quarantined \\(${id}, by admin: miner download\\)`))

  const ls0 = await cli(['quarantine', 'ls'])
  t.equal(ls0.code, 0, ls0.stderr)
  t.match(ls0.stdout, new RegExp(`^ID\\s+CONTAINER\\s+HOST\\s+MATCHED\\s+EXPIRES\\s+ADDED\\s+BY\\s+REASON\\n${id}\\s+shop-web-1\\s+web1\\s+no match yet\\s+`))
  t.match(ls0.stderr, /1 quarantine in force, 1 with no match yet; policy version 3/)

  // The agent on web1 applies it and says so in its report; web2 holds one container to the profile.
  const web1 = createApiClient({ url: s.url, token: (await admin.createToken({ role: 'agent', host: 'web1' })).token })
  const web2 = createApiClient({ url: s.url, token: (await admin.createToken({ role: 'agent', host: 'web2' })).token })
  const p = await web1.getPolicy()
  t.same(p.policy!.quarantines!.map((x) => x.id), [id], 'the agent gets it with the policy')
  await web1.report({ host: 'web1', version: p.policy!.version, etag: p.etag, counts, repairs: 0, drift: [], errors: [], agentVersion: '0.1.0', containers: [{ id: ID, name: 'shop-web-1', profile: 'web', quarantineId: id }] })
  await web2.report({ host: 'web2', version: p.policy!.version, etag: p.etag, counts, repairs: 0, drift: [], errors: [], agentVersion: '0.1.0', containers: [{ id: 'fe'.repeat(32), name: 'api-1', profile: 'web' }, { id: 'dc'.repeat(32), name: 'old', profile: 'gone' }] })

  const ls = await cli(['quarantine', 'ls'])
  t.match(ls.stdout, new RegExp(`${id}\\s+shop-web-1\\s+web1\\s+web1/shop-web-1 \\(0123456789ab\\)\\s+`))
  t.match(ls.stderr, /^1 quarantine in force; policy version 3\n$/)
  const lsJson = JSON.parse((await cli(['quarantine', 'ls', '--json'])).stdout)
  t.same(lsJson.quarantines[0].matched, [{ host: 'web1', container: { id: ID, name: 'shop-web-1' } }])

  const hosts = await cli(['hosts'])
  t.equal(hosts.code, 0, hosts.stderr)
  t.match(hosts.stdout, /^HOST\s+STATE\s+VERSION\s+LAST SEEN\s+ENTRIES\s+REPAIRS\s+DRIFT\s+ERRORS\s+PROFILED\s+QUARANTINED\s+DOCKER API\s+AGENT\n/)
  t.match(hosts.stdout, /\nweb1\s+in-sync\s+3\s+.*\s1\s+shop-web-1\s+-\s+0\.1\.0\n/)
  t.match(hosts.stdout, /\nweb2\s+in-sync\s+3\s+.*\s2\s+-\s+-\s+0\.1\.0\n/)

  const prof = await cli(['profile', 'ls'])
  t.equal(prof.code, 0, prof.stderr)
  t.match(prof.stdout, /^PROFILE\s+MODE\s+LINES\s+SOURCE\s+CONTAINERS\nweb\s+enforce\s+1\s+blocklists\/profiles\/web\.txt\s+web1\/shop-web-1, web2\/api-1\n/)
  t.match(prof.stdout, /labelled with a profile the policy does not have \(held to DNS only\):\n {2}web2\/old: egress-guard\.profile="gone"\n/)

  // rm by container text, with a reason; then nothing is in force.
  const rm = await cli(['quarantine', 'rm', 'shop-web-1', '--reason', 'reimaged'])
  t.equal(rm.code, 0, rm.stderr)
  t.match(rm.stderr, /lifted 1 quarantine; policy version 4/)
  const ls2 = await cli(['quarantine', 'ls'])
  t.equal(ls2.stdout, '')
  t.match(ls2.stderr, /0 quarantines in force; policy version 4/)
  const gone = await cli(['quarantine', 'rm', id, '--reason', 'x'])
  t.equal(gone.code, 1)
  t.match(gone.stderr, /no quarantine has id or container/)
  const audit = (await admin.audit(10)).events.filter((e) => e.action.startsWith('quarantine.')).map((e) => [e.action, e.target, e.reason])
  t.same(audit, [['quarantine.remove', 'shop-web-1', 'reimaged'], ['quarantine.add', 'shop-web-1', 'miner download']])
})
