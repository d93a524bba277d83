// The sinkhole and this host's interfaces: reading the kernel's list (docker0 without carrier is in
// it), `IFACE:PORT` listens that bind when the interface gets an address, move when it changes and
// serve loopback meanwhile, and the `host` client network (this host's own addresses, followed as they
// change) that admits the host's own masqueraded queries and nobody else. In-process with an injected
// interface list (no root), then the real CLI in a namespace with a real bridge and Docker's NAT rule.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import dgram from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI } from '../helpers/cli.js'
import { dig, freePort, udpQuery } from '../helpers/dnsmasq.js'
import { inNs, link, makeNs, sh } from '../helpers/netns.js'
import { until } from '../helpers/wait.js'
import { createSinkhole, type SinkholeOptions } from '../../src/sinkhole/sinkhole.js'
import { createAcl, DEFAULT_ALLOW_CLIENTS } from '../../src/sinkhole/acl.js'
import { interfaceIPv4, ownAddresses, parseIpAddrJson, readLinks, type Link } from '../../src/sinkhole/interfaces.js'
import { createInterfaceWatch } from '../../src/sinkhole/interface-watch.js'
import { parseListenSpec } from '../../src/sinkhole/listen-spec.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { silentLogger } from '../../src/log.js'

const matcher = buildMatcher([{ kind: 'domain', value: 'evil.example', allow: false, mode: 'block', source: 't.txt:1' }])

t.test('listen specs: addresses, interfaces, and what is neither', async (t) => {
  t.same(parseListenSpec('172.17.0.1:53', 53, 'x'), { address: '172.17.0.1', port: 53 })
  t.same(parseListenSpec('[2001:DB8::1]:5353', 53, 'x'), { address: '2001:db8::1', port: 5353 })
  t.same(parseListenSpec('docker0', 53, 'x'), { interface: 'docker0', port: 53 })
  t.same(parseListenSpec('br-1a2b3c4d5e6f:5353', 53, 'x'), { interface: 'br-1a2b3c4d5e6f', port: 5353 })
  for (const bad of ['localhost:53', '10.0.0.300:53', 'a-name-longer-than-15:53', 'eth0:1:53', 'docker0:99999']) {
    t.throws(() => parseListenSpec(bad, 53, 'sinkhole-listen'), { code: 'EG_CONFIG' }, bad)
  }
})

t.test('the kernel list: every interface whatever its carrier; the host\'s own addresses', async (t) => {
  const links = parseIpAddrJson(JSON.stringify([
    { ifindex: 1, ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet6', local: '::1', prefixlen: 128 }] },
    { ifindex: 2, ifname: 'eth0', addr_info: [{ family: 'inet', local: '198.51.100.7', prefixlen: 24 }, { family: 'inet6', local: '2001:DB8:0:0::7', prefixlen: 64 }] },
    { ifindex: 3, ifname: 'docker0', flags: ['NO-CARRIER', 'UP'], operstate: 'DOWN', addr_info: [{ family: 'inet', local: '172.17.0.1', prefixlen: 16 }] },
    { ifindex: 4, ifname: 'broken', addr_info: [{ family: 'inet', local: 'not-an-ip' }, null] },
    { ifname: 'no-index' },
  ]))
  t.same(links.map((l) => l.name), ['lo', 'eth0', 'docker0', 'broken'])
  t.equal(interfaceIPv4(links, 'docker0'), '172.17.0.1')
  t.same(ownAddresses(links), ['127.0.0.1', '::1', '198.51.100.7', '2001:db8::7', '172.17.0.1'], 'canonical text')
  if (!requires(t, capabilities.netns())) return
  // The real `ip -j addr show` in a namespace with a bridge that has no carrier (no port attached).
  const ns = makeNs(t, 'ifl')
  sh('ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge'])
  sh('ip', ['-n', ns, 'addr', 'add', '172.17.0.1/16', 'dev', 'br0'])
  const real = await readLinks(async (cmd, args) => ({ command: cmd, exitCode: 0, stderr: '', stdout: inNs(ns, cmd, [...args]) }))
  t.equal(interfaceIPv4(real, 'br0'), '172.17.0.1', 'an interface that is down is in the kernel\'s list')
})

t.test('acl: `host` admits exactly this host\'s addresses', async (t) => {
  t.ok(DEFAULT_ALLOW_CLIENTS.includes('host'), 'in the defaults')
  const acl = createAcl(DEFAULT_ALLOW_CLIENTS, ['198.51.100.7', '2001:db8::7', 'fe80::1'])
  t.ok(acl('198.51.100.7'))
  t.ok(acl('::ffff:198.51.100.7'), 'as a dual-stack socket reports it')
  t.ok(acl('2001:db8::7'))
  t.ok(acl('fe80::1%eth0'), 'link-local with its zone')
  t.notOk(acl('198.51.100.8'), 'a neighbour is not this host')
  t.notOk(acl('203.0.113.5'))
  t.notOk(createAcl(DEFAULT_ALLOW_CLIENTS)('198.51.100.7'), 'without the list, nothing more than the networks')
  t.notOk(createAcl(['127.0.0.0/8'], ['198.51.100.7'])('198.51.100.7'), 'only where `host` is asked for')
})

t.test('interface watch: reads the list only when the fingerprint changes; a failed read is retried slowly', async (t) => {
  let fp = 'a'
  let reads = 0
  let fail = false
  const seen: Array<string | undefined> = []
  const w = createInterfaceWatch({
    log: silentLogger,
    intervalMs: 10,
    slowIntervalMs: 1500,
    fingerprint: async () => fp,
    readLinks: async () => {
      reads++
      if (fail) throw new Error('ip: command not found')
      return [{ name: 'eth0', index: 2, addresses: [{ family: 4, address: `198.51.100.${reads}`, prefixlen: 24 }] }]
    },
    onChange: (links, err) => void seen.push(links ? links[0]!.addresses[0]!.address : `error: ${err}`),
  })
  await w.start()
  t.teardown(() => w.stop())
  t.same(seen, ['198.51.100.1'], 'read once at start')
  await new Promise((r) => setTimeout(r, 100))
  t.equal(reads, 1, 'same fingerprint: no re-read')
  fp = 'b'
  await until('a re-read', () => reads === 2, 2000)
  t.same(seen, ['198.51.100.1', '198.51.100.2'])
  fail = true
  fp = 'c'
  await until('a failed read', () => reads === 3, 2000, 5)
  t.equal(seen.at(-1), 'error: ip: command not found')
  await new Promise((r) => setTimeout(r, 100))
  t.equal(reads, 3, 'not retried at once')
  fail = false
  await until('retried after the slow interval', () => reads === 4, 5000)
  t.equal(seen.at(-1), '198.51.100.4')
})

t.test('an interface listen: loopback until the interface has an address, then the address; moves when it changes', async (t) => {
  // Interface addresses from 127/8: bindable anywhere without root, and distinct from the 127.0.0.1 stand-in.
  let links: Link[] = []
  let version = 0
  const port = await freePort()
  const opts: SinkholeOptions = {
    listen: [{ interface: 'br-test', port }],
    upstreams: [{ address: '127.0.0.1', port: 9 }],
    matcher,
    log: silentLogger,
    interfaces: { intervalMs: 20, slowIntervalMs: 300, fingerprint: async () => String(version), readLinks: async () => links },
  }
  const s = createSinkhole(opts)
  await s.start()
  t.teardown(() => s.stop())
  const served = () => s.addresses().filter((a) => a.proto === 'udp').map((a) => `${a.address}:${a.port}`)
  t.same(served(), [`127.0.0.1:${port}`], 'loopback meanwhile')
  t.match(s.waiting(), [/waiting for br-test to have an IPv4 address .*answering on 127\.0\.0\.1:\d+ meanwhile/])
  t.ok(await udpQuery('127.0.0.1', port, 'evil.example'), 'and answers there')
  const set = (addr: string | undefined): void => {
    links = addr ? [{ name: 'br-test', index: 7, addresses: [{ family: 4, address: addr, prefixlen: 8 }] }] : []
    version++
  }
  set('127.0.0.2')
  await until('bound to the interface', () => served().includes(`127.0.0.2:${port}`), 3000)
  t.same(served(), [`127.0.0.2:${port}`], 'the stand-in is released')
  t.same(s.waiting(), [])
  const a = await udpQuery('127.0.0.2', port, 'evil.example')
  t.same(a?.answers?.map((x) => (x as { data: string }).data), ['0.0.0.0'], 'answers on the interface address')
  set('127.0.0.3')
  await until('moved', () => served().includes(`127.0.0.3:${port}`), 3000)
  t.same(served(), [`127.0.0.3:${port}`], 'the old address is given up')
  t.notOk(await udpQuery('127.0.0.2', port, 'evil.example', 'A', 300), 'nothing answers on the old address')
  set(undefined)
  await until('back on loopback', () => served().includes(`127.0.0.1:${port}`), 3000)
  t.equal(s.waiting().length, 1)

  // The interface's address and port are taken by someone else: loopback meanwhile, retried.
  const squatter = dgram.createSocket('udp4')
  await new Promise<void>((r) => squatter.bind(port, '127.0.0.4', () => r()))
  set('127.0.0.4')
  await until('the failed bind said', () => /cannot listen on br-test 127\.0\.0\.4:\d+ \(EADDRINUSE\); retrying/.test(s.waiting().join()), 3000)
  t.same(served(), [`127.0.0.1:${port}`], 'still on loopback')
  await new Promise<void>((r) => squatter.close(() => r()))
  await until('bound once the address is free', () => served().includes(`127.0.0.4:${port}`), 5000).catch((e: Error) => t.fail(e.message))
  t.same(s.waiting(), [], 'nothing awaited any more')
  await s.stop()
  t.same(s.addresses(), [], 'stop closes what the watch bound')
})

/** `egress-guard sinkhole` inside `ns`; resolves once it printed a listening line. */
async function startSinkholeCli(t: Test, ns: string, args: string[]): Promise<{ child: ChildProcess; out: () => string }> {
  const dir = mkdtempSync(join(tmpdir(), `eg-hostif-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'list.txt'), 'evil.example\n')
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'sinkhole', '--upstream', '127.0.0.1:9', '--blocklists', join(dir, 'list.txt'), '--log-level', 'warn', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d) => (out += String(d)))
  child.stderr!.on('data', (d) => (out += String(d)))
  t.teardown(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')))
  await until('the sinkhole listening', () => /listening udp/.test(out) || child.exitCode !== null, 30_000)
  return { child, out: () => out }
}

t.test('a real bridge and Docker\'s MASQUERADE rule: the host\'s own query is answered, a stranger\'s refused, a new host address followed', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dig'), capabilities.tool('iptables'))) return
  // The host: "eth0" with a routable address, then a bridge without carrier and Docker's NAT rule.
  const host = makeNs(t, 'hif')
  const outside = makeNs(t, 'hifo')
  const { aIf: eth } = link(host, ['198.51.100.7/24'], outside, ['198.51.100.1/24'])
  sh('ip', ['-n', outside, 'route', 'add', '172.16.0.0/12', 'via', '198.51.100.7'])
  const sink = await startSinkholeCli(t, host, ['--listen', 'br0:53'])
  t.match(sink.out(), /listening udp 127\.0\.0\.1:53/, 'no br0 yet: loopback')
  t.match(sink.out(), /waiting for br0 to have an IPv4 address/, 'and says what it waits for')

  sh('ip', ['-n', host, 'link', 'add', 'br0', 'type', 'bridge'])
  sh('ip', ['-n', host, 'addr', 'add', '172.17.0.1/16', 'dev', 'br0'])
  sh('ip', ['-n', host, 'link', 'set', 'br0', 'up'])
  inNs(host, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-s', '172.17.0.0/16', '!', '-o', 'br0', '-j', 'MASQUERADE'])
  await until('bound on br0', async () => (await dig('172.17.0.1', 53, 'evil.example', 'A', [], host)).status !== '', 10_000)

  const own = await dig('172.17.0.1', 53, 'evil.example', 'A', [], host)
  t.equal(own.status, 'NOERROR', 'the host\'s own query (masqueraded to 198.51.100.7) is answered')
  t.same(own.answers.map((a) => a[2]), ['0.0.0.0'])
  t.equal((await dig('172.17.0.1', 53, 'evil.example', 'A', [], outside)).status, 'REFUSED', 'a foreign address is refused')

  // The host's address changes (a new DHCP lease): its queries now come from the new one.
  sh('ip', ['-n', host, 'addr', 'del', '198.51.100.7/24', 'dev', eth])
  sh('ip', ['-n', host, 'addr', 'add', '198.51.100.8/24', 'dev', eth])
  const admitted = await until('the new host address admitted', async () => (await dig('172.17.0.1', 53, 'evil.example', 'A', [], host)).status === 'NOERROR', 10_000).then(() => true, () => false)
  t.ok(admitted, 'the host\'s new address (198.51.100.8) is admitted once it is read')
})
