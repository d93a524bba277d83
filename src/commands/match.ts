// `egress-guard match NAME|IP`: which entry decides for a name or an address, and why, answered from
// the blocklist files the same way the agent and the sinkhole decide (buildPolicy, then the matcher).
// Exit 0 when blocked, 1 when not blocked (no match, allowed, alert only), 2 on bad input.
import type { Command, CommandIO } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { loadBlocklists } from '../policy/load.js'
import { buildPolicy } from '../policy/merge.js'
import { buildMatcher } from '../policy/matcher.js'
import { normalizeName } from '../policy/names.js'
import { formatIp, parseIp } from '../policy/net.js'
import { formatProblem } from '../policy/problems.js'
import type { Entry, Problem, Verdict } from '../policy/types.js'

const spec = {
  blocklists: { type: 'string', multiple: true, help: 'blocklist directory or file (repeatable; default ./blocklists)' },
} as const satisfies Spec

const USAGE = `usage: egress-guard match NAME|IP [--blocklists DIR] [--json]

Shows which blocklist entry decides for a DNS name or an IP address: its value, file:line (or API id),
reason and mode. Exit 0 when blocked, 1 when not blocked (no match, allowed, or alert only), 2 on bad input.`

/** Problems of the loaded files shown before the answer; the rest are counted (`lint` lists them all). */
const MAX_PROBLEMS_SHOWN = 20

export type Query = { kind: 'ip'; value: string } | { kind: 'name'; value: string }

/** NAME or IP as typed -> what to look up, or a message saying why it is neither. */
export function parseQuery(raw: string): Query | { error: string } {
  const text = raw.trim()
  if (text === '') return { error: 'empty query: give a DNS name or an IP address' }
  const ip = parseIp(text)
  if (ip) return { kind: 'ip', value: formatIp(ip) }
  if (text.includes('/')) return { error: `${JSON.stringify(raw)} is a network; give one address inside it (match takes a name or an address)` }
  if (text.includes(':')) return { error: `${JSON.stringify(raw)} is not a valid IPv6 address` }
  const n = normalizeName(text)
  if (!n.ok) return { error: n.message }
  if (n.subdomainsOnly) return { error: `${JSON.stringify(raw)}: "*." belongs in blocklist entries; give a name to look up, e.g. www.${n.name}` }
  return { kind: 'name', value: n.name }
}

/** How an entry is written in a blocklist file (the prefix tells allow and `*.` apart). */
export function entryText(e: Entry): string {
  return `${e.allow ? '@@' : ''}${e.subdomainsOnly ? '*.' : ''}${e.value}`
}

function describe(query: string, v: Verdict | undefined, counts: { entries: number; files: number }): string {
  if (!v) {
    return `${query}: not blocked: no entry matches (${counts.entries} entries from ${counts.files} file${counts.files === 1 ? '' : 's'})\n`
  }
  const e = v.entry
  const head =
    v.action === 'block'
      ? `${query}: blocked by ${entryText(e)}`
      : v.action === 'allow'
        ? `${query}: not blocked: allowed by ${entryText(e)} (an allow wins over any block it overlaps)`
        : `${query}: not blocked: alert only, by ${entryText(e)} (lookups and connections are logged, not blocked)`
  const lines = [head, `  source  ${e.source}`]
  if (e.id !== undefined) lines.push(`  id      ${e.id}`)
  lines.push(`  reason  ${e.reason ?? '(none given)'}`)
  lines.push(`  mode    ${e.mode}`)
  lines.push(`  action  ${v.action}`)
  if (e.expires !== undefined) lines.push(`  expires ${e.expires}`)
  return lines.join('\n') + '\n'
}

function reportProblems(problems: readonly Problem[], io: CommandIO): void {
  if (problems.length === 0) return
  let text = ''
  for (const p of problems.slice(0, MAX_PROBLEMS_SHOWN)) text += `warning: ${formatProblem(p)}\n`
  if (problems.length > MAX_PROBLEMS_SHOWN) {
    text += `warning: ... and ${problems.length - MAX_PROBLEMS_SHOWN} more problems (run egress-guard lint to see them all)\n`
  }
  io.stderr(text)
}

const command: Command = {
  summary: 'which entry decides for a name or an IP (exit 0 blocked, 1 not blocked, 2 bad input)',
  async run(argv, io) {
    const { options, positionals } = loadOptions(argv, spec, { env: io.env, section: 'match' })
    if (options.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    if (positionals.length !== 1) throw errors.usage(`give exactly one NAME or IP (got ${positionals.length})\n${USAGE}`)
    const raw = positionals[0]!
    const q = parseQuery(raw)
    if ('error' in q) {
      const err = errors.badInput(q.error)
      if (options.json) io.stdout(JSON.stringify({ query: raw, error: { code: err.code, message: err.message } }) + '\n')
      io.stderr(`egress-guard match: ${err.message}\n`)
      return 2
    }

    const paths = options.blocklists.length > 0 ? [...options.blocklists] : ['blocklists']
    const now = new Date()
    const loaded = await loadBlocklists(paths, { now })
    // Nothing readable at all is a setup mistake, not "not blocked".
    if (loaded.files.length === 0 && loaded.problems.some((p) => p.line === 0 && p.severity === 'error')) {
      throw errors.config(`no blocklist could be read: ${loaded.problems.map((p) => formatProblem(p)).join('; ')}`)
    }
    reportProblems(loaded.problems, io)
    if (loaded.files.length === 0) io.stderr(`warning: no blocklist files in ${paths.join(', ')}\n`)
    const policy = buildPolicy(loaded.entries, { now })
    const matcher = buildMatcher(policy.entries, { now })
    const verdict = q.kind === 'ip' ? matcher.matchIp(q.value) : matcher.matchName(q.value)
    const blocked = verdict?.action === 'block'
    if (options.json) {
      io.stdout(JSON.stringify({ query: raw, normalized: q.value, kind: q.kind, blocked, verdict: verdict ?? null }) + '\n')
    } else {
      io.stdout(describe(raw.trim(), verdict, { entries: policy.entries.length, files: loaded.files.length }))
    }
    return blocked ? 0 : 1
  },
}
export default command
