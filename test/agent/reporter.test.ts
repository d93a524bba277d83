// The status reporter: body shape, counts, trimming, concurrent requests coalesced, failures counted.
import t from 'tap'
import { createReporter, countEntries } from '../../src/agent/reporter.js'
import { silentLogger } from '../../src/log.js'
import type { ReportBody } from '../../src/client/api-types.js'
import type { Entry } from '../../src/policy/types.js'

const e = (kind: Entry['kind'], value: string): Entry => ({ kind, value, allow: false, mode: 'block', source: 'x' })

t.test('countEntries', async (t) => {
  t.same(countEntries([e('domain', 'a.example'), e('net', '203.0.113.0/24'), e('net', '2001:db8::/48'), e('net', '198.51.100.1/32')]), { entries: 4, domains: 1, nets: 3, v4: 2, v6: 1 })
})

t.test('reports carry host and agent version; long lists are trimmed; a call during a call runs once more', async (t) => {
  const sent: ReportBody[] = []
  let release: () => void = () => {}
  let gate: Promise<void> | undefined = new Promise((r) => (release = r))
  let n = 0
  const r = createReporter({
    client: {
      async report(body) {
        if (gate) await gate
        sent.push(body)
      },
    },
    host: 'web1',
    agentVersion: '9.9.9',
    state: () => ({ version: ++n, etag: 'e', counts: countEntries([]), repairs: 0, drift: Array(300).fill('d'), errors: ['x'.repeat(2000)] }),
    log: silentLogger,
  })
  const a = r.reportNow()
  const b = r.reportNow()
  const c = r.reportNow()
  gate = undefined
  release()
  t.equal(await a, true)
  await b
  await c
  t.equal(sent.length, 2, 'three calls while one was in flight: the first plus one more with the newest state')
  t.equal(sent[1]!.version, 2)
  t.equal(sent[0]!.host, 'web1')
  t.equal(sent[0]!.agentVersion, '9.9.9')
  t.equal(sent[0]!.drift.length, 100)
  t.equal(sent[0]!.errors[0]!.length, 500)
  t.equal(r.stats().sent, 2)
})

t.test('a failed report is counted, never thrown', async (t) => {
  const r = createReporter({
    client: { report: async () => Promise.reject(new Error('ECONNREFUSED')) },
    host: 'web1',
    agentVersion: '1',
    state: () => ({ version: 1, etag: 'e', counts: countEntries([]), repairs: 0, drift: [], errors: [] }),
    log: silentLogger,
  })
  t.equal(await r.reportNow(), false)
  t.equal(r.stats().failures, 1)
  t.match(r.stats().lastError, /ECONNREFUSED/)
})
