// Fuzz: tens of thousands of random and mutated lines through parseBlocklist and entryFromFields.
// Seeded (FUZZ_SEED=n to replay), so a failure reproduces. Never throws; every entry re-validates.
import t from 'tap'
import { parseBlocklist, entryFromFields } from '../../src/policy/parse.js'
import { entryKey } from '../../src/policy/merge.js'
import { parseCidr } from '../../src/policy/net.js'
import { buildPolicy } from '../../src/policy/merge.js'
import { generateListParts, prng } from '../../bench/lib/gen-list.js'
import type { Entry } from '../../src/policy/types.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20261121)
const NOW = new Date('2026-06-01T12:00:00Z')
const r = prng(SEED)
const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!

const ALPHABET = 'abcxyz0189-_.*@|^$#;!=/: \t"\'`$()[]{}<>\\&~%+,?\u00fc\u00df\u4e2d\u200b\u0000\u001b\r\uff45\ud83d\ude00'
const TOKENS = ['expires=2027-01-01', 'expires=2026-01-01', 'expires=4h', 'expires=', 'mode=alert', 'mode=block', 'mode=x', 'force', 'k=v', '#', '# why', '; SBL1', '@@', '||', '^', '*.', '0.0.0.0', '::', '127.0.0.1', 'localhost']
const VALID = generateListParts({ domains: 3000, cidrs: 600, seed: SEED }).text.split('\n').filter((l) => l !== '')
const EXTRA = ['bücher.example', '2001:db8::/32', '203.0.113.7/24', '0.0.0.0/0', '::1', '10.0.0.0/7 force', '@@||good.example^', '*.x.example mode=alert', 'a.example expires=2026-12-31T18:00:00+02:00', '0.0.0.0 a.example localhost b.example']

function randomLine(): string {
  const n = Math.floor(r() * 40)
  let s = ''
  for (let i = 0; i < n; i++) s += r() < 0.15 ? ' ' + pick(TOKENS) + ' ' : pick([...ALPHABET])
  return s
}

function mutate(line: string): string {
  let s = line
  const k = 1 + Math.floor(r() * 3)
  for (let i = 0; i < k; i++) {
    const pos = Math.floor(r() * (s.length + 1))
    const op = r()
    if (op < 0.3) s = s.slice(0, pos) + pick([...ALPHABET]) + s.slice(pos)
    else if (op < 0.5) s = s.slice(0, pos) + s.slice(pos + 1)
    else if (op < 0.7) s = s.slice(0, pos) + pick([...ALPHABET]) + s.slice(pos + 1)
    else if (op < 0.85) s = s + ' ' + pick(TOKENS)
    else if (op < 0.9) s = s.toUpperCase()
    else if (op < 0.95) s = pick(['@@', '||', '*.', '0.0.0.0 ', '# ']) + s
    else s = s + s.slice(0, pos)
  }
  return s
}

const LDH = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/

/** An entry is sound on its own terms and survives the API form and a round trip as a line. */
function revalidate(e: Entry): string | undefined {
  if (e.kind === 'domain') {
    if (!LDH.test(e.value) || e.value.length > 253) return `bad domain value ${JSON.stringify(e.value)}`
  } else {
    const c = parseCidr(e.value)
    if (!c.ok || c.canonical !== e.value) return `non-canonical net ${JSON.stringify(e.value)}`
  }
  const value = (e.subdomainsOnly ? '*.' : '') + e.value
  const again = entryFromFields({ value, allow: e.allow, mode: e.mode, expires: e.expires, force: e.force }, 'api:fuzz', NOW)
  if (!again.entry || again.problems.some((p) => p.severity === 'error')) return `entryFromFields rejects ${JSON.stringify(value)}: ${JSON.stringify(again.problems)}`
  if (entryKey(again.entry) !== entryKey(e) || again.entry.expires !== e.expires || again.entry.id !== e.id) return `entryFromFields changes ${JSON.stringify(e)}`
  const line = `${e.allow ? '@@' : ''}${value}${e.mode === 'alert' ? ' mode=alert' : ''}${e.expires ? ` expires=${e.expires}` : ''}${e.force ? ' force' : ''}`
  const re = parseBlocklist(line, 'round', { now: NOW })
  if (re.entries.length !== 1 || entryKey(re.entries[0]!) !== entryKey(e) || re.problems.some((p) => p.severity === 'error')) return `round trip of ${JSON.stringify(line)} fails`
  return undefined
}

t.test(`parseBlocklist on random and mutated lines (seed ${SEED})`, async (t) => {
  const N = 30_000
  const lines: string[] = []
  for (let i = 0; i < N; i++) {
    const x = r()
    lines.push(x < 0.25 ? randomLine() : x < 0.4 ? pick(VALID) : x < 0.9 ? mutate(pick(VALID)) : mutate(pick(EXTRA)))
  }
  let failures = 0
  const fail = (msg: string): void => {
    if (failures++ < 10) t.fail(msg)
  }
  // Line by line (so a failure names its input) and as one file (line numbers, comment state).
  let entries = 0
  for (const [i, line] of lines.entries()) {
    let res
    try {
      res = parseBlocklist(line, 'fuzz', { now: NOW })
    } catch (e) {
      fail(`throws on line ${i} ${JSON.stringify(line)}: ${(e as Error).stack}`)
      continue
    }
    for (const p of res.problems) {
      if (p.file !== 'fuzz' || p.line !== 1 || !p.message || !p.code || (p.severity !== 'error' && p.severity !== 'warning')) fail(`malformed problem ${JSON.stringify(p)}`)
    }
    if (res.problems.some((p) => p.severity === 'error') && res.entries.length > 0 && !/^(0\.0\.0\.0|127\.0\.0\.1|::1?)\s/.test(line.trim().replace(/^@@/, ''))) {
      fail(`line ${JSON.stringify(line)} has an error but still produced entries`)
    }
    for (const e of res.entries) {
      entries++
      const why = revalidate(e)
      if (why) fail(`line ${i} ${JSON.stringify(line)}: ${why}`)
    }
  }
  const whole = parseBlocklist(lines.join('\n'), 'fuzz', { now: NOW })
  t.ok(whole.problems.every((p) => p.line >= 1 && p.line <= N), 'problem lines within the file')
  t.ok(whole.entries.every((e) => Number(e.source.split(':')[1]) <= N), 'sources within the file')
  t.doesNotThrow(() => buildPolicy(whole.entries, { now: NOW }))
  t.equal(failures, 0, `${N} lines, ${entries} entries, all sound`)
  t.ok(entries > 8_000, `the mutations left plenty of valid entries to check (${entries})`)
})

t.test(`entryFromFields on random fields (seed ${SEED})`, async (t) => {
  const N = 20_000
  let failures = 0
  let made = 0
  for (let i = 0; i < N; i++) {
    const f = {
      value: r() < 0.3 ? pick(VALID).split(/[\s;#]/)[0]! : r() < 0.7 ? mutate(pick(VALID).split(/[\s;#]/)[0]!) : randomLine(),
      ...(r() < 0.3 ? { allow: r() < 0.5 } : {}),
      ...(r() < 0.3 ? { mode: pick(['block', 'alert', 'x', '']) as 'block' } : {}),
      ...(r() < 0.3 ? { expires: pick(['4h', '7d', '2027-01-01', '2020-01-01', 'x', '', '2026-12-31T18:00:00+02:00']) } : {}),
      ...(r() < 0.3 ? { reason: randomLine() } : {}),
      ...(r() < 0.2 ? { force: r() < 0.5 } : {}),
    }
    let res
    try {
      res = entryFromFields(f, 'api:fuzz', NOW)
    } catch (e) {
      if (failures++ < 10) t.fail(`throws on ${JSON.stringify(f)}: ${(e as Error).stack}`)
      continue
    }
    if (res.entry) {
      made++
      if (res.problems.some((p) => p.severity === 'error')) failures++
      const why = revalidate(res.entry)
      if (why && failures++ < 10) t.fail(`${JSON.stringify(f)}: ${why}`)
      // eslint-disable-next-line no-control-regex
      if (res.entry.reason !== undefined && /[\u0000-\u001f]/.test(res.entry.reason) && failures++ < 10) t.fail(`control characters in reason ${JSON.stringify(f)}`)
    } else if (!res.problems.some((p) => p.severity === 'error') && failures++ < 10) t.fail(`no entry and no error for ${JSON.stringify(f)}`)
  }
  t.equal(failures, 0, `${N} field sets, ${made} entries, all sound`)
  t.ok(made > 2_000, `enough entries made to check (${made})`)
})
