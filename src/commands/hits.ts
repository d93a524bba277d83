// `egress-guard hits`: blocked and alert lookups collected from every host's sinkhole, newest first.
import type { Command } from './types.js'
import { helpText, intOption, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { adminClient, adminSpec, formatTable } from '../client/admin-options.js'

const spec = {
  ...adminSpec,
  since: { type: 'string', noEnv: true, default: '1h', help: 'how far back: 30m, 1h, 7d or an RFC 3339 time' },
  host: { type: 'string', noEnv: true, help: 'only this host' },
  container: { type: 'string', noEnv: true, help: 'only this container (id prefix, name or compose service)' },
  domain: { type: 'string', noEnv: true, help: 'only this name and names under it' },
  limit: { type: 'string', noEnv: true, help: 'at most this many (default 1000)' },
} as const satisfies Spec

const USAGE = `usage: egress-guard hits [--since 1h] [--host H] [--container C] [--domain D] [--limit N] [--json]`

const command: Command = {
  summary: 'blocked lookups from every host, with the container that made them',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'hits' })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    if (positionals.length) throw errors.usage(USAGE)
    const limit = intOption('limit', o.limit, 1000, 1, 10000)
    const r = await (await adminClient(o)).hits({
      ...(o.since ? { since: o.since } : {}),
      ...(o.host ? { host: o.host } : {}),
      ...(o.container ? { container: o.container } : {}),
      ...(o.domain ? { domain: o.domain } : {}),
      limit,
    })
    if (o.json) {
      io.stdout(JSON.stringify(r) + '\n')
      return 0
    }
    io.stdout(
      formatTable(
        ['TIME', 'HOST', 'CONTAINER', 'NAME', 'TYPE', 'ACTION', 'COUNT', 'ENTRY', 'REASON'],
        r.hits.map((h) => [h.lastTime, h.host ?? '-', h.container ? `${h.container.name} (${h.container.image})` : h.client, h.name, h.qtype, h.action, String(h.count), `${h.entry.value} ${h.entry.source}`, h.entry.reason ?? '']),
      ),
    )
    io.stderr(`${r.hits.length} hits\n`)
    return 0
  },
}
export default command
