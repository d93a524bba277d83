// Pure parsers for threat feeds (text in, values out): plain domains, hosts files, adblock `||name^`,
// Spamhaus DROP text and its NDJSON (drop_v4.json, with a metadata line), and one CSV column. They
// only pick candidate values; feed-entries.ts validates them like blocklist lines. Also the checks
// that refuse a body that is not a list at all (an HTML error page, binary data).

export type FeedFormat = { kind: 'domains' | 'hosts' | 'adblock' | 'drop' | 'drop-json' } | { kind: 'csv'; column: string }

export interface ParsedFeed {
  values: string[]
  /** Lines that are not comments and gave no value (counted, not listed: feeds are big). */
  skipped: number
}

/** Why a body is not a list (HTML, binary), or undefined. */
export function notAList(text: string): string | undefined {
  if (text.includes('\0')) return 'binary body (NUL byte)'
  const head = text.slice(0, 1024).trimStart().toLowerCase()
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || /<(head|body|title)[\s>]/.test(head)) return 'HTML body (an error page?)'
  // U+FFFD: bytes that were not UTF-8 (decoded leniently so this check can see them).
  let bad = 0
  for (let i = 0; i < Math.min(text.length, 65536); i++) if (text.charCodeAt(i) === 0xfffd) bad++
  if (bad > 16) return 'binary body (not UTF-8 text)'
  return undefined
}

const comment = (l: string): boolean => l === '' || l.startsWith('#') || l.startsWith('!') || l.startsWith(';') || l.startsWith('//') || l.startsWith('[')

/** Split one CSV line (RFC 4180 quotes). */
export function csvFields(line: string): string[] {
  const out: string[] = []
  let cur = ''
  let q = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (q) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"'
        i++
      } else if (c === '"') q = false
      else cur += c
    } else if (c === '"') q = true
    else if (c === ',') {
      out.push(cur)
      cur = ''
    } else cur += c
  }
  out.push(cur)
  return out.map((f) => f.trim())
}

export function parseFeed(text: string, format: FeedFormat): ParsedFeed {
  const values: string[] = []
  let skipped = 0
  const lines = text.split(/\r?\n/)
  let csvIndex: number | undefined
  if (format.kind === 'csv' && /^\d+$/.test(format.column)) csvIndex = Number(format.column) - 1
  for (const raw of lines) {
    const l = raw.trim()
    if (format.kind === 'drop-json') {
      if (l === '') continue
      // One JSON object a line; the metadata line ({"type":"metadata",...}) has no cidr.
      let o: unknown
      try {
        o = JSON.parse(l)
      } catch {
        skipped++
        continue
      }
      const cidr = (o as { cidr?: unknown } | null)?.cidr
      if (typeof cidr === 'string') values.push(cidr)
      else if ((o as { type?: unknown } | null)?.type !== 'metadata') skipped++
      continue
    }
    if (format.kind === 'csv') {
      // Comment lines (abuse.ch CSVs start with `#` lines, the header among them).
      const body = l.startsWith('#') ? l.replace(/^#+\s*/, '') : l
      if (body === '') continue
      const fields = csvFields(body)
      if (csvIndex === undefined) {
        const i = fields.findIndex((f) => f.toLowerCase() === format.column.toLowerCase())
        if (i >= 0) csvIndex = i
        continue // lines before (and including) the header
      }
      if (l.startsWith('#')) continue
      const v = fields[csvIndex]
      if (v) values.push(hostOf(v))
      else skipped++
      continue
    }
    if (comment(l)) continue
    const noComment = l.replace(/\s+#.*$/, '')
    if (format.kind === 'domains') values.push(noComment.split(/\s+/)[0]!)
    else if (format.kind === 'hosts') {
      const f = noComment.split(/\s+/)
      if (f.length >= 2) for (const n of f.slice(1)) values.push(n)
      else skipped++
    } else if (format.kind === 'adblock') {
      // Only whole-name rules: `||name^`. Exceptions (`@@`) and cosmetic rules are not blocks.
      const m = /^\|\|([^\s/^$|]+)\^?\|?$/.exec(noComment)
      if (m) values.push(m[1]!)
      else skipped++
    } else if (format.kind === 'drop') {
      const v = noComment.split(/[\s;]+/)[0]
      if (v) values.push(v)
      else skipped++
    }
  }
  return { values, skipped }
}

/** A CSV column may hold a URL (URLhaus): its host is what DNS and IP blocking can enforce. */
function hostOf(v: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(\[[^\]]+\]|[^/:?#]+)/i.exec(v)
  if (!m) return v
  return m[1]!.replace(/^\[|\]$/g, '')
}
