// --blocklists-git against real git repositories (a bare repository path, and git daemon on
// 127.0.0.1): a pushed commit is served within the interval + 1 s with its provenance; a commit with
// lint errors and a force-push keep the last good policy and are reported; the webhook fetches at once
// and is refused without the secret; a restart serves the last good commit without fetching.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GitFollower, checkGitUrl } from '../../src/sources/git-follower.js'
import { silentLogger } from '../../src/log.js'
import { makeServer, type Fixture } from '../server/fixtures/server.js'
import { until } from '../helpers/wait.js'

const root = mkdtempSync(join(tmpdir(), `eg-git-${process.pid}-`))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
const env = { ...process.env, GIT_AUTHOR_NAME: 'Ada Admin', GIT_AUTHOR_EMAIL: 'ada@example.org', GIT_COMMITTER_NAME: 'Ada Admin', GIT_COMMITTER_EMAIL: 'ada@example.org' }
const SECRET = 'a-long-enough-hook-secret'

/** An origin bare repository and a clone to commit in. */
function makeRepo(name: string): { origin: string; commit: (files: Record<string, string>, msg: string, force?: boolean) => string; git: (...a: string[]) => string } {
  const origin = join(root, `${name}.git`)
  const work = join(root, `${name}-work`)
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', origin])
  execFileSync('git', ['init', '-q', '-b', 'main', work])
  const git = (...a: string[]) => execFileSync('git', a, { cwd: work, env, encoding: 'utf8' }).trim()
  git('remote', 'add', 'origin', origin)
  mkdirSync(join(work, 'blocklists'))
  return {
    origin,
    git,
    commit(files, msg, force = false) {
      for (const [f, text] of Object.entries(files)) writeFileSync(join(work, f), text)
      git('add', '-A')
      git('commit', '-q', '-m', msg)
      git('push', '-q', ...(force ? ['--force'] : []), 'origin', 'main')
      return git('rev-parse', 'HEAD')
    },
  }
}

async function serve(t: { teardown: (fn: () => unknown) => void }, url: string, hookSecret?: string): Promise<{ f: Fixture; follower: GitFollower }> {
  const dataGit = mkdtempSync(join(root, 'data-'))
  const follower = new GitFollower({ url, branch: 'main', dir: dataGit, log: silentLogger })
  t.teardown(() => follower.close())
  const f = await makeServer(t, { files: {}, deps: { git: { follower, ...(hookSecret ? { hookSecret: Buffer.from(hookSecret) } : {}) } } })
  return { f, follower }
}

const served = (f: Fixture) => f.app.eg.policy.current.entries.map((e) => `${e.value} ${e.source}`)
const problems = async (f: Fixture) => (await f.app.inject({ url: '/v1/policy/problems', headers: f.auth.read })).json().problems as { code: string; text: string }[]
const audit = async (f: Fixture) => (await f.store.listAudit(50)).filter((a) => a.actor === 'git')

t.test('commits are served with provenance; a bad commit and a force-push keep the last good policy', async (t) => {
  const r = makeRepo('main')
  const c1 = r.commit({ 'blocklists/a.txt': 'evil.example\n' }, 'block evil')
  const { f, follower } = await serve(t, r.origin)
  t.equal(await follower.sync(), 'updated')
  t.same(served(f), [`evil.example blocklists/a.txt:1@${c1.slice(0, 12)}`], 'block ls shows file:line@sha')
  const v1 = f.app.eg.policy.current.version
  const versionAudit = (await f.store.listAudit(50)).find((a) => a.action === 'policy.version' && a.target === String(v1))
  t.match(versionAudit?.reason, `git ${c1} by Ada Admin <ada@example.org> at 20`, 'the version records sha, author, time')
  t.match(versionAudit?.reason, /: block evil$/, 'and subject')

  // Interval: a push is served within the interval + 1 s, with nobody asking.
  follower.start(1000)
  const c2 = r.commit({ 'blocklists/a.txt': 'evil.example\nworse.example\n' }, 'block worse')
  const t0 = Date.now() // pushed
  await until('the pushed commit is served', () => served(f).some((s) => s.startsWith('worse.example')), 2000, 50)
  t.ok(Date.now() - t0 <= 2000, `served after ${Date.now() - t0} ms (interval 1000 ms)`)
  follower.close()
  await until('its audit record', async () => (await audit(f)).some((a) => a.target === c2), 2000, 20)
  const added = (await audit(f)).find((a) => a.action === 'git.commit' && a.target === c2)
  t.match(added?.details, { sha: c2, author: 'Ada Admin <ada@example.org>', subject: 'block worse', addedCount: 1, removedCount: 0, added: [`worse.example (blocklists/a.txt:2@${c2.slice(0, 12)})`] })

  // A commit with a lint error: refused, reported with commit, author and file:line: message.
  const bad = r.commit({ 'blocklists/a.txt': 'evil.example\nworse.example\n203.0.113.7/24\n', 'blocklists/b.txt': 'new.example\n' }, 'oops')
  t.equal(await follower.sync(), 'refused')
  t.notOk(served(f).some((s) => s.startsWith('new.example')), 'nothing of the bad commit is served')
  t.ok(served(f).some((s) => s.startsWith('worse.example')), 'the last good policy still is')
  const ps = await problems(f)
  t.match(ps[0], { code: 'git-lint', text: `blocklists:0: commit ${bad.slice(0, 12)} by Ada Admin <ada@example.org> ("oops") has 1 lint error; refused, keeping commit ${c2.slice(0, 12)}` })
  t.match(ps[1]?.text, 'blocklists/a.txt:3: 203.0.113.7/24 has host bits set')
  t.match((await audit(f)).find((a) => a.action === 'git.refused'), { target: bad, details: { kind: 'lint', author: 'Ada Admin <ada@example.org>', problems: [/^blocklists\/a\.txt:3: 203\.0\.113\.7\/24 has host bits set/] } })
  t.equal(await follower.sync(), 'unchanged', 'reported once, not on every fetch')

  // The fix on top: served, problems cleared, the diff against the last good commit.
  const c3 = r.commit({ 'blocklists/a.txt': 'evil.example\n203.0.113.0/24\n' }, 'fix')
  t.equal(await follower.sync(), 'updated')
  t.same((await problems(f)).filter((p) => p.code.startsWith('git')), [], 'the good commit clears the report')
  t.match((await audit(f)).find((a) => a.target === c3)?.details, { addedCount: 2, removedCount: 1, removed: [`worse.example (blocklists/a.txt:2@${c2.slice(0, 12)})`] })

  // A force-push (the branch rewritten): refused and reported; the policy stays.
  r.git('reset', '-q', '--hard', c1)
  const forced = r.commit({ 'blocklists/a.txt': 'other.example\n' }, 'rewrite history', true)
  const before = f.app.eg.policy.current
  t.equal(await follower.sync(), 'refused')
  t.equal(f.app.eg.policy.current, before, 'the served policy is unchanged')
  t.match((await problems(f))[0], { code: 'git-non-fast-forward', text: `git:0: commit ${forced.slice(0, 12)} by Ada Admin <ada@example.org> ("rewrite history") is not a fast-forward of the served ${c3.slice(0, 12)} (force-push); refused, keeping commit ${c3.slice(0, 12)}` })
  t.match((await audit(f)).find((a) => a.target === forced), { action: 'git.refused', details: { kind: 'non-fast-forward' } })
})

t.test('a commit without the blocklist directory is refused (it would empty the policy)', async (t) => {
  const r = makeRepo('nodir')
  r.commit({ 'blocklists/a.txt': 'evil.example\n' }, 'one')
  const { f, follower } = await serve(t, r.origin)
  await follower.sync()
  r.git('rm', '-q', '-r', 'blocklists')
  r.commit({}, 'remove everything')
  t.equal(await follower.sync(), 'refused')
  t.equal(served(f).length, 1)
  t.match((await problems(f))[1]?.text, 'blocklists:0: no directory blocklists/ in this commit')
})

t.test('webhook: refused without the secret; with it (plain or GitHub HMAC), an immediate fetch', async (t) => {
  const r = makeRepo('hook')
  r.commit({ 'blocklists/a.txt': 'evil.example\n' }, 'one')
  const { f, follower } = await serve(t, r.origin, SECRET)
  await follower.sync()
  r.commit({ 'blocklists/a.txt': 'evil.example\nhooked.example\n' }, 'two')
  const post = (headers: Record<string, string>, payload = '{"ref":"refs/heads/main"}') => f.app.inject({ method: 'POST', url: '/v1/hooks/git', headers: { 'content-type': 'application/json', ...headers }, payload })
  const refusedHeaders: Record<string, string>[] = [{}, { 'x-hook-secret': 'wrong' }, { 'x-hook-secret': SECRET + 'x' }, { 'x-hub-signature-256': 'sha256=' + createHmac('sha256', 'wrong').update('{}').digest('hex') }, { ...f.auth.admin }]
  for (const h of refusedHeaders) {
    const res = await post(h)
    t.equal(res.statusCode, 401, `refused: ${JSON.stringify(Object.keys(h))}`)
    t.equal(res.json().code, 'EG_UNAUTHORIZED')
  }
  await new Promise((r) => setTimeout(r, 300))
  t.notOk(served(f).some((s) => s.startsWith('hooked.example')), 'a refused call fetched nothing')
  const ok = await post({ 'x-hook-secret': SECRET })
  t.equal(ok.statusCode, 202)
  await until('the hook fetched', () => served(f).some((s) => s.startsWith('hooked.example')), 5000, 20)
  r.commit({ 'blocklists/a.txt': 'evil.example\nhooked.example\nsigned.example\n' }, 'three')
  const body = '{"ref":"refs/heads/main","after":"x"}'
  const gh = await post({ 'x-hub-signature-256': 'sha256=' + createHmac('sha256', SECRET).update(body).digest('hex') }, body)
  t.equal(gh.statusCode, 202, 'GitHub signature over the raw body')
  await until('the signed hook fetched', () => served(f).some((s) => s.startsWith('signed.example')), 5000, 20)
})

t.test('webhook without a configured secret refuses every call', async (t) => {
  const r = makeRepo('nohook')
  r.commit({ 'blocklists/a.txt': 'evil.example\n' }, 'one')
  const { f } = await serve(t, r.origin)
  const res = await f.app.inject({ method: 'POST', url: '/v1/hooks/git', headers: { 'x-hook-secret': SECRET }, payload: '' })
  t.equal(res.statusCode, 403)
})

t.test('over git daemon on 127.0.0.1; a restart serves the last good commit without fetching', async (t) => {
  const r = makeRepo('daemon')
  const c1 = r.commit({ 'blocklists/a.txt': 'evil.example\n' }, 'one')
  const port = await new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => res(p))
    })
  })
  const d = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${root}`, '--listen=127.0.0.1', `--port=${port}`, root], { stdio: 'ignore' })
  t.teardown(() => d.kill('SIGTERM'))
  const dataGit = mkdtempSync(join(root, 'data-'))
  const follower = new GitFollower({ url: `git://127.0.0.1:${port}/daemon.git`, branch: 'main', dir: dataGit, log: silentLogger })
  t.teardown(() => follower.close())
  const f = await makeServer(t, { files: {}, deps: { git: { follower } } })
  await until('git daemon answers', async () => (await follower.sync()) === 'updated', 5000, 100)
  t.same(served(f), [`evil.example blocklists/a.txt:1@${c1.slice(0, 12)}`])
  d.kill('SIGTERM')
  // Restart: the remote is gone; the last good commit is served from the data directory.
  const again = new GitFollower({ url: `git://127.0.0.1:${port}/daemon.git`, branch: 'main', dir: dataGit, log: silentLogger })
  const f2 = await makeServer(t, { files: {}, deps: { git: { follower: again } } })
  t.same(served(f2), [`evil.example blocklists/a.txt:1@${c1.slice(0, 12)}`], 'served at start-up, no fetch')
  t.equal(await again.sync(), 'refused', 'the fetch fails while the remote is down')
  t.equal(served(f2).length, 1, 'and keeps the policy')
  t.match((await problems(f2))[0]?.code, 'git-fetch')
})

t.test('a URL with a password or an exec transport is refused', async (t) => {
  t.throws(() => checkGitUrl('https://user:tok@example.org/x.git'), /password/)
  t.throws(() => checkGitUrl('ext::sh -c evil'), /transport/)
  t.throws(() => checkGitUrl('--upload-pack=evil'), /must not start/)
  t.doesNotThrow(() => checkGitUrl('https://user@example.org/x.git'))
  t.doesNotThrow(() => checkGitUrl('git@example.org:org/x.git'))
})
