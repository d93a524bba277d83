// `profile suggest`: learn mode's records -> a proposed profile file, for a person to review and
// commit. Pure: records and the current profile in, text out. One name a line, with many siblings
// folded into one `*.parent` line, every line with a comment saying when it was first seen, how often
// and by which containers, so the reviewer can tell a service's API from a one-off.
import type { LearnedRecord } from './learned.js'
import type { ProfileMode, ProfileRule } from './types.js'

/** Distinct labels directly under one parent that make a `*.parent` line (e.g. 5 CDN shards). */
export const SIBLING_THRESHOLD = 5

/**
 * Second-level labels under which registries sell names (`co.uk`, `com.au`, `ac.jp`): a two-label
 * parent made of one of these and a two-letter country code is a public suffix, never folded.
 * A short heuristic; egress-guard ships no copy of the Public Suffix List.
 */
const REGISTRY_SLDS = new Set(['ac', 'co', 'com', 'edu', 'go', 'gob', 'gov', 'ltd', 'mil', 'ne', 'net', 'nic', 'or', 'org', 'plc', 'sch'])

/**
 * Suffixes under which anybody can get a name (shared hosting, CDNs, object storage, tunnels): a
 * `*.` line for one of these, or for anything under amazonaws.com (whose tenants sit deeper, as in
 * `bucket.s3.region.amazonaws.com`), would let a container reach names an attacker can register, so
 * siblings under them are never folded. A short list of the common ones, not the PSL's private part.
 */
const SHARED_SUFFIXES = new Set([
  'akamaized.net', 'amazonaws.com', 'appspot.com', 'azureedge.net', 'azurewebsites.net', 'blob.core.windows.net', 'cloudfront.net',
  'fastly.net', 'firebaseapp.com', 'github.io', 'githubusercontent.com', 'googleusercontent.com', 'herokuapp.com', 'netlify.app',
  'ngrok-free.app', 'ngrok.io', 'pages.dev', 'r2.dev', 'storage.googleapis.com', 'trycloudflare.com', 'vercel.app', 'web.app', 'workers.dev',
])

/** May `parent` be written as `*.parent` for its children? Never for a TLD, a public or a shared suffix. */
export function foldable(parent: string): boolean {
  const labels = parent.split('.')
  if (labels.length < 2) return false
  if (labels.length === 2 && labels[1]!.length === 2 && REGISTRY_SLDS.has(labels[0]!)) return false
  if (SHARED_SUFFIXES.has(parent) || parent === 'amazonaws.com' || parent.endsWith('.amazonaws.com')) return false
  return true
}

export interface SuggestOptions {
  /** The profile's name (for the header). */
  name: string
  /** The `mode=` line to write. */
  mode: ProfileMode
  /** The current profile's mode, when the policy has it (the header says when `mode` differs). */
  currentMode?: ProfileMode
  /** The current profile's lines: kept as they are, first; learned names they already allow are not repeated. */
  existing?: readonly ProfileRule[]
  /** The current profile's file, for the header. */
  existingSource?: string
  /** How far back the records go, as asked (`7d`), for the header. */
  since?: string
  now: Date
  siblingThreshold?: number
}

/** One proposed destination line. */
export interface SuggestedLine {
  /** As written: `name` (the name and every name under it) or `*.parent` (names under it). */
  value: string
  /** Earliest firstSeen of the names it stands for. */
  firstSeen: string
  /** Lookups of the names it stands for. */
  count: number
  /** Containers that looked them up (sorted). */
  containers: string[]
  /** The learned names it stands for (itself, or the siblings and names under it), sorted. */
  names: string[]
}

export interface Suggestion {
  text: string
  lines: SuggestedLine[]
  /** Learned names already allowed by a line kept from the current profile. */
  covered: string[]
  /** Single-label names (`db`, `localhost`): a line would allow a whole top-level domain; left out. */
  skipped: string[]
  /** Records considered (after merging duplicates by name). */
  names: number
}

interface Agg {
  name: string
  firstSeen: string
  count: number
  containers: Set<string>
}

/** `a.b.example` sorts as `example.b.a`: siblings and their parent stay together. */
const sortKey = (v: string): string => v.replace(/^\*\./, '').split('.').reverse().join('.') + (v.startsWith('*.') ? '.*' : '')

function under(name: string, parent: string): boolean {
  return name.length > parent.length && name.endsWith('.' + parent)
}

function coveredByRule(name: string, r: ProfileRule): boolean {
  if (r.kind !== 'domain') return false
  return r.subdomainsOnly ? under(name, r.value) : name === r.value || under(name, r.value)
}

function list(items: readonly string[], max: number): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} (+${items.length - max} more)`
}

/** The text of a kept profile line, as the parser reads it back. */
export function ruleLine(r: ProfileRule): string {
  const v = `${r.subdomainsOnly ? '*.' : ''}${r.value}${r.ports ? ` port=${r.ports.join(',')}` : ''}${r.force ? ' force' : ''}`
  return r.reason ? `${v}  # ${r.reason}` : v
}

/** The comment of a proposed line: first seen, lookups, containers (and what a folded line stands for). */
function comment(l: SuggestedLine): string {
  const parts = [`first seen ${l.firstSeen.slice(0, 10)}`, `${l.count} lookup${l.count === 1 ? '' : 's'}`, `containers: ${l.containers.length ? list(l.containers, 5) : '-'}`]
  const others = l.names.filter((n) => n !== l.value)
  if (others.length > 0) parts.push(`${others.length} name${others.length === 1 ? '' : 's'} under it: ${list(others, 5)}`)
  return parts.join(', ')
}

export function suggestProfile(records: readonly LearnedRecord[], o: SuggestOptions): Suggestion {
  const threshold = o.siblingThreshold ?? SIBLING_THRESHOLD
  // Records from several uploads (or hosts) of the same name merge first.
  const byName = new Map<string, Agg>()
  for (const r of records) {
    const a = byName.get(r.name)
    if (!a) byName.set(r.name, { name: r.name, firstSeen: r.firstSeen, count: r.count, containers: new Set(r.containers) })
    else {
      if (Date.parse(r.firstSeen) < Date.parse(a.firstSeen)) a.firstSeen = r.firstSeen
      a.count += r.count
      for (const c of r.containers) a.containers.add(c)
    }
  }
  const existing = o.existing ?? []
  const covered: string[] = []
  const skipped: string[] = []
  const todo: Agg[] = []
  for (const a of [...byName.values()].sort((x, y) => (x.name < y.name ? -1 : 1))) {
    if (existing.some((r) => coveredByRule(a.name, r))) covered.push(a.name)
    else if (!a.name.includes('.')) skipped.push(a.name)
    else todo.push(a)
  }

  // Parents with many distinct labels directly under them, the highest (fewest labels) first: one
  // `*.example.com` covers `*.cdn.example.com` too.
  const children = new Map<string, Set<string>>()
  for (const a of todo) {
    const labels = a.name.split('.')
    for (let i = 1; i < labels.length - 1; i++) {
      const parent = labels.slice(i).join('.')
      let set = children.get(parent)
      if (!set) children.set(parent, (set = new Set()))
      set.add(labels[i - 1]!)
    }
  }
  const lines: Array<SuggestedLine & { match: (n: string) => boolean }> = []
  const taken = (n: string): boolean => lines.some((l) => l.match(n))
  const parents = [...children.entries()]
    .filter(([p, set]) => set.size >= threshold && foldable(p))
    .map(([p]) => p)
    .sort((a, b) => a.split('.').length - b.split('.').length || (a < b ? -1 : 1))
  for (const p of parents) {
    if (taken(p) || lines.some((l) => l.match('x.' + p))) continue
    // The parent looked up itself: a plain line allows it and everything under it.
    const plain = byName.has(p) && !covered.includes(p)
    lines.push({ value: plain ? p : `*.${p}`, firstSeen: '', count: 0, containers: [], names: [], match: plain ? (n) => n === p || under(n, p) : (n) => under(n, p) })
  }
  // The rest, the shortest first: a plain name line allows the names under it, so those fold into it.
  for (const a of [...todo].sort((x, y) => x.name.split('.').length - y.name.split('.').length || (x.name < y.name ? -1 : 1))) {
    if (taken(a.name)) continue
    lines.push({ value: a.name, firstSeen: '', count: 0, containers: [], names: [], match: (n) => n === a.name || under(n, a.name) })
  }
  // What each line stands for.
  for (const a of todo) {
    const l = lines.find((x) => x.match(a.name))!
    if (l.firstSeen === '' || Date.parse(a.firstSeen) < Date.parse(l.firstSeen)) l.firstSeen = a.firstSeen
    l.count += a.count
    l.names.push(a.name)
    for (const c of a.containers) if (!l.containers.includes(c)) l.containers.push(c)
  }
  const out: SuggestedLine[] = lines
    .map(({ match: _m, ...l }) => ({ ...l, containers: l.containers.sort(), names: l.names.sort() }))
    .sort((a, b) => (sortKey(a.value) < sortKey(b.value) ? -1 : sortKey(a.value) > sortKey(b.value) ? 1 : 0))

  const total = [...byName.values()].reduce((s, a) => s + a.count, 0)
  const text: string[] = [
    `# Profile ${o.name}: proposed by \`egress-guard profile suggest ${o.name}${o.since ? ` --since ${o.since}` : ''}\` at ${o.now.toISOString()}`,
    `# from ${byName.size} name${byName.size === 1 ? '' : 's'} (${total} lookup${total === 1 ? '' : 's'}) learned${o.since ? (/^\d+(\.\d+)?(ms|s|m|h|d|w)$/.test(o.since) ? ` in the last ${o.since}` : ` since ${o.since}`) : ''}.`,
    '# Review every line before committing: `name` allows the name and every name under it,',
    '# `*.name` the names under it; a fleet-wide block still wins.',
    `mode=${o.mode}`,
  ]
  if (o.mode !== 'enforce') text.push('# When reviewed: mode=alert shows what enforce would refuse (as hits), then mode=enforce.')
  if (o.currentMode !== undefined && o.currentMode !== o.mode) text.push(`# (the profile in the policy is in mode=${o.currentMode})`)
  if (existing.length > 0) {
    text.push('', `# Kept from the current profile${o.existingSource ? ` (${o.existingSource})` : ''}${covered.length ? `; it already allows ${covered.length} learned name${covered.length === 1 ? '' : 's'}: ${list(covered, 10)}` : ''}`)
    for (const r of existing) text.push(ruleLine(r))
  }
  if (out.length > 0) {
    text.push('', `# Learned (a *.parent line stands for ${threshold} or more names directly under one parent)`)
    for (const l of out) text.push(`${l.value}  # ${comment(l)}`)
  }
  if (skipped.length > 0) {
    text.push('', `# Not proposed: single-label names (a line would allow a whole top-level domain): ${list(skipped, 20)}`)
  }
  if (out.length === 0 && existing.length === 0) text.push('', '# Nothing learned: containers held to this profile would reach only the DNS sinkhole.')
  return { text: text.join('\n') + '\n', lines: out, covered, skipped, names: byName.size }
}
