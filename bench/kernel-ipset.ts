// Kernel apply speed, measured in a throwaway namespace against baselines in the same run:
// 100,000 IPv4 entries via the iptables backend vs a bare `ipset restore` of the same entries
// (goal <= 1.5x) and vs one `ipset add` process per entry (extrapolated from 5,000; goal >= 50x);
// one entry added/removed on a 100,000-entry policy (goal < 50 ms); nftables backend vs bare `nft -f`
// of the same addresses into an interval set (the old layout) and into a hash set (the layout we use).
// Each figure is given as wall time and as CPU time (ours + the tools we spawn), because on a shared
// 2-core machine wall time is mostly time spent waiting for a core.
// Usage: npx tsx bench/kernel-ipset.ts [--entries 100000] [--singles 5000] [--runs 5] [--edits 10] [--quick]
import { spawnSync } from 'node:child_process'
import { run } from '../src/enforce/exec.js'
import { createEnforcer } from '../src/enforce/factory.js'
import { setSize } from '../src/enforce/ipset-script.js'
import type { DesiredState } from '../src/enforce/types.js'
import { argFlag, argNum, cpuMs, enterNamespace, fmt, hosts4, loadAvg, median, timeCpu } from './kernel-common.js'

if (enterNamespace('ips')) {
  const quick = argFlag('quick')
  const N = argNum('entries', quick ? 10_000 : 100_000)
  const SINGLES = argNum('singles', quick ? 500 : 5_000)
  const RUNS = argNum('runs', quick ? 3 : 5)
  const EDITS = argNum('edits', quick ? 3 : 10)
  const load0 = loadAvg()
  const entries = hosts4(N)
  const state = (block: string[]): DesiredState => ({ version: 1, block: { v4: block, v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] } })
  const D = state(entries)
  const plus = state([...entries, hosts4(1, 7)[0]!])
  const size = setSize(N)
  const bareScript = [`create bare hash:net family inet hashsize ${size.hashsize} maxelem ${size.maxelem}`, ...entries.map((e) => `add bare ${e}`)].join('\n') + '\n'

  type M = { wall: number[]; cpu: number[] }
  const keys = ['bare', 'apply', 'replace', 'add1', 'del1', 'nftBare', 'nftBareHash', 'nftApply', 'nftAdd1', 'nftDel1'] as const
  const r = Object.fromEntries(keys.map((k) => [k, { wall: [], cpu: [] }])) as unknown as Record<(typeof keys)[number], M>
  const rec = (m: M, x: { wall: number; cpu: number }): void => {
    m.wall.push(x.wall)
    m.cpu.push(x.cpu)
  }
  for (let i = 0; i < RUNS; i++) {
    rec(r.bare, await timeCpu(() => run('ipset', ['restore'], { input: bareScript })))
    await run('ipset', ['destroy', 'bare'])
    const e = createEnforcer('iptables', {})
    rec(r.apply, await timeCpu(() => e.apply(D))) // from nothing: sets, chain and jumps
    for (let j = 0; j < EDITS; j++) {
      rec(r.add1, await timeCpu(() => e.apply(plus)))
      rec(r.del1, await timeCpu(() => e.apply(D)))
    }
    rec(r.replace, await timeCpu(() => e.apply(state(hosts4(N, 3))))) // every member changes: build beside + swap
    await e.remove()
  }

  // One process per entry, the way it is scripted by hand (`for ip in ...; do ipset add ...; done`).
  // spawnSync is node's cheapest spawn, so the baseline is not inflated by our tooling.
  await run('ipset', ['create', 'byhand', 'hash:net', 'family', 'inet', 'maxelem', String(size.maxelem)])
  const c0 = cpuMs()
  const t0 = performance.now()
  for (const e of entries.slice(0, SINGLES)) {
    const s = spawnSync('ipset', ['add', 'byhand', e])
    if (s.status !== 0) throw new Error(`ipset add failed: ${s.stderr}`)
  }
  const perEntry = (performance.now() - t0) / SINGLES
  const perEntryCpu = (cpuMs() - c0) / SINGLES
  await run('ipset', ['destroy', 'byhand'])

  // nftables: our one-transaction apply vs a bare `nft -f` of the same table, set and elements.
  const ips = entries.map((e) => e.slice(0, -3))
  const nftBare = ['add table inet bare', 'add set inet bare s { type ipv4_addr; flags interval; auto-merge; }']
  for (let i = 0; i < ips.length; i += 4096) nftBare.push(`add element inet bare s { ${ips.slice(i, i + 4096).join(', ')} }`)
  const nftScript = nftBare.join('\n') + '\n'
  const nftHash = ['add table inet bare', 'add set inet bare s { type ipv4_addr; }']
  for (let i = 0; i < ips.length; i += 4096) nftHash.push(`add element inet bare s { ${ips.slice(i, i + 4096).join(', ')} }`)
  const nftHashScript = nftHash.join('\n') + '\n'
  for (let i = 0; i < RUNS; i++) {
    rec(r.nftBare, await timeCpu(() => run('nft', ['-f', '-'], { input: nftScript })))
    await run('nft', ['delete', 'table', 'inet', 'bare'])
    rec(r.nftBareHash, await timeCpu(() => run('nft', ['-f', '-'], { input: nftHashScript })))
    await run('nft', ['delete', 'table', 'inet', 'bare'])
    const e = createEnforcer('nftables', {})
    rec(r.nftApply, await timeCpu(() => e.apply(D)))
    for (let j = 0; j < EDITS; j++) {
      rec(r.nftAdd1, await timeCpu(() => e.apply(plus)))
      rec(r.nftDel1, await timeCpu(() => e.apply(D)))
    }
    await e.remove()
  }

  const m = Object.fromEntries(keys.map((k) => [k, { wall: median(r[k].wall), cpu: median(r[k].cpu) }])) as Record<(typeof keys)[number], { wall: number; cpu: number }>
  const both = (x: { wall: number; cpu: number }): string => `${fmt(x.wall).padStart(9)} wall ${fmt(x.cpu).padStart(9)} cpu`
  const ratio = (a: { wall: number; cpu: number }, b: { wall: number; cpu: number }): string => `${(a.wall / b.wall).toFixed(2)}x wall, ${(a.cpu / b.cpu).toFixed(2)}x cpu`
  console.log(`kernel-ipset: ${N} IPv4 entries, medians of ${RUNS} runs (${EDITS} edits each); load average ${load0} -> ${loadAvg()}`)
  console.log(`  bare ipset restore               ${both(m.bare)}`)
  console.log(`  iptables backend, full apply     ${both(m.apply)}   ${ratio(m.apply, m.bare)} bare (goal <= 1.5x)`)
  console.log(`  iptables backend, replace all    ${both(m.replace)}   ${ratio(m.replace, m.bare)} bare (build beside + swap)`)
  const hand = { wall: perEntry * N, cpu: perEntryCpu * N }
  console.log(`  ipset add per entry (x${N})     ${both(hand)}   (${perEntry.toFixed(2)} ms/entry from ${SINGLES}); ours ${(hand.wall / m.apply.wall).toFixed(0)}x faster wall, ${(hand.cpu / m.apply.cpu).toFixed(0)}x cpu (goal >= 50x)`)
  console.log(`  add one entry to ${N}        ${both(m.add1)}   (goal < 50 ms)`)
  console.log(`  remove one entry              ${both(m.del1)}   (goal < 50 ms)`)
  console.log(`  bare nft -f, interval set        ${both(m.nftBare)}`)
  console.log(`  bare nft -f, hash set            ${both(m.nftBareHash)}`)
  console.log(`  nftables backend, full apply     ${both(m.nftApply)}   ${ratio(m.nftApply, m.nftBareHash)} bare hash set, ${ratio(m.nftApply, m.nftBare)} bare interval set`)
  console.log(`  nftables add one entry           ${both(m.nftAdd1)}   (goal < 50 ms; one add element, no read)`)
  console.log(`  nftables remove one entry        ${both(m.nftDel1)}   (goal < 50 ms)`)
  console.log(JSON.stringify({ entries: N, runs: RUNS, load: [load0, loadAvg()], median: m, perEntry: { wall: perEntry, cpu: perEntryCpu } }))
}
