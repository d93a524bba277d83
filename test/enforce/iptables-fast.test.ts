// The iptables backend's one-process edit path: an edit on top of state this enforcer wrote spawns
// exactly one `ipset -exist restore` (counted through logging wrappers on PATH), drift it cannot see
// is left to verify(), which sends the next apply down the full (reading, repairing) path.
import t from 'tap'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs, sh } from '../helpers/netns.js'
import { createEnforcer } from '../../src/enforce/factory.js'
import type { DesiredState } from '../../src/enforce/types.js'

const TOOLS = ['ipset', 'iptables-save', 'ip6tables-save', 'iptables-restore', 'ip6tables-restore']

const state = (block4: string[]): DesiredState => ({
  version: 1,
  block: { v4: block4, v6: ['2001:db8:b::/48'] },
  alert: { v4: ['198.51.100.0/24'], v6: [] },
  allow: { v4: ['192.0.2.10/32'], v6: [] },
})
const BASE = ['192.0.2.0/24', '198.51.100.77/32']

const has = (ns: string, set: string, ip: string): boolean => {
  try {
    inNs(ns, 'ipset', ['test', set, ip])
    return true
  } catch {
    return false
  }
}

t.test('iptables backend: one-process edits', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables-restore'), capabilities.tool('ip6tables-restore'))) return
  // Wrappers that log each spawn then exec the real tool (argv[0] keeps the tool name, which the
  // xtables multi-call binary needs). Only this test process's PATH changes.
  const dir = mkdtempSync(join(tmpdir(), `eg-fast-${process.pid}-`))
  const logFile = join(dir, 'spawns.log')
  for (const tool of TOOLS) {
    const real = sh('sh', ['-c', `command -v ${tool}`]).trim()
    writeFileSync(join(dir, tool), `#!/bin/bash\necho "${tool} $*" >> ${logFile}\nexec -a ${tool} ${real} "$@"\n`)
    chmodSync(join(dir, tool), 0o755)
  }
  const oldPath = process.env.PATH
  process.env.PATH = `${dir}:${oldPath}`
  t.teardown(() => {
    process.env.PATH = oldPath
    rmSync(dir, { recursive: true, force: true })
  })
  const spawns = (): string[] => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').filter(Boolean)
    } catch {
      return []
    }
  }
  const counting = async <T>(fn: () => Promise<T>): Promise<{ r: T; calls: string[] }> => {
    rmSync(logFile, { force: true })
    const r = await fn()
    return { r, calls: spawns() }
  }

  t.test('first apply reads; an add and a delete are one ipset restore each; identical is none', async (t) => {
    const ns = makeNs(t, 'fa')
    const e = createEnforcer('iptables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    const first = await counting(() => e.apply(state(BASE)))
    t.ok(first.calls.some((c) => c.startsWith('iptables-save')), 'first apply reads the kernel')
    const add = await counting(() => e.apply(state([...BASE, '203.0.113.99/32'])))
    t.same(add.calls, ['ipset -exist restore'], 'add: exactly one process')
    t.match(add.r, { changed: true, added: 1, removed: 0 })
    t.ok(has(ns, 'egress-guard-block4', '203.0.113.99'), 'the added entry is in the kernel')
    const del = await counting(() => e.apply(state(BASE)))
    t.same(del.calls, ['ipset -exist restore'], 'delete: exactly one process')
    t.match(del.r, { changed: true, added: 0, removed: 1 })
    t.notOk(has(ns, 'egress-guard-block4', '203.0.113.99'), 'the removed entry is gone')
    t.ok(has(ns, 'egress-guard-block4', '198.51.100.77'), 'others stay')
    const same = await counting(() => e.apply(state(BASE)))
    t.same(same.calls, [], 'identical state: no process at all')
    t.equal(same.r.changed, false)
    t.same(await e.verify(), [], 'the kernel matches')
  })

  t.test('drift the fast path does not see is found by verify and repaired by the next apply', async (t) => {
    const ns = makeNs(t, 'fd')
    const e = createEnforcer('iptables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    await e.apply(state(BASE))
    inNs(ns, 'ipset', ['del', 'egress-guard-block4', '198.51.100.77'])
    const plus = state([...BASE, '203.0.113.99/32'])
    const edit = await counting(() => e.apply(plus))
    t.same(edit.calls, ['ipset -exist restore'], 'trusted: one process, no read-back')
    t.notOk(has(ns, 'egress-guard-block4', '198.51.100.77'), 'by design the fast path did not notice the external delete')
    const drift = await e.verify()
    t.same(drift.map((d) => d.kind), ['set-members'], 'verify reports it')
    const repair = await counting(() => e.apply(plus))
    t.ok(repair.calls.some((c) => c.startsWith('ipset list')), 'after drift the apply reads the kernel again')
    t.ok(repair.r.changed)
    t.ok(has(ns, 'egress-guard-block4', '198.51.100.77'), 'repaired')
    t.same(await e.verify(), [])
    const after = await counting(() => e.apply(state(BASE)))
    t.same(after.calls, ['ipset -exist restore'], 'trusted again after the repair')
  })

  t.test('a set destroyed behind our back: the one-process edit fails and the full path rebuilds', async (t) => {
    const ns = makeNs(t, 'fx')
    const e = createEnforcer('iptables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    await e.apply(state(BASE))
    inNs(ns, 'iptables', ['-F', 'EGRESS-GUARD']) // a set referenced by a rule cannot be destroyed
    inNs(ns, 'ipset', ['destroy', 'egress-guard-block4'])
    const r = await counting(() => e.apply(state([...BASE, '203.0.113.99/32'])))
    t.ok(r.calls.length > 1 && r.calls[0] === 'ipset -exist restore', 'tried one process, then fell back')
    t.ok(has(ns, 'egress-guard-block4', '203.0.113.99') && has(ns, 'egress-guard-block4', '198.51.100.77'), 'set rebuilt with every member')
    t.same(await e.verify(), [], 'chain repaired too')
  })

  t.test('growing past the set maxelem takes the full path (build beside + swap)', async (t) => {
    const ns = makeNs(t, 'fg')
    const e = createEnforcer('iptables', { netns: ns })
    t.teardown(() => e.remove().catch(() => undefined))
    const many = (n: number): string[] => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`)
    await e.apply(state(many(30_000))) // maxelem 65536
    const grown = await counting(() => e.apply(state(many(36_000)))) // needs maxelem 131072
    t.ok(grown.calls.some((c) => c.startsWith('ipset list')), 'full path')
    t.match(grown.r.actions.join('\n'), /block4: swap/)
    t.match(inNs(ns, 'ipset', ['list', '-t', 'egress-guard-block4']), /maxelem 131072/)
    const edit = await counting(() => e.apply(state(many(36_001))))
    t.same(edit.calls, ['ipset -exist restore'], 'then edits are one process again (maxelem remembered)')
    t.ok(has(ns, 'egress-guard-block4', '10.0.140.160'))
  })
})
