// The matcher's allocation-free address parsers must accept exactly what net.ts parseIp accepts,
// with the same bytes: checked on hand-picked edge cases and on seeded random strings.
import t from 'tap'
import { parseV4, parseV6Into } from '../../src/policy/ip-parse.js'
import { formatIp, parseIp } from '../../src/policy/net.js'
import { prng } from '../../test/helpers/prng.js'


/** parseV6Into's answer in parseIp's terms: bytes, or undefined. */
function fast6(s: string): number[] | undefined {
  const b = new Uint8Array(16)
  return parseV6Into(s, b) ? [...b] : undefined
}
function ref6(s: string): number[] | undefined {
  const ip = parseIp(s)
  return ip && ip.family === 6 ? [...ip.bytes] : undefined
}
function fast4(s: string): number[] | undefined {
  const a = parseV4(s)
  return a < 0 ? undefined : [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]
}
function ref4(s: string): number[] | undefined {
  const ip = parseIp(s)
  return ip && ip.family === 4 ? [...ip.bytes] : undefined
}

const EDGE = [
  '::', '::1', '1::', '1:', ':1', ':::', '1:::2', '::1::', '1::2::3', '2001:db8::1', '2001:DB8::A', '2001:0db8:0000:0000:0000:0000:0000:0001',
  '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2:3:4:5:6:7', '1:2:3:4:5:6:7::', '::1:2:3:4:5:6:7', '::1:2:3:4:5:6:7:8',
  '00001::', '0001::', 'g::', '::ffff:1.2.3.4', '::ffff:01.2.3.4', '::ffff:1.2.3', '::ffff:1.2.3.4.5', '::1.2.3.4', '1:2:3:4:5:6:1.2.3.4',
  '1:2:3:4:5:6:7:1.2.3.4', '1::1.2.3.4', '::ffff:256.1.1.1', '::ffff:.1.2.3', 'fe80::1%eth0', '::ffff:1.2.3.4:5', ' ::1', '::1 ',
  'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '1:2:3:4:5:6:7:8::', '::ffff:c000:201', '',
  ':', '1', '1.2.3.4', '[::1]',
]

t.test('IPv6: edge cases agree with parseIp', async (t) => {
  for (const s of EDGE) t.same(fast6(s), ref6(s), JSON.stringify(s))
})

t.test('IPv4: edge cases agree with parseIp', async (t) => {
  for (const s of ['0.0.0.0', '255.255.255.255', '1.2.3.4', '01.2.3.4', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.-4', '1.2.3.4/8', '']) {
    t.same(fast4(s), ref4(s), JSON.stringify(s))
  }
})

t.test('random strings and random addresses agree with parseIp', async (t) => {
  const r = prng(5)
  const alphabet = '0123456789abcdefABCDEF:.:::'
  const bad: unknown[] = []
  let valid = 0
  for (let i = 0; i < 20000; i++) {
    let s: string
    const x = r()
    if (x < 0.4) {
      // A real address, printed canonically or with a random run of groups expanded/compressed.
      const b = new Uint8Array(16)
      for (let j = 0; j < 16; j++) b[j] = r() < 0.5 ? 0 : Math.floor(r() * 256)
      s = formatIp({ family: 6, bytes: b })
      if (r() < 0.3) s = s.toUpperCase()
      if (r() < 0.2) s = '::ffff:' + [1, 2, 3, 4].map(() => Math.floor(r() * 256)).join('.')
    } else {
      const n = 1 + Math.floor(r() * 20)
      s = ''
      for (let j = 0; j < n; j++) s += alphabet[Math.floor(r() * alphabet.length)]
    }
    const want = ref6(s)
    if (want) valid++
    const got = fast6(s)
    if (JSON.stringify(got) !== JSON.stringify(want)) bad.push({ s, want, got })
    const w4 = ref4(s)
    if (JSON.stringify(fast4(s)) !== JSON.stringify(w4)) bad.push({ s, v4: true, want: w4, got: fast4(s) })
  }
  t.same(bad.slice(0, 5), [], 'no disagreement')
  t.ok(valid > 5000, `many valid addresses among them (${valid})`)
})
