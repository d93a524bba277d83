// Pure text generation of the iptables backend: set sizing, `ipset save`/`list -t` parsing, the
// restore plans (create / incremental / swap), the chain's rules and jump placement, and drift.
import t from 'tap'
import { canonicalMember, diffMembers, parseIpsetSave, parseIpsetTerse, planSet, setSize } from '../../src/enforce/ipset-script.js'
import { chainRules, parseIptablesSave, planRules, removeRules, rulesDrift } from '../../src/enforce/iptables-rules.js'
import { parseIptablesVersion, iptablesTools } from '../../src/enforce/tools.js'
import { resolveNames } from '../../src/enforce/iptables.js'

t.test('set sizes: power of two, >= 2x count, >= 65536', async (t) => {
  t.same(setSize(0), { maxelem: 65536, hashsize: 1024 })
  t.equal(setSize(40_000).maxelem, 131072)
  t.equal(setSize(100_000).maxelem, 262144)
  t.equal(setSize(100_000).hashsize, 32768)
})

t.test('ipset save and list -t parsing', async (t) => {
  const save = [
    'create egress-guard-block4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1',
    'add egress-guard-block4 192.0.2.0/24',
    'add egress-guard-block4 198.51.100.7',
    'create other hash:ip family inet hashsize 1024 maxelem 65536',
    'add other 203.0.113.1',
    'create egress-guard-block6 hash:net family inet6 hashsize 1024 maxelem 65536',
    'add egress-guard-block6 2001:db8::1',
  ].join('\n')
  const m = parseIpsetSave(save, new Set(['egress-guard-block4', 'egress-guard-block6']))
  t.same([...m.keys()], ['egress-guard-block4', 'egress-guard-block6'], 'foreign sets ignored')
  t.same(m.get('egress-guard-block4')!.members, ['192.0.2.0/24', '198.51.100.7/32'])
  t.same(m.get('egress-guard-block6')!.members, ['2001:db8::1/128'])
  t.equal(canonicalMember('2001:db8::/48'), '2001:db8::/48')
  const terse = parseIpsetTerse('Name: a\nType: hash:net\nRevision: 7\nHeader: family inet6 hashsize 2048 maxelem 131072 bucketsize 12\nSize in memory: 1\nReferences: 2\nNumber of entries: 5\n')
  t.same(terse.get('a'), { name: 'a', type: 'hash:net', family: 'inet6', hashsize: 2048, maxelem: 131072, entries: 5 })
})

t.test('diffMembers', async (t) => {
  t.same(diffMembers(['a', 'b', 'c'], new Set(['a', 'b'])), { adds: ['c'], dels: [] })
  t.same(diffMembers(['a'], new Set(['a', 'b'])), { adds: [], dels: ['b'] })
  t.same(diffMembers(['x', 'a'], new Set(['a', 'b'])), { adds: ['x'], dels: ['b'] })
  // With the previous list: the side-by-side walk.
  const prev = ['a', 'b', 'c', 'd']
  t.same(diffMembers(['a', 'c', 'd'], new Set(prev), prev), { adds: [], dels: ['b'] })
  t.same(diffMembers(['a', 'x', 'c', 'y'], new Set(prev), prev), { adds: ['x', 'y'], dels: ['b', 'd'] })
  t.same(diffMembers(['x'], new Set(prev), prev), { adds: ['x'], dels: ['a', 'b', 'c', 'd'] })
  // Order changed: the walk gives up and the Set diff still answers correctly.
  t.same(diffMembers(['d', 'c', 'a'], new Set(prev), prev), { adds: [], dels: ['b'] })
  t.same(diffMembers(['c', 'b'], new Set(['a', 'b', 'c']), ['a', 'b', 'c']), { adds: [], dels: ['a'] })
  t.same(diffMembers(['b', 'a'], new Set(['a', 'b', 'c']), ['a', 'b', 'c']), { adds: [], dels: ['c'] })
})

t.test('diffMembers agrees with a plain set difference (random lists, random order kept or shuffled)', async (t) => {
  let seed = 7
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n)
  for (let round = 0; round < 300; round++) {
    const universe = Array.from({ length: 12 }, (_, i) => `m${i}`)
    const prev = universe.filter(() => rnd(2) === 0)
    let next = universe.filter(() => rnd(2) === 0)
    if (rnd(3) === 0) next = next.sort(() => rnd(3) - 1)
    const have = new Set(prev)
    const got = diffMembers(next, have, prev)
    const want = { adds: next.filter((m) => !have.has(m)), dels: prev.filter((m) => !next.includes(m)) }
    if (JSON.stringify({ adds: got.adds, dels: [...got.dels].sort() }) !== JSON.stringify({ adds: want.adds, dels: [...want.dels].sort() })) {
      t.fail(`prev=${prev} next=${next} got=${JSON.stringify(got)}`)
      return
    }
  }
  t.pass('300 random cases agree')
})

t.test('planSet: create, none, incremental, swap, grow, stale temp', async (t) => {
  const base = { name: 's', temp: 's-t', family: 4 as const, tempExists: false }
  const hdr = { name: 's', type: 'hash:net', family: 'inet', hashsize: 1024, maxelem: 65536 }
  const c = planSet({ ...base, desired: ['192.0.2.0/24'], live: undefined, liveMembers: undefined })
  t.equal(c.mode, 'create')
  t.same(c.lines, ['create s hash:net family inet hashsize 1024 maxelem 65536', 'add s 192.0.2.0/24'])
  t.equal(planSet({ ...base, desired: ['192.0.2.0/24'], live: hdr, liveMembers: new Set(['192.0.2.0/24']) }).mode, 'none')
  const inc = planSet({ ...base, desired: ['192.0.2.0/24', '198.51.100.1/32'], live: hdr, liveMembers: new Set(['192.0.2.0/24', '203.0.113.1/32']) })
  t.equal(inc.mode, 'incremental')
  t.same(inc.lines, ['del s 203.0.113.1/32', 'add s 198.51.100.1/32'], 'deletes before adds')
  const many = Array.from({ length: 1000 }, (_, i) => `10.0.${i >> 8}.${i & 255}/32`)
  const sw = planSet({ ...base, desired: many, live: hdr, liveMembers: new Set() })
  t.equal(sw.mode, 'swap', 'a large change is built beside and swapped')
  t.same(sw.lines.slice(-2), ['swap s-t s', 'destroy s-t'])
  t.match(sw.lines[0], /^create s-t hash:net family inet /)
  const big = Array.from({ length: 40_000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}/32`)
  const grow = planSet({ ...base, desired: [...big], live: hdr, liveMembers: new Set(big.slice(1)) })
  t.equal(grow.mode, 'swap', 'a set that must grow beyond the live maxelem is swapped, even for one entry')
  t.match(grow.lines[0], /maxelem 131072/)
  const stale = planSet({ ...base, tempExists: true, desired: [], live: hdr, liveMembers: new Set() })
  t.same(stale.lines, ['destroy s-t'], 'a temporary set left by a crash is destroyed')
  const wrongFamily = planSet({ ...base, desired: [], live: { ...hdr, family: 'inet6' }, liveMembers: new Set() })
  t.equal(wrongFamily.mode, 'swap')
})

const SPEC = { chain: 'EGRESS-GUARD', family: 4 as const, sets: { exempt: 'c4', allow: 'a4', block: 'b4', alert: 'l4' }, log: false, logPrefix: 'egress-guard' }

t.test('chain rules: control plane first, then allow, block (tcp reset, icmp), alert (log, return); never a reject for alert', async (t) => {
  const r = chainRules(SPEC)
  t.same(r, [
    '-m set --match-set c4 dst,dst -j RETURN',
    '-m set --match-set a4 dst -j RETURN',
    '-p tcp -m set --match-set b4 dst -j REJECT --reject-with tcp-reset',
    '-m set --match-set b4 dst -j REJECT --reject-with icmp-port-unreachable',
    '-m set --match-set l4 dst -m limit --limit 10/min -j LOG --log-prefix "egress-guard alert: "',
    '-m set --match-set l4 dst -j RETURN',
  ])
  t.notOk(r.some((x) => x.includes('l4') && x.includes('REJECT')))
  const r6 = chainRules({ ...SPEC, family: 6, log: true })
  t.match(r6[2], /-j LOG --log-prefix "egress-guard block: "/)
  t.match(r6[4], /icmp6-port-unreachable/)
})

const SAVE = (extra: string[], chains: string[] = []): string =>
  ['# Generated', '*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...chains.map((c) => `:${c} - [0:0]`), ...extra, 'COMMIT', ''].join('\n')

t.test('planRules: create, nothing to do, move jump first, Docker appears', async (t) => {
  const want = chainRules(SPEC)
  const fresh = planRules(parseIptablesSave(SAVE([])), 'EGRESS-GUARD', want)
  t.same(fresh.lines, [':EGRESS-GUARD - [0:0]', ...want.map((w) => `-A EGRESS-GUARD ${w}`), '-I OUTPUT 1 -j EGRESS-GUARD', '-I FORWARD 1 -j EGRESS-GUARD'])
  const good = SAVE(['-A OUTPUT -j EGRESS-GUARD', '-A FORWARD -j EGRESS-GUARD', ...want.map((w) => `-A EGRESS-GUARD ${w}`)], ['EGRESS-GUARD'])
  t.same(planRules(parseIptablesSave(good), 'EGRESS-GUARD', want).lines, [], 'a matching kernel needs no write')
  const late = SAVE(['-A OUTPUT -d 203.0.113.1/32 -j ACCEPT', '-A OUTPUT -j EGRESS-GUARD', '-A FORWARD -j EGRESS-GUARD', ...want.map((w) => `-A EGRESS-GUARD ${w}`)], ['EGRESS-GUARD'])
  t.same(planRules(parseIptablesSave(late), 'EGRESS-GUARD', want).lines, ['-D OUTPUT -j EGRESS-GUARD', '-I OUTPUT 1 -j EGRESS-GUARD'])
  const docker = SAVE(['-A FORWARD -j DOCKER-USER', '-A FORWARD -j EGRESS-GUARD', '-A OUTPUT -j EGRESS-GUARD', '-A DOCKER-USER -j RETURN', ...want.map((w) => `-A EGRESS-GUARD ${w}`)], ['DOCKER-USER', 'EGRESS-GUARD'])
  const p = planRules(parseIptablesSave(docker), 'EGRESS-GUARD', want)
  t.same(p.lines, ['-I DOCKER-USER 1 -j EGRESS-GUARD', '-D FORWARD -j EGRESS-GUARD'], 'DOCKER-USER takes the jump, FORWARD gives it up')
  t.notOk(p.lines.includes(':DOCKER-USER - [0:0]'), "Docker's chain is never declared (that would flush it)")
})

t.test('rulesDrift and removeRules', async (t) => {
  const want = chainRules(SPEC)
  const flushed = parseIptablesSave(SAVE(['-A OUTPUT -j EGRESS-GUARD', '-A FORWARD -j EGRESS-GUARD'], ['EGRESS-GUARD']))
  t.match(rulesDrift(flushed, 'EGRESS-GUARD', want, 'iptables'), [{ kind: 'chain-rules', detail: /flushed/ }])
  const nojump = parseIptablesSave(SAVE(['-A FORWARD -j EGRESS-GUARD', ...want.map((w) => `-A EGRESS-GUARD ${w}`)], ['EGRESS-GUARD']))
  t.match(rulesDrift(nojump, 'EGRESS-GUARD', want, 'iptables'), [{ kind: 'jump-missing', detail: /OUTPUT/ }])
  t.match(rulesDrift(parseIptablesSave(SAVE([])), 'EGRESS-GUARD', want, 'x'), [{ kind: 'chain-missing' }, { kind: 'jump-missing' }, { kind: 'jump-missing' }])
  const two = parseIptablesSave(SAVE(['-A OUTPUT -j EGRESS-GUARD', '-A OUTPUT -j EGRESS-GUARD', '-A FORWARD -j EGRESS-GUARD', ...want.map((w) => `-A EGRESS-GUARD ${w}`)], ['EGRESS-GUARD']))
  t.match(rulesDrift(two, 'EGRESS-GUARD', want, 'x'), [{ kind: 'chain-rules', detail: /2 jumps/ }])
  t.same(removeRules(two, 'EGRESS-GUARD'), ['-D FORWARD -j EGRESS-GUARD', '-D OUTPUT -j EGRESS-GUARD', '-D OUTPUT -j EGRESS-GUARD', '-F EGRESS-GUARD', '-X EGRESS-GUARD'])
  t.same(removeRules(parseIptablesSave(SAVE(['-A OUTPUT -j ACCEPT'])), 'EGRESS-GUARD'), [], 'nothing of ours: nothing to do')
})

t.test('tools and names', async (t) => {
  t.same(parseIptablesVersion('iptables v1.8.9 (nf_tables)\n'), { version: '1.8.9', flavour: 'nf_tables' })
  t.same(parseIptablesVersion('iptables v1.8.7 (legacy)'), { version: '1.8.7', flavour: 'legacy' })
  t.same(parseIptablesVersion('iptables v1.6.1'), { version: '1.6.1', flavour: 'legacy' })
  t.equal(parseIptablesVersion('bash: nope'), undefined)
  t.equal(iptablesTools('legacy').restore6, 'ip6tables-legacy-restore')
  t.equal(iptablesTools().save4, 'iptables-save')
  t.same(resolveNames(undefined), { prefix: 'egress-guard', chain: 'EGRESS-GUARD' })
  t.throws(() => resolveNames('bad name;'), { code: 'EG_CONFIG' })
  t.throws(() => resolveNames('x'.repeat(30)), { code: 'EG_CONFIG' })
})
