// Pure parts of the nftables backend: interval merging (the kernel's auto-merge), the transaction
// text, JSON read-back parsing and drift detection.
import t from 'tap'
import { expectedChains, mergedMembers, nftDrift, parseNftJson, planNft } from '../../src/enforce/nft-script.js'
import type { DesiredState } from '../../src/enforce/types.js'

const D: DesiredState = {
  version: 2,
  block: { v4: ['192.0.2.0/25', '192.0.2.128/25', '198.51.100.7/32', '198.51.100.8/32', '198.51.100.9/32'], v6: ['2001:db8::/48', '2001:db8:0:1::1/128'] },
  alert: { v4: ['203.0.113.0/24'], v6: [] },
  allow: { v4: [], v6: [] },
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
  t.match(p.script!, /add set inet egress_guard block4 \{ type ipv4_addr; flags interval; auto-merge; \}/)
  t.match(p.script!, /add element inet egress_guard block4 \{ 192\.0\.2\.0\/24, 198\.51\.100\.7-198\.51\.100\.9 \}/)
  t.match(p.script!, /add chain inet egress_guard output \{ type filter hook output priority filter - 10; policy accept; \}/)
  t.match(p.script!, /add chain inet egress_guard forward \{ type filter hook forward priority filter - 10; policy accept; \}/)
  t.match(p.script!, /meta l4proto tcp ip daddr @block4 counter reject with tcp reset/)
  t.notMatch(p.script!, /@alert4 counter reject/, 'alert never rejects')
  t.ok(p.script!.indexOf('add chain inet egress_guard guard') < p.script!.indexOf('add chain inet egress_guard output'), 'guard chain exists before a base chain jumps to it')
})

t.test('read-back: a matching kernel needs no transaction; drift is named', async (t) => {
  const chains = expectedChains(false, 'egress-guard')
  const set = (name: string, type: string, elem: unknown[]): unknown => ({ set: { family: 'inet', name, table: 'egress_guard', type, flags: ['interval'], ...(elem.length ? { elem } : {}) } })
  const items: unknown[] = [
    { table: { family: 'inet', name: 'egress_guard' } },
    set('allow4', 'ipv4_addr', []), set('allow6', 'ipv6_addr', []),
    set('block4', 'ipv4_addr', [{ prefix: { addr: '192.0.2.0', len: 24 } }, { range: ['198.51.100.7', '198.51.100.9'] }]),
    set('block6', 'ipv6_addr', [{ prefix: { addr: '2001:db8::', len: 48 } }]),
    set('alert4', 'ipv4_addr', [{ prefix: { addr: '203.0.113.0', len: 24 } }]), set('alert6', 'ipv6_addr', []),
    ...chains.map((c) => ({ chain: { family: 'inet', table: 'egress_guard', name: c.name, ...(c.hook ? { type: 'filter', hook: c.hook, prio: -10, policy: 'accept' } : {}) } })),
    ...chains.flatMap((c) => c.comments.map((comment) => ({ rule: { chain: c.name, comment, expr: [] } }))),
  ]
  const live = parseNftJson(json(items))
  const none = planNft('egress_guard', live, D, false, 'egress-guard')
  t.same({ script: none.script, actions: none.actions, added: none.added, removed: none.removed }, { script: undefined, actions: [], added: 0, removed: 0 })
  t.same(none.sets.get('block4')?.keys, live.sets.get('block4')?.keys, 'the merged members it would write are reported (for the cache)')
  t.same(nftDrift('egress_guard', live, D, false, 'egress-guard'), [])

  const flushedGuard = parseNftJson(json(items.filter((i) => !((i as { rule?: { chain: string } }).rule?.chain === 'guard'))))
  t.match(nftDrift('egress_guard', flushedGuard, D, false, 'egress-guard'), [{ kind: 'chain-rules', detail: /flushed/ }])
  const noOutput = parseNftJson(json(items.filter((i) => (i as { chain?: { name: string } }).chain?.name !== 'output' && (i as { rule?: { chain: string } }).rule?.chain !== 'output')))
  t.match(nftDrift('egress_guard', noOutput, D, false, 'egress-guard'), [{ kind: 'jump-missing' }])
  const changed = { ...D, block: { ...D.block, v4: ['192.0.2.0/24'] } }
  t.match(nftDrift('egress_guard', live, changed, false, 'egress-guard'), [{ kind: 'set-members' }])
  const p = planNft('egress_guard', live, changed, false, 'egress-guard')
  t.match(p.script, /flush set inet egress_guard block4\nadd element inet egress_guard block4 \{ 192\.0\.2\.0\/24 \}/)
  t.equal(p.removed, 1)
  t.notMatch(p.script!, /flush set inet egress_guard alert4/, 'unchanged sets are not rewritten')
  t.same(nftDrift('egress_guard', parseNftJson(''), D, false, 'egress-guard'), [{ kind: 'table-missing', detail: 'table inet egress_guard missing' }])
})
