// deploy/ci/ works: the sample pre-commit hook refuses a commit whose staged blocklist has a lint error
// (and accepts a clean one, and an unstaged fix does not hide a staged error), and the sample workflow
// is valid YAML that runs `egress-guard lint --format github`. Real git, the built CLI.
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { CLI } from './helpers/cli.js'

const CI = fileURLToPath(new URL('../deploy/ci', import.meta.url))

t.test('pre-commit hook: a staged lint error refuses the commit; a clean one goes in', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-precommit-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  writeFileSync(join(bin, 'egress-guard'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`)
  chmodSync(join(bin, 'egress-guard'), 0o755)
  const repo = join(dir, 'repo')
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@x', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@x' }
  const git = (...a: string[]) => spawnSync('git', a, { cwd: repo, env, encoding: 'utf8' })
  execFileSync('git', ['init', '-q', '-b', 'main', repo])
  copyFileSync(join(CI, 'pre-commit'), join(repo, '.git', 'hooks', 'pre-commit'))
  chmodSync(join(repo, '.git', 'hooks', 'pre-commit'), 0o755)
  mkdirSync(join(repo, 'blocklists'))
  writeFileSync(join(repo, 'blocklists', 'a.txt'), 'evil.example\n')
  git('add', '-A')
  const ok = git('commit', '-q', '-m', 'clean')
  t.equal(ok.status, 0, ok.stderr)
  writeFileSync(join(repo, 'blocklists', 'a.txt'), 'evil.example\n203.0.113.7/24\n')
  git('add', '-A')
  const refused = git('commit', '-q', '-m', 'bad')
  t.not(refused.status, 0, 'the commit is refused')
  t.match(refused.stderr, 'blocklists/a.txt:2: 203.0.113.7/24 has host bits set', 'the problem names the file in the repository (git shows hook output on stderr)')
  t.match(refused.stderr, /commit refused/)
  t.equal(git('rev-list', '--count', 'HEAD').stdout.trim(), '1')
  writeFileSync(join(repo, 'blocklists', 'a.txt'), 'evil.example\n203.0.113.0/24\n') // fixed, but not staged
  t.not(git('commit', '-q', '-m', 'bad').status, 0, 'an unstaged fix does not hide the staged error')
  git('add', '-A')
  t.equal(git('commit', '-q', '-m', 'fixed').status, 0, 'staged fix: accepted')
  t.equal(git('rev-list', '--count', 'HEAD').stdout.trim(), '2')
})

t.test('sample workflow: valid YAML, runs lint --format github on blocklists', async (t) => {
  const wf = parse(readFileSync(join(CI, 'blocklists-lint.yml'), 'utf8')) as { on: Record<string, unknown>; jobs: Record<string, { steps: { run?: string }[] }> }
  t.ok('pull_request' in wf.on && 'push' in wf.on)
  const runs = Object.values(wf.jobs).flatMap((j) => j.steps.map((s) => s.run ?? ''))
  t.ok(runs.some((r) => /dist\/cli\.js" lint --format github blocklists$/.test(r.trim())), 'a step runs the linter with annotations')
})
