// Issue 15 item 6 with real parts: a real dnsmasq answers c2.example, the agent (createAgent with the
// real controller, address book and iptables backend in a namespace; then the real `egress-guard
// agent` process) blocks its address; the agent stops, dnsmasq stops, the agent starts again: the
// address stays in the kernel set and a connection to it still fails (another address still works),
// because the addresses resolved by the previous run are read back from the state directory.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, link, makeNs } from '../helpers/netns.js'
import { startDnsmasq } from '../helpers/dnsmasq.js'
import { probe, startEchoServer } from '../helpers/traffic.js'
import { until } from '../helpers/wait.js'
import { CLI } from '../helpers/cli.js'
import { createAgent } from '../../src/agent/agent.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { combinePolicies, createLocalSource, serverEtag } from '../../src/agent/local-source.js'
import { ADDRESS_CACHE_FILE, decodeAddressCache, encodeAddressCache } from '../../src/agent/address-cache.js'
import { createEnforcementController } from '../../src/enforce/controller.js'
import { createEnforcer } from '../../src/enforce/factory.js'
import { createAddressBook } from '../../src/resolve/address-book.js'
import { silentLogger } from '../../src/log.js'

const PORT = 8080
const C2 = '203.0.113.10'
const OTHER = '203.0.113.12'

type T = { teardown: (fn: () => unknown) => void }

/** A host namespace and a target namespace with listeners on C2 and OTHER. */
async function world(t: T) {
  const host = makeNs(t, 'rd')
  const target = makeNs(t, 'rt')
  link(host, ['203.0.113.1/24'], target, [`${C2}/24`, `${OTHER}/24`])
  await startEchoServer(t, target, PORT, [C2, OTHER])
  const dir = mkdtempSync(join(tmpdir(), `eg-restart-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'lists'))
  writeFileSync(join(dir, 'lists', 'c2.txt'), 'c2.example\n')
  const tcp = async (ip: string): Promise<string> => {
    const r = await probe(host, 'tcp', ip, PORT, 3000)
    return r.ok ? 'ok' : r.code ?? 'failed'
  }
  const inSet = (ip: string): boolean => {
    try {
      inNs(host, 'ipset', ['test', 'egress-guard-block4', ip])
      return true
    } catch {
      return false
    }
  }
  return { host, dir, tcp, inSet }
}

/** One agent run as the `agent` command builds it (directory-only), with a short DNS timeout. */
function agentRun(netns: string, dir: string, upstreamPort: number, timeoutMs: number) {
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: upstreamPort }], minTtlSec: 1, maxTtlSec: 3600, graceSec: 3600, keepAnswers: 3, timeoutMs })
  const controller = createEnforcementController({ enforcer: createEnforcer('iptables', { netns, logger: silentLogger }), book, protect: [], log: silentLogger, reconcileIntervalMs: 60_000 })
  const agent = createAgent(
    { host: 'h1', agentVersion: 't', stateDir: join(dir, 'state') },
    {
      log: silentLogger,
      cache: createPolicyCache({ dir: join(dir, 'state'), log: silentLogger }),
      controller,
      local: createLocalSource({ dir: join(dir, 'lists'), log: silentLogger }),
      combine: combinePolicies,
      etagOf: serverEtag,
    },
  )
  return { agent, controller }
}

t.test('createAgent: restarted while the upstream is down, the resolved address stays blocked', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('ipset'), capabilities.tool('iptables'))) return
  const w = await world(t)
  // A 1 s TTL, so that the restart below comes after it ran out and the agent must ask again.
  const dm = await startDnsmasq(t, { hosts: { 'c2.example': [C2] }, extraArgs: ['--local-ttl=1'] })
  t.equal(await w.tcp(C2), 'ok', 'before: the address is reachable')
  const t0 = Date.now()

  const run1 = agentRun(w.host, w.dir, dm.port, 2000)
  await run1.agent.start()
  await run1.controller.idle()
  t.equal(await w.tcp(C2), 'ECONNREFUSED', 'c2.example resolved and blocked')
  t.equal(await w.tcp(OTHER), 'ok', 'an unrelated address still connects')
  await run1.agent.stop()
  const file = join(w.dir, 'state', ADDRESS_CACHE_FILE)
  const saved = existsSync(file) ? decodeAddressCache(readFileSync(file, 'utf8')) : undefined
  t.ok(saved && 'snapshot' in saved && saved.snapshot.domains['c2.example']?.answers.flat().includes(C2), 'saved with its expiry in the state directory')

  await dm.stop()
  await new Promise((r) => setTimeout(r, 1100))
  // Nothing listens there now: a short timeout only makes the failed lookup come sooner.
  const run2 = agentRun(w.host, w.dir, dm.port, 300)
  t.teardown(() => run2.agent.stop())
  await run2.agent.start()
  await run2.controller.idle()
  t.ok(run2.controller.stats().resolveErrors >= 1, 'the lookup really failed: DNS is down')
  t.ok(w.inSet(C2), 'still in the kernel set')
  t.equal(await w.tcp(C2), 'ECONNREFUSED', 'a connection to it still fails')
  t.equal(await w.tcp(OTHER), 'ok', 'an unrelated address still connects')
  t.same(run2.controller.stats().problems, [], 'nothing to report but the lookup warning')
  t.comment(`createAgent restart test: ${Date.now() - t0} ms`)
})

t.test('the egress-guard agent process: restarted while dnsmasq is stopped, the address stays blocked', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('ipset'), capabilities.tool('iptables'))) return
  if (!existsSync(CLI)) return t.fail(`${CLI} missing: run npm run build first`)
  const w = await world(t)
  const dm = await startDnsmasq(t, { hosts: { 'c2.example': [C2] } })
  const start = (): { out: () => string; stop: () => Promise<number | null> } => {
    const child = spawn(process.execPath, [CLI, 'agent', '--blocklists', join(w.dir, 'lists'), '--state-dir', join(w.dir, 'state'), '--backend', 'iptables',
      '--netns', w.host, '--no-hosts-file', '--upstream', `127.0.0.1:${dm.port}`, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')))
    let out = ''
    child.stdout.on('data', (x) => (out += String(x)))
    child.stderr.on('data', (x) => (out += String(x)))
    return {
      out: () => out,
      stop: () => new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : (child.once('exit', (c) => r(c)), child.kill('SIGTERM')))),
    }
  }
  const a1 = start()
  await until('c2.example blocked', () => w.inSet(C2), 15_000)
  t.equal(await w.tcp(C2), 'ECONNREFUSED', 'blocked by the first run')
  t.equal(await a1.stop(), 0, 'the first run exits cleanly')

  await dm.stop()
  // The agent command resolves again after at least 30 s: as if it had been down longer than that,
  // the saved expiry is moved into the past (the file is re-encoded, so its checksum holds).
  const file = join(w.dir, 'state', ADDRESS_CACHE_FILE)
  const saved = existsSync(file) ? decodeAddressCache(readFileSync(file, 'utf8')) : undefined
  t.ok(saved && 'snapshot' in saved && saved.snapshot.domains['c2.example']?.answers.flat().includes(C2), 'the first run saved the address')
  if (saved && 'snapshot' in saved) {
    for (const d of Object.values(saved.snapshot.domains)) d.expiresAt = Date.now() - 1000
    writeFileSync(file, encodeAddressCache(saved.snapshot))
  }
  const a2 = start()
  // The restarted agent's lookup must have failed (dnsmasq is gone) and the policy be enforced (before
  // the fix, that apply came after the failed lookup and emptied the set) before the check means anything.
  await until('the lookup failed and the policy is enforced', () => /could not resolve/.test(a2.out()) && /policy enforced/.test(a2.out()), 15_000)
  t.match(a2.out(), /resolved addresses restored/, 'read back from the state directory')
  t.ok(w.inSet(C2), 'still in the kernel set')
  t.equal(await w.tcp(C2), 'ECONNREFUSED', 'a connection to it still fails')
  t.equal(await w.tcp(OTHER), 'ok', 'an unrelated address still connects')
  t.equal(await a2.stop(), 0, 'the second run exits cleanly')
})
