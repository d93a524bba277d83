// The agent never firewalls off its own control plane (issue 15, items 1 and 2), with real parts: the
// real server in namespace S (198.51.100.1:8787, known to the agent only as guard.test), a real
// dnsmasq upstream in S (198.51.100.53, inside the same /24) that answers guard.test and c2.example
// with the server's address, and the real agent process with real kernel rules in namespace A. The
// agent resolves guard.test through getaddrinfo (A's resolv.conf names the dnsmasq; nothing of the
// root namespace's resolver or hosts file is touched). Hostile pushes: `block add c2.example` (its
// DNS points at the server) and `block add 198.51.100.0/24 --force` (the server's and the upstream's
// network). After each, the agent still reaches the server and applies the `block rm`, DNS still
// works through its sinkhole, and another address in that /24 is blocked while the entry is in.
import t from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { dig, startDnsmasq } from '../helpers/dnsmasq.js'
import { inNs, link, makeNs, sh } from '../helpers/netns.js'
import { probe, startEchoServer } from '../helpers/traffic.js'
import { until } from '../helpers/wait.js'

const SERVER_IP = '198.51.100.1'
const UPSTREAM_IP = '198.51.100.53'
const BYSTANDER_IP = '198.51.100.99'
const SERVER_NAME = 'guard.test'

type Proc = ChildProcess & { out: () => string }

function startInNs(t: { teardown: (f: () => unknown) => void }, ns: string, args: string[]): Proc {
  const c = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as Proc
  let out = ''
  c.stdout!.on('data', (d) => (out = (out + String(d)).slice(-200_000)))
  c.stderr!.on('data', (d) => (out = (out + String(d)).slice(-200_000)))
  c.out = () => out
  t.teardown(() => void (c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')))
  return c
}

t.test('hostile pushes never cut the agent off its server or its DNS', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('dig'), capabilities.tool('curl'), capabilities.tool('ipset'), capabilities.tool('nft'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-selfprot-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))

  // --- the server's side, shared by both backends: host S with the server, the upstream and a
  // bystander, on a bridge that each agent host's veth joins.
  const s = makeNs(t, 'sps')
  sh('ip', ['-n', s, 'link', 'add', 'br0', 'type', 'bridge'])
  sh('ip', ['-n', s, 'addr', 'add', '203.0.113.2/24', 'dev', 'br0'])
  for (const ip of [SERVER_IP, UPSTREAM_IP, BYSTANDER_IP]) sh('ip', ['-n', s, 'addr', 'add', `${ip}/32`, 'dev', 'br0'])
  sh('ip', ['-n', s, 'link', 'set', 'br0', 'up'])
  await startEchoServer(t, s, 8080, [BYSTANDER_IP])
  const upstream = await startDnsmasq(t, {
    netns: s,
    address: UPSTREAM_IP,
    port: 53,
    hosts: { [SERVER_NAME]: [SERVER_IP], 'c2.example': [SERVER_IP], 'other.example': ['203.0.113.77'] },
    extraArgs: ['--local-ttl=1'],
  })

  const data = join(tmp, 'data')
  const lists = join(tmp, 'blocklists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'base.txt'), 'unrelated.example\n')
  const adminFile = join(tmp, 'admin.token')
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', adminFile])).code, 0)
  const BACKENDS = ['iptables', 'nftables'] as const
  for (const b of BACKENDS) t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', `web-${b}`, '--data', data, '--out', join(tmp, `${b}.token`)])).code, 0)
  const url = `http://${SERVER_IP}:8787`
  const server = startInNs(t, s, ['server', '--data', data, '--blocklists', lists, '--listen', `${SERVER_IP}:8787`, '--admin-token-file', adminFile, '--log-level', 'warn'])
  const admin = (args: string[]) => runCli([...args, '--server', url, '--token-file', adminFile], { netns: s })
  // GET /v1/hosts with curl inside S: polled often, and a CLI process per poll costs a node start.
  const adminToken = readFileSync(adminFile, 'utf8').trim()
  const hostsJson = (): Promise<string> =>
    new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', s, 'curl', '-sf', '-H', `authorization: Bearer ${adminToken}`, `${url}/v1/hosts`], (err, stdout) => resolve(err ? '' : stdout))
    })
  await until('the server answers', async () => (await hostsJson()) !== '', 30_000).catch((e: Error) => t.fail(`${e.message}\n${server.out()}`))

  for (const backend of BACKENDS) {
    await t.test(`${backend} agent`, async (t) => {
      const host = `web-${backend}`
      const a = makeNs(t, backend === 'iptables' ? 'spi' : 'spn')
      const { bIf } = link(a, ['203.0.113.1/24'], s, [])
      sh('ip', ['-n', s, 'link', 'set', bIf, 'master', 'br0'])
      sh('ip', ['-n', a, 'route', 'add', '198.51.100.0/24', 'via', '203.0.113.2'])
      // A's own resolver (what getaddrinfo, hence fetch, uses): `ip netns exec` mounts this file
      // over /etc/resolv.conf for processes in A only.
      const etc = `/etc/netns/${a}`
      const madeNetnsDir = !existsSync('/etc/netns')
      mkdirSync(etc, { recursive: true })
      writeFileSync(join(etc, 'resolv.conf'), `nameserver ${UPSTREAM_IP}\n`)
      t.teardown(() => {
        rmSync(etc, { recursive: true, force: true })
        if (madeNetnsDir) {
          try {
            rmdirSync('/etc/netns')
          } catch {
            /* another test's namespace directory is in it */
          }
        }
      })
      const hostsPath = join(tmp, `${backend}.hosts`)
      writeFileSync(hostsPath, '127.0.0.1 localhost\n')
      const agent = startInNs(t, a, [
        'agent', '--server', `http://${SERVER_NAME}:8787`, '--token-file', join(tmp, `${backend}.token`), '--host', host, '--state-dir', join(tmp, `${backend}.state`),
        '--backend', backend, '--hosts-file', hostsPath, '--upstream', `${UPSTREAM_IP}:53`, '--sinkhole-listen', '127.0.0.1:5353',
        '--reconcile-interval', '1s', '--report-interval', '1s', '--retry-max', '1s', '--log-level', 'info',
      ])

      /** Wait until the agent has reported the version the server distributes now: it reached the server after applying it. */
      const confirmed = async (what: string): Promise<void> => {
        const ms = await until(`the agent confirms ${what}`, async () => {
          const text = await hostsJson()
          if (!text) return false
          const doc = JSON.parse(text) as { current: { version: number }; hosts: Array<{ host: string; version: number; state: string }> }
          const h = doc.hosts.find((x) => x.host === host)
          return h !== undefined && h.version === doc.current.version && h.state === 'in-sync'
        }, 20_000, 200).catch((e: Error) => {
          t.fail(`${e.message}\n--- agent ---\n${agent.out().slice(-1500)}`)
          return -1
        })
        t.comment(`${what}: confirmed by the agent after ${ms} ms`)
      }
      const hostsFile = () => readFileSync(hostsPath, 'utf8')
      const sinkholeForwards = async () => (await dig('127.0.0.1', 5353, 'other.example', 'A', [], a)).answers.some((x) => x[2] === '203.0.113.77')
      const inSet = (set: string, ip: string): boolean => {
        try {
          if (backend === 'iptables') inNs(a, 'ipset', ['test', `egress-guard-${set}`, ip])
          else inNs(a, 'nft', ['get', 'element', 'inet', 'egress_guard', set, `{ ${ip} }`])
          return true
        } catch {
          return false
        }
      }
      // nftables keeps addresses and networks in two sets (nft-script.ts): either one blocks.
      const blockSetHas = (ip: string): boolean => inSet('block4', ip) || (backend === 'nftables' && inSet('block4net', ip))

      await confirmed('the initial policy')
      t.ok(agent.out().split('\n').some((l) => l.includes('"server addresses changed"') && l.includes(`"addresses":["${SERVER_IP}"]`)), 'the agent resolved guard.test (getaddrinfo via A\'s resolver)')

      // --- 1. c2.example's DNS points at the server -------------------------------------------
      t.equal((await admin(['block', 'add', 'c2.example', '--reason', 'hostile: its DNS points at the policy server'])).code, 0)
      await confirmed('block add c2.example')
      t.match(hostsFile(), /0\.0\.0\.0 c2\.example/, 'the name itself is blocked (hosts block)')
      // The policy is confirmed before its names are resolved (they resolve in the background, against
      // a local dnsmasq: milliseconds): give the lookup time to land, then look at the block set.
      await new Promise((r) => setTimeout(r, 3000))
      t.notOk(blockSetHas(SERVER_IP), `${SERVER_IP} (the server, resolved from its name) is not put into the block set`)
      const rm1 = await admin(['block', 'rm', 'c2.example', '--reason', 'undo'])
      t.equal(rm1.code, 0, rm1.stderr)
      await confirmed('block rm c2.example')
      t.notMatch(hostsFile(), /c2\.example/, 'the removal reached the agent')

      // --- 2. an explicit network around the server and the upstream --------------------------
      const refused = await admin(['block', 'add', '198.51.100.0/24', '--reason', 'hostile: the control plane\'s network'])
      t.equal(refused.code, 1, 'without force the server refuses it')
      t.match(refused.stderr, /covers 198\.51\.100\.\d+\/32 \(this server's/)
      const forced = await admin(['block', 'add', '198.51.100.0/24', '--reason', 'hostile, forced', '--force'])
      t.equal(forced.code, 0, forced.stderr)
      t.match(forced.stderr, /warning: .*applied because of force/)
      await confirmed('the forced block of 198.51.100.0/24')
      t.ok(blockSetHas(BYSTANDER_IP), 'the /24 is in the block set')
      const [bystander, otherPort, serverPort] = await Promise.all([probe(a, 'tcp', BYSTANDER_IP, 8080), probe(a, 'tcp', SERVER_IP, 8080), probe(a, 'tcp', SERVER_IP, 8787)])
      t.equal(bystander!.ok, false, 'another address in that /24 is blocked: the block works')
      t.equal(otherPort!.ok, false, 'so is the server address on any other port')
      t.same(serverPort, { ok: true }, 'the server port stays reachable (control-plane exemption)')
      t.ok(await sinkholeForwards(), 'DNS still works: the sinkhole forwards to the upstream inside the blocked /24')
      t.match(agent.out(), /198\.51\.100\.0\/24 \(api:[^)]*force\) covers this host's control plane \(server 198\.51\.100\.1 tcp\/8787, upstream 198\.51\.100\.53 udp\/53/, 'the agent warns about it')
      const reported = (JSON.parse(await hostsJson()) as { hosts: Array<{ host: string; errors: string[] }> }).hosts.find((x) => x.host === host)
      t.match(reported?.errors.join('\n') ?? '', /198\.51\.100\.0\/24 .* covers this host's control plane/, 'and reports it to the server (hosts shows it)')
      const rm2 = await admin(['block', 'rm', '198.51.100.0/24', '--reason', 'undo'])
      t.equal(rm2.code, 0, rm2.stderr)
      await confirmed('block rm 198.51.100.0/24')
      t.same(await probe(a, 'tcp', BYSTANDER_IP, 8080), { ok: true }, 'after the removal the bystander is reachable again')
      agent.kill('SIGTERM')
    })
  }
  t.equal(upstream.process.exitCode, null, 'the upstream ran throughout')
})
