// When entries stop applying: parses the `expires=` forms (date, RFC 3339, duration) into one
// canonical UTC instant, so comparing and de-duplicating expiry never depends on how it was written.
import type { Entry } from './types.js'
import { parseDuration } from '../config.js'

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/
// RFC 3339 section 5.6 date-time; "T" and "Z" may be lower case, a space is allowed for "T" (5.6 NOTE).
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/

function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]!
  return d <= days
}

/** Canonical form: `YYYY-MM-DDTHH:MM:SSZ`, milliseconds only when not zero. */
export function formatInstant(ms: number): string {
  const iso = new Date(ms).toISOString()
  return iso.endsWith('.000Z') ? iso.slice(0, -5) + 'Z' : iso
}

/**
 * `2026-12-31` (the end of that day, UTC: 23:59:59Z), an RFC 3339 time (any offset, normalised to UTC),
 * or a positive duration (`30m`, `4h`, `7d`, `2w`) counted from `now`. Undefined when invalid.
 */
export function parseExpires(text: string, now: Date = new Date()): string | undefined {
  const t = text.trim()
  let m = DATE.exec(t)
  if (m) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])]
    if (!validDate(y, mo, d)) return undefined
    // Date.parse, not Date.UTC: the latter reads years 0-99 as 1900-1999.
    return formatInstant(Date.parse(`${m[1]}-${m[2]}-${m[3]}T23:59:59Z`))
  }
  m = DATE_TIME.exec(t)
  if (m) {
    const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m![i]))
    // Seconds may be 60 (a leap second, RFC 3339 5.7); JavaScript time has none, so it becomes :59.
    if (!validDate(y!, mo!, d!) || h! > 23 || mi! > 59 || s! > 60) return undefined
    const off = m[8]!.toUpperCase()
    if (off !== 'Z') {
      const oh = Number(off.slice(1, 3))
      const om = Number(off.slice(4, 6))
      if (oh > 23 || om > 59) return undefined
    }
    const normal = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${s === 60 ? '59' : m[6]}${(m[7] ?? '').slice(0, 4)}${off}`
    const ms = Date.parse(normal)
    if (Number.isNaN(ms)) return undefined
    return formatInstant(ms)
  }
  const dur = parseDuration(t)
  if (dur !== undefined && dur > 0 && Number.isFinite(dur)) {
    const ms = now.getTime() + dur
    // Keep within what Date can represent (year 275760); anything later is a typo, not a plan.
    if (ms > 8.64e15) return undefined
    return formatInstant(ms)
  }
  return undefined
}

/** Is `text` a duration (relative) rather than a date or time? Files must not use durations. */
export function isRelativeExpiry(text: string): boolean {
  return parseDuration(text.trim()) !== undefined
}

/** An entry stops applying once `now` is past its expiry instant. */
export function isExpired(e: Pick<Entry, 'expires'>, now: Date): boolean {
  if (e.expires === undefined) return false
  const ms = Date.parse(e.expires)
  return !Number.isNaN(ms) && now.getTime() > ms
}
