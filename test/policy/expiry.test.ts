// Expiry forms (date, RFC 3339, durations) and the instant an entry stops applying.
import t from 'tap'
import { parseExpires, isExpired, formatInstant } from '../../src/policy/expiry.js'

const NOW = new Date('2026-06-01T12:00:00Z')

t.test('a bare date means the end of that day, UTC', async (t) => {
  t.equal(parseExpires('2026-12-31'), '2026-12-31T23:59:59Z')
  t.equal(parseExpires('2028-02-29'), '2028-02-29T23:59:59Z', 'leap day')
  t.equal(parseExpires('2000-02-29'), '2000-02-29T23:59:59Z', '400-year leap day')
  t.equal(parseExpires('0099-01-01'), '0099-01-01T23:59:59Z', 'two-digit years are not read as 19xx')
  for (const bad of ['2027-02-29', '1900-02-29', '2026-13-01', '2026-00-10', '2026-04-31', '2026-1-1', '26-01-01', '2026/01/01']) {
    t.equal(parseExpires(bad), undefined, `rejects ${bad}`)
  }
})

t.test('RFC 3339 times, any offset, normalised to UTC', async (t) => {
  t.equal(parseExpires('2026-12-31T18:00:00Z'), '2026-12-31T18:00:00Z')
  t.equal(parseExpires('2026-12-31t18:00:00z'), '2026-12-31T18:00:00Z', 'lower-case t and z (RFC 3339 5.6)')
  t.equal(parseExpires('2026-12-31 18:00:00Z'), '2026-12-31T18:00:00Z', 'a space for T')
  t.equal(parseExpires('2026-12-31T18:00:00+02:00'), '2026-12-31T16:00:00Z')
  t.equal(parseExpires('2026-12-31T23:30:00-01:00'), '2027-01-01T00:30:00Z')
  t.equal(parseExpires('2026-12-31T18:00:00.250Z'), '2026-12-31T18:00:00.250Z', 'milliseconds kept')
  t.equal(parseExpires('2026-12-31T18:00:00.123456789Z'), '2026-12-31T18:00:00.123Z', 'beyond ms truncated')
  t.equal(parseExpires('2016-12-31T23:59:60Z'), '2016-12-31T23:59:59Z', 'leap second clamps to :59')
  for (const bad of ['2026-12-31T24:00:00Z', '2026-12-31T18:60:00Z', '2026-12-31T18:00:00', '2026-12-31T18:00Z', '2026-12-31T18:00:00+2:00', '2026-12-31T18:00:00+24:00', 'x2026-12-31T18:00:00Z']) {
    t.equal(parseExpires(bad), undefined, `rejects ${bad}`)
  }
})

t.test('durations count from now', async (t) => {
  t.equal(parseExpires('4h', NOW), '2026-06-01T16:00:00Z')
  t.equal(parseExpires('7d', NOW), '2026-06-08T12:00:00Z')
  t.equal(parseExpires('30m', NOW), '2026-06-01T12:30:00Z')
  t.equal(parseExpires('2w', NOW), '2026-06-15T12:00:00Z')
  t.equal(parseExpires('0h', NOW), undefined, 'zero is not a future time')
  t.equal(parseExpires('-4h', NOW), undefined)
  t.equal(parseExpires('4 hours', NOW), undefined)
  t.equal(parseExpires('99999999999d', NOW), undefined, 'beyond what Date can hold')
  t.equal(parseExpires('', NOW), undefined)
})

t.test('isExpired: after the instant, not at or before it', async (t) => {
  t.notOk(isExpired({}, NOW), 'no expiry never expires')
  t.notOk(isExpired({ expires: '2026-06-01T12:00:00Z' }, NOW), 'at the instant it still applies')
  t.ok(isExpired({ expires: '2026-06-01T11:59:59Z' }, NOW))
  t.notOk(isExpired({ expires: parseExpires('2026-06-01')! }, NOW), 'the whole named day applies')
  t.ok(isExpired({ expires: parseExpires('2026-05-31')! }, NOW))
  t.equal(formatInstant(Date.parse('2026-01-01T00:00:00.000Z')), '2026-01-01T00:00:00Z')
})
