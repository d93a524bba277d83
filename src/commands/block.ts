// `egress-guard block add|rm|ls`: push, remove and list entries through the server's API.
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import type { Entry, NewEntry } from '../client/api-types.js'
import { adminClient, adminSpec, formatTable } from '../client/admin-options.js'
import { listProfilesOrNone, profileTable } from './profile.js'

const spec = {
  ...adminSpec,
  reason: { type: 'string', noEnv: true, help: 'why (required for add; recorded in the audit log)' },
  expires: { type: 'string', noEnv: true, help: 'stop applying after 4h, 7d, 2026-12-31 or an RFC 3339 time' },
  alert: { type: 'boolean', noEnv: true, help: 'log hits, do not block' },
  allow: { type: 'boolean', noEnv: true, help: 'an allow entry: wins over any block it overlaps' },
  force: { type: 'boolean', noEnv: true, help: 'accept a network broader than /8 (IPv4) or /32 (IPv6), or one covering an address the server protects' },
  source: { type: 'string', noEnv: true, help: 'ls: only api or file entries' },
  q: { type: 'string', noEnv: true, help: 'ls: only entries whose value, reason, id or source contains this' },
} as const satisfies Spec

const USAGE = `usage: egress-guard block add VALUE... --reason TEXT [--expires 4h|DATE] [--alert] [--allow] [--force]
       egress-guard block rm ID|VALUE [--reason TEXT]
       egress-guard block ls [--source api|file] [--q TEXT] [--json]`

function describe(e: Entry): string {
  return `${e.allow ? '@@' : ''}${e.subdomainsOnly ? '*.' : ''}${e.value}`
}

export function entryTable(entries: Entry[]): string {
  return formatTable(
    ['ID', 'ENTRY', 'MODE', 'EXPIRES', 'SOURCE', 'REASON'],
    entries.map((e) => [e.id ?? '-', describe(e), e.allow ? 'allow' : e.mode, e.expires ?? '-', e.source, e.reason ?? '']),
  )
}

const command: Command = {
  summary: 'push, remove and list blocks through the server (block add/rm/ls)',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'block' })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const [sub, ...values] = positionals
    if (sub === 'add') {
      if (values.length === 0) throw errors.usage('block add needs at least one VALUE (a name, address or network)')
      if (!o.reason?.trim()) throw errors.usage('block add needs --reason TEXT (it goes to the audit log and to every hit)')
      const items: NewEntry[] = values.map((value) => ({
        value,
        reason: o.reason!,
        ...(o.expires ? { expires: o.expires } : {}),
        ...(o.alert ? { mode: 'alert' as const } : {}),
        ...(o.allow ? { allow: true } : {}),
        ...(o.force ? { force: true } : {}),
      }))
      const r = await (await adminClient(o)).addEntries(items)
      if (o.json) io.stdout(JSON.stringify(r) + '\n')
      else {
        io.stdout(entryTable(r.entries))
        for (const w of r.warnings ?? []) io.stderr(`warning: ${w.message}\n`)
        io.stderr(`added ${r.entries.length} ${r.entries.length === 1 ? 'entry' : 'entries'}; policy version ${r.version}\n`)
      }
      return 0
    }
    if (sub === 'rm') {
      if (values.length !== 1) throw errors.usage('usage: egress-guard block rm ID|VALUE [--reason TEXT]')
      const r = await (await adminClient(o)).removeEntry(values[0]!, o.reason)
      if (o.json) io.stdout(JSON.stringify(r) + '\n')
      else {
        io.stdout(entryTable(r.removed))
        io.stderr(`removed ${r.removed.length} ${r.removed.length === 1 ? 'entry' : 'entries'}; policy version ${r.version}\n`)
      }
      return 0
    }
    if (sub === 'ls') {
      if (values.length) throw errors.usage('block ls takes no values; use --q TEXT to filter')
      if (o.source !== undefined && o.source !== 'api' && o.source !== 'file') throw errors.usage('--source must be api or file')
      const api = await adminClient(o)
      const r = await api.listEntries({
        ...(o.source ? { source: o.source as 'api' | 'file' } : {}),
        ...(o.q ? { q: o.q } : {}),
        ...(o.alert ? { mode: 'alert' as const } : {}),
        ...(o.allow ? { allow: true } : {}),
      })
      // The profiles beside the entries: what the fleet allows labelled containers, in the same policy.
      const profiles = (await listProfilesOrNone(api))?.profiles ?? []
      const filtered = o.source !== undefined || o.q !== undefined || o.alert || o.allow
      if (o.json) io.stdout(JSON.stringify({ ...r, profiles }) + '\n')
      else {
        io.stdout(entryTable(r.entries))
        if (profiles.length > 0 && !filtered) io.stdout('\nProfiles\n' + profileTable(profiles))
        io.stderr(`${r.entries.length} entries${profiles.length > 0 ? `, ${profiles.length} ${profiles.length === 1 ? 'profile' : 'profiles'}` : ''}; policy version ${r.version}\n`)
      }
      return 0
    }
    throw errors.usage(USAGE)
  },
}
export default command
