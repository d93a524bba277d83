// Seeded blocklist lines for the fast-path tests: every plain form fast-line.ts takes, the near
// misses it must leave to the parser, and random mutations of both (shared by two test files).
import { prng } from '../helpers/prng.js'

const LABEL_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789'

export interface LineGen {
  /** A name of 2-5 labels, sometimes with `-`, `_` or digits; mostly valid (now and then a label > 63 or an edge `_`). */
  name(): string
  /** A line in one of the plain forms (fast-line.ts should take it unless a comment precedes it). */
  plain(): string
  /** Anything: plain lines, near misses, comments, options, junk, and mutations of all of them. */
  any(): string
  r: () => number
}

export function lineGen(seed: number): LineGen {
  const r = prng(seed)
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!
  const int = (n: number): number => Math.floor(r() * n)

  function label(len = 1 + int(r() < 0.05 ? 70 : 12)): string {
    let s = ''
    for (let i = 0; i < len; i++) s += LABEL_CHARS[int(LABEL_CHARS.length)]
    // The odd inner hyphen or underscore; sometimes at an edge (invalid for `-`, fine for `_`).
    if (r() < 0.1 && s.length > 2) s = s.slice(0, 1) + pick(['-', '_', '--']) + s.slice(2)
    if (r() < 0.02) s = pick(['-', '_']) + s
    if (r() < 0.02) s = s + pick(['-', '_'])
    return s
  }
  function name(): string {
    const labels: string[] = []
    const n = 2 + int(4)
    for (let i = 0; i < n - 1; i++) labels.push(label())
    labels.push(pick(['com', 'net', 'example', 'io', 'co', 'xn--p1ai', 'x1', 'zz9']))
    return labels.join('.').replace(/^-|-$/g, 'a').replace(/(^|\.)-/g, '$1a').replace(/-(\.|$)/g, 'a$1')
  }
  /** Exact-length names and labels around the limits (253/254, 63/64). */
  function edgeName(): string {
    const x = r()
    if (x < 0.25) return 'a'.repeat(63) + '.example'
    if (x < 0.5) return 'b'.repeat(64) + '.example'
    const len = pick([252, 253, 254, 255])
    let s = 'com'
    while (len - s.length >= 65) s = 'c'.repeat(63) + '.' + s
    const rest = len - s.length
    if (rest >= 2) s = 'd'.repeat(rest - 1) + '.' + s
    else if (rest === 1) s = s.replace(/com$/, 'como')
    return s
  }
  function plain(): string {
    const n = r() < 0.03 ? edgeName() : name()
    const x = r()
    const base =
      x < 0.45 ? n
      : x < 0.55 ? `*.${n}`
      : x < 0.65 ? `0.0.0.0 ${n}`
      : x < 0.7 ? `127.0.0.1\t${n}`
      : x < 0.73 ? `0.0.0.0 \t  ${n}`
      : x < 0.83 ? `||${n}^`
      : x < 0.86 ? `||${n}^|`
      : x < 0.9 ? `${n}.`
      : x < 0.93 ? `||*.${n}^`
      : `0.0.0.0 *.${n}`
    return base
  }
  const NEAR = (): string => {
    const n = name()
    return pick([
      n.toUpperCase(), `${n[0]!.toUpperCase()}${n.slice(1)}`, `bücher.${n}`, `xn--bcher-kva.${n}`, `${n}\u00a0`, ` ${n}`, `${n} `, `\t${n}`,
      `# ${n}`, `#${n}`, `! ${n}`, `; ${n}`, `@@${n}`, `@@||${n}^`, `${n} # reason`, `${n}#frag`, `${n} ; SBL1`, `${n};x`,
      `${n} mode=alert`, `${n} mode=block`, `${n} expires=2027-01-01`, `${n} expires=2026-01-01`, `${n} force`, `${n} x=y`,
      `0.0.0.0 ${n} ${name()}`, `0.0.0.0 localhost.localdomain`, `127.0.0.1 localhost.localdomain.`, `0.0.0.0 LOCALHOST.localdomain`,
      `0.0.0.0 *.localhost.localdomain`, `0.0.0.0 localhost`, `0.0.0.0 broadcasthost`, `::1 ${n}`, `:: ${n}`, `0.0.0.1 ${n}`,
      `0.0.0.0/8 ${n}`, `127.0.0.01 ${n}`, `0.0.0.0`, `0.0.0.0 `, `0.0.0.0 ${n} # r`, `0.0.0.0 ${n} force`, `0.0.0.0 ${n} mode=alert`,
      `0day.${n}`, `127.0.0.1.${n}`, `0.0.0.0.${n}`, `0.0.0.0x ${n}`, `1.2.3.4 ${n}`, `bare-tld`, `localhost`, `single`, `${n}.123`,
      `1.2.3.4`, `203.0.113.7`, `198.51.100.0/24`, `2001:db8::1`, `a.b.c.4`, `a.4b`, `-${n}`, `${n}-`, `a.-b.com`, `a-.b.com`,
      `a..b.com`, `.${n}`, `${n}..`, `*.`, `*..`, `*.*.${n}`, `**.${n}`, `*${n}`, `a.*.${n}`, `||`, `||^`, `||^|`, `|${n}^`,
      `||${n}`, `||${n}|`, `||${n}^^`, `||${n}^$third-party`, `||${n}^$important`, `||${n}$script`, `||${n}.^`, `||${n}^.`,
      `||0.0.0.0 ${n}^`, `||${n}^ # r`, `[Adblock Plus 2.0]`, `[x]`, `${n}##.ad`, `${n}/path`, `${n}:443`, `${n}=`, `${n}\r`,
      `${n}\r\r`, `\r`, '', '', ' ', '\t', '#', '# ', '!', ';', `${'a'.repeat(63)}.com`, `${'a'.repeat(64)}.com`, `_dmarc.${n}`,
      `_.${n}`, `${n}._`, `a.b_`, `a._`, `\ufeff${n}`, `${n}\u200b`, `${n}\u0000x`.replace('\u0000', '\u0001'), `\u001b[31m${n}`,
    ])
  }
  const ALPHABET = 'abcxyz0189-_.*@|^$#;!=/: \t"\'\r\u00fc\u00df\u4e2d\u200b\u001b\uff45\ud83d\ude00ABC'
  function mutate(line: string): string {
    let s = line
    const k = 1 + int(3)
    for (let i = 0; i < k; i++) {
      const pos = int(s.length + 1)
      const op = r()
      if (op < 0.35) s = s.slice(0, pos) + pick([...ALPHABET]) + s.slice(pos)
      else if (op < 0.6) s = s.slice(0, pos) + s.slice(pos + 1)
      else if (op < 0.85) s = s.slice(0, pos) + pick([...ALPHABET]) + s.slice(pos + 1)
      else if (op < 0.9) s = s.toUpperCase()
      else s = pick(['@@', '||', '*.', '0.0.0.0 ', '127.0.0.1 ', '# ', '.']) + s + pick(['', '^', '^|', '.', ' ', '\r'])
    }
    return s
  }
  function any(): string {
    const x = r()
    if (x < 0.4) return plain()
    if (x < 0.55) return '# ' + pick(['why', 'campaign 7', '', 'x\u001by'])
    if (x < 0.8) return NEAR()
    return mutate(r() < 0.5 ? plain() : NEAR())
  }
  return { name, plain, any, r }
}
