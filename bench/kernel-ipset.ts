// Kernel apply speed, measured in a throwaway namespace against baselines in the same run:
// 100,000 IPv4 entries via the iptables backend vs a bare `ipset restore` of the same entries
// (goal <= 1.5x) and vs one `ipset add` process per entry (extrapolated from 5,000; goal >= 50x);
// one entry added/removed on a 100,000-entry policy (goal < 50 ms); nftables backend vs bare `nft -f`.
// Usage: npx tsx bench/kernel-ipset.ts [--entries 100000] [--singles 5000] [--runs 5] [--quick]
import { spawnSync } from 'node:child_process'
import { run } from '../src/enforce/exec.js'
import { createEnforcer } from '../src/enforce/factory.js'
import { setSize } from '../src/enforce/ipset-script.js'
import type { DesiredState } from '../src/enforce/types.js'
import { argFlag, argNum, enterNamespace, fmt, hosts4, median, time } from './kernel-common.js'

if (enterNamespace('ips')) {
  const quick = argFlag('quick')
  const N = argNum('entries', quick ? 10_000 : 100_000)
  const SINGLES = argNum('singles', quick ? 500 : 5_000)
  const RUNS = argNum('runs', quick ? 3 : 5)
  const entries = hosts4(N)
  const state = (block: string[]): DesiredState => ({ version: 1, block: { v4: block, v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] } })
  const D = state(entries)
  const extra = hosts4(1, 7)[0]!
  const size = setSize(N)
  const bareScript = [`create bare hash:net family inet hashsize ${size.hashsize} maxelem ${size.maxelem}`, ...entries.map((e) => `add bare ${e}`)].join('\n') + '\n'

  const r = { bare: [] as number[], apply: [] as number[], replace: [] as number[], add1: [] as number[], del1: [] as number[], nftBare: [] as number[], nftApply: [] as number[], nftAdd1: [] as number[], nftDel1: [] as number[] }
  for (let i = 0; i < RUNS; i++) {
    r.bare.push(await time(() => run('ipset', ['restore'], { input: bareScript })))
    await run('ipset', ['destroy', 'bare'])
    const e = createEnforcer('iptables', {})
    r.apply.push(await time(() => e.apply(D))) // from nothing: sets, chain and jumps
    r.add1.push(await time(() => e.apply(state([...entries, extra]))))
    r.del1.push(await time(() => e.apply(D)))
    r.replace.push(await time(() => e.apply(state(hosts4(N, 3))))) // every member changes: build beside + swap
    await e.remove()
  }

  // One process per entry, the way it is scripted by hand (`for ip in ...; do ipset add ...; done`).
  // spawnSync is node's cheapest spawn, so the baseline is not inflated by our tooling.
  await run('ipset', ['create', 'byhand', 'hash:net', 'family', 'inet', 'maxelem', String(size.maxelem)])
  const t0 = performance.now()
  for (const e of entries.slice(0, SINGLES)) {
    const s = spawnSync('ipset', ['add', 'byhand', e])
    if (s.status !== 0) throw new Error(`ipset add failed: ${s.stderr}`)
  }
  const perEntry = (performance.now() - t0) / SINGLES
  await run('ipset', ['destroy', 'byhand'])

  // nftables: our one-transaction apply vs a bare `nft -f` of the same table, set and elements.
  const ips = entries.map((e) => e.slice(0, -3))
  const nftBare = ['add table inet bare', 'add set inet bare s { type ipv4_addr; flags interval; auto-merge; }']
  for (let i = 0; i < ips.length; i += 4096) nftBare.push(`add element inet bare s { ${ips.slice(i, i + 4096).join(', ')} }`)
  const nftScript = nftBare.join('\n') + '\n'
  for (let i = 0; i < RUNS; i++) {
    r.nftBare.push(await time(() => run('nft', ['-f', '-'], { input: nftScript })))
    await run('nft', ['delete', 'table', 'inet', 'bare'])
    const e = createEnforcer('nftables', {})
    r.nftApply.push(await time(() => e.apply(D)))
    r.nftAdd1.push(await time(() => e.apply(state([...entries, extra]))))
    r.nftDel1.push(await time(() => e.apply(D)))
    await e.remove()
  }

  const m = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)])) as Record<keyof typeof r, number>
  const handN = perEntry * N
  console.log(`kernel-ipset: ${N} IPv4 entries, median of ${RUNS} runs (per-entry baseline: ${SINGLES} processes, extrapolated)`)
  console.log(`  bare ipset restore                 ${fmt(m.bare)}`)
  console.log(`  iptables backend, full apply       ${fmt(m.apply)}   ratio ${(m.apply / m.bare).toFixed(2)}x bare (goal <= 1.5x)`)
  console.log(`  iptables backend, replace all      ${fmt(m.replace)}   ratio ${(m.replace / m.bare).toFixed(2)}x bare (build beside + swap)`)
  console.log(`  one ipset add process per entry    ${fmt(handN)} (${perEntry.toFixed(2)} ms/entry)   ours is ${(handN / m.apply).toFixed(0)}x faster (goal >= 50x)`)
  console.log(`  add one entry to ${N}          ${fmt(m.add1)} (goal < 50 ms)`)
  console.log(`  remove one entry from ${N + 1}     ${fmt(m.del1)} (goal < 50 ms)`)
  console.log(`  bare nft -f                        ${fmt(m.nftBare)}`)
  console.log(`  nftables backend, full apply       ${fmt(m.nftApply)}   ratio ${(m.nftApply / m.nftBare).toFixed(2)}x bare`)
  console.log(`  nftables: add one entry            ${fmt(m.nftAdd1)}   remove one: ${fmt(m.nftDel1)} (the set is re-filled in one transaction)`)
  console.log(JSON.stringify({ entries: N, runs: RUNS, medianMs: m, perEntryMs: perEntry }))
}
