// IdTable: the upstream forwarder's in-flight tries by query ID (a Map replacement that allocates
// nothing per query once warm; see the file's header for why).
import t from 'tap'
import { IdTable } from '../../src/sinkhole/id-table.js'

t.test('set, get, has, delete, size; a taken ID is refused', async (t) => {
  const tab = new IdTable<string>()
  t.equal(tab.size, 0)
  t.ok(tab.set(0, 'zero'))
  t.ok(tab.set(65535, 'max'))
  t.notOk(tab.set(0, 'again'), 'a taken ID is not overwritten')
  t.equal(tab.get(0), 'zero')
  t.equal(tab.get(65535), 'max')
  t.equal(tab.get(7), undefined)
  t.ok(tab.has(65535))
  t.notOk(tab.has(7))
  t.equal(tab.size, 2)
  t.ok(tab.delete(0))
  t.notOk(tab.delete(0), 'deleting twice is a no-op')
  t.equal(tab.get(0), undefined)
  t.equal(tab.size, 1)
  t.same(tab.values(), ['max'])
  tab.clear()
  t.equal(tab.size, 0)
  t.equal(tab.get(65535), undefined)
})

t.test('against a Map over 200,000 random operations', async (t) => {
  const tab = new IdTable<number>()
  const ref = new Map<number, number>()
  let seed = 12345
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 16777216
  let mismatches = 0
  for (let i = 0; i < 200_000; i++) {
    // A small ID range so that sets, hits and deletes of present IDs all happen often.
    const id = Math.floor(rnd() * 512) * 128
    const op = rnd()
    if (op < 0.5) {
      const ok = tab.set(id, i)
      if (ok !== !ref.has(id)) mismatches++
      if (ok) ref.set(id, i)
    } else if (op < 0.8) {
      if (tab.delete(id) !== ref.delete(id)) mismatches++
    } else if (tab.get(id) !== ref.get(id)) mismatches++
    if (tab.size !== ref.size) mismatches++
  }
  t.equal(mismatches, 0)
  t.same(tab.values().sort((a, b) => a - b), [...ref.values()].sort((a, b) => a - b))
})

t.test('at most 65,535 entries; a freed slot is reused', async (t) => {
  const tab = new IdTable<number>()
  for (let id = 0; id < 65535; id++) tab.set(id, id)
  t.equal(tab.size, 65535)
  t.notOk(tab.set(65535, 1), 'no slot left')
  t.ok(tab.delete(42))
  t.ok(tab.set(65535, 7), 'the freed slot takes the new entry')
  t.equal(tab.get(65535), 7)
  t.equal(tab.get(41), 41)
  t.equal(tab.get(43), 43)
})
