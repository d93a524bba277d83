// `egress-guard quarantine add|rm|ls`: cut a container off (every egress refused but DNS to the
// sinkhole) through the server's API, lift it, and list what is in force with the containers each
// quarantine holds on which host.
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import type { QuarantineListItem } from '../client/api-types.js'
import type { Quarantine } from '../quarantine/types.js'
import { adminClient, adminSpec, ago, formatTable } from '../client/admin-options.js'

const spec = {
  ...adminSpec,
  host: { type: 'string', noEnv: true, help: 'add: only on this host (default: every host)' },
  reason: { type: 'string', noEnv: true, help: 'why (required for add and rm; recorded in the audit log)' },
  expires: { type: 'string', noEnv: true, help: 'add: lift it after 4h, 7d, 2026-12-31 or an RFC 3339 time' },
} as const satisfies Spec

const USAGE = `usage: egress-guard quarantine add CONTAINER [--host H] --reason TEXT [--expires 4h|DATE]
       egress-guard quarantine rm CONTAINER|ID --reason TEXT
       egress-guard quarantine ls [--json]

CONTAINER is a container name, an id prefix of at least 12 hex digits (as docker ps prints it) or a
compose service; every running container it names (on --host, or on every host) is quarantined:
its egress is refused except DNS to the sinkhole, its open connections are cut, and it stays so
across restarts until the quarantine is removed or expires. rm takes the quarantine's id or the
CONTAINER text it was made with (every quarantine of that text is removed).`

function quarantineTable(list: Quarantine[]): string {
  return formatTable(
    ['ID', 'CONTAINER', 'HOST', 'EXPIRES', 'ADDED', 'BY', 'REASON'],
    list.map((q) => [q.id, q.container, q.host ?? '(every host)', q.expires ?? 'never', ago(q.added), q.actor, q.reason]),
  )
}

/** `quarantine ls`: one row per quarantine; MATCHED lists host/container per container agents hold in it. */
export function quarantineLsTable(list: QuarantineListItem[]): string {
  return formatTable(
    ['ID', 'CONTAINER', 'HOST', 'MATCHED', 'EXPIRES', 'ADDED', 'BY', 'REASON'],
    list.map((q) => [
      q.id,
      q.container,
      q.host ?? '(every host)',
      q.matched.length ? q.matched.map((m) => `${m.host}/${m.container.name} (${m.container.id.slice(0, 12)})`).join(', ') : 'no match yet',
      q.expires ?? 'never',
      ago(q.added),
      q.actor,
      q.reason,
    ]),
  )
}

const command: Command = {
  summary: 'cut a container off but DNS, lift it, list quarantines (quarantine add/rm/ls)',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'quarantine' })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const [sub, ...values] = positionals
    if (sub === 'add') {
      if (values.length !== 1) throw errors.usage('usage: egress-guard quarantine add CONTAINER [--host H] --reason TEXT [--expires 4h|DATE]')
      if (!o.reason?.trim()) throw errors.usage('quarantine add needs --reason TEXT (it goes to the audit log)')
      const r = await (await adminClient(o)).addQuarantine({
        container: values[0]!,
        reason: o.reason,
        ...(o.host ? { host: o.host } : {}),
        ...(o.expires ? { expires: o.expires } : {}),
      })
      if (o.json) io.stdout(JSON.stringify(r) + '\n')
      else {
        io.stdout(quarantineTable([r.quarantine]))
        io.stderr(`quarantined ${JSON.stringify(r.quarantine.container)} ${r.quarantine.host ? `on ${r.quarantine.host}` : 'on every host'}; policy version ${r.version}. \`egress-guard quarantine ls\` shows the containers it holds once agents apply it\n`)
      }
      return 0
    }
    if (sub === 'rm') {
      if (values.length !== 1) throw errors.usage('usage: egress-guard quarantine rm CONTAINER|ID --reason TEXT')
      if (!o.reason?.trim()) throw errors.usage('quarantine rm needs --reason TEXT (it goes to the audit log)')
      const r = await (await adminClient(o)).removeQuarantine(values[0]!, o.reason)
      if (o.json) io.stdout(JSON.stringify(r) + '\n')
      else {
        io.stdout(quarantineTable(r.removed))
        io.stderr(`lifted ${r.removed.length} ${r.removed.length === 1 ? 'quarantine' : 'quarantines'}; policy version ${r.version}\n`)
      }
      return 0
    }
    if (sub === 'ls') {
      if (values.length) throw errors.usage('quarantine ls takes no values')
      const r = await (await adminClient(o)).listQuarantines()
      if (o.json) io.stdout(JSON.stringify(r) + '\n')
      else {
        if (r.quarantines.length > 0) io.stdout(quarantineLsTable(r.quarantines))
        const waiting = r.quarantines.filter((q) => q.matched.length === 0).length
        io.stderr(`${r.quarantines.length} ${r.quarantines.length === 1 ? 'quarantine' : 'quarantines'} in force${waiting ? `, ${waiting} with no match yet` : ''}; policy version ${r.version}\n`)
      }
      return 0
    }
    throw errors.usage(USAGE)
  },
}
export default command
