// `egress-guard block add/rm/ls` end to end against a real server on 127.0.0.1: tables for people,
// --json for scripts, coded errors and exit codes, and the change visible to an agent's long-poll.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { runCli } from '../helpers/cli.js'
import { startServer } from '../server/fixtures/process.js'
import { createApiClient } from '../../src/client/api-client.js'

t.test('block add, ls, rm against a running server', async (t) => {
  const s = await startServer(t)
  const cli = (args: string[]) => runCli(args, { cwd: s.dir, env: s.env })
  const api = createApiClient({ url: s.url, token: (await readFile(s.tokenFile, 'utf8')).trim() })
  const v1 = await api.getPolicy()
  // An agent-style long-poll waiting while the operator pushes a block.
  const waiting = api.getPolicy({ etag: v1.etag, waitSec: 30 })

  const add = await cli(['block', 'add', 'Miner.Example', '203.0.113.66', '--reason', 'incident 42', '--expires', '4h'])
  t.equal(add.code, 0, add.stderr)
  t.match(add.stdout, /^ID\s+ENTRY\s+MODE\s+EXPIRES\s+SOURCE\s+REASON/)
  t.match(add.stdout, /miner\.example\s+block\s+\S+\s+api:admin\s+incident 42/)
  t.match(add.stdout, /203\.0\.113\.66\/32/)
  t.match(add.stderr, /added 2 entries; policy version 2/)

  const woke = await waiting
  t.equal(woke.status, 200, 'the waiting long-poll got the new policy')
  t.ok(woke.policy?.entries.some((e) => e.value === 'miner.example'))

  const ls = await cli(['block', 'ls', '--json'])
  t.equal(ls.code, 0)
  const listed = JSON.parse(ls.stdout) as { version: number; entries: { value: string; id: string; source: string }[] }
  t.equal(listed.version, 2)
  t.same(listed.entries.map((e) => e.value).sort(), ['203.0.113.66/32', 'evil.example', 'miner.example'])
  const human = await cli(['block', 'ls', '--source', 'file'])
  t.match(human.stdout, /evil\.example\s+block\s+-\s+blocklists\/base\.txt:1\s+miner pool/)
  t.notMatch(human.stdout, /miner\.example/)

  const alert = await cli(['block', 'add', 'watch.example', '--reason', 'try first', '--alert', '--json'])
  t.equal(alert.code, 0)
  t.equal(JSON.parse(alert.stdout).entries[0].mode, 'alert')

  const id = listed.entries.find((e) => e.value === '203.0.113.66/32')!.id
  const rm1 = await cli(['block', 'rm', id, '--reason', 'false positive'])
  t.equal(rm1.code, 0, rm1.stderr)
  t.match(rm1.stderr, /removed 1 entry/)
  const rm2 = await cli(['block', 'rm', 'miner.example', '--json'])
  t.equal(rm2.code, 0)
  t.equal(JSON.parse(rm2.stdout).removed[0].value, 'miner.example')

  const audit = (await api.audit(20)).events
  t.ok(audit.some((e) => e.action === 'entry.remove' && e.target === '203.0.113.66/32' && e.reason === 'false positive'))
  t.ok(audit.some((e) => e.action === 'entry.add' && e.target === 'miner.example' && e.reason === 'incident 42'))

  // Errors: coded messages, exit codes, nothing changed.
  const before = (await api.listEntries()).version
  const noReason = await cli(['block', 'add', 'x.example'])
  t.equal(noReason.code, 2)
  t.match(noReason.stderr, /needs --reason/)
  const bad = await cli(['block', 'add', 'x..example', 'fine.example', '--reason', 'r'])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /entries\[0\] "x\.\.example"/)
  const fileEntry = await cli(['block', 'rm', 'evil.example'])
  t.equal(fileEntry.code, 1)
  t.match(fileEntry.stderr, /blocklists\/base\.txt:1: edit the blocklist file/)
  const missing = await cli(['block', 'rm', 'never.example'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /no API entry/)
  t.equal((await api.listEntries()).version, before, 'the failed commands changed nothing')
  t.equal((await api.listEntries({ q: 'fine.example' })).entries.length, 0)

  const usage = await cli(['block', 'frob'])
  t.equal(usage.code, 2)
})

t.test('admin commands without a server or token say so', async (t) => {
  const s = await startServer(t)
  const noToken = await runCli(['block', 'ls'], { cwd: s.dir, env: { EG_SERVER: s.url, EG_TOKEN_FILE: `${s.dir}/missing.token` } })
  t.equal(noToken.code, 2)
  t.match(noToken.stderr, /token file .*missing\.token: cannot read it/)
  await s.stop()
  const down = await runCli(['block', 'ls'], { cwd: s.dir, env: s.env })
  t.equal(down.code, 1)
  t.match(down.stderr, /GET http:\/\/127\.0\.0\.1:\d+\/v1\/entries: .*(ECONNREFUSED|connect)/)
})
