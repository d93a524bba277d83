// A store write that fails for real changes nothing: ENOSPC on a 64 KiB tmpfs, mounted in a mount
// namespace of this test's own (the machine's mounts are untouched), under a real `egress-guard
// server`. The add and the token create answer an error, and neither is in memory, the served policy,
// the audit log or the file, also after the next successful write; a temp file left behind by a crash
// is removed at the next start.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { appendFile, readFile, readdir, readlink, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI } from '../helpers/cli.js'
import { until } from '../helpers/wait.js'
import { spawnServer, tempDir } from '../server/fixtures/process.js'

const run = promisify(execFile)

/** A process that holds a new mount namespace with a small tmpfs on `mnt` (an empty directory here). */
async function tmpfsNamespace(t: Parameters<typeof tempDir>[0], mnt: string): Promise<{ wrap: string[]; inside: (p: string) => string }> {
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sleep', '1000000'], { stdio: 'ignore' })
  t.teardown(() => void holder.kill('SIGKILL'))
  const pid = String(holder.pid)
  const ours = await readlink('/proc/self/ns/mnt')
  await until('the new mount namespace', async () => (await readlink(`/proc/${pid}/ns/mnt`).catch(() => ours)) !== ours, 5000, 10)
  await run('nsenter', ['--target', pid, '--mount', '--', 'mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'eg-test', mnt])
  // nsenter execs the program after setns: the server is the child process itself, its PID ours to kill.
  return { wrap: ['nsenter', '--target', pid, '--mount', '--'], inside: (p) => `/proc/${pid}/root${p}` }
}

t.test('ENOSPC: a failed add or token create is nowhere, not even after the next write', async (t) => {
  if (!requires(t, capabilities.root(), capabilities.tool('unshare'), capabilities.tool('nsenter'))) return
  const dir = await tempDir(t, 'enospc')
  const mnt = join(dir, 'mnt')
  await run('mkdir', [mnt])
  const ns = await tmpfsNamespace(t, mnt)
  const data = join(mnt, 'data')
  const blocklists = join(dir, 'blocklists')
  await run('mkdir', [blocklists])
  await writeFile(join(blocklists, 'base.txt'), 'evil.example\n')
  const tokenFile = join(dir, 'admin.token')
  await run(ns.wrap[0]!, [...ns.wrap.slice(1), process.execPath, CLI, 'token', 'create', '--role', 'admin', '--data', data, '--out', tokenFile])
  const args = ['--listen', '127.0.0.1:0', '--data', data, '--blocklists', blocklists, '--admin-token-file', tokenFile, '--log-level', 'fatal']
  let srv = spawnServer(t, args, dir, ns.wrap)
  let url = await srv.listening
  const auth = { authorization: `Bearer ${(await readFile(tokenFile, 'utf8')).trim()}`, 'content-type': 'application/json' }
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const r = await fetch(url + path, { method, headers: auth, ...(body ? { body: JSON.stringify(body) } : {}) })
    return { status: r.status, json: r.status === 204 ? undefined : await r.json() }
  }
  const mainFile = ns.inside(join(data, 'egress-guard.json'))

  // A main file of ~20 KB: every write of it needs 5 free pages.
  const reason = 'r'.repeat(1000)
  for (let i = 0; i < 8; i++) t.equal((await api('POST', '/v1/entries', { entries: [{ value: `big${i}.example`, reason }] })).status, 201)
  const size = (await stat(mainFile)).size
  t.ok(size > 12_000, `main file is ${size} bytes`)
  const before = { policy: (await api('GET', '/v1/policy')).json, tokens: (await api('GET', '/v1/tokens')).json.tokens.length, audit: (await api('GET', '/v1/audit?limit=1000')).json.events.length }

  // Fill the tmpfs, then free 2 pages: the next write of the main file gets 8 KiB in and fails.
  const filler = ns.inside(join(mnt, 'filler'))
  const page = Buffer.alloc(4096, 0x2e)
  for (;;) {
    try {
      await appendFile(filler, page)
    } catch (e) {
      t.equal((e as NodeJS.ErrnoException).code, 'ENOSPC', 'the tmpfs is full')
      break
    }
  }
  await truncate(filler, (await stat(filler)).size - 8192)

  const add = await api('POST', '/v1/entries', { entries: [{ value: 'lost.example', reason: 'must not survive' }] })
  t.equal(add.status, 503, 'the add is refused')
  t.equal(add.json.code, 'EG_STORE_WRITE')
  t.match(add.json.message, /ENOSPC/)
  const tok = await api('POST', '/v1/tokens', { role: 'read', name: 'lost-token' })
  t.equal(tok.status, 503, 'the token create is refused')
  t.equal(tok.json.code, 'EG_STORE_WRITE')

  const nowhere = async (when: string): Promise<void> => {
    t.same((await api('GET', '/v1/entries?q=lost')).json.entries, [], `${when}: not in the entries`)
    const policy = (await api('GET', '/v1/policy')).json
    t.notOk(JSON.stringify(policy).includes('lost.example'), `${when}: not in the served policy`)
    t.notOk((await api('GET', '/v1/tokens')).json.tokens.some((x: { name?: string }) => x.name === 'lost-token'), `${when}: no such token`)
    const audit = JSON.stringify((await api('GET', '/v1/audit?limit=1000')).json.events)
    t.notOk(audit.includes('lost.example') || audit.includes('lost-token'), `${when}: not in the audit log`)
    const disk = await readFile(mainFile, 'utf8')
    t.notOk(disk.includes('lost.example') || disk.includes('lost-token'), `${when}: not on disk`)
    JSON.parse(disk)
  }
  await nowhere('after the failed writes')
  t.same((await api('GET', '/v1/policy')).json, before.policy, 'the served policy is exactly the one before (version and etag too)')
  t.equal((await api('GET', '/v1/audit?limit=1000')).json.events.length, before.audit, 'no audit record for either')
  t.notOk((await readdir(ns.inside(data))).some((f) => f.endsWith('.tmp')), 'no partial temp file left behind')

  // Space again: the next write succeeds and carries nothing of the failed ones.
  await rm(filler)
  const ok = await api('POST', '/v1/entries', { entries: [{ value: 'ok.example', reason: 'after' }] })
  t.equal(ok.status, 201)
  t.equal(ok.json.version, before.policy.version + 1, 'one version bump: the failed add never took a version')
  await nowhere('after the next successful write')
  t.equal((await api('GET', '/v1/tokens')).json.tokens.length, before.tokens)
  t.ok((await readFile(mainFile, 'utf8')).includes('ok.example'))

  // A crash mid-write leaves `.NAME.tmp` (the name lowdb's writer used too): the next start removes it.
  t.equal(await srv.child.kill('SIGKILL') && (await srv.exited), null)
  await writeFile(ns.inside(join(data, '.egress-guard.json.tmp')), '{"schema":1,"entr')
  await writeFile(ns.inside(join(data, '.hits.json.tmp')), '{"sch')
  srv = spawnServer(t, args, dir, ns.wrap)
  url = await srv.listening
  t.same((await readdir(ns.inside(data))).filter((f) => f.endsWith('.tmp')), [], 'stale temp files removed at start')
  t.equal((await api('GET', '/v1/entries?source=api')).json.entries.length, 9, 'the store itself is whole')
  srv.child.kill('SIGTERM')
  t.equal(await srv.exited, 0)
})
