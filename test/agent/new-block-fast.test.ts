// Issue 15 item 10 with real parts: a new block reaches the sinkhole, the hosts block and the kernel's
// explicit networks at once, while the upstream is silent for the blocked name (dnsmasq forwards it to
// a UDP socket that reads and never answers). A second name that does resolve lands in the kernel set
// without waiting for the silent one's timeout (2 s x 2 attempts, the agent's defaults).
import t from 'tap'
import dgram from 'node:dgram'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { link, makeNs } from '../helpers/netns.js'
import { freePort, startDnsmasq, udpQuery } from '../helpers/dnsmasq.js'
import { probe, startEchoServer } from '../helpers/traffic.js'
import { createAgent } from '../../src/agent/agent.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { combinePolicies, createLocalSource, serverEtag } from '../../src/agent/local-source.js'
import { createEnforcementController } from '../../src/enforce/controller.js'
import { createEnforcer } from '../../src/enforce/factory.js'
import { createHostsFile } from '../../src/enforce/hosts-file.js'
import { createAddressBook } from '../../src/resolve/address-book.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { createSinkhole } from '../../src/sinkhole/sinkhole.js'
import { silentLogger } from '../../src/log.js'

const PORT = 8080
const GOOD = '203.0.113.11'
const NET = '203.0.113.13'
const OTHER = '203.0.113.12'

t.test('a new block: sinkhole, hosts block and explicit networks at once; a resolvable name does not wait for a silent one', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('ipset'), capabilities.tool('iptables'))) return
  const host = makeNs(t, 'fb')
  const target = makeNs(t, 'ft')
  link(host, ['203.0.113.1/24'], target, [`${GOOD}/24`, `${NET}/24`, `${OTHER}/24`])
  await startEchoServer(t, target, PORT, [GOOD, NET, OTHER])
  const tcp = async (ip: string): Promise<string> => {
    const r = await probe(host, 'tcp', ip, PORT, 3000)
    return r.ok ? 'ok' : r.code ?? 'failed'
  }
  // Asynchronous: the agent runs in this process, a blocking exec would stall it.
  const inSet = (ip: string): Promise<boolean> =>
    new Promise((res) => execFile('ip', ['netns', 'exec', host, 'ipset', 'test', 'egress-guard-block4', ip], (err) => res(!err)))

  // The silent upstream: reads every query, never answers (name servers taken down).
  const silent = dgram.createSocket('udp4')
  let silentQueries = 0
  silent.on('message', () => void silentQueries++)
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()))
  t.teardown(() => silent.close())
  const silentPort = (silent.address() as { port: number }).port
  // A real dnsmasq answers good.example itself and forwards miner-pool.example to the silent socket.
  const dm = await startDnsmasq(t, { hosts: { 'good.example': [GOOD], 'ok.example': ['192.0.2.30'] }, extraArgs: [`--server=/miner-pool.example/127.0.0.1#${silentPort}`] })

  const dir = mkdtempSync(join(tmpdir(), `eg-fast-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'lists'))
  writeFileSync(join(dir, 'lists', 'base.txt'), '198.51.100.7\n')
  const hostsPath = join(dir, 'hosts')
  writeFileSync(hostsPath, '127.0.0.1 localhost\n')

  const upstreams = [{ address: '127.0.0.1', port: dm.port }]
  // The agent command's settings: default DNS timeout (2000 ms, 2 attempts).
  const book = createAddressBook({ upstreams, minTtlSec: 30, maxTtlSec: 3600, graceSec: 3600, keepAnswers: 3 })
  const controller = createEnforcementController({
    enforcer: createEnforcer('iptables', { netns: host, logger: silentLogger }),
    hosts: createHostsFile(hostsPath), book, protect: [], log: silentLogger, reconcileIntervalMs: 60_000,
  })
  const sinkPort = await freePort()
  const sinkhole = createSinkhole({ listen: [{ address: '127.0.0.1', port: sinkPort }], upstreams, matcher: buildMatcher([]), log: silentLogger })
  const agent = createAgent(
    { host: 'h1', agentVersion: 't', stateDir: join(dir, 'state') },
    {
      log: silentLogger,
      cache: createPolicyCache({ dir: join(dir, 'state'), log: silentLogger }),
      controller,
      local: createLocalSource({ dir: join(dir, 'lists'), log: silentLogger }),
      combine: combinePolicies,
      etagOf: serverEtag,
      sinkhole: { start: () => sinkhole.start(), stop: () => sinkhole.stop(), setMatcher: (m) => sinkhole.setMatcher(m) },
      buildMatcher,
    },
  )
  t.teardown(() => agent.stop())
  await agent.start()
  await controller.idle()
  t.equal(await tcp(GOOD), 'ok', 'before the push: good.example\'s address connects')
  t.equal(await tcp(NET), 'ok', 'before the push: the network connects')

  // The push. Not awaited: what matters is what each layer does while the lookup is unanswered.
  writeFileSync(join(dir, 'lists', 'new.txt'), `miner-pool.example\ngood.example\n${NET}\n`)
  const t0 = Date.now()
  const synced = agent.syncOnce().then((r) => ({ r, ms: Date.now() - t0, resolving: controller.stats().resolving }))
  // Watch the kernel set from the push on: when does good.example's address land, and is the silent
  // lookup still unanswered then?
  const good = (async () => {
    while (Date.now() - t0 < 3500) {
      if (await inSet(GOOD)) return { ms: Date.now() - t0, resolving: controller.stats().resolving }
      await new Promise((res) => setTimeout(res, 20))
    }
    return undefined
  })()

  // The sinkhole: a fresh subdomain each try (a forwarded query to the silent upstream never returns).
  // Before the fix the sinkhole switched only after the lookup gave up, 4 s after the push.
  let blocked = false
  let i = 0
  for (; Date.now() - t0 < 1500 && !blocked; i++) {
    const r = await udpQuery('127.0.0.1', sinkPort, `x${i}.miner-pool.example`, 'A', 50)
    blocked = r?.answers?.some((a) => a.type === 'A' && (a as { data?: unknown }).data === '0.0.0.0') === true
  }
  const sinkMs = Date.now() - t0
  const pendingThen = controller.stats().resolving
  t.ok(blocked, `x${i - 1}.miner-pool.example gets the sinkhole answer ${sinkMs} ms after the push`)
  // The issue asks for ~500 ms; the bound allows for a loaded 2-core machine (347 ms measured at load 16).
  t.ok(sinkMs < 1000, 'within a second, not after the lookup timeout')
  t.ok(pendingThen > 0 && controller.stats().resolveErrors === 0, 'while the lookup of miner-pool.example is still unanswered')
  const apex = await udpQuery('127.0.0.1', sinkPort, 'miner-pool.example', 'A', 300)
  t.same(apex?.answers?.map((a) => (a as { data?: unknown }).data), ['0.0.0.0'], 'so does miner-pool.example itself')
  const forwarded = await udpQuery('127.0.0.1', sinkPort, 'ok.example', 'A', 1000)
  t.same(forwarded?.answers?.map((a) => (a as { data?: unknown }).data), ['192.0.2.30'], 'a name not blocked is still forwarded and answered')
  t.ok(silentQueries > 0, 'dnsmasq did forward miner-pool.example to the silent upstream')

  const { r, ms, resolving } = await synced
  t.equal(r, 'updated')
  t.ok(resolving > 0, `the agent's apply returned (${ms} ms) without waiting for the lookup (4000 ms)`)
  t.match(readFileSync(hostsPath, 'utf8'), /0\.0\.0\.0 miner-pool\.example/, 'the hosts block lists the new name')
  t.equal(await tcp(NET), 'ECONNREFUSED', 'the explicit network is blocked without waiting for any lookup')

  // good.example resolves at once: its address must not wait for miner-pool.example's timeout.
  const landed = await good
  const goodMs = landed?.ms ?? -1
  t.ok(landed, `good.example's address is in the kernel set (${goodMs} ms after the push)`)
  t.ok(landed && landed.resolving > 0, 'before the silent lookup gave up')
  t.equal(await tcp(GOOD), 'ECONNREFUSED', 'a connection to it fails')
  t.equal(await tcp(OTHER), 'ok', 'an unrelated address still connects')

  // The silent name times out: a warning, nothing else changes.
  await controller.idle()
  t.ok(controller.stats().resolveErrors >= 1, 'miner-pool.example: could not resolve (a warning)')
  t.equal(agent.status().applied?.entries, 4, 'the new version counts as applied')
  t.equal(await tcp(GOOD), 'ECONNREFUSED', 'still blocked after the timeout')
  t.comment(`sinkhole ${sinkMs} ms, apply ${ms} ms, good.example in the kernel ${goodMs} ms after the push`)
})
