// Allocation-free address parsers for the matcher's hot path. They accept exactly what net.ts
// parseIp accepts (a differential test holds them to it) but write into caller-owned memory
// instead of building arrays and strings, which dominated the cost of an IPv6 lookup.

const DOT = 46
const COLON = 58

/** Strict dotted quad (no leading zeros) in s[from, s.length) -> unsigned 32-bit value, or -1. */
export function parseV4(s: string, from = 0): number {
  const n = s.length - from
  if (n < 7 || n > 15) return -1
  let acc = 0
  let part = 0
  let digits = 0
  let dots = 0
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === DOT) {
      if (digits === 0 || ++dots > 3) return -1
      acc = acc * 256 + part
      part = 0
      digits = 0
      continue
    }
    if (c < 48 || c > 57) return -1
    if (digits === 1 && part === 0) return -1
    part = part * 10 + (c - 48)
    digits++
    if (part > 255) return -1
  }
  if (digits === 0 || dots !== 3) return -1
  return acc * 256 + part
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

const words = new Uint16Array(8)

/**
 * RFC 4291 2.2 text form (groups of 1-4 hex digits, one `::`, an optional dotted-quad tail; no zone
 * id) -> 16 bytes written into `out`. Returns false, leaving `out` in an unspecified state, when
 * `s` is not an IPv6 address.
 */
export function parseV6Into(s: string, out: Uint8Array): boolean {
  const n = s.length
  if (n < 2 || n > 45) return false
  let g = 0
  let gap = -1
  let i = 0
  if (s.charCodeAt(0) === COLON) {
    if (s.charCodeAt(1) !== COLON) return false
    gap = 0
    i = 2
  }
  while (i < n) {
    const start = i
    let v = 0
    while (i < n && i - start < 5) {
      const h = hexValue(s.charCodeAt(i))
      if (h < 0) break
      v = v * 16 + h
      i++
    }
    const digits = i - start
    if (i < n && s.charCodeAt(i) === DOT) {
      // The dotted-quad tail: the last 32 bits, and nothing after it.
      if (g > 6) return false
      const a = parseV4(s, start)
      if (a < 0) return false
      words[g++] = a >>> 16
      words[g++] = a & 0xffff
      i = n
      break
    }
    if (digits === 0 || digits > 4 || g === 8) return false
    words[g++] = v
    if (i === n) break
    if (s.charCodeAt(i) !== COLON) return false
    i++
    if (i < n && s.charCodeAt(i) === COLON) {
      if (gap >= 0) return false
      gap = g
      i++
    } else if (i === n) return false
  }
  if (gap < 0 ? g !== 8 : g > 7) return false
  const tail = gap < 0 ? 0 : g - gap
  const head = g - tail
  let o = 0
  for (let k = 0; k < head; k++, o += 2) {
    out[o] = words[k]! >> 8
    out[o + 1] = words[k]! & 0xff
  }
  for (; o < 16 - tail * 2; o++) out[o] = 0
  for (let k = head; k < g; k++, o += 2) {
    out[o] = words[k]! >> 8
    out[o + 1] = words[k]! & 0xff
  }
  return true
}
