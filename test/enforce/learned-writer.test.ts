// The learned-pair writer against the real tools in a throwaway namespace: a resolved write is in the
// kernel at once (checked by a separate process right after each ack), concurrent writes are grouped,
// a failed batch rejects only its own writes, a dead process is respawned, a large nft batch takes
// the one-shot path, close() fails what is queued.
import t from 'tap'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs } from '../helpers/netns.js'
import { createAckedWriter, ipsetProtocol, nftProtocol } from '../../src/enforce/learned-writer.js'

const ok = (f: () => unknown): boolean => {
  try {
    f()
    return true
  } catch {
    return false
  }
}

t.test('ipset writer', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('stdbuf'))) return
  const ns = makeNs(t, 'lw')
  inNs(ns, 'ipset', ['restore'], 'create wa hash:ip family inet timeout 60\ncreate wb hash:ip,port family inet timeout 60\n')
  const w = createAckedWriter(ipsetProtocol('eg-ack'), { netns: ns })
  t.teardown(() => w.close())

  t.test('a resolved write is in the kernel, even when the next command names the same set', async (t) => {
    let missing = 0
    for (let i = 0; i < 20; i++) {
      // Alternate one and two sets per batch: ipset sends a set's adds when a command names
      // another set; the ack (save of the ack set) is that command.
      const lines = [`add wa 198.51.100.${i} timeout 60`, ...(i % 2 ? [`add wb 198.51.100.${i},tcp:443 timeout 60`] : [])]
      await w.write(lines)
      if (!ok(() => inNs(ns, 'ipset', ['test', 'wa', `198.51.100.${i}`]))) missing++
      if (i % 2 && !ok(() => inNs(ns, 'ipset', ['test', 'wb', `198.51.100.${i},tcp:443`]))) missing++
    }
    t.equal(missing, 0, 'every acknowledged member was there when checked')
    t.equal(w.stats.spawns, 1, 'one process for all of it')
  })

  t.test('concurrent writes are grouped into fewer batches', async (t) => {
    const before = w.stats.batches
    await Promise.all(Array.from({ length: 200 }, (_, i) => w.write([`add wa 203.0.113.${i} timeout 60`])))
    const batches = w.stats.batches - before
    t.ok(batches < 200, `${batches} batches for 200 writes`)
    t.ok(ok(() => inNs(ns, 'ipset', ['test', 'wa', '203.0.113.199'])))
  })

  t.test('a failed batch rejects its writes; the process is respawned for the next', async (t) => {
    const spawns = w.stats.spawns
    await t.rejects(w.write(['add no-such-set 192.0.2.1']), { code: 'EG_EXEC', message: /no-such-set|does not exist/i })
    await w.write(['add wa 192.0.2.2 timeout 60'])
    t.equal(w.stats.spawns, spawns + 1, 'respawned')
    t.ok(ok(() => inNs(ns, 'ipset', ['test', 'wa', '192.0.2.2'])))
  })

  t.test('a killed process is respawned', async (t) => {
    const pid = w.pid!
    process.kill(pid, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 100))
    await w.write(['add wa 192.0.2.3 timeout 60'])
    t.not(w.pid, pid)
    t.ok(ok(() => inNs(ns, 'ipset', ['test', 'wa', '192.0.2.3'])))
  })

  t.test('close() fails what is queued and ends the process', async (t) => {
    const w2 = createAckedWriter(ipsetProtocol('eg-ack'), { netns: ns })
    const first = w2.write(['add wa 192.0.2.4 timeout 60'])
    const queued = w2.write(['add wa 192.0.2.5 timeout 60'])
    const closing = w2.close()
    const refused = t.rejects(queued, { code: 'EG_EXEC', message: /closed/ })
    await first // in flight: written before stdin closes
    await refused
    await closing
    await t.rejects(w2.write(['add wa 192.0.2.6']), /closed/)
    t.ok(ok(() => inNs(ns, 'ipset', ['test', 'wa', '192.0.2.4'])))
  })
})

t.test('nft writer', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('nft'))) return
  const ns = makeNs(t, 'lw')
  inNs(ns, 'nft', ['-f', '-'], 'add table inet w\nadd set inet w l { type ipv4_addr; flags timeout; }\n')
  const w = createAckedWriter(nftProtocol('w_ack', ns), { netns: ns })
  t.teardown(() => w.close())

  t.test('a resolved write is in the kernel', async (t) => {
    let missing = 0
    for (let i = 0; i < 15; i++) {
      await w.write([`add element inet w l { 198.51.100.${i} timeout 60s }`])
      if (!ok(() => inNs(ns, 'nft', ['get', 'element', 'inet', 'w', 'l', `{ 198.51.100.${i} }`]))) missing++
    }
    t.equal(missing, 0)
  })

  t.test('a failed transaction rejects its batch; nft keeps running', async (t) => {
    await t.rejects(w.write(['add element inet w nosuch { 192.0.2.1 }']), { code: 'EG_EXEC', message: /No such file|nosuch/ })
    await t.rejects(w.write(['flush set inet w nosuch']), { code: 'EG_EXEC' }, 'a command that prints nothing on success fails visibly too')
    await w.write(['add element inet w l { 192.0.2.2 timeout 60s }'])
    t.equal(w.stats.spawns, 1, 'same process')
    t.ok(ok(() => inNs(ns, 'nft', ['get', 'element', 'inet', 'w', 'l', '{ 192.0.2.2 }'])))
  })

  t.test('a large batch goes through one nft -f in queue order', async (t) => {
    const els = Array.from({ length: 5000 }, (_, i) => `10.0.${i >> 8}.${i & 255} timeout 60s`)
    const units: string[] = []
    for (let i = 0; i < els.length; i += 256) units.push(`add element inet w l { ${els.slice(i, i + 256).join(', ')} }`)
    const bulk = w.stats.bulk
    const big = w.write(units)
    const after = w.write(['flush set inet w l'])
    await big
    await after
    t.equal(w.stats.bulk, bulk + 1)
    t.notOk(ok(() => inNs(ns, 'nft', ['get', 'element', 'inet', 'w', 'l', '{ 10.0.19.135 }'])), 'the flush queued after it ran after it')
  })
})
