// `egress-guard profile ls` and the Profiles part of `block ls`, end to end: a real server process
// reads a profiles/ directory on SIGHUP, the built CLI lists it (table and --json).
import t from 'tap'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startServer } from '../server/fixtures/process.js'
import { until } from '../helpers/wait.js'
import { readFile } from 'node:fs/promises'
import { createApiClient } from '../../src/client/api-client.js'

t.test('profile ls and block ls against a running server', async (t) => {
  const s = await startServer(t)
  const cli = (args: string[]) => runCli(args, { cwd: s.dir, env: s.env })

  const none = await cli(['profile', 'ls'])
  t.equal(none.code, 0, none.stderr)
  t.equal(none.stdout, '', 'no profiles: no table')
  t.match(none.stderr, /^0 profiles; policy version 1\n$/)

  await mkdir(join(s.blocklists, 'profiles'))
  await writeFile(join(s.blocklists, 'profiles', 'web.txt'), 'mode=learn\napi.example port=443\n*.cdn.example\n')
  await writeFile(join(s.blocklists, 'profiles', 'db.txt'), '198.51.100.0/24 port=5432 # the database\n')
  s.child.kill('SIGHUP')
  const api = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  await until('the server to read the profiles', async () => (await api.listProfiles()).profiles.length === 2, 15_000)

  const ls = await cli(['profile', 'ls'])
  t.equal(ls.code, 0)
  t.equal(ls.stdout, [
    'PROFILE  MODE     LINES  SOURCE',
    'db       enforce  1      blocklists/profiles/db.txt',
    'web      learn    2      blocklists/profiles/web.txt',
    '',
  ].join('\n'))
  t.match(ls.stderr, /^2 profiles; policy version 2\n$/, 'the profiles made a new version')
  const j = JSON.parse((await cli(['profile', 'ls', '--json'])).stdout)
  t.equal(j.version, 2)
  t.same(j.profiles[0].rules, [{ kind: 'net', value: '198.51.100.0/24', ports: [5432], reason: 'the database', source: 'blocklists/profiles/db.txt:1' }])

  const block = await cli(['block', 'ls'])
  t.equal(block.code, 0)
  t.match(block.stdout, /evil\.example[^\n]*\n\nProfiles\nPROFILE\s+MODE\s+LINES\s+SOURCE\ndb\s+enforce\s+1\s+blocklists\/profiles\/db\.txt\nweb\s+learn\s+2\s+/)
  t.match(block.stderr, /1 entries, 2 profiles; policy version 2/)
  const blockJson = JSON.parse((await cli(['block', 'ls', '--json'])).stdout)
  t.same(blockJson.profiles.map((p: { name: string; mode: string; lines: number }) => [p.name, p.mode, p.lines]), [['db', 'enforce', 1], ['web', 'learn', 2]])
  t.equal(blockJson.entries.length, 1)
  const filtered = await cli(['block', 'ls', '--q', 'evil'])
  t.notMatch(filtered.stdout, /Profiles/, 'a filtered listing shows only the matching entries')

  const usage = await cli(['profile', 'frob'])
  t.equal(usage.code, 2)
  t.match(usage.stderr, /usage: egress-guard profile ls/)
})
