// The end-to-end proof with real parts: a blocked domain served by a real dnsmasq is resolved
// and its address rejected by the iptables backend inside a namespace (a real TCP connection over veth
// fails, another address still works); when the upstream changes the answer, the new address is
// blocked after the TTL (by the controller's own timer) and the old one stays blocked for the grace
// period, then opens. A deleted jump is put back by the next reconcile.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, link, makeNs, spawnInNs } from '../helpers/netns.js'
import { startDnsmasq } from '../resolve/dnsmasq.js'
import { createAddressBook } from '../../src/resolve/address-book.js'
import { createEnforcementController } from '../../src/enforce/controller.js'
import { createHostsFile } from '../../src/enforce/hosts-file.js'
import { createEnforcer } from '../../src/enforce/factory.js'
import { silentLogger } from '../../src/log.js'
import type { Policy } from '../../src/policy/types.js'

const PORT = 8080
const CONNECT = `
const [ip, port] = process.argv.slice(1)
const s = require('net').connect({ host: ip, port: Number(port), timeout: 3000 })
s.on('data', (d) => { process.stdout.write(String(d)); s.destroy() })
s.on('timeout', () => { process.stdout.write('TIMEOUT'); s.destroy() })
s.on('error', (e) => process.stdout.write(e.code))
`

/** A real TCP connection from namespace `ns`: 'ok' when the listener answered, else the error code. */
function connect(ns: string, ip: string): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', CONNECT, ip, String(PORT)], { encoding: 'utf8', timeout: 10_000 })
  return r.stdout.trim()
}

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`timed out waiting for: ${what}`)
}

const policy = (version: number): Policy => ({
  version, etag: `v${version}`, generatedAt: new Date().toISOString(),
  entries: [{ kind: 'domain', value: 'evil.example', allow: false, mode: 'block', source: 'test:1' }],
})

t.test('resolved addresses are blocked, follow DNS changes after the TTL, and keep the grace period', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('ipset'), capabilities.tool('iptables'))) return
  const host = makeNs(t, 'rh')
  const target = makeNs(t, 'rt')
  link(host, ['203.0.113.1/24', '2001:db8:1::1/64'], target, ['203.0.113.10/24', '203.0.113.11/24', '203.0.113.12/24', '2001:db8:1::10/64', '2001:db8:1::12/64'])
  spawnInNs(t, target, process.execPath, ['-e', `require('net').createServer((s) => s.end('ok')).listen(${PORT}, '::')`])
  await until('listener up', () => connect(host, '203.0.113.12') === 'ok')
  t.equal(connect(host, '203.0.113.10'), 'ok', 'before: the soon-blocked address is reachable')

  const dm = await startDnsmasq(t, ['--local-ttl=1'], { hosts: '203.0.113.10 evil.example\n2001:db8:1::10 evil.example\n' })
  const dir = mkdtempSync(join(tmpdir(), `eg-rk-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const hostsPath = join(dir, 'hosts')
  writeFileSync(hostsPath, '127.0.0.1 localhost\n')
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: dm.port }], minTtlSec: 1, maxTtlSec: 60, graceSec: 4, keepAnswers: 1 })
  const ctl = createEnforcementController({
    enforcer: createEnforcer('iptables', { netns: host, logger: silentLogger }),
    hosts: createHostsFile(hostsPath),
    book, protect: [], log: silentLogger, reconcileIntervalMs: 60_000,
  })
  t.teardown(() => ctl.stop())

  const r = await ctl.setPolicy(policy(1))
  t.equal(r.report.changed, true)
  t.same(r.warnings, [])
  t.equal(connect(host, '203.0.113.10'), 'ECONNREFUSED', 'blocked domain\'s IPv4 address: rejected')
  t.equal(connect(host, '2001:db8:1::10'), 'ECONNREFUSED', 'blocked domain\'s IPv6 address: rejected')
  t.equal(connect(host, '203.0.113.12'), 'ok', 'another address still works')
  t.equal(connect(host, '2001:db8:1::12'), 'ok', 'another IPv6 address still works')
  t.match(readFileSync(hostsPath, 'utf8'), /0\.0\.0\.0 evil\.example/)

  // The upstream now answers .11; the controller's timer re-resolves after the 1 s TTL.
  await dm.setHosts('203.0.113.11 evil.example\n')
  ctl.start()
  await until('new address blocked', () => connect(host, '203.0.113.11') === 'ECONNREFUSED')
  t.pass('the new address is blocked after the TTL')
  t.equal(connect(host, '203.0.113.10'), 'ECONNREFUSED', 'the old address is still blocked (grace period)')
  t.equal(connect(host, '203.0.113.12'), 'ok')
  t.match(inNs(host, 'ipset', ['list', 'egress-guard-block4']), /203\.0\.113\.10/)

  await until('grace period over', () => connect(host, '203.0.113.10') === 'ok')
  t.pass('after the grace period the old address opens again')
  t.equal(connect(host, '203.0.113.11'), 'ECONNREFUSED', 'the current address stays blocked')
  t.equal(connect(host, '2001:db8:1::10'), 'ok', 'the IPv6 address no longer in DNS opened too')
  await ctl.stop()

  // Drift: delete the jump (as a careless `iptables -F OUTPUT` would); the next reconcile restores it.
  inNs(host, 'iptables', ['-D', 'OUTPUT', '-j', 'EGRESS-GUARD'])
  t.equal(connect(host, '203.0.113.11'), 'ok', 'with the jump gone the address is reachable: a real gap')
  const rec = await ctl.reconcileOnce()
  t.ok(rec.drift.some((d) => d.kind === 'jump-missing'), 'drift found')
  t.equal(rec.repaired, true)
  t.equal(connect(host, '203.0.113.11'), 'ECONNREFUSED', 'blocked again after the repair')
  t.equal(ctl.stats().repairs, rec.drift.length)
})
