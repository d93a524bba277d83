// Profile file text -> Profile + per-line problems. Pure: takes text, never a path, never throws on
// input. Destination lines use the blocklist line syntax (src/policy/parse.ts does the values: names,
// `*.name`, addresses, networks, reasons); what only makes sense in a blocklist is refused by line.
import type { Problem } from '../policy/types.js'
import { MAX_LINE, checkValue, cleanText, looksLikeAddress, reasonStart, type Flaw } from '../policy/parse.js'
import { PROFILE_MODES, type Profile, type ProfileMode, type ProfileRule } from './types.js'

/** What `egress-guard.profile=NAME` may name; also the file name `NAME.txt`. */
export const PROFILE_NAME = /^[a-z0-9][a-z0-9_-]*$/
/** Names end up in logs, hits, metrics labels and (later) kernel object comments: keep them short. */
export const MAX_PROFILE_NAME = 63
/**
 * Ports on one line. Each port is one kernel element per address learned for the line (per
 * container), so a long list multiplies kernel state; a service rarely needs more than a few.
 */
export const MAX_PORTS = 32

export function isProfileName(s: string): boolean {
  return s.length <= MAX_PROFILE_NAME && PROFILE_NAME.test(s)
}

/**
 * The profile name of a file in a profiles directory (`web.txt` -> `web`), or why it is not one.
 * Callers skip dot files and README* before asking (as blocklist directories do).
 */
export function profileNameOf(fileName: string): { ok: true; name: string } | { ok: false; message: string } {
  const m = /^(.*)\.txt$/.exec(fileName)
  const name = m?.[1]
  if (name !== undefined && isProfileName(name)) return { ok: true, name }
  return {
    ok: false,
    message: `${JSON.stringify(fileName)} is not a profile file name: want NAME.txt, NAME of a-z 0-9 _ - starting with a letter or digit, at most ${MAX_PROFILE_NAME} characters; skipped`,
  }
}

const err = (code: string, message: string): Flaw => ({ severity: 'error', code, message })

/** `80,443` -> sorted unique ports, or why not. */
export function parsePorts(text: string): { ok: true; ports: number[] } | { ok: false; flaw: Flaw } {
  if (text === '') return { ok: false, flaw: err('bad-port', 'port= needs a value: port=443 or port=80,443') }
  const out = new Set<number>()
  for (const p of text.split(',')) {
    if (/^\d+-\d+$/.test(p)) return { ok: false, flaw: err('bad-port', `port ranges are not supported (${p}); list the ports: port=80,443`) }
    // No leading zeros: `port=0443` is a typo, not 443.
    if (!/^[1-9]\d{0,4}$/.test(p) || Number(p) > 65535) {
      return { ok: false, flaw: err('bad-port', `invalid port ${JSON.stringify(p)} in port=${text.slice(0, 100)} (want 1..65535)`) }
    }
    out.add(Number(p))
  }
  if (out.size > MAX_PORTS) return { ok: false, flaw: err('bad-port', `port= lists ${out.size} ports, the limit is ${MAX_PORTS} a line`) }
  return { ok: true, ports: [...out].sort((a, b) => a - b) }
}

/** Refusals of blocklist syntax that has no meaning in a profile, with the reason in the message. */
const REFUSED: Record<string, Flaw> = {
  allow: err('allow-in-profile', '"@@" has no meaning in a profile: every line allows, and a fleet-wide block still wins'),
  expires: err('unsupported-option', 'expires= is not supported in a profile: a line applies until it is removed from the file'),
  modeOnLine: err('mode-on-line', 'mode= goes on a line of its own in a profile (it sets the mode of the whole profile: mode=learn, mode=alert or mode=enforce)'),
  hosts: err('hosts-form', 'a profile line holds one destination; the hosts-file form (0.0.0.0 NAME...) is not accepted in a profile'),
}

function ruleKey(r: Pick<ProfileRule, 'kind' | 'value' | 'subdomainsOnly'>): string {
  return `${r.kind} ${r.subdomainsOnly ? '*.' : ''}${r.value}`
}

/**
 * Parse one profile file. `file` labels sources and problems (`blocklists/profiles/web.txt`), `name`
 * is the profile's name (from the file name; see profileNameOf). A line that is not valid is a
 * Problem and is skipped, the rest of the file still applies; a bad or second `mode=` line leaves the
 * mode as it was (`enforce` unless an earlier line set it): an error never loosens a profile.
 */
export function parseProfile(text: string, file: string, name: string): { profile: Profile; problems: Problem[] } {
  const problems: Problem[] = []
  const rules: ProfileRule[] = []
  const byKey = new Map<string, ProfileRule>()
  let mode: ProfileMode = 'enforce'
  let modeSource: string | undefined
  let pending: string | undefined
  let lineNo = 0
  const problem = (f: Flaw): void => void problems.push({ file, line: lineNo, ...f })

  const lines = text.split('\n')
  if (lines[0]?.charCodeAt(0) === 0xfeff) lines[0] = lines[0].slice(1)
  // A final newline does not start one more line.
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop()
  for (const rawLine of lines) {
    lineNo++
    const raw = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine
    if (raw.length > MAX_LINE) {
      pending = undefined
      problem(err('line-too-long', `line is ${raw.length} characters long, the limit is ${MAX_LINE}`))
      continue
    }
    const line = raw.trim()
    if (line === '') {
      pending = undefined // a blank line ends the comment that could have been a reason
      continue
    }
    const c0 = line.charCodeAt(0)
    if (c0 === 35 /* # */ || c0 === 33 /* ! */ || c0 === 59 /* ; */) {
      pending = cleanText(line.replace(/^[#!;]+/, ''))
      continue
    }
    const comment = pending
    pending = undefined
    let body = line
    let reason: string | undefined
    const cut = reasonStart(line)
    if (cut >= 0) {
      reason = cleanText(line.slice(cut + 1))
      body = line.slice(0, cut).trimEnd()
    }
    reason ??= comment
    if (body.startsWith('@@')) {
      problem(REFUSED.allow!)
      continue
    }
    if (body === '') {
      problem(err('empty-entry', 'no destination on the line'))
      continue
    }
    const tokens = body.split(/\s+/)
    const first = tokens[0]!

    if (first.startsWith('mode=')) {
      if (tokens.length > 1) {
        problem(REFUSED.modeOnLine!)
        continue
      }
      const val = first.slice(5)
      if (modeSource !== undefined) {
        problem(err('duplicate-mode', `mode= given twice in a profile (first at ${modeSource}); this line is ignored`))
        continue
      }
      modeSource = `${file}:${lineNo}`
      if (!(PROFILE_MODES as readonly string[]).includes(val)) {
        problem(err('bad-mode', `invalid mode=${JSON.stringify(val).slice(1, -1)} (want learn, alert or enforce); the profile stays in enforce mode`))
        continue
      }
      mode = val as ProfileMode
      continue
    }

    let force = false
    let ports: number[] | undefined
    const rest: string[] = []
    const seen = new Set<string>()
    let bad: Flaw | undefined
    for (let i = 1; i < tokens.length && !bad; i++) {
      const t = tokens[i]!
      if (t === 'force') {
        force = true
        continue
      }
      const eq = t.indexOf('=')
      if (eq < 0) {
        rest.push(t)
        continue
      }
      const key = t.slice(0, eq)
      if (seen.has(key)) {
        bad = err('duplicate-option', `${key}= given twice`)
        break
      }
      seen.add(key)
      if (key === 'port') {
        const p = parsePorts(t.slice(eq + 1))
        if (p.ok) ports = p.ports
        else bad = p.flaw
      } else if (key === 'mode') bad = REFUSED.modeOnLine
      else if (key === 'expires') bad = REFUSED.expires
      else bad = err('unknown-option', `unknown option ${JSON.stringify(key + '=')} in a profile (known: port=, force; mode= on a line of its own)`)
    }
    if (bad) {
      problem(bad)
      continue
    }
    if (rest.length > 0) {
      if (looksLikeAddress(first) && !first.includes('/')) problem(REFUSED.hosts!)
      else problem(err('unexpected-text', `unexpected text ${JSON.stringify(rest.join(' '))} after ${JSON.stringify(first)}; put a reason after "#" or ";"`))
      continue
    }
    const v = checkValue(first, force)
    if (!v.ok) {
      problem(v.flaw)
      continue
    }
    if (v.kind === 'domain' && v.warning) problem(v.warning)
    const rule: ProfileRule = { kind: v.kind, value: v.value, source: `${file}:${lineNo}` }
    if (v.kind === 'domain' && v.subdomainsOnly) rule.subdomainsOnly = true
    if (ports) rule.ports = ports
    if (reason !== undefined) rule.reason = reason
    if (force && v.kind === 'net') rule.force = true
    const key = ruleKey(rule)
    const prev = byKey.get(key)
    if (prev) {
      // One rule per destination: the kernel phase gets one port list per line. Any-port wins.
      const merged = prev.ports && rule.ports ? [...new Set([...prev.ports, ...rule.ports])].sort((a, b) => a - b) : undefined
      if (merged) prev.ports = merged
      else delete prev.ports
      problem({ severity: 'warning', code: 'duplicate', message: `duplicate of ${prev.source} (${key.split(' ')[1]}); its ports are merged into that line` })
      continue
    }
    byKey.set(key, rule)
    rules.push(rule)
  }
  if (rules.length === 0 && mode === 'enforce') {
    problems.push({ file, line: 0, severity: 'warning', code: 'empty-profile', message: 'the profile allows nothing: containers held to it reach only the DNS sinkhole' })
  }
  const profile: Profile = { name, mode, rules, source: file }
  if (modeSource !== undefined) profile.modeSource = modeSource
  return { profile, problems }
}
