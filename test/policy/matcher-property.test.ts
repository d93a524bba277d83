// Property test: the compact matcher must agree with a brute-force scan of every entry, over
// thousands of seeded random entries and queries drawn from a small alphabet so overlaps are common.
import t from 'tap'
import { buildMatcher } from '../../src/policy/matcher.js'
import { cidrContains, formatIp, parseCidr, parseIp, type Ip } from '../../src/policy/net.js'
import type { Action, Entry, Verdict } from '../../src/policy/types.js'
import { parseExpires } from '../../src/policy/expiry.js'
import { prng } from '../../test/helpers/prng.js'
import { entryId } from '../../src/policy/merge.js'
import { isDeepStrictEqual } from 'node:util'


const NOW = new Date('2026-06-15T12:00:00Z')
const LABELS = ['a', 'b', 'evil', 'x-1', 'cdn', 'www', 'api', 'c2', 'dl', 'm', 'n', 'z_z']
const TLDS = ['example', 'test', 'org']
const RANK: Record<Action, number> = { allow: 0, block: 1, alert: 2 }

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!
}

/** `labels` labels before a TLD; entries never use the `org` TLD, so those queries always miss. */
function randomName(r: () => number, labels: number, tlds: readonly string[]): string {
  const parts: string[] = []
  for (let i = 0; i < labels; i++) parts.push(pick(r, LABELS))
  parts.push(pick(r, tlds))
  return parts.join('.')
}

/** Mostly deep entries (a shallow one covers a large share of the name space). */
function entryName(r: () => number): string {
  const x = r()
  return randomName(r, x < 0.03 ? 1 : x < 0.5 ? 2 : 3, TLDS.slice(0, 2))
}

function flags(r: () => number, i: number): Omit<Entry, 'kind' | 'value'> {
  const e: Omit<Entry, 'kind' | 'value'> = { allow: r() < 0.05, mode: r() < 0.4 ? 'alert' : 'block', source: `rand.txt:${i + 1}` }
  // Half without a reason: a plain file entry (with its derived id, see withIds) is kept inline in the
  // matcher's name table, the rest in its entry table; both kinds, and keys holding both, are checked.
  if (r() < 0.5) e.reason = `r${i}`
  const x = r()
  if (x < 0.1) e.expires = pick(r, ['2026-06-14', '2026-06-15T11:59:59Z', '2026-06-15T12:00:00Z'])
  else if (x < 0.2) e.expires = pick(r, ['2026-06-15', '2026-06-15T12:00:01Z', '2030-01-01'])
  return e
}

function randomV4(r: () => number): Ip {
  // Inside 198.51.0.0/16 so that random networks overlap often.
  const a = (198 * 2 ** 24) + (51 << 16) + (Math.floor(r() * 256) << 8) + Math.floor(r() * 256)
  return { family: 4, bytes: Uint8Array.from([a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]) }
}

function randomV6(r: () => number): Ip {
  const b = new Uint8Array(16)
  b[0] = 0x20; b[1] = 0x01; b[2] = 0x0d; b[3] = 0xb8
  // Few distinct bits high up, random low bits: nested networks at many prefix lengths.
  b[4] = Math.floor(r() * 256); b[5] = Math.floor(r() * 4)
  for (let i = 6; i < 16; i++) b[i] = r() < 0.7 ? 0 : Math.floor(r() * 256)
  return { family: 6, bytes: b }
}

function randomEntries(r: () => number, n: number): Entry[] {
  const out: Entry[] = []
  for (let i = 0; i < n; i++) {
    const x = r()
    if (x < 0.6) {
      out.push({ kind: 'domain', value: entryName(r), ...(r() < 0.3 ? { subdomainsOnly: true } : {}), ...flags(r, i) })
    } else if (x < 0.85) {
      const ip = randomV4(r)
      const p = parseCidr(`${formatIp(ip)}/${r() < 0.01 ? 20 + Math.floor(r() * 4) : 24 + Math.floor(r() * 9)}`)
      if (p.ok) out.push({ kind: 'net', value: p.canonical, ...flags(r, i) })
    } else {
      const ip = randomV6(r)
      const p = parseCidr(`${formatIp(ip)}/${r() < 0.03 ? 33 + Math.floor(r() * 15) : 48 + Math.floor(r() * 81)}`)
      if (p.ok) out.push({ kind: 'net', value: p.canonical, ...flags(r, i) })
    }
  }
  return out
}

function live(e: Entry): boolean {
  return e.expires === undefined || Date.parse(parseExpires(e.expires)!) > NOW.getTime()
}

function actionOf(e: Entry): Action {
  return e.allow ? 'allow' : e.mode
}

/** The winning action, then the most specific entry of it; equal specificity: first in input order. */
function decide(hits: Array<{ e: Entry; spec: number }>): Verdict | undefined {
  let best: { e: Entry; spec: number } | undefined
  for (const h of hits) {
    if (!best) best = h
    else {
      const ra = RANK[actionOf(h.e)]
      const rb = RANK[actionOf(best.e)]
      if (ra < rb || (ra === rb && h.spec > best.spec)) best = h
    }
  }
  return best && { action: actionOf(best.e), entry: best.e }
}

function refName(domains: Entry[], query: string): Verdict | undefined {
  const q = query.toLowerCase().replace(/\.$/, '')
  const hits = domains
    .filter((e) => (q === e.value && !e.subdomainsOnly) || q.endsWith('.' + e.value))
    .map((e) => ({ e, spec: e.value.length }))
  return decide(hits)
}

type Parsed = { e: Entry; cidr: ReturnType<typeof parseCidr> }

function refIp(nets: Parsed[], query: string): Verdict | undefined {
  let ip = parseIp(query)
  if (!ip) return undefined
  const b = ip.bytes
  if (ip.family === 6 && b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) ip = { family: 4, bytes: b.slice(12) }
  const hits: Array<{ e: Entry; spec: number }> = []
  for (const { e, cidr: c } of nets) {
    if (live(e) && c.ok && cidrContains(c.cidr, ip)) hits.push({ e, spec: c.cidr.prefix })
  }
  return decide(hits)
}

/** An address in or next to network `c`: keep the prefix bits or flip one near its end. */
function jitter(r: () => number, c: Ip & { prefix: number }): Ip {
  const b = Uint8Array.from(c.bytes)
  const bits = b.length * 8
  for (let i = c.prefix; i < bits; i++) if (r() < 0.5) b[i >> 3]! |= 0x80 >> (i & 7)
  if (r() < 0.3 && c.prefix > 0) {
    const i = Math.max(0, c.prefix - 1 - Math.floor(r() * 3))
    b[i >> 3]! ^= 0x80 >> (i & 7)
  }
  return { family: c.family, bytes: b }
}

function variants(r: () => number, name: string): string {
  let s = name
  if (r() < 0.2) s = s.toUpperCase()
  if (r() < 0.2) s += '.'
  return s
}

t.test('matcher agrees with a brute-force scan (names)', async (t) => {
  for (const seed of [1, 2, 3]) {
    const r = prng(seed)
    const entries = randomEntries(r, 3000)
    // Most entries carry the id a file entry has (entryId), as the parser makes them; some have none.
    for (const e of entries) if (r() < 0.8 && !(e.allow && e.mode === 'alert')) e.id = entryId(e)
    const m = buildMatcher(entries, { now: NOW })
    t.ok(m.inlineCount > 200 && m.inlineCount < m.stats().domainEntries - 200, `seed ${seed}: inline (${m.inlineCount}) and table entries both present`)
    const domains = entries.filter((e) => e.kind === 'domain' && live(e))
    const bad: unknown[] = []
    let hits = 0
    const seen = new Set<string>()
    for (let i = 0; i < 5000; i++) {
      // Half the queries are near a listed name (it, or names under it), half are random.
      const near = r() < 0.5 ? pick(r, domains) : undefined
      const base = near ? randomName(r, Math.floor(r() * 3), [near.value]).replace(/^(.*?)\.?$/, '$1') : randomName(r, Math.floor(r() * 6), TLDS)
      const q = variants(r, r() < 0.3 && near ? near.value : base)
      const want = refName(domains, q)
      const got = m.matchName(q)
      if (want) {
        hits++
        seen.add(want.action)
      }
      // The whole entry: the matcher rebuilds it (from its table row or its inline word), ids included.
      if (got?.action !== want?.action || !isDeepStrictEqual(got?.entry, want?.entry)) bad.push({ q, want, got })
    }
    t.same(bad.slice(0, 3), [], `seed ${seed}: no disagreement`)
    t.ok(hits > 1000 && hits < 4500, `seed ${seed}: the queries hit (${hits}) and miss`)
    t.same([...seen].sort(), ['alert', 'allow', 'block'], `seed ${seed}: allow, block and alert all decide some queries`)
  }
})

t.test('matcher agrees with a brute-force scan (addresses)', async (t) => {
  for (const seed of [11, 12, 13]) {
    const r = prng(seed)
    const entries = randomEntries(r, 3000)
    const m = buildMatcher(entries, { now: NOW })
    const nets = entries.filter((e) => e.kind === 'net').map((e) => ({ e, cidr: parseCidr(e.value) }))
    const bad: unknown[] = []
    let hits = 0
    const seen = new Set<string>()
    for (let i = 0; i < 5000; i++) {
      const x = r()
      // Half the queries are inside (or just outside) a listed network.
      const near = r() < 0.5 ? pick(r, nets) : undefined
      const ip = near && near.cidr.ok ? jitter(r, near.cidr.cidr) : x < 0.6 ? randomV4(r) : randomV6(r)
      let q = formatIp(ip)
      if (ip.family === 4 && r() < 0.2) q = `::ffff:${q}`
      const want = refIp(nets, q)
      const got = m.matchIp(q)
      if (want) {
        hits++
        seen.add(want.action)
      }
      if (got?.action !== want?.action || got?.entry.source !== want?.entry.source) bad.push({ q, want, got })
    }
    t.same(bad.slice(0, 3), [], `seed ${seed}: no disagreement`)
    t.ok(hits > 500 && hits < 4500, `seed ${seed}: the queries hit (${hits}) and miss`)
    t.same([...seen].sort(), ['alert', 'allow', 'block'], `seed ${seed}: allow, block and alert all decide some queries`)
  }
})

t.test('matcher agrees with a brute-force scan (IPv4 networks of every length, /8 to /32)', async (t) => {
  // Networks at and above /16 exercise the trie's 16-bit jump table (paths with shallow entries walk from the root).
  for (const seed of [21, 22]) {
    const r = prng(seed)
    const entries: Entry[] = []
    for (let i = 0; i < 1500; i++) {
      const a = [pick(r, [198, 203]), pick(r, [0, 51, 113]), Math.floor(r() * 4), Math.floor(r() * 256)]
      const prefix = 8 + Math.floor(r() * 25)
      const p = parseCidr(`${a.join('.')}/${prefix}`)
      // Broad allows would decide nearly everything; keep allows narrow so blocks decide too.
      if (p.ok) entries.push({ kind: 'net', value: p.canonical, ...flags(r, i), ...(prefix < 24 ? { allow: false } : {}) })
    }
    const m = buildMatcher(entries, { now: NOW })
    const nets = entries.map((e) => ({ e, cidr: parseCidr(e.value) }))
    const bad: unknown[] = []
    const seen = new Set<string>()
    let hits = 0
    for (let i = 0; i < 3000; i++) {
      const near = pick(r, nets)
      const ip = r() < 0.7 && near.cidr.ok ? jitter(r, near.cidr.cidr) : { family: 4 as const, bytes: Uint8Array.from([pick(r, [198, 203, 45]), Math.floor(r() * 256), Math.floor(r() * 8), Math.floor(r() * 256)]) }
      const q = formatIp(ip)
      const want = refIp(nets, q)
      const got = m.matchIp(q)
      if (want) {
        hits++
        seen.add(want.action)
      }
      if (got?.action !== want?.action || got?.entry.source !== want?.entry.source) bad.push({ q, want, got })
    }
    t.same(bad.slice(0, 3), [], `seed ${seed}: no disagreement`)
    t.ok(hits > 300 && hits < 3000, `seed ${seed}: the queries hit (${hits}) and miss`)
    t.ok(seen.has('allow') && seen.has('block'), `seed ${seed}: allows and blocks both decide some queries`)
  }
})
