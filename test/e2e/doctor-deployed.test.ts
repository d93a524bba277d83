// `doctor` on a deployed host, end to end: a real `egress-guard up` in a throwaway namespace is the
// deployed host; doctor with the agent's options passes every deployed check, then each check fails
// (with its fix) when the thing it checks is broken: a wrong token, a missing jump, Docker not
// pointed at the sinkhole, and the whole stack stopped.
import t from 'tap'
import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { inNs, makeNs } from '../helpers/netns.js'
import { blockedProbeName } from '../../src/doctor/deployed-checks.js'
import { until } from '../helpers/wait.js'

const BLOCKLISTS = fileURLToPath(new URL('../../blocklists', import.meta.url))

type Check = { name: string; status: string; detail: string; fix?: string }

t.test('blockedProbeName picks a plain blocked name', async (t) => {
  const e = (value: string, over: object = {}) => ({ kind: 'domain' as const, value, allow: false, mode: 'block' as const, source: 'x:1', ...over })
  t.equal(blockedProbeName([e('a.example', { allow: true }), e('b.example', { mode: 'alert' }), e('c.example', { subdomainsOnly: true }), e('d.example')]), 'd.example')
  t.equal(blockedProbeName([]), undefined)
})

t.test('doctor checks a deployed host end to end', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('iptables'), capabilities.tool('ipset'))) return
  const dir = mkdtempSync(join(tmpdir(), `eg-doctor-e2e-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(BLOCKLISTS, join(dir, 'blocklists'), { recursive: true })
  writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n')
  const ns = makeNs(t, 'doc')
  // A stand-in for Docker's bridge (an empty bridge named docker0 with the default address): up finds it and puts the
  // sinkhole there, as on a Docker host.
  inNs(ns, 'ip', ['link', 'add', 'docker0', 'type', 'bridge'])
  inNs(ns, 'ip', ['addr', 'add', '172.17.0.1/16', 'dev', 'docker0'])
  inNs(ns, 'ip', ['link', 'set', 'docker0', 'up'])
  const up = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'up', '--listen', '127.0.0.1:18787', '--upstream', '127.0.0.1:9',
    '--hosts-file', join(dir, 'hosts'), '--host', 'doc1'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  up.stderr.on('data', (d) => (err += String(d)))
  t.teardown(() => void (up.exitCode === null && up.signalCode === null && up.kill('SIGKILL')))
  await until('up: ready', () => /up: ready/.test(err) || up.exitCode !== null, 60_000).catch((e: Error) => t.fail(`${e.message}\n${err}`))
  t.match(err, /DNS sinkhole on 172\.17\.0\.1:53; point containers at it: docker run --dns 172\.17\.0\.1/, 'up put the sinkhole on docker0')

  const daemonJson = join(dir, 'daemon.json')
  writeFileSync(daemonJson, JSON.stringify({ dns: ['172.17.0.1'] }))
  const doctor = async (extra: string[] = [], tokenFile = join(dir, 'data', 'agent.token')) => {
    const r = await runCli(['doctor', '--json', '--server', 'http://127.0.0.1:18787', '--token-file', tokenFile, '--sinkhole-listen', '172.17.0.1:53', '--daemon-json', daemonJson, ...extra], { netns: ns })
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] }
    return { code: r.code, ok: out.ok, by: new Map(out.checks.map((c) => [c.name, c])), raw: r.stdout }
  }

  const good = await doctor()
  t.equal(good.code, 0, good.raw)
  for (const name of ['server reachable', 'token valid', 'rules present', 'sinkhole answering', 'Docker pointed at the sinkhole']) t.equal(good.by.get(name)?.status, 'ok', `${name}: ${good.by.get(name)?.detail}`)
  t.match(good.by.get('sinkhole answering')?.detail, /abcdefghijklmnopqrst\.net -> 0\.0\.0\.0/, 'asked the sinkhole for a name the policy blocks')
  t.match(good.by.get('rules present')?.detail, /jumps from (FORWARD, OUTPUT|OUTPUT, FORWARD)/)

  // A token the server does not know.
  writeFileSync(join(dir, 'wrong.token'), 'eg_' + 'A'.repeat(43) + '\n')
  const wrongToken = await doctor([], join(dir, 'wrong.token'))
  t.equal(wrongToken.code, 1)
  t.match(wrongToken.by.get('token valid'), { status: 'fail', fix: /token create --role agent/ })

  // Docker not pointed at the sinkhole: a warning (the kernel block still holds), with the fix.
  writeFileSync(daemonJson, JSON.stringify({ 'log-driver': 'journald' }))
  const noDns = await doctor()
  t.match(noDns.by.get('Docker pointed at the sinkhole'), { status: 'warn', fix: /"dns": \["172\.17\.0\.1"\]/ })

  // Everything stopped (rules stay, by design): server and sinkhole checks fail with their fixes.
  up.kill('SIGTERM')
  await new Promise((r) => (up.exitCode !== null ? r(null) : up.once('exit', r)))
  const down = await doctor()
  t.equal(down.code, 1)
  t.match(down.by.get('server reachable'), { status: 'fail', fix: /systemctl start egress-guard-server/ })
  t.match(down.by.get('sinkhole answering'), { status: 'fail', detail: /no answer from 172\.17\.0\.1:53/ })

  // Rules stay after the stop; a jump removed by hand (a running agent would repair it) is reported.
  inNs(ns, 'iptables', ['-D', 'OUTPUT', '-j', 'EGRESS-GUARD'])
  const noJump = await doctor()
  t.match(noJump.by.get('rules present'), { status: 'fail', detail: /no jump from OUTPUT/ })
})
