// `egress-guard plan` as a real process: shows the expected kernel and hosts changes, writes nothing,
// compares with the live state (nothing to do right after an apply; exactly the difference after an edit).
import t from 'tap'
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs } from '../helpers/netns.js'
import { startDnsmasq } from '../resolve/dnsmasq.js'

const DNS = ['--host-record=evil.example,203.0.113.7,2001:db8::7', '--host-record=shared.example,8.8.8.8', '--local-ttl=300']

function fixture(t: { teardown: (f: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), `eg-plan-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'bl'))
  const list = join(dir, 'bl', 'list.txt')
  writeFileSync(list, 'evil.example\n198.51.100.0/24\nshared.example\n')
  const hosts = join(dir, 'hosts')
  writeFileSync(hosts, '127.0.0.1 localhost\n')
  return { bl: join(dir, 'bl'), list, hosts }
}

t.test('iptables: plan shows the changes, does nothing, then tracks the live state', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('ipset'))) return
  const ns = makeNs(t, 'pi')
  const dm = await startDnsmasq(t, DNS)
  const f = fixture(t)
  const common = ['--netns', ns, '--blocklists', f.bl, '--hosts-file', f.hosts, '--upstream', `127.0.0.1:${dm.port}`]
  let r = await runCli(['plan', '--backend', 'iptables', ...common])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /add egress-guard-block4 198\.51\.100\.0\/24/)
  t.match(r.stdout, /add egress-guard-block4 203\.0\.113\.7\/32/)
  t.match(r.stdout, /add egress-guard-block6 2001:db8::7\/128/)
  t.match(r.stdout, /fix chain-missing: iptables: chain EGRESS-GUARD missing/)
  t.match(r.stdout, /hosts file .*:\n  add 0\.0\.0\.0 evil\.example \/ :: evil\.example\n  add 0\.0\.0\.0 shared\.example/)
  t.match(r.stdout, /warning: shared\.example resolved to 8\.8\.8\.8, not blocked: public resolver/)
  t.equal(inNs(ns, 'ipset', ['list', '-n']).trim(), '', 'plan created no set')
  t.notMatch(inNs(ns, 'iptables', ['-S']), /EGRESS-GUARD/, 'plan created no chain')
  t.equal(readFileSync(f.hosts, 'utf8'), '127.0.0.1 localhost\n', 'plan wrote no hosts file')

  const a = await runCli(['apply', '--once', '--backend', 'iptables', ...common])
  t.equal(a.code, 0, a.stderr)
  r = await runCli(['plan', '--backend', 'iptables', ...common])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /kernel \(compared with the live sets: \+0 -0\):\n  no changes/)
  t.match(r.stdout, /nothing to do/)

  writeFileSync(f.list, 'evil.example\n203.0.113.128/25\nshared.example\n')
  r = await runCli(['plan', '--backend', 'iptables', ...common, '--json'])
  t.equal(r.code, 0, r.stderr)
  const doc = JSON.parse(r.stdout)
  t.same(doc.kernel.members, ['add egress-guard-block4 203.0.113.128/25', 'del egress-guard-block4 198.51.100.0/24'])
  t.same(doc.kernel.rules, [])
  t.equal(doc.changes, 2)
  t.equal(doc.comparedWithLive, true)
  t.same(doc.hosts.add, [])
  t.match(inNs(ns, 'ipset', ['list', 'egress-guard-block4']), /198\.51\.100\.0\/24/, 'the live set is untouched by plan')
})

t.test('nftables: plan before and after an apply', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool('nft'))) return
  const ns = makeNs(t, 'pn')
  const dm = await startDnsmasq(t, DNS)
  const f = fixture(t)
  const common = ['--backend', 'nftables', '--netns', ns, '--blocklists', f.bl, '--no-hosts', '--upstream', `127.0.0.1:${dm.port}`]
  let r = await runCli(['plan', ...common])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /create table inet egress_guard/)
  t.match(r.stdout, /set block4: create \+2 -0/)
  t.equal(inNs(ns, 'nft', ['list', 'ruleset']).trim(), '', 'plan wrote nothing')
  t.equal((await runCli(['apply', '--once', ...common])).code, 0)
  r = await runCli(['plan', ...common])
  t.match(r.stdout, /nothing to do/)
})

t.test('without a readable kernel (tools missing) the full desired state is shown', async (t) => {
  const f = fixture(t)
  writeFileSync(f.list, '203.0.113.0/24\n@@203.0.113.5\n')
  const r = await runCli(['plan', '--blocklists', f.bl, '--hosts-file', f.hosts], { env: { PATH: '/nonexistent' } })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /note: could not read the live kernel state/)
  t.match(r.stdout, /add egress-guard-block4 203\.0\.113\.0\/24/)
  t.match(r.stdout, /add egress-guard-allow4 203\.0\.113\.5\/32/)
})
