// Pure parts of the nftables backend: interval merging (the kernel's auto-merge), the transaction
// text (addresses in hash sets, networks in interval sets), JSON read-back parsing, drift detection
// and the element-only edit against the cache.
import t from 'tap'
import { expectedChains, mergedMembers, nftDrift, parseNftJson, planElements, planNft, splitMembers } from '../../src/enforce/nft-script.js'
import type { DesiredState } from '../../src/enforce/types.js'

const D: DesiredState = {
  version: 2,
  block: { v4: ['192.0.2.0/25', '192.0.2.128/25', '198.51.100.7/32', '198.51.100.8/32', '198.51.100.9/32'], v6: ['2001:db8::/48', '2001:db8:0:1::1/128'] },
  alert: { v4: ['203.0.113.0/24'], v6: [] },
  allow: { v4: [], v6: [] },
  exempt: { v4: ['198.51.100.1,tcp:8787', '198.51.100.53,udp:53'], v6: [] },
}

t.test('merged members: adjacent and overlapping intervals merge as auto-merge does', async (t) => {
  t.same(mergedMembers(D.block.v4, 4).elements, ['192.0.2.0/24', '198.51.100.7-198.51.100.9'])
  t.same(mergedMembers(D.block.v6, 6).elements, ['2001:db8::/48'], 'a host inside a network is covered')
  t.same(mergedMembers(['10.0.0.0/8', '10.1.0.0/16'], 4).elements, ['10.0.0.0/8'])
  t.same(mergedMembers(['203.0.113.5/32'], 4).elements, ['203.0.113.5'])
})

function json(items: unknown[]): string {
  return JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6' } }, ...items] })
}

t.test('plan on an empty kernel: one transaction creating table, sets, chains', async (t) => {
  const p = planNft('egress_guard', parseNftJson(''), D, false, 'egress-guard')
  t.ok(p.script)
  t.match(p.script!, /^add table inet egress_guard\n/)
  t.match(p.script!, /add set inet egress_guard block4 \{ type ipv4_addr; \}/, 'addresses: a hash set')
  t.match(p.script!, /add set inet egress_guard block4net \{ type ipv4_addr; flags interval; auto-merge; \}/, 'networks: an interval set')
  t.match(p.script!, /add element inet egress_guard block4net \{ 192\.0\.2\.0\/24 \}/)
  t.match(p.script!, /add element inet egress_guard block4 \{ 198\.51\.100\.7, 198\.51\.100\.8, 198\.51\.100\.9 \}/)
  t.match(p.script!, /add element inet egress_guard block6 \{ 2001:db8:0:1::1 \}/, 'a host inside a network is kept in the address set (harmless)')
  t.match(p.script!, /meta l4proto tcp ip daddr @block4net counter reject with tcp reset/)
  t.match(p.script!, /add set inet egress_guard ctl4 \{ type ipv4_addr \. inet_proto \. inet_service; \}/, 'control plane: a concatenated set')
  t.match(p.script!, /add element inet egress_guard ctl4 \{ 198\.51\.100\.1 \. tcp \. 8787, 198\.51\.100\.53 \. udp \. 53 \}/)
  t.match(p.script!, /add rule inet egress_guard guard ip daddr \. meta l4proto \. th dport @ctl4 counter return comment "eg:[0-9a-f]+"\nadd rule inet egress_guard guard ip6 daddr \. meta l4proto \. th dport @ctl6 counter return comment "eg:[0-9a-f]+"\nadd rule inet egress_guard guard ip daddr @allow4 /, 'the exemption comes before every policy rule')
  t.match(p.script!, /add chain inet egress_guard output \{ type filter hook output priority filter - 10; policy accept; \}/)
  t.match(p.script!, /add chain inet egress_guard forward \{ type filter hook forward priority filter - 10; policy accept; \}/)
  t.match(p.script!, /meta l4proto tcp ip daddr @block4 counter reject with tcp reset/)
  t.notMatch(p.script!, /@alert4 counter reject/, 'alert never rejects')
  t.ok(p.script!.indexOf('add chain inet egress_guard guard') < p.script!.indexOf('add chain inet egress_guard output'), 'guard chain exists before a base chain jumps to it')
})

t.test('read-back: a matching kernel needs no transaction; drift is named', async (t) => {
  const chains = expectedChains(false, 'egress-guard')
  const set = (name: string, type: string, elem: unknown[]): unknown => ({ set: { family: 'inet', name, table: 'egress_guard', type, flags: ['interval'], ...(elem.length ? { elem } : {}) } })
  const hash = (name: string, type: string, elem: string[]): unknown => ({ set: { family: 'inet', name, table: 'egress_guard', type, ...(elem.length ? { elem } : {}) } })
  const items: unknown[] = [
    { table: { family: 'inet', name: 'egress_guard' } },
    // As nft 1.0.6 lists a concatenated set: the type as an array, elements as {concat: [...]}.
    { set: { family: 'inet', name: 'ctl4', table: 'egress_guard', type: ['ipv4_addr', 'inet_proto', 'inet_service'], elem: [{ concat: ['198.51.100.53', 'udp', 53] }, { concat: ['198.51.100.1', 'tcp', 8787] }] } },
    { set: { family: 'inet', name: 'ctl6', table: 'egress_guard', type: ['ipv6_addr', 'inet_proto', 'inet_service'] } },
    set('allow4net', 'ipv4_addr', []), set('allow6net', 'ipv6_addr', []),
    set('block4net', 'ipv4_addr', [{ prefix: { addr: '192.0.2.0', len: 24 } }]),
    set('block6net', 'ipv6_addr', [{ prefix: { addr: '2001:db8::', len: 48 } }]),
    set('alert4net', 'ipv4_addr', [{ prefix: { addr: '203.0.113.0', len: 24 } }]), set('alert6net', 'ipv6_addr', []),
    hash('allow4', 'ipv4_addr', []), hash('allow6', 'ipv6_addr', []), hash('alert4', 'ipv4_addr', []), hash('alert6', 'ipv6_addr', []),
    hash('block4', 'ipv4_addr', ['198.51.100.9', '198.51.100.7', '198.51.100.8']), hash('block6', 'ipv6_addr', ['2001:db8:0:1::1']),
    ...chains.map((c) => ({ chain: { family: 'inet', table: 'egress_guard', name: c.name, ...(c.hook ? { type: 'filter', hook: c.hook, prio: -10, policy: 'accept' } : {}) } })),
    ...chains.flatMap((c) => c.comments.map((comment) => ({ rule: { chain: c.name, comment, expr: [] } }))),
  ]
  const live = parseNftJson(json(items))
  const none = planNft('egress_guard', live, D, false, 'egress-guard')
  t.same({ script: none.script, actions: none.actions, added: none.added, removed: none.removed }, { script: undefined, actions: [], added: 0, removed: 0 })
  t.same(none.sets.get('block4net')?.keys, live.sets.get('block4net')?.keys, 'the merged members it would write are reported (for the cache)')
  t.same([...none.sets.get('block4')!.keys].sort(), [...live.sets.get('block4')!.keys].sort(), 'and the addresses (in desired order)')
  t.same(nftDrift('egress_guard', live, D, false, 'egress-guard'), [])

  const flushedGuard = parseNftJson(json(items.filter((i) => !((i as { rule?: { chain: string } }).rule?.chain === 'guard'))))
  t.match(nftDrift('egress_guard', flushedGuard, D, false, 'egress-guard'), [{ kind: 'chain-rules', detail: /flushed/ }])
  const noOutput = parseNftJson(json(items.filter((i) => (i as { chain?: { name: string } }).chain?.name !== 'output' && (i as { rule?: { chain: string } }).rule?.chain !== 'output')))
  t.match(nftDrift('egress_guard', noOutput, D, false, 'egress-guard'), [{ kind: 'jump-missing' }])
  const moved = { ...D, exempt: { v4: ['198.51.100.2,tcp:8787', '198.51.100.53,udp:53'], v6: [] } }
  t.match(nftDrift('egress_guard', live, moved, false, 'egress-guard'), [{ kind: 'set-members', detail: /set ctl4:/ }], 'a moved control-plane endpoint is drift')
  const mp = planNft('egress_guard', live, moved, false, 'egress-guard')
  t.match(mp.script, /delete element inet egress_guard ctl4 \{ 198\.51\.100\.1 \. tcp \. 8787 \}\nadd element inet egress_guard ctl4 \{ 198\.51\.100\.2 \. tcp \. 8787 \}/, 'the endpoint set is edited in place')
  t.same(mp.actions, ['set ctl4: edit +1 -1 (2 control-plane endpoints)'])
  const changed = { ...D, block: { ...D.block, v4: ['192.0.2.0/24', '198.51.100.8/32'] } }
  t.match(nftDrift('egress_guard', live, changed, false, 'egress-guard'), [{ kind: 'set-members', detail: /set block4:/ }])
  const p = planNft('egress_guard', live, changed, false, 'egress-guard')
  t.match(p.script, /delete element inet egress_guard block4 \{ (198\.51\.100\.9, 198\.51\.100\.7|198\.51\.100\.7, 198\.51\.100\.9) \}/, 'address set: only the difference')
  t.notMatch(p.script!, /add element inet egress_guard block4 /, 'nothing to add')
  t.notMatch(p.script!, /flush set inet egress_guard block4/, 'the address set is edited, not refilled')
  t.equal(p.removed, 2)
  t.notMatch(p.script!, /flush set inet egress_guard alert4/, 'unchanged sets are not rewritten')
  const netChanged = { ...D, block: { ...D.block, v4: ['192.0.2.0/24', '192.0.3.0/24', '198.51.100.7/32', '198.51.100.8/32', '198.51.100.9/32'] } }
  t.match(planNft('egress_guard', live, netChanged, false, 'egress-guard').script, /flush set inet egress_guard block4net\nadd element inet egress_guard block4net \{ 192\.0\.2\.0\/23 \}/, 'network set: flushed and refilled, merged')
  t.same(nftDrift('egress_guard', parseNftJson(''), D, false, 'egress-guard'), [{ kind: 'table-missing', detail: 'table inet egress_guard missing' }])
})

t.test('split: single addresses vs networks', async (t) => {
  t.same(splitMembers(['203.0.113.5/32', '192.0.2.0/24', '198.51.100.1/32'], 4), { addrs: ['203.0.113.5/32', '198.51.100.1/32'], nets: ['192.0.2.0/24'] }, 'input order kept (no sort)')
  t.same(splitMembers(['2001:db8::1/128', '2001:db8::/64'], 6), { addrs: ['2001:db8::1/128'], nets: ['2001:db8::/64'] })
})

t.test('element-only edit against the cache: no declarations, only the difference', async (t) => {
  const first = planNft('egress_guard', parseNftJson(''), D, false, 'egress-guard')
  const plus = { ...D, block: { ...D.block, v4: [...D.block.v4, '203.0.113.99/32'] } }
  const e = planElements('egress_guard', first.sets, plus)!
  t.equal(e.script, 'add element inet egress_guard block4 { 203.0.113.99 }\n', 'one line: the new address')
  t.match(e, { added: 1, removed: 0 })
  const back = planElements('egress_guard', e.sets, D)!
  t.equal(back.script, 'delete element inet egress_guard block4 { 203.0.113.99 }\n')
  t.equal(planElements('egress_guard', back.sets, D)!.script, undefined, 'identical: nothing to write')
  const reordered = { ...D, block: { ...D.block, v4: [...D.block.v4].reverse() } }
  t.equal(planElements('egress_guard', back.sets, reordered)!.script, undefined, 'same members in another order: nothing to write')
  const net = planElements('egress_guard', first.sets, { ...D, alert: { v4: ['203.0.113.0/25'], v6: [] } })!
  t.equal(net.script, 'flush set inet egress_guard alert4net\nadd element inet egress_guard alert4net { 203.0.113.0/25 }\n')
  const partial = new Map(first.sets)
  partial.delete('block6net')
  t.equal(planElements('egress_guard', partial, D), undefined, 'a set the cache does not know: full path')
})

t.test('upgrade from the single interval-set layout: the old set is replaced, guard flushed first', async (t) => {
  const old = parseNftJson(json([
    { table: { family: 'inet', name: 'egress_guard' } },
    { set: { family: 'inet', name: 'block4', table: 'egress_guard', type: 'ipv4_addr', flags: ['interval'], elem: [{ prefix: { addr: '192.0.2.0', len: 24 } }] } },
    { chain: { family: 'inet', table: 'egress_guard', name: 'guard' } },
    { rule: { chain: 'guard', comment: 'eg:old' } },
  ]))
  t.ok(nftDrift('egress_guard', old, D, false, 'egress-guard').some((d) => d.kind === 'set-missing' && /block4 is an interval set/.test(d.detail)), 'the old kind is drift')
  const p = planNft('egress_guard', old, D, false, 'egress-guard')
  const s = p.script!
  const at = (re: RegExp): number => s.search(re)
  t.ok(at(/flush chain inet egress_guard guard\n/) >= 0 && at(/flush chain inet egress_guard guard\n/) < at(/delete set inet egress_guard block4\n/), 'guard flushed before the set is deleted')
  t.ok(at(/delete set inet egress_guard block4\n/) < at(/add set inet egress_guard block4 \{ type ipv4_addr; \}/), 're-created as a hash set')
  t.match(s, /add rule inet egress_guard guard ip daddr @allow4 counter return/, 'guard rules rewritten')
})
