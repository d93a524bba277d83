// Pure text of both container-egress backends: jump placement behind the fleet chain, mode-set edit
// order, the drain parser, learned-pair lines, and the nft transaction (unchanged chains are not
// rewritten, departed addresses' chains go, a re-learn without timeout refresh is add+delete+add).
import t from 'tap'
import { normalizeState } from '../../src/enforce/container-desired.js'
import { parseIptablesSave } from '../../src/enforce/iptables-rules.js'
import { chainRules, ctNames, learnLine, learnedSetOf, learnedSetRe, modeEdits, modeMembers, parseDrained, planCtRules } from '../../src/enforce/container-ipt-text.js'
import { learnUnits, parseChains, parseSeen, planApply } from '../../src/enforce/container-nft-text.js'
import { mergeAdds } from '../../src/enforce/learned-writer.js'

const ID = 'ab'.repeat(32)
const SINK = { v4: ['172.30.0.1'], v6: ['fd00:30::1'], port: 53 }
const n = ctNames()
const state = (mode: 'enforce' | 'alert' | 'quarantine' = 'enforce', ports: number[] = []) =>
  normalizeState({ containers: [{ id: ID, addresses: ['172.30.0.2', 'fd00:30::2'], mode, nets: [{ cidr: '198.51.100.16/28', ...(ports.length ? { ports } : {}) }] }], sinkhole: SINK })

const table = (text: string) => parseIptablesSave(`*filter\n${text}\nCOMMIT\n`)

t.test('iptables jumps: right behind the fleet jump, moved when something else is in front', async (t) => {
  const want = chainRules(n, state(), 4)
  const fresh = planCtRules(table(':INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n:EGRESS-GUARD - [0:0]\n-A DOCKER-USER -j EGRESS-GUARD\n-A DOCKER-USER -j RETURN'), n, want)
  t.ok(fresh.lines.includes('-I DOCKER-USER 2 -j EGRESS-GUARD-CT'), 'after the fleet jump')
  t.ok(fresh.lines.includes('-I INPUT 1 -j EGRESS-GUARD-CT'))
  t.equal(fresh.lines.filter((l) => l.startsWith(':')).length, 4, 'all four chains declared')
  const rules = [...want].flatMap(([c, rs]) => rs.map((r) => `-A ${c} ${r}`)).join('\n')
  const decl = [...want.keys()].map((c) => `:${c} - [0:0]`).join('\n')
  const settled = `:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n:EGRESS-GUARD - [0:0]\n${decl}\n-A INPUT -j EGRESS-GUARD-CT\n-A DOCKER-USER -j EGRESS-GUARD\n-A DOCKER-USER -j EGRESS-GUARD-CT\n-A DOCKER-USER -j RETURN\n${rules}`
  t.same(planCtRules(table(settled), n, want), { lines: [], actions: [] }, 'nothing to do when it matches')
  // Ours first, the fleet's second (the fleet applied after): still fine, nothing else in front.
  const swapped = settled.replace('-A DOCKER-USER -j EGRESS-GUARD\n-A DOCKER-USER -j EGRESS-GUARD-CT', '-A DOCKER-USER -j EGRESS-GUARD-CT\n-A DOCKER-USER -j EGRESS-GUARD')
  t.same(planCtRules(table(swapped), n, want).lines, [], 'behind or in front of the fleet jump: both only RETURN or REJECT')
  const foreign = settled.replace('-A DOCKER-USER -j EGRESS-GUARD\n', '-A DOCKER-USER -d 203.0.113.9/32 -j ACCEPT\n-A DOCKER-USER -j EGRESS-GUARD\n')
  t.same(planCtRules(table(foreign), n, want).lines, ['-D DOCKER-USER -j EGRESS-GUARD-CT', '-I DOCKER-USER 1 -j EGRESS-GUARD-CT'], 'a foreign rule in front: moved before it')
  const changed = planCtRules(table(settled), n, chainRules(n, state('enforce', [443]), 4))
  t.same(changed.lines.filter((l) => l.startsWith(':')), [':EGRESS-GUARD-CTH - [0:0]'], 'only the changed chain is declared (flushed)')
  const noDocker = planCtRules(table(':INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]'), n, want)
  t.ok(noDocker.lines.includes('-I FORWARD 1 -j EGRESS-GUARD-CT'), 'FORWARD without Docker')
  const dockerLater = planCtRules(table(`${settled}\n-A FORWARD -j EGRESS-GUARD-CT`), n, want)
  t.same(dockerLater.lines, ['-D FORWARD -j EGRESS-GUARD-CT'], 'DOCKER-USER carries it once Docker is there')
})

t.test('iptables rules: per-address matches, ports in multiport chunks of 15, none for quarantine', async (t) => {
  const ports = Array.from({ length: 20 }, (_, i) => 1000 + i)
  const held = chainRules(n, state('enforce', ports), 4).get(n.held)!
  const key = state().held[0]!.key
  t.ok(held.includes(`-s 172.30.0.2/32 -m set --match-set egress-guard-ct-l-${key} dst -j RETURN`))
  t.ok(held.includes(`-s 172.30.0.2/32 -m set --match-set egress-guard-ct-p-${key} dst,dst -j RETURN`))
  t.equal(held.filter((r) => r.includes('multiport')).length, 4, 'tcp and udp, 15 + 5 ports each')
  t.equal(held.at(-1), `-g ${n.no}`)
  t.notOk(chainRules(n, state('quarantine'), 4).get(n.held)!.some((r) => r.startsWith('-s ')), 'a quarantined address has no accept rules')
  const v6 = chainRules(n, state(), 6)
  t.ok(v6.get(n.quar)!.some((r) => r.includes('--icmpv6-type 135')), 'v6: neighbour discovery passes')
  t.ok(learnedSetRe('egress-guard').test(`egress-guard-ct-l-${key}`))
  t.notOk(learnedSetRe('egress-guard').test('egress-guard-ct-enforce4'))
})

t.test('iptables: learned lines, mode edits (adds first), drained members', async (t) => {
  const any = { ip: '172.30.0.2', family: 4 as const, dst: '198.51.100.10', ttl: 60 }
  const ported = { ip: 'fd00::2', family: 6 as const, dst: '2001:db8::1', proto: 'udp' as const, port: 443, ttl: 5 }
  t.equal(learnLine(learnedSetOf(n, 'k', any), any), 'add egress-guard-ct-l-k 198.51.100.10 timeout 60')
  t.equal(learnLine(learnedSetOf(n, 'k', ported), ported), 'add egress-guard-ct-p-k 2001:db8::1,udp:443 timeout 5')
  const have = modeMembers(n, state('enforce'))
  const want = modeMembers(n, state('quarantine'))
  const edits = modeEdits(want, have)
  t.same(edits, ['add egress-guard-ct-quarantine4 172.30.0.2', 'add egress-guard-ct-quarantine6 fd00:30::2', 'del egress-guard-ct-enforce4 172.30.0.2', 'del egress-guard-ct-enforce6 fd00:30::2'])
  const text = [
    'create egress-guard-ct-drain-deny4 hash:ip,port,ip family inet hashsize 1024 maxelem 65536 timeout 300',
    'add egress-guard-ct-drain-deny4 172.30.0.2,tcp:8080,198.51.100.10 timeout 297',
    'add egress-guard-ct-drain-quar4 172.30.0.3,icmp:echo-request,198.51.100.11 timeout 2',
    'add egress-guard-ct-drain-alert6 fd00:30::2,udp:53,2001:db8:1::53 timeout 250',
    'add someone-else 1.2.3.4,tcp:1,5.6.7.8',
  ].join('\n')
  t.same(parseDrained(n, text), [
    { kind: 'refused', src: '172.30.0.2', dst: '198.51.100.10', proto: 'tcp', port: 8080 },
    { kind: 'quarantine', src: '172.30.0.3', dst: '198.51.100.11', proto: 'icmp' },
    { kind: 'alerted', src: 'fd00:30::2', dst: '2001:db8:1::53', proto: 'udp', port: 53 },
  ])
})

t.test('nft: an unchanged state rewrites nothing; a departed address loses its chain', async (t) => {
  const s = state()
  const first = planApply({ table: 'eg_ct', state: s, existing: new Map(), written: new Map(), mapWritten: {} })
  t.ok(first.changed)
  t.match(first.script, /add set inet eg_ct l_[0-9a-f]{10} \{ type ipv4_addr; flags timeout; size 1048576; \}/)
  t.match(first.script, /add element inet eg_ct mode4 \{ 172\.30\.0\.2 : goto c_[0-9a-f]{10} \}/)
  const existing = new Map([...first.written.keys()].map((c) => [c, c === 'forward' || c === 'input' ? { hook: c, prio: -5 } : {}]))
  const second = planApply({ table: 'eg_ct', state: s, existing, written: first.written, mapWritten: first.mapWritten })
  t.notOk(second.changed, 'nothing changed')
  t.notMatch(second.script, /flush chain|flush map|flush set|delete/, 'no flush, nothing deleted; the declarations are idempotent')
  const quarantined = planApply({ table: 'eg_ct', state: state('quarantine'), existing, written: first.written, mapWritten: first.mapWritten })
  t.match(quarantined.script, /flush map inet eg_ct mode4\nadd element inet eg_ct mode4 \{ 172\.30\.0\.2 : goto quar \}/)
  t.notMatch(quarantined.script, /flush set/, 'learned sets are never flushed by apply')
  const gone = planApply({ table: 'eg_ct', state: normalizeState({ containers: [], sinkhole: SINK }), existing, written: first.written, mapWritten: first.mapWritten })
  t.equal(gone.departedKeys.length, 2)
  t.match(gone.script, /flush chain inet eg_ct c_[0-9a-f]{10}\ndelete chain inet eg_ct c_/)
  t.notMatch(gone.script, /delete set/, 'their sets go later, through the writer')
  t.same([...parseChains('{"nftables":[{"chain":{"family":"inet","table":"eg_ct","name":"forward","hook":"forward","prio":-5}},{"chain":{"family":"inet","table":"other","name":"x"}}]}', 'eg_ct')], [['forward', { hook: 'forward', prio: -5 }]])
})

t.test('nft: learned-pair units, with and without timeout refresh', async (t) => {
  const pairs = [
    { key: 'k1', p: { ip: '172.30.0.2', family: 4 as const, dst: '198.51.100.10', ttl: 60 } },
    { key: 'k1', p: { ip: '172.30.0.2', family: 4 as const, dst: '198.51.100.11', proto: 'tcp' as const, port: 443, ttl: 30 } },
    { key: 'k1', p: { ip: '172.30.0.2', family: 4 as const, dst: '198.51.100.12', ttl: 60 } },
  ]
  t.same(learnUnits('T', pairs, true), ['add element inet T l_k1 { 198.51.100.10 timeout 60s, 198.51.100.12 timeout 60s }', 'add element inet T p_k1 { tcp . 443 . 198.51.100.11 timeout 30s }'])
  t.same(learnUnits('T', pairs.slice(1, 2), false), ['add element inet T p_k1 { tcp . 443 . 198.51.100.11 timeout 30s }; delete element inet T p_k1 { tcp . 443 . 198.51.100.11 }; add element inet T p_k1 { tcp . 443 . 198.51.100.11 timeout 30s }'])
  t.equal(learnUnits('T', pairs, true, 1).length, 3, 'chunked')
})

t.test('nft: seen elements -> events and the elements to drain', async (t) => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: {} },
      {
        set: {
          name: 'seen4',
          elem: [
            { elem: { val: { concat: ['172.30.0.2', 'tcp', 8080, '198.51.100.10', 1] }, expires: 299 } },
            { elem: { val: { concat: ['172.30.0.3', 'icmp', 0, '198.51.100.11', 3] }, expires: 10 } },
            { elem: { val: { concat: ['172.30.0.4', 'udp', 53, '198.51.100.53', 2] } } },
          ],
        },
      },
    ],
  })
  const r = parseSeen(json)
  t.same(r.events, [
    { kind: 'refused', src: '172.30.0.2', dst: '198.51.100.10', proto: 'tcp', port: 8080 },
    { kind: 'quarantine', src: '172.30.0.3', dst: '198.51.100.11', proto: 'icmp' },
    { kind: 'alerted', src: '172.30.0.4', dst: '198.51.100.53', proto: 'udp', port: 53 },
  ])
  t.same(r.elements, ['172.30.0.2 . tcp . 8080 . 198.51.100.10 . 1', '172.30.0.3 . icmp . 0 . 198.51.100.11 . 3', '172.30.0.4 . udp . 53 . 198.51.100.53 . 2'])
})

t.test('nft writer: consecutive adds merge per set; anything else keeps its place', async (t) => {
  t.same(
    mergeAdds([
      'add element inet T l_a { 1.1.1.1 timeout 5s }',
      'add element inet T p_a { tcp . 443 . 1.1.1.2 timeout 5s }',
      'add element inet T l_a { 1.1.1.3 timeout 9s }',
      'flush set inet T l_a; flush set inet T p_a',
      'add element inet T l_a { 1.1.1.4 timeout 5s }',
      'add element inet T l_a { 1.1.1.5 timeout 5s }; delete element inet T l_a { 1.1.1.5 }; add element inet T l_a { 1.1.1.5 timeout 5s }',
    ]),
    [
      'add element inet T l_a { 1.1.1.1 timeout 5s, 1.1.1.3 timeout 9s }',
      'add element inet T p_a { tcp . 443 . 1.1.1.2 timeout 5s }',
      'flush set inet T l_a; flush set inet T p_a',
      'add element inet T l_a { 1.1.1.4 timeout 5s }',
      'add element inet T l_a { 1.1.1.5 timeout 5s }; delete element inet T l_a { 1.1.1.5 }; add element inet T l_a { 1.1.1.5 timeout 5s }',
    ],
  )
})
