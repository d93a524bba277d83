// The install path people expect from a Node tool: `npm pack` gives a tarball, and `npm install -g
// --prefix TMP ./egress-guard-*.tgz` gives a working `egress-guard` with its runtime dependencies only,
// the dashboard's files included. The installed command runs lint, match, --help and --version, and its
// server serves the dashboard. Packs the tree built by `npm test` (--ignore-scripts: prepack's clean
// rebuild would pull dist/ from under the tests running beside this one). Needs the npm registry or a
// warm npm cache (--prefer-offline); bounded by a timeout.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './helpers/dnsmasq.js'
import { until } from './helpers/wait.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> }

// tap's NODE_OPTIONS (its TypeScript and coverage hooks) must not reach npm or the installed command.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP'))) as NodeJS.ProcessEnv

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr: stderr + (err && typeof err.code !== 'number' ? String(err.message) : '') })
    })
  })
}

t.test('npm pack, npm install -g from the tarball, and the installed command works', async (t) => {
  if (!existsSync(join(ROOT, 'dist', 'cli.js'))) return t.fail('dist/ is not built: run npm run build (npm test does)')
  const tmp = mkdtempSync(join(tmpdir(), `eg-pack-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))

  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT, timeoutMs: 60_000 })
  t.equal(packed.code, 0, packed.stderr)
  const info = (JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>)[0]!
  const files = info.files.map((f) => f.path)
  t.equal(info.filename, `egress-guard-${pkg.version}.tgz`)
  for (const f of ['package.json', 'README.md', 'dist/cli.js', 'dist/server/ui/index.html', 'dist/server/ui/app.js', 'dist/server/ui/style.css', 'deploy/systemd/egress-guard-agent.service']) {
    t.ok(files.includes(f), `the tarball holds ${f}`)
  }
  t.same(files.filter((f) => /^(src|test|bench|node_modules|data|\.tap)\//.test(f)), [], 'no sources, tests, benchmarks or state')

  const prefix = join(tmp, 'prefix')
  const t0 = Date.now()
  const inst = await run('npm', ['install', '-g', '--prefix', prefix, join(tmp, info.filename), '--no-audit', '--no-fund', '--prefer-offline', '--loglevel', 'error'], { cwd: tmp, timeoutMs: 240_000 })
  t.equal(inst.code, 0, `npm install -g from the tarball\n${inst.stderr.slice(-3000)}`)
  t.comment(`npm install -g took ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  const installed = join(prefix, 'lib', 'node_modules', 'egress-guard')
  for (const d of Object.keys(pkg.devDependencies)) t.notOk(existsSync(join(installed, 'node_modules', d)), `no dev dependency ${d}`)
  for (const d of Object.keys(pkg.dependencies)) t.ok(existsSync(join(installed, 'node_modules', d)), `runtime dependency ${d}`)

  const bin = join(prefix, 'bin', 'egress-guard')
  const eg = (args: string[], cwd = tmp) => run(bin, args, { cwd })
  const version = await eg(['--version'])
  t.same([version.code, version.stdout], [0, `egress-guard ${pkg.version}\n`], '--version prints the version')
  const help = await eg(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /commands: .*lint.*match/)
  t.match((await eg(['up', '--help'])).stdout, /--sinkhole-address/, 'a command\'s --help')

  const lists = join(tmp, 'blocklists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'base.txt'), '# the miner pool\nevil.example\n203.0.113.0/24 ; SBL1\n')
  const lint = await eg(['lint', lists])
  t.equal(lint.code, 0, lint.stdout + lint.stderr)
  writeFileSync(join(lists, 'bad.txt'), 'good.example\nnot a valid line!\n')
  const badLint = await eg(['lint', lists])
  t.equal(badLint.code, 1, 'lint exits 1 on an error')
  t.match(badLint.stdout + badLint.stderr, /bad\.txt:2: /, 'file:line messages')
  rmSync(join(lists, 'bad.txt'))
  const match = await eg(['match', 'x.evil.example', '--blocklists', lists])
  t.equal(match.code, 0, 'blocked: exit 0')
  t.match(match.stdout, /evil\.example/)
  t.match(match.stdout, /base\.txt:2/)
  t.equal((await eg(['match', 'fine.example', '--blocklists', lists])).code, 1, 'not blocked: exit 1')

  // The dashboard's files come with the package: the installed server serves them.
  const data = join(tmp, 'data')
  t.equal((await eg(['token', 'create', '--role', 'admin', '--data', data, '--out', join(tmp, 'admin.token')])).code, 0)
  const port = await freePort()
  const server = spawn(bin, ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`, '--admin-token-file', join(tmp, 'admin.token'), '--log-level', 'warn'], { env, stdio: 'ignore' })
  t.teardown(() => void (server.exitCode === null && server.kill('SIGKILL')))
  const url = `http://127.0.0.1:${port}`
  await until('the installed server answers', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 20_000).catch((e: Error) => t.fail(e.message))
  const page = await fetch(`${url}/`)
  t.equal(page.status, 200, 'the dashboard page')
  t.match(await page.text(), /<script type="module" src="\/ui\/app\.js">/)
  t.equal((await fetch(`${url}/ui/app.js`)).status, 200, 'its script')
})
