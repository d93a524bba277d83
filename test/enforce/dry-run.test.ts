// The dry-run backend prints what it would do and remembers it: a second identical apply prints
// no member changes, a changed state prints exactly the difference.
import t from 'tap'
import { createDryRunEnforcer } from '../../src/enforce/dry-run.js'
import type { DesiredState } from '../../src/enforce/types.js'

const state = (block4: string[], alert6: string[] = [], version = 1): DesiredState => ({
  block: { v4: block4, v6: [] }, alert: { v4: [], v6: alert6 }, allow: { v4: ['192.0.2.1/32'], v6: [] }, version,
})

t.test('prints creation, members, then only differences', async (t) => {
  const lines: string[] = []
  const e = createDryRunEnforcer((l) => lines.push(l))
  t.equal(e.name, 'dry-run')
  let r = await e.apply(state(['203.0.113.7/32', '203.0.113.8/32'], ['2001:db8::1/128']))
  t.match(lines.join('\n'), /create set egress-guard-block4/)
  t.match(lines.join('\n'), /jump to EGRESS-GUARD first in OUTPUT/)
  t.ok(lines.includes('add egress-guard-block4 203.0.113.7/32'))
  t.ok(lines.includes('add egress-guard-alert6 2001:db8::1/128'))
  t.same([r.changed, r.added, r.removed, r.backend], [true, 4, 0, 'dry-run'])
  lines.length = 0
  r = await e.apply(state(['203.0.113.7/32', '203.0.113.8/32'], ['2001:db8::1/128']))
  t.same(lines, [], 'nothing printed when nothing changes')
  t.same([r.changed, r.added, r.removed], [false, 0, 0])
  r = await e.apply(state(['203.0.113.8/32', '203.0.113.9/32'], [], 2))
  t.same(lines, ['add egress-guard-block4 203.0.113.9/32', 'del egress-guard-block4 203.0.113.7/32', 'del egress-guard-alert6 2001:db8::1/128'])
  t.same(r.actions, ['egress-guard-block4: +1 -1 (2 members)', 'egress-guard-alert6: +0 -1 (0 members)'])
  t.same(await e.verify(), [])
  t.same(e.snapshot()?.block.v4, ['203.0.113.8/32', '203.0.113.9/32'])
  lines.length = 0
  await e.remove()
  t.match(lines.join('\n'), /destroy set egress-guard-block4/)
  t.equal(e.snapshot(), undefined)
})

t.test('a seeded current state makes apply print only the difference (plan)', async (t) => {
  const lines: string[] = []
  const e = createDryRunEnforcer((l) => lines.push(l), { current: state(['203.0.113.7/32']) })
  await e.init()
  const r = await e.apply(state(['203.0.113.7/32', '198.51.100.1/32']))
  t.same(lines, ['add egress-guard-block4 198.51.100.1/32'])
  t.equal(r.added, 1)
})
