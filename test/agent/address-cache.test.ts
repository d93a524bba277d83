// The resolved-address cache file: round trip, atomic replace, every field checked, a corrupt file
// moved aside (never fatal), stale temp files of an interrupted write removed.
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ADDRESS_CACHE_FILE, createAddressCache, decodeAddressCache, encodeAddressCache } from '../../src/agent/address-cache.js'
import { silentLogger } from '../../src/log.js'
import type { AddressSnapshot } from '../../src/resolve/address-book.js'

const snap: AddressSnapshot = {
  domains: {
    'c2.example': { answers: [['203.0.113.10', '2001:db8::10']], gone: [['203.0.113.9', 1_700_000_000_000]], expiresAt: 1_700_000_030_000 },
  },
}

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), `eg-addrcache-${process.pid}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('missing reads as undefined; write then read round-trips, nothing left beside it', async (t) => {
  const dir = tmp(t)
  const c = createAddressCache({ dir, log: silentLogger })
  t.equal(await c.read(), undefined)
  await c.write(snap)
  t.same(await c.read(), { snapshot: snap })
  t.same(readdirSync(dir), [ADDRESS_CACHE_FILE])
})

t.test('decode checks every field', async (t) => {
  const good = JSON.parse(encodeAddressCache(snap))
  t.same(decodeAddressCache(JSON.stringify(good)), { snapshot: snap })
  const variants: Array<[string, (b: Record<string, any>) => void, RegExp]> = [
    ['format', (b) => (b.format = 2), /unknown format/],
    ['checksum', (b) => (b.domains['c2.example'].answers[0][0] = '203.0.113.11'), /checksum/],
    ['address', (b) => (b.domains['c2.example'].answers[0][0] = '$(reboot)'), /answers/],
    ['name', (b) => (b.domains['Evil Name;'] = b.domains['c2.example']), /not a domain name/],
    ['gone', (b) => (b.domains['c2.example'].gone = [['203.0.113.9']]), /gone/],
    ['expiry', (b) => (b.domains['c2.example'].expiresAt = 'soon'), /expiresAt/],
    ['shape', (b) => (b.domains = []), /not an object/],
  ]
  for (const [what, edit, re] of variants) {
    const b = JSON.parse(JSON.stringify(good))
    edit(b)
    const r = decodeAddressCache(JSON.stringify(b))
    t.ok('problem' in r && re.test(r.problem), `${what}: ${JSON.stringify(r)}`)
  }
  t.match(decodeAddressCache('{"format":1,"chec'), { problem: /not JSON/ })
})

t.test('a corrupt file is moved aside and reported, not thrown; the next write starts clean', async (t) => {
  const dir = tmp(t)
  const c = createAddressCache({ dir, log: silentLogger })
  writeFileSync(c.file, '{"format":1,"checksum":"x"')
  const r = await c.read()
  t.match(r, { problem: /not JSON/, aside: `${c.file}.corrupt` })
  t.equal(readFileSync(`${c.file}.corrupt`, 'utf8'), '{"format":1,"checksum":"x"', 'kept for a human')
  t.notOk(existsSync(c.file))
  await c.write(snap)
  t.same(await c.read(), { snapshot: snap })
})

t.test('temp files of an interrupted write are removed at read', async (t) => {
  const dir = tmp(t)
  const c = createAddressCache({ dir, log: silentLogger })
  await c.write(snap)
  writeFileSync(`${c.file}.tmp-123-abcd`, '{"half')
  writeFileSync(join(dir, 'policy-cache.json'), '{}')
  t.same(await c.read(), { snapshot: snap })
  t.same(readdirSync(dir).sort(), ['policy-cache.json', ADDRESS_CACHE_FILE].sort(), 'only our own temp files')
})
