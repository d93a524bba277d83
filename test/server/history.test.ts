// PolicyHistory: diffs between any kept version and now from reverse deltas, including entries that
// change in place, come back, or go and return; unknown versions give undefined (send the full policy).
import t from 'tap'
import { PolicyHistory, fingerprint } from '../../src/server/policy-history.js'
import type { Entry } from '../../src/policy/types.js'

const e = (id: string, value: string, over: Partial<Entry> = {}): Entry => ({ kind: 'domain', value, allow: false, mode: 'block', source: 'f:1', id, ...over })

t.test('diffs from every kept version replay to the current set', async (t) => {
  const h = new PolicyHistory(10)
  const versions: Entry[][] = [
    [e('a', 'a.example'), e('b', 'b.example')],
    [e('a', 'a.example'), e('b', 'b.example'), e('c', 'c.example')],
    [e('a', 'a.example', { reason: 'now with a reason' }), e('c', 'c.example')],
    [e('a', 'a.example', { reason: 'now with a reason' }), e('c', 'c.example'), e('b', 'b.example')],
    [e('c', 'c.example', { source: 'moved:9' }), e('d', 'd.example')],
  ]
  versions.forEach((v, i) => h.push(i + 1, v))
  const last = versions[versions.length - 1]!
  for (let since = 1; since <= versions.length; since++) {
    const d = h.diff(since)!
    const state = new Map(versions[since - 1]!.map((x) => [x.id!, fingerprint(x)]))
    for (const id of d.removed) t.ok(state.delete(id), `since ${since}: removed ${id} was there`)
    for (const x of d.added) state.set(x.id!, fingerprint(x))
    t.same(new Map([...state].sort()), new Map(last.map((x) => [x.id!, fingerprint(x)] as [string, string]).sort()), `since ${since}: replay gives the current policy`)
  }
  t.same(h.diff(4), { since: 4, added: [e('d', 'd.example')], removed: ['a', 'b'] }, 'a move of c (source only) is not a change')
  t.same(h.diff(1)!.added.map((x) => x.id).sort(), ['c', 'd'])
  t.same(h.diff(1)!.removed.sort(), ['a', 'b'])
  t.same(h.diff(2), { since: 2, added: [e('d', 'd.example')], removed: ['a', 'b'] }, 'b went and came back and went: removed once')
  t.equal(h.diff(99), undefined)
  t.equal(h.diff(0), undefined)
})

t.test('only the last N steps are kept', async (t) => {
  const h = new PolicyHistory(3)
  for (let v = 1; v <= 10; v++) h.push(v, [e(`x${v}`, `x${v}.example`)])
  t.equal(h.oldest, 7)
  t.equal(h.diff(6), undefined)
  t.same(h.diff(7), { since: 7, added: [e('x10', 'x10.example')], removed: ['x7'] })
})
