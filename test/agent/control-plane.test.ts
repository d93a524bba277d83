// The agent's control plane: the pure computation (endpoints, protected addresses, the exempt set's
// members, entries that cover them), the server-address tracker (resolve at start, every interval and
// after failures; keep what is known when DNS fails; drop what was not seen for the grace period), and
// the path a moved server takes: tracker -> agent.controlPlaneChanged() -> controller.reapply() -> the
// exempt set and the protected list of the applied state, with a dry-run enforcer.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { controlPlane, coverWarnings, endpointMember, parseEndpointMember, serverTarget, type ControlPlane } from '../../src/enforce/control-plane.js'
import { createServerAddresses, systemLookup } from '../../src/agent/server-addresses.js'
import { createEnforcementController } from '../../src/enforce/controller.js'
import { createDryRunEnforcer } from '../../src/enforce/dry-run.js'
import { createAddressBook } from '../../src/resolve/address-book.js'
import type { ResolveResult } from '../../src/resolve/dns-client.js'
import { createAgent } from '../../src/agent/agent.js'
import { createPolicyCache } from '../../src/agent/policy-cache.js'
import { combinePolicies } from '../../src/agent/local-source.js'
import { silentLogger } from '../../src/log.js'
import type { Entry } from '../../src/policy/types.js'

const net = (value: string, more: Partial<Entry> = {}): Entry => ({ kind: 'net', value, allow: false, mode: 'block', source: 'api:admin', ...more })

t.test('controlPlane: endpoints per role, protected addresses, exempt members per family', async (t) => {
  const cp = controlPlane({
    server: { addresses: ['198.51.100.1', '2001:db8::1'], port: 8787 },
    upstreams: [{ address: '192.0.2.53', port: 53 }, { address: '192.0.2.54', port: 5353 }],
    resolvers: ['192.0.2.53'],
    sinkhole: [{ address: '172.17.0.1', port: 53 }, { address: '0.0.0.0', port: 53 }],
    bridges: ['172.17.0.1', '172.18.0.1'],
    protect: ['10.9.0.0/16'],
  })
  t.same(cp.exempt.v4, ['172.17.0.1,tcp:53', '172.17.0.1,udp:53', '192.0.2.53,tcp:53', '192.0.2.53,udp:53', '192.0.2.54,tcp:5353', '192.0.2.54,udp:5353', '198.51.100.1,tcp:8787'])
  t.same(cp.exempt.v6, ['2001:db8::1,tcp:8787'])
  t.same([...cp.protect].sort(), ['10.9.0.0/16', '172.17.0.1', '172.18.0.1', '192.0.2.53', '192.0.2.54', '198.51.100.1', '2001:db8::1'], 'a wildcard sinkhole address is the host itself: skipped')
  t.same(cp.endpoints.filter((e) => e.role === 'server').map(endpointMember), ['198.51.100.1,tcp:8787', '2001:db8::1,tcp:8787'])
  t.same(parseEndpointMember('2001:db8::1,tcp:8787'), { address: '2001:db8::1', proto: 'tcp', port: 8787 })
  t.equal(parseEndpointMember('2001:db8::1/128'), undefined)
  t.same(controlPlane({}).exempt, { v4: [], v6: [] })
})

t.test('serverTarget: host, default ports, IP literals; a bad URL is a config error', async (t) => {
  t.same(serverTarget('https://guard.internal'), { host: 'guard.internal', port: 443 })
  t.same(serverTarget('http://guard.internal/'), { host: 'guard.internal', port: 80 })
  t.same(serverTarget('http://[2001:DB8::1]:8787'), { host: '2001:db8::1', port: 8787, ip: '2001:db8::1' })
  t.same(serverTarget('http://198.51.100.1:8787'), { host: '198.51.100.1', port: 8787, ip: '198.51.100.1' })
  t.throws(() => serverTarget('guard.internal:8787'), { code: 'EG_CONFIG' })
  t.throws(() => serverTarget('ftp://guard.internal'), { code: 'EG_CONFIG' })
})

t.test('coverWarnings: block networks that contain an endpoint, with the entry and the endpoint named', async (t) => {
  const cp = controlPlane({ server: { addresses: ['198.51.100.1'], port: 8787 }, upstreams: [{ address: '198.51.100.53', port: 53 }] })
  const w = coverWarnings([net('198.51.100.0/24', { force: true }), net('203.0.113.0/24'), net('198.51.100.1/32', { mode: 'alert' }), net('198.51.100.0/25', { allow: true })], cp.endpoints)
  t.same(w, ["198.51.100.0/24 (api:admin, force) covers this host's control plane (server 198.51.100.1 tcp/8787, upstream 198.51.100.53 udp/53, upstream 198.51.100.53 tcp/53): that traffic stays exempt"], 'alert and allow entries cut nothing')
  const many = coverWarnings(Array.from({ length: 25 }, (_, i) => net(`198.51.100.0/${24 - (i % 8)}`, { source: `f:${i}` })), cp.endpoints)
  t.equal(many.length, 21, 'bounded: 20 and a count')
  t.match(many[20], /^5 more entries/)
})

t.test('server addresses: resolved as fetch does, kept through failures, moved, aged out', async (t) => {
  let clock = 1_000_000
  let answer: string[] | Error = ['198.51.100.1']
  let lookups = 0
  const changes: string[][] = []
  const sa = createServerAddresses({
    host: 'guard.test',
    lookup: async () => {
      lookups++
      if (answer instanceof Error) throw answer
      return answer
    },
    graceMs: 60_000,
    minGapMs: 5000,
    onChange: (a) => changes.push(a),
    log: silentLogger,
    now: () => clock,
  })
  t.same(sa.current(), [], 'nothing before the first lookup')
  t.equal(await sa.refresh(), true)
  t.same(sa.current(), ['198.51.100.1'])
  answer = new Error('EAI_AGAIN')
  clock += 10_000
  t.equal(await sa.refresh(), false)
  t.same(sa.current(), ['198.51.100.1'], 'a failed lookup keeps what is known')
  answer = ['198.51.100.2', '0.0.0.0']
  clock += 10_000
  t.equal(await sa.refresh(), true, 'the server moved')
  t.same(sa.current(), ['198.51.100.1', '198.51.100.2'], 'the old address stays for the grace period; a hosts-block answer (0.0.0.0) is never the server')
  clock += 61_000
  t.equal(await sa.refresh(), true)
  t.same(sa.current(), ['198.51.100.2'], 'not seen for longer than the grace period: dropped')
  t.same(changes, [['198.51.100.1'], ['198.51.100.1', '198.51.100.2'], ['198.51.100.2']])
  // After a failed request: at most one lookup per minGapMs.
  const before = lookups
  sa.refreshSoon()
  sa.refreshSoon()
  await new Promise((r) => setImmediate(r))
  t.equal(lookups - before, 0, 'within minGapMs of the last lookup: none')
  clock += 6000
  sa.refreshSoon()
  sa.refreshSoon()
  await sa.refresh() // joins the one in flight
  t.equal(lookups - before, 1, 'one lookup for a burst of failures')

  const lit = createServerAddresses({ host: '2001:db8::1', lookup: async () => t.fail('an IP literal is never looked up') as never, log: silentLogger })
  t.same(lit.current(), ['2001:db8::1'])
  t.equal(await lit.refresh(), false)
  t.ok((await systemLookup('localhost')).some((a) => a === '127.0.0.1' || a === '::1'), 'the system lookup is getaddrinfo (hosts file first)')
})

t.test('a moved server: the agent re-applies, the exempt set and the protected list follow', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), `eg-cp-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // c2.example resolves to the server's NEXT address: blocked while that address is not the server's.
  const resolve = async (): Promise<ResolveResult> => ({ addrs: [{ ip: '203.0.113.2', family: 4, ttl: 300 }], cnames: [], rcode: 'NOERROR' })
  const book = createAddressBook({ upstreams: [{ address: '192.0.2.53', port: 53 }], minTtlSec: 30, maxTtlSec: 600, graceSec: 0, keepAnswers: 1, resolve: resolve as never })
  let serverAddrs = ['198.51.100.1']
  const compute = (): ControlPlane => controlPlane({ server: { addresses: serverAddrs, port: 8787 }, upstreams: [{ address: '192.0.2.53', port: 53 }] })
  let cp = compute()
  const dry = createDryRunEnforcer(() => undefined)
  const controller = createEnforcementController({
    enforcer: dry,
    book,
    get protect() {
      return cp.protect
    },
    get exempt() {
      return cp.exempt
    },
    log: silentLogger,
  })
  const entries: Entry[] = [{ kind: 'domain', value: 'c2.example', allow: false, mode: 'block', source: 'api:x' }, net('198.51.100.0/30', { force: true })]
  const agent = createAgent(
    { host: 'web1', agentVersion: 't', stateDir: dir, reportIntervalMs: 3_600_000, reportJitterMs: 0 },
    {
      log: silentLogger,
      cache: createPolicyCache({ dir, log: silentLogger }),
      controller,
      local: { load: async () => entries, pollMs: 3_600_000 },
      combine: combinePolicies,
      controlPlaneNotices: (p) => coverWarnings(p.entries, cp.endpoints),
    },
  )
  await agent.start()
  t.teardown(() => agent.stop())
  await agent.syncOnce()
  t.ok(dry.snapshot()?.block.v4.includes('203.0.113.2/32'), 'c2.example\'s address is blocked: it is not the server (yet)')
  t.same(dry.snapshot()?.exempt?.v4, ['192.0.2.53,tcp:53', '192.0.2.53,udp:53', '198.51.100.1,tcp:8787'])
  t.match(agent.status().warnings.join('\n'), /198\.51\.100\.0\/30 .* covers this host's control plane \(server 198\.51\.100\.1 tcp\/8787\)/)

  // The server's name now resolves to .2 (the command wires the tracker's onChange to this).
  serverAddrs = ['203.0.113.2']
  cp = compute()
  await agent.controlPlaneChanged()
  t.same(dry.snapshot()?.exempt?.v4, ['192.0.2.53,tcp:53', '192.0.2.53,udp:53', '203.0.113.2,tcp:8787'], 'the exempt set follows the server at once')
  t.notOk(dry.snapshot()?.block.v4.includes('203.0.113.2/32'), 'and a blocked name resolving to the new address no longer puts it in the block set')
  await agent.stop()
})
