// The address book with an injected clock and resolver: TTL clamping, the answers window, grace
// after an address disappears, failures that keep addresses, bounded concurrency, snapshot/restore,
// answers reported as they land (a silent name holds back nothing), failing names queued last; then
// one real run.
import t from 'tap'
import { createAddressBook } from '../../src/resolve/address-book.js'
import type { ResolveResult } from '../../src/resolve/dns-client.js'
import { capabilities, requires } from '../helpers/caps.js'
import { startDnsmasq } from './dnsmasq.js'

function fake() {
  let clock = 1_000_000
  const answers = new Map<string, ResolveResult | Error>()
  const calls: string[] = []
  const resolve = async (name: string): Promise<ResolveResult> => {
    calls.push(name)
    const a = answers.get(name)
    if (!a) return { addrs: [], cnames: [], rcode: 'NXDOMAIN' }
    if (a instanceof Error) throw a
    return a
  }
  const set = (name: string, ips: string[], ttl = 60): void => {
    answers.set(name, { addrs: ips.map((ip) => ({ ip, family: ip.includes(':') ? 6 : 4, ttl })), cnames: [], rcode: 'NOERROR' })
  }
  return { now: () => clock, tick: (sec: number) => (clock += sec * 1000), answers, calls, resolve: resolve as never, set }
}

const base = { upstreams: [{ address: '127.0.0.1', port: 53 }], minTtlSec: 10, maxTtlSec: 300, graceSec: 120, keepAnswers: 2 }

t.test('re-resolves only when the clamped TTL has run out', async (t) => {
  const f = fake()
  f.set('evil.example', ['203.0.113.1'], 5) // below min: clamped to 10 s
  f.set('slow.example', ['203.0.113.2'], 99999) // above max: clamped to 300 s
  const book = createAddressBook({ ...base, now: f.now, resolve: f.resolve })
  let r = await book.refresh(['evil.example', 'slow.example'])
  t.same(r, { changed: true, errors: [] })
  t.same(book.addresses('evil.example'), ['203.0.113.1'])
  t.equal(book.nextRefreshAt(), f.now() + 10_000)
  f.calls.length = 0
  f.tick(9)
  r = await book.refresh(['evil.example', 'slow.example'])
  t.same(f.calls, [], 'nothing due yet')
  t.equal(r.changed, false)
  f.tick(1)
  await book.refresh(['evil.example', 'slow.example'])
  t.same(f.calls, ['evil.example'], 'only the expired one')
  f.calls.length = 0
  f.tick(290)
  await book.refresh(['evil.example', 'slow.example'])
  t.same(f.calls.sort(), ['evil.example', 'slow.example'])
})

t.test('rotating answers: last N answers kept, then grace, then dropped', async (t) => {
  const f = fake()
  const book = createAddressBook({ ...base, now: f.now, resolve: f.resolve })
  f.set('rot.example', ['203.0.113.1'], 10)
  await book.refresh(['rot.example'])
  f.tick(10)
  f.set('rot.example', ['203.0.113.2'], 10)
  let r = await book.refresh(['rot.example'])
  t.ok(r.changed)
  t.same(book.addresses('rot.example'), ['203.0.113.1', '203.0.113.2'], 'both of the last 2 answers')
  f.tick(10)
  f.set('rot.example', ['203.0.113.3'], 10)
  await book.refresh(['rot.example'])
  t.same(book.addresses('rot.example'), ['203.0.113.1', '203.0.113.2', '203.0.113.3'], '.1 left the window but is in its grace period')
  const leftAt = f.now()
  t.equal(book.nextRefreshAt(), leftAt + 10_000, 'next TTL comes before the grace end')
  // Keep answering .3 until the grace of .1 ends.
  for (let i = 0; i < 13; i++) {
    f.tick(10)
    r = await book.refresh(['rot.example'])
  }
  t.same(book.addresses('rot.example'), ['203.0.113.3'], 'grace over for .1 and .2')
  f.tick(1000)
  t.equal(book.addresses('rot.example').length, 1, 'the current answer never expires by itself')
})

t.test('a grace period ending is a change and is scheduled', async (t) => {
  const f = fake()
  const book = createAddressBook({ ...base, keepAnswers: 1, maxTtlSec: 3600, graceSec: 30, now: f.now, resolve: f.resolve })
  f.set('g.example', ['203.0.113.1'], 3600)
  await book.refresh(['g.example'])
  f.tick(3600)
  f.set('g.example', ['203.0.113.2'], 3600)
  await book.refresh(['g.example'])
  t.same(book.addresses('g.example'), ['203.0.113.1', '203.0.113.2'])
  t.equal(book.nextRefreshAt(), f.now() + 30_000, 'woken for the grace end, long before the TTL')
  f.tick(30)
  const r = await book.refresh(['g.example'])
  t.ok(r.changed, 'dropping .1 is reported')
  t.same(book.addresses('g.example'), ['203.0.113.2'])
  t.equal(book.nextRefreshAt(), f.now() + 3570_000)
})

t.test('failures keep the addresses and retry soon; SERVFAIL counts as a failure', async (t) => {
  const f = fake()
  const book = createAddressBook({ ...base, now: f.now, resolve: f.resolve })
  f.set('e.example', ['203.0.113.1'], 60)
  await book.refresh(['e.example'])
  f.tick(60)
  f.answers.set('e.example', new Error('timeout'))
  let r = await book.refresh(['e.example'])
  t.same(r.errors, [{ domain: 'e.example', message: 'timeout' }])
  t.equal(r.changed, false)
  t.same(book.addresses('e.example'), ['203.0.113.1'])
  t.equal(book.nextRefreshAt(), f.now() + 30_000)
  f.tick(30)
  f.answers.set('e.example', { addrs: [], cnames: [], rcode: 'SERVFAIL' })
  r = await book.refresh(['e.example'])
  t.match(r.errors[0]?.message, /SERVFAIL/)
  t.same(book.addresses('e.example'), ['203.0.113.1'])
})

t.test('domains no longer listed are forgotten', async (t) => {
  const f = fake()
  const book = createAddressBook({ ...base, now: f.now, resolve: f.resolve })
  f.set('a.example', ['203.0.113.1'])
  f.set('b.example', ['203.0.113.2'])
  await book.refresh(['a.example', 'b.example'])
  const r = await book.refresh(['a.example'])
  t.ok(r.changed)
  t.same(book.addresses('b.example'), [])
  t.equal(book.size(), 1)
})

t.test('bounded concurrency', async (t) => {
  let inFlight = 0
  let peak = 0
  const resolve = async (): Promise<ResolveResult> => {
    inFlight++
    peak = Math.max(peak, inFlight)
    await new Promise((r) => setTimeout(r, 1))
    inFlight--
    return { addrs: [{ ip: '203.0.113.1', family: 4, ttl: 60 }], cnames: [], rcode: 'NOERROR' }
  }
  const book = createAddressBook({ ...base, concurrency: 16, resolve: resolve as never })
  const names = Array.from({ length: 500 }, (_, i) => `n${i}.example`)
  await book.refresh(names)
  t.equal(peak, 16)
  t.equal(book.size(), 500)
})

t.test('against a real dnsmasq: answer change shows up after the TTL, old kept in grace', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const dm = await startDnsmasq(t, ['--local-ttl=1'], { hosts: '203.0.113.10 evil.example\n' })
  const book = createAddressBook({ upstreams: [{ address: '127.0.0.1', port: dm.port }], minTtlSec: 1, maxTtlSec: 60, graceSec: 3600, keepAnswers: 1 })
  await book.refresh(['evil.example'])
  t.same(book.addresses('evil.example'), ['203.0.113.10'])
  await dm.setHosts('203.0.113.11 evil.example\n')
  // dnsmasq reloads on SIGHUP asynchronously: refresh each time the TTL runs out until the new
  // answer arrives (bounded), as the controller's timer would.
  let changed = false
  for (let i = 0; i < 20 && !book.addresses('evil.example').includes('203.0.113.11'); i++) {
    await new Promise((r) => setTimeout(r, Math.max(0, book.nextRefreshAt() - Date.now()) + 50))
    changed = (await book.refresh(['evil.example'])).changed || changed
  }
  t.ok(changed)
  t.same(book.addresses('evil.example'), ['203.0.113.10', '203.0.113.11'], 'new address in, old one kept (grace)')
})

t.test('a failed AAAA lookup does not drop the IPv6 addresses', async (t) => {
  const f = fake()
  const book = createAddressBook({ ...base, keepAnswers: 1, graceSec: 0, now: f.now, resolve: f.resolve })
  f.set('d.example', ['203.0.113.1', '2001:db8::1'], 10)
  await book.refresh(['d.example'])
  f.tick(10)
  f.answers.set('d.example', { addrs: [{ ip: '203.0.113.2', family: 4, ttl: 10 }], cnames: [], rcode: 'NOERROR', failed: [6] })
  await book.refresh(['d.example'])
  t.same(book.addresses('d.example'), ['2001:db8::1', '203.0.113.2'], 'v4 moved on, v6 kept')
})

t.test('snapshot/restore: restored addresses are kept through failed lookups, replaced by an answer', async (t) => {
  const f = fake()
  const a = createAddressBook({ ...base, keepAnswers: 1, graceSec: 60, now: f.now, resolve: f.resolve })
  f.set('c2.example', ['203.0.113.10'], 30)
  await a.refresh(['c2.example'])
  const snap = JSON.parse(JSON.stringify(a.snapshot())) as ReturnType<typeof a.snapshot>
  t.same(snap.domains['c2.example'], { answers: [['203.0.113.10']], gone: [], expiresAt: f.now() + 30_000 })

  // A new run (new book), the upstream down.
  const b = createAddressBook({ ...base, keepAnswers: 1, graceSec: 60, now: f.now, resolve: f.resolve })
  t.equal(b.restore(snap), 1)
  t.same(b.addresses('c2.example'), ['203.0.113.10'], 'known before any lookup')
  t.ok(b.answered('c2.example'))
  f.calls.length = 0
  let r = await b.refresh(['c2.example'])
  t.same(f.calls, [], 'the saved expiry is honoured: not due yet')
  t.equal(r.changed, false, 'the restored addresses are what the kernel got: no change')
  f.tick(30)
  f.answers.set('c2.example', new Error('timeout'))
  r = await b.refresh(['c2.example'])
  t.same(r.errors, [{ domain: 'c2.example', message: 'timeout' }])
  t.same(b.addresses('c2.example'), ['203.0.113.10'], 'a failed lookup keeps them')
  f.tick(3600)
  await b.refresh(['c2.example'])
  t.same(b.addresses('c2.example'), ['203.0.113.10'], 'however long the upstream stays down')
  f.set('c2.example', ['203.0.113.20'], 30)
  f.tick(30)
  r = await b.refresh(['c2.example'])
  t.ok(r.changed)
  t.same(b.addresses('c2.example'), ['203.0.113.10', '203.0.113.20'], 'an answer replaces them (the old one in its grace period)')
  f.tick(61)
  f.set('c2.example', ['203.0.113.20'], 3600)
  await b.refresh(['c2.example'])
  t.same(b.addresses('c2.example'), ['203.0.113.20'])
})

t.test('restore drops what is not an address and grace periods already over; never-answered names are not saved', async (t) => {
  const f = fake()
  const b = createAddressBook({ ...base, keepAnswers: 2, graceSec: 60, now: f.now, resolve: f.resolve })
  b.restore({
    domains: {
      'a.example': { answers: [['203.0.113.1', 'nonsense'], ['203.0.113.2'], ['203.0.113.3']], gone: [['203.0.113.9', f.now() - 61_000], ['203.0.113.8', f.now() - 1000]], expiresAt: 0 },
    },
  })
  t.same(b.addresses('a.example'), ['203.0.113.2', '203.0.113.3', '203.0.113.8'], 'last keepAnswers answers, live grace only')
  f.answers.set('down.example', new Error('timeout'))
  await b.refresh(['a.example', 'down.example'])
  t.same(Object.keys(b.snapshot().domains), ['a.example'])
})

t.test('one silent name does not hold back the others; each change is reported as it lands', async (t) => {
  const released: Array<() => void> = []
  const resolve = async (name: string): Promise<ResolveResult> => {
    if (name === 'silent.example') await new Promise<void>((r) => released.push(r))
    return { addrs: [{ ip: name === 'silent.example' ? '203.0.113.99' : '203.0.113.1', family: 4, ttl: 60 }], cnames: [], rcode: 'NOERROR' }
  }
  const book = createAddressBook({ ...base, concurrency: 4, resolve: resolve as never })
  const changes: string[] = []
  const done = book.refresh(['silent.example', 'good.example'], { onChange: (d) => changes.push(d) })
  for (let i = 0; i < 50 && changes.length === 0; i++) await new Promise((r) => setImmediate(r))
  t.same(changes, ['good.example'], 'good.example reported while silent.example is unanswered')
  t.same(book.addresses('good.example'), ['203.0.113.1'])
  t.equal(book.inFlight(), 1)
  // A second refresh (a new policy) does not ask again for the name in flight; it waits for it.
  const again = book.refresh(['silent.example', 'good.example'])
  t.equal(released.length, 1, 'one lookup of silent.example, not two')
  released[0]!()
  await Promise.all([done, again])
  t.same(changes, ['good.example', 'silent.example'])
  t.equal(book.inFlight(), 0)
})

t.test('names whose last lookup failed queue behind the others; an answer for a dropped name is not recorded', async (t) => {
  const f = fake()
  const order: string[] = []
  const gates: Array<() => void> = []
  const resolve = async (name: string): Promise<ResolveResult> => {
    order.push(name)
    await new Promise<void>((r) => gates.push(r))
    return (f.resolve as unknown as (n: string) => Promise<ResolveResult>)(name)
  }
  /** Let every lookup through, one at a time, until `p` settles. */
  const drain = async (p: Promise<unknown>): Promise<void> => {
    let done = false
    void p.finally(() => (done = true))
    while (!done) {
      await new Promise((r) => setImmediate(r))
      gates.shift()?.()
    }
  }
  const book = createAddressBook({ ...base, concurrency: 1, now: f.now, resolve: resolve as never })
  f.answers.set('bad.example', new Error('timeout'))
  f.set('a.example', ['203.0.113.1'])
  f.set('b.example', ['203.0.113.2'])
  await drain(book.refresh(['bad.example']))
  order.length = 0
  f.tick(30)
  await drain(book.refresh(['bad.example', 'a.example', 'b.example']))
  t.same(order, ['a.example', 'b.example', 'bad.example'], 'bad.example last, though listed first')

  // Dropped from the list while its lookup runs: the late answer is not recorded.
  f.tick(60)
  const p3 = book.refresh(['a.example'])
  await new Promise((r) => setImmediate(r))
  const p4 = book.refresh([])
  await drain(Promise.all([p3, p4]))
  t.equal(book.size(), 0)
  t.same(book.addresses('a.example'), [])
})
