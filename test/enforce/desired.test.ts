// desiredState / hostsFileNames / domainsToResolve: routing by mode and allow, protected addresses
// warned and excluded, explicit private nets kept, expiry, overlap collapsing.
import t from 'tap'
import { desiredState, hostsFileNames, domainsToResolve } from '../../src/enforce/desired.js'
import type { Entry, Policy } from '../../src/policy/types.js'

let line = 0
function e(kind: Entry['kind'], value: string, more: Partial<Entry> = {}): Entry {
  return { kind, value, allow: false, mode: 'block', source: `test.txt:${++line}`, ...more }
}
function policy(entries: Entry[]): Policy {
  return { version: 7, etag: 'x', entries, generatedAt: '2026-01-01T00:00:00Z' }
}
const NOW = Date.parse('2026-06-01T12:00:00Z')

t.test('nets routed by mode and allow', async (t) => {
  const { state, warnings } = desiredState(policy([
    e('net', '203.0.113.7/32'),
    e('net', '2001:db8::/48'),
    e('net', '198.51.100.0/24', { mode: 'alert' }),
    e('net', '192.0.2.10/32', { allow: true }),
    e('net', '10.9.0.0/16'), // private, listed explicitly: kept
  ]), () => [], { protect: [], now: NOW })
  t.same(state, {
    block: { v4: ['10.9.0.0/16', '203.0.113.7/32'], v6: ['2001:db8::/48'] },
    alert: { v4: ['198.51.100.0/24'], v6: [] },
    allow: { v4: ['192.0.2.10/32'], v6: [] },
    version: 7,
  })
  t.same(warnings, [])
})

t.test('resolved addresses of blocked and alert domains go in; protected ones are warned about', async (t) => {
  const answers: Record<string, string[]> = {
    'evil.example': ['203.0.113.7', '2001:db8::7', '8.8.8.8', '127.0.0.1', '10.0.0.5', '192.0.2.53'],
    'watch.example': ['198.51.100.9'],
    'private-listed.example': ['10.9.1.1'],
  }
  const { state, warnings } = desiredState(policy([
    e('domain', 'evil.example'),
    e('domain', 'watch.example', { mode: 'alert' }),
    e('domain', 'private-listed.example'),
    e('net', '10.9.0.0/16'),
  ]), (d) => answers[d] ?? [], { protect: ['192.0.2.53/32'], now: NOW })
  t.same(state.block, { v4: ['10.9.0.0/16', '203.0.113.7/32'], v6: ['2001:db8::7/128'] })
  t.same(state.alert, { v4: ['198.51.100.9/32'], v6: [] })
  t.same(warnings.sort(), [
    'evil.example resolved to 10.0.0.5, not blocked: private range',
    'evil.example resolved to 127.0.0.1, not blocked: loopback',
    'evil.example resolved to 192.0.2.53, not blocked: protected address 192.0.2.53/32',
    'evil.example resolved to 8.8.8.8, not blocked: public resolver',
  ])
})

t.test('an address shared with an allowed name is not blocked; allowed names add nothing to allow sets', async (t) => {
  const answers: Record<string, string[]> = { 'evil.example': ['203.0.113.7', '203.0.113.8'], 'good.example': ['203.0.113.8'] }
  const { state, warnings } = desiredState(policy([e('domain', 'evil.example'), e('domain', 'good.example', { allow: true })]), (d) => answers[d] ?? [], { protect: [], now: NOW })
  t.same(state.block.v4, ['203.0.113.7/32'])
  t.same(state.allow, { v4: [], v6: [] })
  t.same(warnings, ['evil.example resolved to 203.0.113.8, not blocked: allowed name good.example resolves to it too'])
})

t.test('block wins over alert for the same address; covered members collapse', async (t) => {
  const answers: Record<string, string[]> = { 'a.example': ['203.0.113.7'], 'b.example': ['203.0.113.7', '203.0.113.99'] }
  const { state } = desiredState(policy([
    e('domain', 'b.example', { mode: 'alert' }),
    e('domain', 'a.example'),
    e('net', '198.51.100.0/24'),
    e('net', '198.51.100.5/32'),
  ]), (d) => answers[d] ?? [], { protect: [], now: NOW })
  t.same(state.block.v4, ['198.51.100.0/24', '203.0.113.7/32'])
  t.same(state.alert.v4, ['203.0.113.99/32'])
})

t.test('expired entries are ignored; wildcard-only domains are not resolved', async (t) => {
  const p = policy([
    e('net', '203.0.113.1/32', { expires: '2026-05-31T23:59:59Z' }),
    e('net', '203.0.113.2/32', { expires: '2026-06-01T23:59:59Z' }),
    e('domain', 'old.example', { expires: '2026-06-01T11:59:59Z' }),
    e('domain', 'sub.example', { subdomainsOnly: true }),
    e('domain', 'evil.example'),
  ])
  const { state } = desiredState(p, () => ['203.0.113.50'], { protect: [], now: NOW })
  t.same(state.block.v4, ['203.0.113.2/32', '203.0.113.50/32'])
  t.same(domainsToResolve(p, NOW), ['evil.example'])
})

t.test('hosts file names: block mode only, allow wins, no wildcards', async (t) => {
  const p = policy([
    e('domain', 'evil.example'),
    e('domain', 'watch.example', { mode: 'alert' }),
    e('domain', 'sub.example', { subdomainsOnly: true }),
    e('domain', 'cdn.example'),
    e('domain', 'ok.cdn.example'),
    e('domain', 'cdn.example', { allow: true, subdomainsOnly: true }),
    e('domain', 'also.example'),
    e('domain', 'also.example', { allow: true }),
    e('net', '203.0.113.1/32'),
  ])
  t.same(hostsFileNames(p, NOW), ['cdn.example', 'evil.example'])
})

t.test('the same policy object recomputed: new answers show, expiry is honoured', async (t) => {
  const p = policy([
    e('domain', 'evil.example'),
    e('net', '198.51.100.0/24', { expires: '2026-06-01T13:00:00Z' }),
    e('net', '203.0.113.0/28'),
  ])
  let answer = ['203.0.113.7', '203.0.113.99']
  const a = desiredState(p, () => answer, { protect: [], now: NOW })
  t.same(a.state.block.v4, ['198.51.100.0/24', '203.0.113.0/28', '203.0.113.99/32'], '.7 is inside the explicit /28')
  answer = ['203.0.113.100']
  const b = desiredState(p, () => answer, { protect: [], now: NOW })
  t.same(b.state.block.v4, ['198.51.100.0/24', '203.0.113.0/28', '203.0.113.100/32'])
  const c = desiredState(p, () => answer, { protect: [], now: NOW + 2 * 3600_000 })
  t.same(c.state.block.v4, ['203.0.113.0/28', '203.0.113.100/32'], 'the expired network is gone')
})

t.test('IPv6 ordering is numeric and alert networks inside block networks are dropped', async (t) => {
  const { state } = desiredState(policy([
    e('net', '2001:db8:10::/48'),
    e('net', '2001:db8:9::/48'),
    e('net', '2001:db8:10:1::/64', { mode: 'alert' }),
    e('net', '203.0.113.0/24', { mode: 'alert' }),
  ]), () => [], { protect: [], now: NOW })
  t.same(state.block.v6, ['2001:db8:9::/48', '2001:db8:10::/48'])
  t.same(state.alert, { v4: ['203.0.113.0/24'], v6: [] })
})
