// `egress-guard profile suggest` end to end: an agent uploads learn-mode records to a real server
// process, the built CLI prints the proposal, writes <blocklists>/profiles/NAME.txt with --write,
// refuses to replace it without --force, and the written file passes `lint` without a warning.
import t from 'tap'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startServer, tempDir } from '../server/fixtures/process.js'
import { until } from '../helpers/wait.js'
import { createApiClient } from '../../src/client/api-client.js'
import type { LearnedRecord } from '../../src/profiles/learned.js'

t.test('profile suggest: print, --write, --force, lint', async (t) => {
  const s = await startServer(t)
  await mkdir(join(s.blocklists, 'profiles'))
  await writeFile(join(s.blocklists, 'profiles', 'web.txt'), 'mode=learn\n# the payment API\napi.stripe.com port=443\n')
  s.child.kill('SIGHUP')
  const cli = (args: string[]) => runCli(args, { cwd: s.dir, env: s.env })
  const admin = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  await until('the server to read the profile', async () => (await admin.listProfiles()).profiles.length === 1, 15_000)

  const nothing = await cli(['profile', 'suggest', 'web'])
  t.equal(nothing.code, 0, nothing.stderr)
  t.match(nothing.stdout, /^# Profile web: proposed by/)
  t.match(nothing.stderr, /^0 proposed lines from 0 learned names\n$/)
  const local = await tempDir(t, 'sugg')
  const emptyWrite = await cli(['profile', 'suggest', 'web', '--write', '--blocklists', local, '--since', '1d'])
  t.equal(emptyWrite.code, 0, 'the current profile has a line: it can be written')

  const agent = createApiClient({ url: s.url, token: (await admin.createToken({ role: 'agent', host: 'web1' })).token })
  const ago = (h: number) => new Date(Date.now() - h * 3_600_000).toISOString()
  const rec = (name: string, over: Partial<LearnedRecord> = {}): LearnedRecord => ({ profile: 'web', name, firstSeen: ago(30), lastSeen: ago(1), count: 3, containers: ['shop-web-1'], answers: ['198.51.100.7'], ...over })
  const up = await agent.uploadLearned('web1', [
    rec('api.stripe.com', { count: 40 }),
    ...['a', 'b', 'c', 'd', 'e'].map((x) => rec(`${x}.images.example-cdn.net`, { containers: ['shop-web-2'] })),
    rec('sentry.io', { count: 7, containers: ['shop-worker-1'] }),
    rec('old.example.com', { firstSeen: ago(24 * 20), lastSeen: ago(24 * 10) }),
    rec('redis'),
  ])
  t.same(up, { accepted: 9, ignored: 0 })
  const bad = await agent.uploadLearned('web1', [rec('Not Normal')]).then(() => 'accepted', (e: { code: string; statusCode: number }) => `${e.statusCode} ${e.code}`)
  t.equal(bad, '400 EG_BAD_INPUT', 'the client surfaces a refused batch as a coded error')

  const out = await cli(['profile', 'suggest', 'web', '--since', '7d'])
  t.equal(out.code, 0, out.stderr)
  const lines = out.stdout.split('\n').filter((l) => l && !l.startsWith('#'))
  t.same(lines.map((l) => l.split('  #')[0]), ['mode=learn', 'api.stripe.com port=443', 'sentry.io', '*.images.example-cdn.net'], 'kept line, 5 siblings folded, old name outside --since, single label left out; sorted by domain (io.sentry < net.example-cdn)')
  t.match(out.stdout, /\*\.images\.example-cdn\.net {2}# first seen \d{4}-\d\d-\d\d, 15 lookups, containers: shop-web-2, 5 names under it: a\.images/)
  t.match(out.stdout, /sentry\.io {2}# first seen \d{4}-\d\d-\d\d, 7 lookups, containers: shop-worker-1\n/)
  t.match(out.stdout, /it already allows 1 learned name: api\.stripe\.com/)
  t.match(out.stdout, /# Not proposed: single-label names .*: redis/)
  t.match(out.stderr, /^2 proposed lines from 8 learned names\n$/)
  const wide = await cli(['profile', 'suggest', 'web', '--since', '30d', '--json'])
  const j = JSON.parse(wide.stdout)
  t.same(j.lines.map((l: { value: string }) => l.value), ['old.example.com', 'sentry.io', '*.images.example-cdn.net'])
  t.equal(j.mode, 'learn')

  // --write: refuses to replace the file the first (empty) run wrote; --force replaces it.
  const file = join(local, 'profiles', 'web.txt')
  const first = await readFile(file, 'utf8')
  const refused = await cli(['profile', 'suggest', 'web', '--write', '--blocklists', local, '--mode', 'enforce'])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /profiles\/web\.txt exists: review and edit it, or give --force to replace it/)
  t.equal(await readFile(file, 'utf8'), first, 'unchanged')
  const forced = await cli(['profile', 'suggest', 'web', '--write', '--force', '--blocklists', local, '--mode', 'enforce'])
  t.equal(forced.code, 0, forced.stderr)
  t.equal(forced.stdout, '', '--write prints no proposal')
  t.match(forced.stderr, /2 proposed lines from 8 learned names; wrote .*profiles\/web\.txt: review it/)
  const written = await readFile(file, 'utf8')
  t.match(written, /\nmode=enforce\n# \(the profile in the policy is in mode=learn\)\n/)
  t.match(written, /\napi\.stripe\.com port=443 {2}# the payment API\n/)
  t.match(written, /\n\*\.images\.example-cdn\.net {2}# first seen/)

  const lint = await runCli(['lint', file], { cwd: s.dir })
  t.equal(lint.code, 0, lint.stdout + lint.stderr)
  t.match(lint.stdout + lint.stderr, /1 profile: 0 errors, 0 warnings/, 'no problem at all')
  const lintDir = await runCli(['lint', local], { cwd: s.dir })
  t.equal(lintDir.code, 0, lintDir.stdout + lintDir.stderr)

  // A config file whose `blocklists` is a list (as the agent's) serves this command too.
  const cfg = join(local, 'eg.json')
  await writeFile(cfg, JSON.stringify({ blocklists: [local] }))
  const viaConfig = await cli(['profile', 'suggest', 'web', '--write', '--force', '--config', cfg])
  t.equal(viaConfig.code, 0, viaConfig.stderr)
  t.match(viaConfig.stderr, new RegExp(`wrote ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  t.equal((await cli(['profile', 'suggest', 'web', '--write', '--blocklists', local, '--blocklists', s.dir])).code, 2, 'one directory to write to')

  // Usage errors.
  t.equal((await cli(['profile', 'suggest'])).code, 2)
  t.equal((await cli(['profile', 'suggest', 'Web!'])).code, 2)
  t.equal((await cli(['profile', 'suggest', 'web', '--mode', 'block'])).code, 2)
  t.equal((await cli(['profile', 'suggest', 'web', '--force'])).code, 2)
  const unknown = await cli(['profile', 'suggest', 'nosuch'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /no profile "nosuch"/)
})
