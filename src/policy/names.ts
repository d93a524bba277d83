// DNS name normalisation and validation for blocklist entries: one place decides what a name is,
// so the parser, the API and the matcher agree. Pure; a name that passes is safe in any argument list.
import { domainToASCII } from 'node:url'

export type NameResult =
  | { ok: true; name: string; subdomainsOnly: boolean; warning?: { code: string; message: string } }
  | { ok: false; code: string; message: string }

/** RFC 1035 2.3.4: 63 octets per label, 253 for the textual name (255 on the wire). */
export const MAX_LABEL = 63
export const MAX_NAME = 253

const BAD_CHAR = /[^a-z0-9_.*-]/

/**
 * Lower-case, drop one trailing dot, punycode non-ASCII labels (node:url domainToASCII, UTS #46),
 * strip a leading `*.` into `subdomainsOnly`, then check characters and lengths in one pass (this runs
 * for every line of million-line lists).
 */
export function normalizeName(raw: string): NameResult {
  let s = raw.toLowerCase()
  if (s.endsWith('.')) s = s.slice(0, -1)
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(s)) {
    const ascii = domainToASCII(s)
    if (ascii === '') return { ok: false, code: 'invalid-name', message: `invalid international name ${JSON.stringify(raw)}` }
    s = ascii
  }
  let subdomainsOnly = false
  if (s.startsWith('*.')) {
    subdomainsOnly = true
    s = s.slice(2)
  }
  if (s === '') return { ok: false, code: 'invalid-name', message: `empty name in ${JSON.stringify(raw)}` }
  return checkLabels(s, raw, subdomainsOnly)
}

/**
 * The checks on an already normalised name `s` (lower case, ASCII, no trailing dot, no `*.`): characters,
 * label and name lengths, hyphens, a numeric last label. `raw` is only quoted in messages.
 */
export function checkLabels(s: string, raw: string, subdomainsOnly: boolean): NameResult {
  let labelStart = 0
  let labels = 1
  let numericLabel = true
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46 /* . */
    if (c === 46) {
      const len = i - labelStart
      if (len === 0) return { ok: false, code: 'empty-label', message: `empty label in name ${JSON.stringify(raw)}` }
      if (len > MAX_LABEL) {
        return { ok: false, code: 'label-too-long', message: `label ${JSON.stringify(s.slice(labelStart, labelStart + 20) + '...')} is ${len} characters long, the limit is ${MAX_LABEL}` }
      }
      // A leading hyphen would also read as an option to any tool the name is handed to.
      if (s.charCodeAt(labelStart) === 45 || s.charCodeAt(i - 1) === 45) {
        return { ok: false, code: 'invalid-name', message: `label ${JSON.stringify(s.slice(labelStart, i))} in ${JSON.stringify(raw)} starts or ends with a hyphen` }
      }
      if (i < s.length) {
        labels++
        labelStart = i + 1
        numericLabel = true
      }
      continue
    }
    if (c >= 48 && c <= 57) continue
    numericLabel = false
    if ((c >= 97 && c <= 122) || c === 45 || c === 95) continue
    if (c === 42 /* * */ && !BAD_CHAR.test(s)) {
      return { ok: false, code: 'invalid-wildcard', message: `${JSON.stringify(raw)}: * is only allowed as a leading "*." (names under it)` }
    }
    const bad = BAD_CHAR.exec(s)?.[0] ?? s[i]!
    return { ok: false, code: 'invalid-name', message: `invalid character ${JSON.stringify(bad)} in name ${JSON.stringify(raw)} (allowed: a-z 0-9 - _ . and a leading *.)` }
  }
  if (s.length > MAX_NAME) return { ok: false, code: 'name-too-long', message: `name is ${s.length} characters long, the limit is ${MAX_NAME}` }
  // RFC 3696 2: a top-level label is never all-numeric, so `1.2.3` or `256.1.1.1` is a broken address.
  if (numericLabel) {
    return { ok: false, code: 'invalid-name', message: `${JSON.stringify(raw)} is neither a valid IP address nor a name (numeric top-level label)` }
  }
  if (labels === 1) {
    return { ok: true, name: s, subdomainsOnly, warning: { code: 'bare-tld', message: `${JSON.stringify(s)} is a single label (a whole top-level domain?): every name under it is affected` } }
  }
  return { ok: true, name: s, subdomainsOnly }
}

/** hosts-file names that map the machine itself: skipped (with a warning) when they appear in a hosts-file line. */
export const HOSTS_LOCAL_NAMES: ReadonlySet<string> = new Set([
  'localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback', 'ip6-localnet',
  'ip6-mcastprefix', 'ip6-allnodes', 'ip6-allrouters', 'ip6-allhosts', '0.0.0.0',
])
