// `egress-guard up` as a user runs it: the real CLI in a throwaway network namespace with a temp working
// directory (a copy of blocklists/) and a temp hosts file. Proves the token file (0600, never printed),
// the server, the sinkhole (real dig), a push that makes a real connection fail, a clean stop that
// leaves the rules, and the not-root path (exact missing pieces; --dry-run prints the plan).
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { inNs, link, makeNs, sh } from '../helpers/netns.js'
import { dig } from '../helpers/dnsmasq.js'
import { probe, startEchoServer } from '../helpers/traffic.js'
import { missingFor } from '../../src/up/preflight.js'
import { parseResolvConf } from '../../src/up/environment.js'
import { interfaceIPv4, parseIpAddrJson } from '../../src/sinkhole/interfaces.js'
import { ensureTokens } from '../../src/up/tokens.js'
import { openLowdbStore } from '../../src/store/lowdb-store.js'
import { hashToken } from '../../src/server/auth.js'
import { until } from '../helpers/wait.js'

const BLOCKLISTS = fileURLToPath(new URL('../../blocklists', import.meta.url))

function workdir(t: { teardown: (f: () => unknown) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), `eg-up-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(BLOCKLISTS, join(dir, 'blocklists'), { recursive: true })
  writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n')
  return dir
}

t.test('preflight: what is missing for each backend, from the doctor results', async (t) => {
  const ok = (name: string) => ({ name, status: 'ok' as const, detail: '', required: false })
  const all = ['privileges', 'tool iptables', 'tool ip6tables', 'tool ipset', 'ip_set kernel support', 'tool nft', 'nf_tables kernel support'].map(ok)
  t.same(missingFor('iptables', all), [])
  const noIpset = all.map((r) => (r.name === 'tool ipset' ? { ...r, status: 'warn' as const, detail: 'ipset not found', fix: 'apt-get install ipset' } : r))
  t.same(missingFor('iptables', noIpset), [{ what: 'tool ipset: ipset not found', fix: 'apt-get install ipset' }])
  t.same(missingFor('nftables', noIpset), [], 'nftables does not need ipset')
  const notRoot = all.map((r) =>
    r.name === 'privileges' ? { ...r, status: 'fail' as const, detail: 'not root', fix: 'run as root' } : r.name.endsWith('kernel support') ? { ...r, status: 'warn' as const, detail: 'EPERM' } : r,
  )
  t.same(missingFor('iptables', notRoot), [{ what: 'privileges: not root', fix: 'run as root' }], 'EPERM from the kernel probes is not listed twice')
})

t.test('environment: resolv.conf nameservers and the docker0 address', async (t) => {
  t.same(parseResolvConf('# c\nnameserver 10.0.0.2\nsearch x\nnameserver  2001:db8::53\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\n'), ['10.0.0.2', '2001:db8::53'])
  // `ip -j addr show` on a Docker host with no container running: docker0 has no carrier (libuv's
  // os.networkInterfaces() leaves it out), the kernel's list still holds its address.
  const links = parseIpAddrJson(JSON.stringify([
    { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
    { ifindex: 3, ifname: 'docker0', flags: ['NO-CARRIER', 'BROADCAST', 'MULTICAST', 'UP'], operstate: 'DOWN',
      addr_info: [{ family: 'inet6', local: 'fe80::42:f5ff:fef1:e68', prefixlen: 64 }, { family: 'inet', local: '172.17.0.1', prefixlen: 16 }] },
  ]))
  t.equal(interfaceIPv4(links, 'docker0'), '172.17.0.1', 'a docker0 without carrier still has its address')
  t.equal(interfaceIPv4(links, 'eth0'), undefined)
  t.same(parseIpAddrJson('not json'), [], 'garbage is no interfaces, not a crash')
})

t.test('tokens: made once (0600), reused on the next start, an unknown agent token replaced', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-up-tokens-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const data = join(dir, 'data')
  const first = await ensureTokens(data, 'h1')
  t.same(first.created, ['admin', 'agent'])
  t.equal(statSync(first.adminFile).mode & 0o777, 0o600)
  t.equal(statSync(first.agentFile).mode & 0o777, 0o600)
  const admin = readFileSync(first.adminFile, 'utf8')
  const agent = readFileSync(first.agentFile, 'utf8').trim()
  const again = await ensureTokens(data, 'h1')
  t.same(again.created, [], 'second start: nothing new')
  t.equal(readFileSync(again.adminFile, 'utf8'), admin)
  t.equal(readFileSync(again.agentFile, 'utf8').trim(), agent)
  chmodSync(first.adminFile, 0o644)
  t.same((await ensureTokens(data, 'h1')).tightened, [first.adminFile], 'a loosened token file is set back to 0600')
  t.equal(statSync(first.adminFile).mode & 0o777, 0o600)
  // A renamed host: the old host's agent token is revoked, a new one made for the new name.
  const renamed = await ensureTokens(data, 'h2')
  t.same(renamed.created, ['agent'])
  const store = await openLowdbStore(data, { lock: true })
  const tokens = (await store.listTokens()).filter((x) => x.role === 'agent')
  await store.close()
  t.same(tokens.map((x) => x.host), ['h2'], 'the old name\'s token made by up is revoked')
  t.equal(tokens.find((x) => x.host === 'h2')?.hash, hashToken(readFileSync(renamed.agentFile, 'utf8').trim()))
})

t.test('up in a namespace: token file, server, sinkhole, a push that blocks a real connection', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dig'), capabilities.tool('iptables'), capabilities.tool('ipset'))) return
  const dir = workdir(t)
  const ns = makeNs(t, 'up')
  const c2 = makeNs(t, 'upc2')
  link(ns, ['203.0.113.1/24'], c2, ['203.0.113.80/24'])
  await startEchoServer(t, c2, 8080, ['203.0.113.80'])
  // A fresh namespace: every port is free inside it.
  const url = 'http://127.0.0.1:18787'
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'up', '--listen', '127.0.0.1:18787', '--sinkhole-port', '5353',
    '--upstream', '127.0.0.1:9', '--hosts-file', join(dir, 'hosts'), '--host', 'up1'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += String(d)))
  child.stderr!.on('data', (d) => (err += String(d)))
  t.teardown(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')))
  await until('up: ready', () => /up: ready/.test(err) || child.exitCode !== null, 60_000).catch((e: Error) => t.fail(e.message))
  t.match(err, /up: ready/, `up started\n${err}`)
  t.match(err, /policy version 1: 2 entries/, 'progress: the policy it loaded')
  t.match(err, /enforcing policy version 1/, 'progress: the kernel holds it')

  const adminFile = join(dir, 'data', 'admin.token')
  const agentFile = join(dir, 'data', 'agent.token')
  t.equal(statSync(adminFile).mode & 0o777, 0o600, 'admin token file is 0600')
  t.equal(statSync(agentFile).mode & 0o777, 0o600, 'agent token file is 0600')
  const adminTok = readFileSync(adminFile, 'utf8').trim()
  const agentTok = readFileSync(agentFile, 'utf8').trim()
  t.match(adminTok, /^eg_[A-Za-z0-9_-]{43}$/)
  t.match(err, adminFile, 'the admin token path is printed')

  // Admin commands from the same directory find the server and ./data/admin.token by default.
  const hosts = await runCli(['hosts', '--json', '--server', url], { netns: ns, cwd: dir })
  t.equal(hosts.code, 0, hosts.stderr)
  t.match(JSON.parse(hosts.stdout), { hosts: [{ host: 'up1', version: 1 }] }, 'the server answers and the agent has reported')

  const a = await dig('127.0.0.1', 5353, 'abcdefghijklmnopqrst.net', 'A', [], ns)
  t.same(a.answers.map((x) => x[2]), ['0.0.0.0'], 'blocked name: the sinkhole answer')
  t.match(readFileSync(join(dir, 'hosts'), 'utf8'), /0\.0\.0\.0 abcdefghijklmnopqrst\.net/, 'the managed hosts block')

  t.same(await probe(ns, 'tcp', '203.0.113.80', 8080), { ok: true }, 'before the block: the connection works')
  const add = await runCli(['block', 'add', '203.0.113.80', '--reason', 'up test', '--server', url], { netns: ns, cwd: dir })
  t.equal(add.code, 0, add.stderr)
  await until('the push reaches the kernel', async () => !(await probe(ns, 'tcp', '203.0.113.80', 8080, 2000)).ok, 15_000).catch((e: Error) => t.fail(e.message))
  t.same(await probe(ns, 'tcp', '203.0.113.80', 8080), { ok: false, code: 'ECONNREFUSED' }, 'after the block: refused by the kernel')
  t.same(await probe(ns, 'tcp', '127.0.0.1', 18787), { ok: true }, 'other destinations still work')

  child.kill('SIGTERM')
  const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (c) => r(c))))
  t.equal(code, 0, `SIGTERM: exit 0\n${err.slice(-2000)}`)
  t.match(inNs(ns, 'iptables', ['-S']), /-A OUTPUT -j EGRESS-GUARD/, 'rules stay after the stop')
  t.notOk((out + err).includes(adminTok), 'the admin token never appears in the output')
  t.notOk((out + err).includes(agentTok), 'the agent token never appears in the output')
})

t.test('not root: up says what is missing; --dry-run prints what it would do and writes nothing', async (t) => {
  if (!requires(t, capabilities.root(), capabilities.tool('setpriv'))) return
  const dir = workdir(t)
  chmodSync(dir, 0o755)
  const asNobody = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'up', ...args], {
        cwd: dir,
        // A bare environment: tap's NODE_OPTIONS hooks would write under the repo as nobody.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      c.stdout.on('data', (d) => (stdout += String(d)))
      c.stderr.on('data', (d) => (stderr += String(d)))
      c.on('close', (code) => resolve({ code, stdout, stderr }))
    })
  const r = await asNobody(['--upstream', '127.0.0.1:9', '--hosts-file', join(dir, 'hosts')])
  t.equal(r.code, 1, 'exit 1')
  t.match(r.stderr, /missing: privileges: not root \(uid 65534\)/)
  t.match(r.stderr, /fix: run as root/)
  t.match(r.stderr, /--dry-run/)
  t.notOk(existsSync(join(dir, 'data')), 'nothing written')

  const d = await asNobody(['--dry-run', '--upstream', '127.0.0.1:9', '--hosts-file', join(dir, 'hosts')])
  t.equal(d.code, 0, d.stderr)
  t.match(d.stdout, /missing: privileges/)
  t.match(d.stdout, /would create .*admin\.token \(mode 0600/)
  t.match(d.stdout, /would start the server on http:\/\/127\.0\.0\.1:8787/)
  t.match(d.stdout, /would run the DNS sinkhole on \S+:53/)
  t.match(d.stdout, /add egress-guard-block4 77\.110\.110\.55\/32/, 'the kernel changes of the plan')
  t.match(d.stdout, /add 0\.0\.0\.0 abcdefghijklmnopqrst\.net/, 'the hosts-file changes of the plan')
  t.notOk(existsSync(join(dir, 'data')), '--dry-run writes nothing')
  t.equal(readFileSync(join(dir, 'hosts'), 'utf8'), '127.0.0.1 localhost\n', 'hosts file untouched')
  t.ok(sh('id', ['-u']).trim() === '0', 'the test itself ran as root')
})
