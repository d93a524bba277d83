// The deployment files cannot rot: each sample config is loaded by the real command's option parsing
// (every key must be one of that command's long flags, every value of the right type), the systemd
// units' ExecStart lines are real commands, their hardening is what the README promises, and
// `systemd-analyze verify` accepts them when it is installed.
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLI, runCli } from './helpers/cli.js'
import { capabilities } from './helpers/caps.js'

const DEPLOY = fileURLToPath(new URL('../deploy', import.meta.url))

/** Long flags a command accepts, read from its own --help. */
async function flagsOf(cmd: string): Promise<Set<string>> {
  const r = await runCli([cmd, '--help'])
  return new Set([...r.stdout.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!))
}

/** `Key=value` lines of a unit file (repeated keys kept in order). */
function unitLines(text: string): Array<[string, string]> {
  return text
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string])
}

for (const role of ['server', 'agent'] as const) {
  t.test(`deploy/config/${role}.json is loaded by \`egress-guard ${role}\``, async (t) => {
    const file = join(DEPLOY, 'config', `${role}.json`)
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    const flags = await flagsOf(role)
    const keys = Object.entries(config).flatMap(([k, v]) => (k === role && v && typeof v === 'object' ? Object.keys(v) : [k]))
    t.ok(keys.length > 3, 'a useful sample')
    for (const k of keys) t.ok(flags.has(k), `"${k}" is a flag of egress-guard ${role}`)
    // Loaded through src/config.ts (types checked there): a wrong type would exit 2.
    const r = await runCli([role, '--config', file, '--help'])
    t.equal(r.code, 0, r.stderr)
    // And a broken copy is refused, so the check above can fail.
    const dir = mkdtempSync(join(tmpdir(), `eg-deploy-${process.pid}-`))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...config, 'log-level': { not: 'a string' } }))
    const bad = await runCli([role, '--config', join(dir, 'bad.json'), '--help'])
    t.equal(bad.code, 2, 'a wrongly typed value is refused')
    t.match(bad.stderr, /log-level must be a string/)
  })

  t.test(`deploy/systemd/egress-guard-${role}.service`, async (t) => {
    const text = readFileSync(join(DEPLOY, 'systemd', `egress-guard-${role}.service`), 'utf8')
    const lines = unitLines(text)
    const get = (k: string) => lines.filter(([key]) => key === k).map(([, v]) => v)
    const exec = get('ExecStart')[0] ?? ''
    t.match(exec, new RegExp(`^/usr/local/bin/egress-guard ${role} --config /etc/egress-guard/${role}\\.json$`), 'ExecStart runs the real command with the sample config path')
    const args = exec.split(' ').slice(1)
    const flags = await flagsOf(role)
    for (const a of args.filter((x) => x.startsWith('--'))) t.ok(flags.has(a.slice(2)), `${a} is a flag of egress-guard ${role}`)
    t.equal(get('NoNewPrivileges')[0], 'yes')
    t.equal(get('ProtectSystem')[0], 'strict')
    t.equal(get('PrivateTmp')[0], 'yes')
    t.ok(get('Restart')[0], 'a restart policy')
    if (role === 'agent') {
      t.same(get('CapabilityBoundingSet')[0]?.split(/\s+/).sort(), ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE'], 'agent: only NET_ADMIN and NET_BIND_SERVICE')
      t.same(get('AmbientCapabilities')[0]?.split(/\s+/).sort(), ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE'])
      t.equal(get('Restart')[0], 'always', 'the agent comes back whatever ended it')
    } else {
      t.equal(get('CapabilityBoundingSet')[0], '', 'server: no capabilities')
      t.equal(get('DynamicUser')[0], 'yes')
    }
  })
}

t.test('deploy/docker/daemon.json points containers at the sinkhole on the default bridge', async (t) => {
  const d = JSON.parse(readFileSync(join(DEPLOY, 'docker', 'daemon.json'), 'utf8')) as { dns?: string[] }
  t.same(d.dns, ['172.17.0.1'])
  const agent = JSON.parse(readFileSync(join(DEPLOY, 'config', 'agent.json'), 'utf8')) as { 'sinkhole-listen': string[] }
  t.ok(agent['sinkhole-listen'].some((l) => l.startsWith(`${d.dns![0]}:`)), 'the sample agent listens where daemon.json points')
})

// Optional tool: skipped (not failed, also in CI) where systemd is not installed.
t.test('systemd-analyze verify accepts both units', { skip: capabilities.tool('systemd-analyze') ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-units-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const files: string[] = []
  for (const role of ['server', 'agent']) {
    const name = `egress-guard-${role}.service`
    // verify checks that ExecStart's binary exists; the installed path may not on a build machine.
    const text = readFileSync(join(DEPLOY, 'systemd', name), 'utf8').replace('/usr/local/bin/egress-guard', `${process.execPath} ${CLI}`)
    writeFileSync(join(dir, name), text)
    files.push(join(dir, name))
  }
  const r = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile('systemd-analyze', ['verify', ...files], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr })),
  )
  t.equal(r.code, 0, r.out)
  t.notMatch(r.out, /egress-guard-(server|agent)\.service:/, `no warnings about our units\n${r.out}`)
})
