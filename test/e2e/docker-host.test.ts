// The README's quick start on a real Docker host: a real dockerd in a namespace with NO container
// running (docker0 without carrier) and Docker's MASQUERADE rule, an "eth0" holding the host's routable
// address, and the real `egress-guard up` run inside it. Reproduces the two first-run failures: the
// sinkhole landing on 127.0.0.1 (libuv does not list docker0 without carrier) and the host's own
// `dig @172.17.0.1` being REFUSED (masqueraded to the host's address). Also: up started before Docker
// binds docker0 when it appears and rebinds when Docker re-creates it with another address; an API on
// tcp://0.0.0.0:2375 is flagged by doctor (exit 1) and in the fleet view.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { startDocker, BUSYBOX_IMAGE, type DockerEnv } from '../helpers/docker.js'
import { dig } from '../helpers/dnsmasq.js'
import { inNs, link, makeNs, sh } from '../helpers/netns.js'
import { until } from '../helpers/wait.js'

const URL_ = 'http://127.0.0.1:18787'
const HOST_ADDR = '198.51.100.7'

function workdir(t: Test, lists: string): string {
  const dir = mkdtempSync(join(tmpdir(), `eg-dockerhost-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'blocklists'))
  writeFileSync(join(dir, 'blocklists', 'test.txt'), lists)
  writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n')
  return dir
}

/** `egress-guard up` inside `ns` (as an operator runs it on that host), stopped at teardown. */
function startUp(t: Test, ns: string, dir: string): { child: ChildProcess; err: () => string } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'up', '--listen', '127.0.0.1:18787', '--upstream', '127.0.0.1:9',
    '--hosts-file', join(dir, 'hosts'), '--host', 'dockerhost'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stdout!.on('data', (d) => (err += String(d)))
  child.stderr!.on('data', (d) => (err += String(d)))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000)
        child.once('exit', () => {
          clearTimeout(kill)
          resolve()
        })
        child.kill('SIGTERM')
      }),
  )
  return { child, err: () => err }
}

async function ready(t: Test, up: { child: ChildProcess; err: () => string }): Promise<void> {
  await until('up: ready', () => /up: ready/.test(up.err()) || up.child.exitCode !== null, 60_000).catch((e: Error) => t.fail(e.message))
  t.match(up.err(), /up: ready/, 'up started')
}

const sinkAnswer = async (server: string, name: string, ns: string): Promise<string[]> => (await dig(server, 53, name, 'A', [], ns)).answers.map((a) => a[2])

/** A container started now, resolving through `server` (busybox nslookup: the answer's address lines). */
async function containerLookup(env: DockerEnv, server: string, name: string): Promise<string> {
  return env.docker(['run', '--rm', '--dns', server, BUSYBOX_IMAGE, 'nslookup', name]).catch((e: Error) => e.message)
}

t.test('up on a Docker host with no container running: sinkhole on docker0, the host and containers answered, strangers refused, the exposed API flagged', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.docker(), capabilities.tool('dig'), capabilities.tool('iptables'), capabilities.tool('ipset'))) return
  const outside = makeNs(t, 'dhout')
  // "eth0" exists before Docker, as on a host: masquerading then picks its address for the host's own query.
  const env = await startDocker(t, {
    args: ['-H', 'tcp://0.0.0.0:2375', '--tls=false'],
    before: (ns) => void link(ns, [`${HOST_ADDR}/24`], outside, ['198.51.100.1/24']),
  })
  sh('ip', ['-n', outside, 'route', 'add', '172.16.0.0/12', 'via', HOST_ADDR])
  t.equal((await env.docker(['ps', '-q'])).trim(), '', 'no container running')
  t.match(sh('ip', ['-n', env.ns, 'link', 'show', 'docker0']), /NO-CARRIER/, 'docker0 has no carrier')
  t.match(inNs(env.ns, 'iptables', ['-t', 'nat', '-S', 'POSTROUTING']), /-A POSTROUTING -s 172\.17\.0\.0\/16 ! -o docker0 -j MASQUERADE/, "Docker's MASQUERADE rule is in place")

  const dir = workdir(t, '# nothing yet: the quick start adds evil.example\n')
  const up = startUp(t, env.ns, dir)
  await ready(t, up)
  t.match(up.err(), /DNS sinkhole on 172\.17\.0\.1:53; point containers at it: docker run --dns 172\.17\.0\.1 .*; this host: dig @172\.17\.0\.1 NAME/, 'up found docker0 without carrier')
  t.match(up.err(), /WARNING: Docker API: dockerd \(pid \d+\) listens on \[::\]:2375 without --tlsverify/, 'up warns about the exposed API')

  // The quick start, as written.
  const add = await runCli(['block', 'add', 'evil.example', '--reason', 'trying egress-guard', '--server', URL_], { netns: env.ns, cwd: dir })
  t.equal(add.code, 0, add.stderr)
  await until('the block reaches the sinkhole', async () => (await sinkAnswer('172.17.0.1', 'evil.example', env.ns)).includes('0.0.0.0'), 15_000).catch((e: Error) => t.fail(e.message))
  const hostDig = await dig('172.17.0.1', 53, 'evil.example', 'A', [], env.ns)
  t.equal(hostDig.status, 'NOERROR', "the host's own dig @172.17.0.1 is answered, not REFUSED")
  t.same(hostDig.answers.map((a) => a[2]), ['0.0.0.0'], 'with the sinkhole answer')
  t.match(await containerLookup(env, '172.17.0.1', 'evil.example'), /Address:?\s+0\.0\.0\.0/, 'a container started afterwards resolves through the sinkhole')

  // Everyone else: still not an open resolver, for blocked and unlisted names alike.
  const stranger = await dig('172.17.0.1', 53, 'evil.example', 'A', [], outside)
  t.equal(stranger.status, 'REFUSED', `a foreign address (198.51.100.1) is refused`)
  t.equal((await dig('172.17.0.1', 53, 'other.example', 'A', [], outside)).status, 'REFUSED', 'also for a name it would forward')

  // The exposed API: doctor fails with the fix, the fleet view shows it.
  const doc = await runCli(['doctor', '--netns', env.ns])
  t.equal(doc.code, 1, 'an exposed Docker API makes doctor exit 1')
  t.match(doc.stdout, /\[FAIL\] Docker API: dockerd \(pid \d+\) listens on \[::\]:2375 without --tlsverify/)
  t.match(doc.stdout, /fix: remove the tcp:\/\/ listener/)
  const hosts = await runCli(['hosts', '--json', '--server', URL_], { netns: env.ns, cwd: dir })
  t.equal(hosts.code, 0, hosts.stderr)
  t.match(JSON.parse(hosts.stdout), { hosts: [{ host: 'dockerhost', dockerApi: { verdict: 'fail', listeners: ['[::]:2375'] } }] }, 'the agent reported it')
  const table = await runCli(['hosts', '--server', URL_], { netns: env.ns, cwd: dir })
  t.match(table.stdout, /DOCKER API[\s\S]*dockerhost[\s\S]*fail \[::\]:2375/, 'hosts shows it')
})

t.test('up started before Docker: loopback meanwhile, docker0 bound when it appears, rebound when Docker re-creates it elsewhere', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.docker(), capabilities.tool('dig'), capabilities.tool('iptables'), capabilities.tool('ipset'))) return
  const dir = workdir(t, 'evil.example\n')
  let up: ReturnType<typeof startUp> | undefined
  const env = await startDocker(t, {
    before: async (ns) => {
      up = startUp(t, ns, dir)
      await ready(t, up)
      t.match(up.err(), /DNS sinkhole on 127\.0\.0\.1:53 for now \(this host: dig @127\.0\.0\.1 NAME\): waiting for docker0/, 'up says what it waits for')
      t.same(await sinkAnswer('127.0.0.1', 'evil.example', ns), ['0.0.0.0'], 'it answers on loopback meanwhile')
      const hosts = JSON.parse((await runCli(['hosts', '--json', '--server', URL_], { netns: ns, cwd: dir })).stdout) as { hosts: Array<{ errors: string[] }> }
      t.match(hosts.hosts[0]?.errors, [/sinkhole: waiting for docker0 to have an IPv4 address .*answering on 127\.0\.0\.1:53 meanwhile/], 'the fleet view says it too')
    },
  })
  const t0 = Date.now()
  await until('the sinkhole on docker0', async () => (await sinkAnswer(env.bridgeIp, 'evil.example', env.ns)).includes('0.0.0.0'), 15_000).catch((e: Error) => t.fail(e.message))
  t.comment(`bound docker0 ${Date.now() - t0} ms after dockerd answered`)
  t.match(await containerLookup(env, env.bridgeIp, 'evil.example'), /Address:?\s+0\.0\.0\.0/, 'a container resolves through it')
  t.equal((await dig('127.0.0.1', 53, 'evil.example', 'A', [], env.ns)).status, '', 'loopback was only the stand-in: released')
  t.match(up!.err(), /sinkhole: now listening on docker0 172\.17\.0\.1:53/, 'logged')

  // Docker re-creates its bridge with another address (a new bip in daemon.json, then a restart).
  await env.restart(() => void sh('ip', ['-n', env.ns, 'link', 'del', 'docker0']), ['--bip', '172.18.0.1/16'])
  t.match(sh('ip', ['-n', env.ns, '-4', 'addr', 'show', 'docker0']), /inet 172\.18\.0\.1\/16/)
  await until('the sinkhole on the new address', async () => (await sinkAnswer('172.18.0.1', 'evil.example', env.ns)).includes('0.0.0.0'), 15_000).catch((e: Error) => t.fail(e.message))
  t.match(await containerLookup(env, '172.18.0.1', 'evil.example'), /Address:?\s+0\.0\.0\.0/, 'a container on the new bridge resolves through it')

  const doc = await runCli(['doctor', '--netns', env.ns, '--json'])
  const api = (JSON.parse(doc.stdout) as { checks: Array<{ name: string; status: string; detail: string }> }).checks.find((c) => c.name === 'Docker API')
  t.match(api, { status: 'ok', detail: /unix socket only/ }, 'a dockerd on its unix socket only is fine')
})
