// The address book with an injected clock and resolver: TTL clamping, the answers window, grace
// after an address disappears, failures that keep addresses, bounded concurrency; then one real run.
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
