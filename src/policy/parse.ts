// Blocklist text -> entries + per-line problems (DESIGN.md "Blocklist files"). Pure: takes text,
// never a path, and never throws on input; a bad line is a Problem and the rest of the file still counts.
import type { Entry, Problem } from './types.js'
import { RESERVED, formatIp, parseCidr, parseIp, reservedOverlap } from './net.js'
import { HOSTS_LOCAL_NAMES, checkLabels, normalizeName } from './names.js'
import { isExpired, isRelativeExpiry, parseExpires } from './expiry.js'
import { entryId, entryKey } from './merge.js'

/** Longer lines are rejected: no real entry needs them, and they are how binary junk usually shows up. */
export const MAX_LINE = 4096
/** API reasons longer than this are rejected (a file line is already capped by MAX_LINE). */
export const MAX_REASON = 1024

export interface ParseOptions {
  /** For expiry checks; default: now. */
  now?: Date
  /**
   * entryKey (a plain blocked name: just its value) -> source of the first occurrence, for `duplicate` warnings. Pass one map to several parses
   * (loadBlocklists does) to get warnings across files too; `false` skips the check (a hash map over a
   * million keys costs a noticeable share of a big lint; buildPolicy's onDuplicate finds them anyway).
   */
  seen?: Map<string, string> | false
  /**
   * Receive each entry instead of collecting it in `entries` (which then stays empty): a caller that
   * stores entries compactly lets each object die young (the sinkhole streams instead: see load-stream.ts).
   */
  onEntry?: (e: Entry, file: string, line: number) => void
}

export type Flaw = { severity: 'error' | 'warning'; code: string; message: string }

/** A single value (no hosts-file form) after validation. */
export type Value =
  | { ok: true; kind: 'domain'; value: string; subdomainsOnly: boolean; warning?: Flaw }
  | { ok: true; kind: 'net'; value: string }
  | { ok: false; flaw: Flaw }

const err = (code: string, message: string): { ok: false; flaw: Flaw } => ({ ok: false, flaw: { severity: 'error', code, message } })

const ALLOW_ALERT = 'mode=alert has no meaning on an allow (@@) entry: an allow never blocks'

/** The addresses a hosts-file line may start with: the "go nowhere" answers, not a real mapping. */
const SINK_ADDRESSES = new Set(['0.0.0.0', '127.0.0.1', '::', '::1'])

function isSinkAddress(text: string): boolean {
  const ip = parseIp(text)
  return ip !== undefined && SINK_ADDRESSES.has(formatIp(ip))
}

/** Looks like an address or a network rather than a name (a name's last label is never all digits). */
export function looksLikeAddress(t: string): boolean {
  return t.includes(':') || t.includes('/') || /^[0-9.]+$/.test(t)
}

/** The IPv4 reserved ranges of net.ts as (network, prefix) numbers, for the fast path below. */
const RESERVED_V4: ReadonlyArray<readonly [number, number]> = RESERVED.filter((r) => r.cidr.family === 4).map((r) => {
  const b = r.cidr.bytes
  return [((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0, r.cidr.prefix] as const
})

const maskOf = (prefix: number): number => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0)

/**
 * The common case of DROP lists and feeds, an acceptable canonical IPv4 address or network, checked
 * with plain integers (net.ts allocates byte arrays for every step: several times slower at 100,000
 * networks). Anything else, including every error, returns undefined and takes the general path, so
 * the messages come from one place. Tested against the general path in parse.test.ts.
 */
export function fastV4(text: string, force: boolean): string | undefined {
  let n = 0
  let octet = -1
  let digits = 0
  let dots = 0
  let i = 0
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return undefined // leading zero
      octet = (octet < 0 ? 0 : octet) * 10 + (c - 48)
      if (++digits > 3 || octet > 255) return undefined
    } else if (c === 46 /* . */ || c === 47 /* / */) {
      if (digits === 0) return undefined
      n = n * 256 + octet
      octet = -1
      digits = 0
      if (c === 47) break
      if (++dots > 3) return undefined
    } else return undefined
  }
  if (dots !== 3) return undefined
  let prefix = 32
  if (i === text.length) {
    if (digits === 0) return undefined
    n = n * 256 + octet
  } else {
    const p = text.slice(i + 1)
    if (!/^(?:[0-9]|[12][0-9]|3[0-2])$/.test(p)) return undefined
    prefix = Number(p)
  }
  const mask = maskOf(prefix)
  if (prefix === 0 || ((n & mask) >>> 0) !== n) return undefined
  if (prefix < 8 && !force) return undefined
  for (const [rn, rp] of RESERVED_V4) {
    const m = maskOf(Math.min(prefix, rp))
    if (((n & m) >>> 0) === ((rn & m) >>> 0)) return undefined
  }
  return i === text.length ? text + '/32' : text
}

/** Validate an address or network: canonical, not reserved, not broader than /8 or /32 without force. */
export function checkNet(text: string, force: boolean): Value {
  const fast = fastV4(text, force)
  if (fast !== undefined) return { ok: true, kind: 'net', value: fast }
  const r = parseCidr(text)
  if (!r.ok) return err('invalid-address', `${r.message} in ${JSON.stringify(text)}`)
  if (!r.exact) {
    // Not exact is either host bits set (an error: which network was meant?) or only a spelling
    // difference such as upper-case or zero-padded IPv6 groups (canonicalised silently).
    const slash = text.indexOf('/')
    const ip = slash >= 0 ? parseIp(text.slice(0, slash)) : undefined
    if (ip && ip.bytes.some((b, i) => b !== r.cidr.bytes[i])) {
      return err('non-canonical-cidr', `${text} has host bits set; did you mean ${r.canonical}?`)
    }
  }
  const c = r.cidr
  if (c.prefix === 0) return err('everything', `${r.canonical} covers every address; never accepted`)
  const reserved = reservedOverlap(c)
  if (reserved) return err('reserved-range', `${r.canonical} overlaps ${reserved} addresses; never accepted (it would cut the host off itself)`)
  const min = c.family === 4 ? 8 : 32
  if (c.prefix < min && !force) {
    return err('too-broad', `${r.canonical} is broader than /${min}; add "force" to the line if you really mean it`)
  }
  return { ok: true, kind: 'net', value: r.canonical }
}

function checkName(text: string): Value {
  const n = normalizeName(text)
  if (!n.ok) return err(n.code, n.message)
  if (n.warning) return { ok: true, kind: 'domain', value: n.name, subdomainsOnly: n.subdomainsOnly, warning: { severity: 'warning', ...n.warning } }
  return { ok: true, kind: 'domain', value: n.name, subdomainsOnly: n.subdomainsOnly }
}

/**
 * One value token: adblock `||name^`, an address/network, or a name (`*.name` included).
 * Adblock `$options` narrow a rule (third-party, resource types, domains) in ways a DNS or IP block
 * cannot honour; applying them as a whole-name block would over-block, so such lines are skipped
 * with a warning (`adblock-options`).
 */
export function checkValue(token: string, force: boolean): Value {
  if (token.startsWith('||')) {
    let t = token.slice(2)
    const dollar = t.indexOf('$')
    if (dollar >= 0) {
      return { ok: false, flaw: { severity: 'warning', code: 'adblock-options', message: `adblock options ${JSON.stringify(t.slice(dollar))} cannot be enforced by DNS or IP blocking; line skipped` } }
    }
    if (t.endsWith('^|')) t = t.slice(0, -2)
    else if (t.endsWith('^')) t = t.slice(0, -1)
    if (t === '') return err('invalid-name', `empty adblock rule ${JSON.stringify(token)}`)
    return checkName(t)
  }
  if (looksLikeAddress(token)) return checkNet(token, force)
  return checkName(token)
}

interface LineOptions {
  allow: boolean
  mode: 'block' | 'alert'
  expires?: string
  force: boolean
}

/** Replace control characters (terminal escapes, NUL) in free text with spaces. */
export function cleanText(s: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim()
  return t === '' ? undefined : t
}

const NAME_CHARS = /^[a-z0-9_.-]+$/
const NAME_LETTER = /[a-z_-]/
/** Options of a line without trailing tokens (read-only: add() and makeEntry() only read them). */
const PLAIN: Readonly<LineOptions> = Object.freeze({ allow: false, mode: 'block', force: false })

/**
 * Incremental parser: feed() complete lines in order (a chunk may end without a newline only at the end
 * of the file), then finish(). parseBlocklist is the one-shot form; loadBlocklists feeds huge files in pieces.
 */
export class BlocklistParser {
  readonly entries: Entry[] = []
  readonly problems: Problem[] = []
  private lineNo = 0
  private pending: string | undefined
  private readonly now: Date
  private readonly seen: Map<string, string> | undefined
  private readonly onEntry: ((e: Entry, file: string, line: number) => void) | undefined
  /** `file:` once per file: each source is then one concatenation. */
  private readonly sourcePrefix: string

  constructor(readonly file: string, opts: ParseOptions = {}) {
    this.now = opts.now ?? new Date()
    this.seen = opts.seen === false ? undefined : (opts.seen ?? new Map())
    this.onEntry = opts.onEntry
    this.sourcePrefix = `${file}:`
  }

  feed(text: string): void {
    let start = 0
    if (this.lineNo === 0 && text.charCodeAt(0) === 0xfeff) start = 1 // UTF-8 byte order mark
    const len = text.length
    while (start < len) {
      let end = text.indexOf('\n', start)
      if (end < 0) end = len
      this.lineNo++
      this.line(text.slice(start, end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end))
      start = end + 1
    }
  }

  finish(): { entries: Entry[]; problems: Problem[] } {
    return { entries: this.entries, problems: this.problems }
  }

  /**
   * A full-line comment is waiting to become the next entry's reason. A caller that recognises plain
   * lines itself (the streaming load, fast-line.ts) must hand the next line to lineAt() while this is
   * true; when it is false, a plain line changes nothing here (it would only clear the pending comment).
   */
  get commentPending(): boolean {
    return this.pending !== undefined
  }

  /**
   * One line, for a caller that cuts the lines itself (load-stream.ts): `raw` without its `\n` and one
   * trailing `\r`, line 1 without its byte order mark, `lineNo` counted from 1 as feed() counts. Lines
   * must come in order; skipped plain lines (see commentPending) only advance the number.
   */
  lineAt(raw: string, lineNo: number): void {
    this.lineNo = lineNo
    this.line(raw)
  }

  /**
   * A line longer than MAX_LINE that the caller did not keep in memory: `length` is what `raw.length`
   * would be (UTF-16 code units, without the `\n` and one trailing `\r`). Same problem as lineAt().
   */
  longLineAt(length: number, lineNo: number): void {
    this.lineNo = lineNo
    this.tooLong(length)
  }

  private problem(f: Flaw): void {
    this.problems.push({ file: this.file, line: this.lineNo, ...f })
  }

  private tooLong(length: number): void {
    this.pending = undefined
    this.problem({ severity: 'error', code: 'line-too-long', message: `line is ${length} characters long, the limit is ${MAX_LINE}` })
  }

  private line(raw: string): void {
    if (raw.length > MAX_LINE) return this.tooLong(raw.length)
    // Fast path, most lines of big lists: a bare lower-case name. Exactly what the general path below
    // would do with it (no whitespace, `#`, `;`, `@@`, `||`, `*` or upper case; a letter, `-` or `_`
    // somewhere, so it is not an address), minus the work of finding that out.
    if (NAME_CHARS.test(raw) && NAME_LETTER.test(raw)) {
      const comment = this.pending
      this.pending = undefined
      const n = checkLabels(raw.endsWith('.') ? raw.slice(0, -1) : raw, raw, false)
      return this.add(n.ok ? (n.warning ? checkName(raw) : { ok: true, kind: 'domain', value: n.name, subdomainsOnly: false }) : err(n.code, n.message), PLAIN, comment)
    }
    const line = raw.trim()
    if (line === '') {
      this.pending = undefined // a blank line ends the comment that could have been a reason
      return
    }
    const c0 = line.charCodeAt(0)
    // Full-line comments: `#` (ours, hosts files), `!` (adblock), `;` (Spamhaus DROP headers).
    if (c0 === 35 /* # */ || c0 === 33 /* ! */ || c0 === 59 /* ; */) {
      this.pending = cleanText(line.replace(/^[#!;]+/, ''))
      return
    }
    const comment = this.pending
    this.pending = undefined
    if (c0 === 91 /* [ */ && line.endsWith(']')) return // adblock header, e.g. [Adblock Plus 2.0]

    // Trailing reason: `; text` anywhere, or `# text` after whitespace (a `#` glued to a token is
    // part of it, e.g. an adblock `example.com##.ad` cosmetic rule, and is then rejected as a name).
    let body = line
    let reason: string | undefined
    const cut = reasonStart(line)
    if (cut >= 0) {
      reason = cleanText(line.slice(cut + 1))
      body = line.slice(0, cut).trimEnd()
    }
    reason ??= comment
    let allow = false
    if (body.startsWith('@@')) {
      allow = true
      body = body.slice(2).trimStart()
    }
    if (body === '') {
      this.problem({ severity: 'error', code: 'empty-entry', message: 'no entry on the line' })
      return
    }
    const opts: LineOptions = { allow, mode: 'block', force: false }
    // Fast path (most lines of big lists): one token, no options.
    if (!/\s/.test(body)) return this.add(checkValue(body, false), opts, reason)
    const tokens = body.split(/\s+/)
    const first = tokens[0]!
    const rest: string[] = []
    const seenOpts = new Set<string>()
    for (let i = 1; i < tokens.length; i++) {
      const t = tokens[i]!
      if (t === 'force') {
        opts.force = true
        continue
      }
      const eq = t.indexOf('=')
      if (eq < 0) {
        rest.push(t)
        continue
      }
      const key = t.slice(0, eq)
      const val = t.slice(eq + 1)
      if (seenOpts.has(key)) return this.problem({ severity: 'error', code: 'duplicate-option', message: `${key}= given twice` })
      seenOpts.add(key)
      if (key === 'expires') {
        if (isRelativeExpiry(val)) {
          return this.problem({ severity: 'error', code: 'bad-expires', message: `expires=${val}: a file needs a date (2026-12-31) or an RFC 3339 time; a duration would restart every time the file is read` })
        }
        const exp = parseExpires(val, this.now)
        if (exp === undefined) {
          return this.problem({ severity: 'error', code: 'bad-expires', message: `invalid expires=${JSON.stringify(val).slice(1, -1)} (want 2026-12-31 or 2026-12-31T18:00:00Z)` })
        }
        opts.expires = exp
      } else if (key === 'mode') {
        if (val !== 'alert' && val !== 'block') return this.problem({ severity: 'error', code: 'bad-mode', message: `invalid mode=${JSON.stringify(val).slice(1, -1)} (want alert or block)` })
        opts.mode = val
      } else {
        return this.problem({ severity: 'error', code: 'unknown-option', message: `unknown option ${JSON.stringify(key + '=')} (known: expires=, mode=, force)` })
      }
    }

    if (opts.allow && opts.mode === 'alert') return this.problem({ severity: 'error', code: 'bad-mode', message: ALLOW_ALERT })
    if (rest.length > 0) {
      if (looksLikeAddress(first) && isSinkAddress(first) && !first.includes('/')) {
        // hosts-file form: `0.0.0.0 a.example b.example`; each name is its own entry.
        for (const name of rest) {
          // Compared after normalisation too: `localhost.` or `LOCALHOST` is still the machine itself.
          const norm = normalizeName(name)
          if (HOSTS_LOCAL_NAMES.has(name.toLowerCase()) || (norm.ok && !norm.subdomainsOnly && HOSTS_LOCAL_NAMES.has(norm.name))) {
            this.problem({ severity: 'warning', code: 'hosts-local-name', message: `hosts-file name ${JSON.stringify(name)} is the machine itself; skipped` })
            continue
          }
          this.add(checkName(name), opts, reason)
        }
        return
      }
      const hint = looksLikeAddress(first) ? ' (a hosts-file line starts with 0.0.0.0, 127.0.0.1, :: or ::1)' : '; put a reason after "#" or ";"'
      return this.problem({ severity: 'error', code: 'unexpected-text', message: `unexpected text ${JSON.stringify(rest.join(' '))} after ${JSON.stringify(first)}${hint}` })
    }
    this.add(checkValue(first, opts.force), opts, reason)
  }

  private add(v: Value, opts: LineOptions, reason: string | undefined): void {
    if (!v.ok) return this.problem(v.flaw)
    if (v.kind === 'domain' && v.warning) this.problem(v.warning)
    if (opts.expires !== undefined && isExpired(opts, this.now)) {
      return this.problem({ severity: 'warning', code: 'expired', message: `entry expired at ${opts.expires}; not applied` })
    }
    const e = makeEntry(v, opts, reason, this.sourcePrefix + this.lineNo)
    if (this.seen) {
      // The common case (a plain blocked name) is keyed by its value alone: no key string to build, and
      // the value's hash is cached on the string. It cannot meet a full entryKey, which has spaces.
      const plain = e.kind === 'domain' && !e.allow && !e.subdomainsOnly && e.mode === 'block'
      const k = plain ? e.value : entryKey(e)
      const first = this.seen.get(k)
      if (first !== undefined) this.problem(duplicateFlaw(first, plain ? entryKey(e) : k))
      else this.seen.set(k, e.source)
    }
    // file and line as well: `source` is a concatenation, and taking it apart again would flatten it.
    if (this.onEntry) this.onEntry(e, this.file, this.lineNo)
    else this.entries.push(e)
  }
}

function duplicateFlaw(firstSource: string, key: string): Flaw {
  return { severity: 'warning', code: 'duplicate', message: `duplicate of ${firstSource} (${key.split(' ')[1]})` }
}

/** A `duplicate` warning for an entry that buildPolicy merged into an earlier one (see its onDuplicate). */
export function duplicateProblem(kept: Entry, dup: Entry): Problem {
  const i = dup.source.lastIndexOf(':')
  const line = Number(dup.source.slice(i + 1))
  const [file, n] = i > 0 && Number.isInteger(line) ? [dup.source.slice(0, i), line] : [dup.source, 0]
  return { file, line: n, ...duplicateFlaw(kept.source, entryKey(dup)) }
}

/** Index of the character that starts a trailing reason (`;`, or `#` after whitespace), or -1. */
export function reasonStart(line: string): number {
  const semi = line.indexOf(';')
  let hash = line.indexOf('#')
  while (hash > 0 && !/\s/.test(line[hash - 1]!)) hash = line.indexOf('#', hash + 1)
  if (semi < 0) return hash
  if (hash < 0) return semi
  return Math.min(semi, hash)
}

function makeEntry(v: Value & { ok: true }, opts: LineOptions, reason: string | undefined, source: string): Entry {
  // id in the literal: the common shape then fits in the object itself (no extra property store).
  const e: Entry = { kind: v.kind, value: v.value, allow: opts.allow, mode: opts.mode, source, id: '' }
  if (v.kind === 'domain' && v.subdomainsOnly) e.subdomainsOnly = true
  if (reason !== undefined) e.reason = reason
  if (opts.expires !== undefined) e.expires = opts.expires
  if (opts.force) e.force = true
  e.id = entryId(e)
  return e
}

/** Parse a whole blocklist file's text. `file` only labels sources and problems. */
export function parseBlocklist(text: string, file: string, opts: ParseOptions = {}): { entries: Entry[]; problems: Problem[] } {
  const p = new BlocklistParser(file, opts)
  p.feed(text)
  return p.finish()
}

export interface EntryFields {
  value: string
  allow?: boolean
  mode?: 'block' | 'alert'
  reason?: string
  expires?: string
  force?: boolean
}

/**
 * One entry from separate fields (API pushes, `block add`), validated like a blocklist line. Unlike a
 * file, `expires` may be a duration (`4h`, `7d`) counted from `now`; an entry that would already be
 * expired, or adblock options that would be skipped, are errors here because nothing would be applied.
 */
export function entryFromFields(
  f: EntryFields,
  source: string,
  now: Date = new Date(),
): { entry?: Entry; problems: Array<Pick<Problem, 'severity' | 'code' | 'message'>> } {
  const fail = (code: string, message: string): { problems: Flaw[] } => ({ problems: [{ severity: 'error', code, message }] })
  if (typeof f !== 'object' || f === null || typeof f.value !== 'string') return fail('invalid-entry', 'value must be a string')
  let value = f.value.trim()
  if (value.length > MAX_LINE) return fail('line-too-long', `value is ${value.length} characters long, the limit is ${MAX_LINE}`)
  let allow = f.allow === true
  if (value.startsWith('@@')) {
    allow = true
    value = value.slice(2)
  }
  if (value === '') return fail('empty-entry', 'empty value')
  if (/\s/.test(value)) return fail('unexpected-text', `value ${JSON.stringify(value)} contains whitespace; give one name, address or network`)
  if (f.mode !== undefined && f.mode !== 'block' && f.mode !== 'alert') return fail('bad-mode', `invalid mode ${JSON.stringify(f.mode)} (want alert or block)`)
  if (f.allow !== undefined && typeof f.allow !== 'boolean') return fail('invalid-entry', 'allow must be true or false')
  if (f.force !== undefined && typeof f.force !== 'boolean') return fail('invalid-entry', 'force must be true or false')
  let reason: string | undefined
  if (f.reason !== undefined) {
    if (typeof f.reason !== 'string') return fail('invalid-reason', 'reason must be a string')
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f-\u009f]/.test(f.reason)) return fail('invalid-reason', 'reason must be one line without control characters')
    if (f.reason.length > MAX_REASON) return fail('invalid-reason', `reason is ${f.reason.length} characters long, the limit is ${MAX_REASON}`)
    reason = f.reason.trim() || undefined
  }
  const opts: LineOptions = { allow, mode: f.mode ?? 'block', force: f.force === true }
  if (allow && opts.mode === 'alert') return fail('bad-mode', ALLOW_ALERT)
  if (f.expires !== undefined) {
    const exp = typeof f.expires === 'string' ? parseExpires(f.expires, now) : undefined
    if (exp === undefined) return fail('bad-expires', `invalid expires ${JSON.stringify(f.expires)} (want 4h, 7d, 2026-12-31 or 2026-12-31T18:00:00Z)`)
    if (isExpired({ expires: exp }, now)) return fail('expired', `expires ${exp} is already past`)
    opts.expires = exp
  }
  const v = checkValue(value, opts.force)
  if (!v.ok) return { problems: [{ ...v.flaw, severity: 'error' }] }
  const problems: Flaw[] = v.kind === 'domain' && v.warning ? [v.warning] : []
  const entry = makeEntry(v, opts, reason, source)
  entry.id = entryId(entry)
  return { entry, problems }
}
