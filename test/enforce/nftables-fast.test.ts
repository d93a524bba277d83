// The nftables backend's read-free edit path and its two-set layout on a real kernel: an edit on top of
// state this enforcer wrote is exactly one `nft -f -` (spawns counted through a logging wrapper on
// PATH), drift is left to verify(), a vanished table falls back to a full apply, and a table in the
// older single-interval-set layout is upgraded in place.
import t from 'tap'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs, sh } from '../helpers/netns.js'
import { createEnforcer } from '../../src/enforce/factory.js'
import type { DesiredState } from '../../src/enforce/types.js'

const state = (block4: string[]): DesiredState => ({
  version: 1,
  block: { v4: block4, v6: ['2001:db8:b::/48', '2001:db8:c::5/128'] },
  alert: { v4: ['198.51.100.0/24'], v6: [] },
  allow: { v4: ['192.0.2.10/32'], v6: [] },
})
const BASE = ['192.0.2.0/24', '198.51.100.77/32']

const has = (ns: string, set: string, ip: string): boolean => {
  try {
    inNs(ns, 'nft', ['get', 'element', 'inet', 'egress_guard', set, `{ ${ip} }`])
    return true
  } catch {
    return false
  }
}

t.test('nftables backend: read-free edits', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('nft'))) return
  const dir = mkdtempSync(join(tmpdir(), `eg-nfast-${process.pid}-`))
  const logFile = join(dir, 'spawns.log')
  const real = sh('sh', ['-c', 'command -v nft']).trim()
  writeFileSync(join(dir, 'nft'), `#!/bin/bash\necho "nft $*" >> ${logFile}\nexec ${real} "$@"\n`)
  chmodSync(join(dir, 'nft'), 0o755)
  const oldPath = process.env.PATH
  process.env.PATH = `${dir}:${oldPath}`
  t.teardown(() => {
    process.env.PATH = oldPath
    rmSync(dir, { recursive: true, force: true })
  })
  const counting = async <T>(fn: () => Promise<T>): Promise<{ r: T; calls: string[] }> => {
    rmSync(logFile, { force: true })
    const r = await fn()
    let calls: string[] = []
    try {
      calls = readFileSync(logFile, 'utf8').split('\n').filter(Boolean)
    } catch {
      /* nothing spawned */
    }
    return { r, calls }
  }

  t.test('addresses in the hash set, networks in the interval set; edits are one transaction', async (t) => {
    const ns = makeNs(t, 'na')
    const e = createEnforcer('nftables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    const first = await counting(() => e.apply(state(BASE)))
    t.ok(first.calls.some((c) => c.startsWith('nft -j list')), 'first apply reads the table')
    t.ok(has(ns, 'block4', '198.51.100.77') && has(ns, 'block4net', '192.0.2.5'), 'address and network each in their set')
    t.notOk(has(ns, 'block4', '192.0.2.5'), 'the hash set holds addresses only')
    const add = await counting(() => e.apply(state([...BASE, '203.0.113.99/32'])))
    t.same(add.calls, ['nft -f -'], 'add: one process, no read')
    t.match(add.r, { changed: true, added: 1, removed: 0 })
    t.ok(has(ns, 'block4', '203.0.113.99'))
    const del = await counting(() => e.apply(state(BASE)))
    t.same(del.calls, ['nft -f -'], 'delete: one process')
    t.match(del.r, { changed: true, added: 0, removed: 1 })
    t.notOk(has(ns, 'block4', '203.0.113.99'))
    t.ok(has(ns, 'block4', '198.51.100.77'), 'others stay')
    const same = await counting(() => e.apply(state(BASE)))
    t.same(same.calls, [], 'identical: no process')
    t.same(await e.verify(), [])
  })

  t.test('drift the fast path does not see: verify reports it, the next apply repairs', async (t) => {
    const ns = makeNs(t, 'nd')
    const e = createEnforcer('nftables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    await e.apply(state(BASE))
    inNs(ns, 'nft', ['delete', 'element', 'inet', 'egress_guard', 'block4', '{ 198.51.100.77 }'])
    const plus = state([...BASE, '203.0.113.99/32'])
    t.same((await counting(() => e.apply(plus))).calls, ['nft -f -'], 'trusted: one process')
    t.notOk(has(ns, 'block4', '198.51.100.77'), 'by design not noticed here')
    t.match(await e.verify(), [{ kind: 'set-members' }])
    const repair = await counting(() => e.apply(plus))
    t.ok(repair.calls.some((c) => c.startsWith('nft -j list')), 'after drift the apply reads again')
    t.ok(has(ns, 'block4', '198.51.100.77'), 'repaired')
    t.same(await e.verify(), [])
  })

  t.test('table deleted behind our back: the edit fails and the full path rebuilds', async (t) => {
    const ns = makeNs(t, 'nx')
    const e = createEnforcer('nftables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    await e.apply(state(BASE))
    inNs(ns, 'nft', ['delete', 'table', 'inet', 'egress_guard'])
    const r = await counting(() => e.apply(state([...BASE, '203.0.113.99/32'])))
    t.equal(r.calls[0], 'nft -f -', 'tried the one-transaction edit first')
    t.ok(r.calls.length > 1, 'then fell back')
    t.ok(has(ns, 'block4', '203.0.113.99') && has(ns, 'block4', '198.51.100.77') && has(ns, 'block4net', '192.0.2.1'), 'everything back')
    t.same(await e.verify(), [])
  })

  t.test('a table in the older layout (addresses in the interval set) is upgraded in place', async (t) => {
    const ns = makeNs(t, 'nu')
    inNs(ns, 'nft', ['-f', '-'], [
      'add table inet egress_guard',
      'add set inet egress_guard block4 { type ipv4_addr; flags interval; auto-merge; }',
      'add element inet egress_guard block4 { 192.0.2.0/24, 198.51.100.77 }',
      'add chain inet egress_guard guard',
      'add rule inet egress_guard guard ip daddr @block4 counter reject comment "eg:old"',
    ].join('\n') + '\n')
    const e = createEnforcer('nftables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    t.ok((await e.verify()).some((d) => d.kind === 'set-missing'), 'the old layout is drift')
    await e.apply(state(BASE))
    t.same(await e.verify(), [], 'upgraded: no drift')
    t.match(inNs(ns, 'nft', ['list', 'set', 'inet', 'egress_guard', 'block4']), /type ipv4_addr\n(?![\s\S]*flags interval)/, 'block4 is a hash set now')
    t.ok(has(ns, 'block4', '198.51.100.77') && has(ns, 'block4net', '192.0.2.1'))
  })
})
