// `egress-guard profile ls`: the profiles the server distributes, their modes and sizes (and, once
// agents report them, the containers held to each per host). `profile suggest` comes with learn mode.
import type { Command } from './types.js'
import { helpText, loadOptions } from '../config.js'
import { errors, isEgError } from '../errors.js'
import type { ApiClient } from '../client/api-client.js'
import type { ProfileListItem, ProfilesBody } from '../client/api-types.js'
import { adminClient, adminSpec, formatTable } from '../client/admin-options.js'

const spec = { ...adminSpec } as const

const USAGE = `usage: egress-guard profile ls [--json]

Lists the profiles (<blocklists dir>/profiles/NAME.txt) the server distributes: name, mode
(learn, alert or enforce), destination lines and source file.`

/**
 * The profiles table (also under `block ls`). The CONTAINERS column appears once the server reports
 * containers held to profiles (host/name per container).
 */
export function profileTable(profiles: ProfileListItem[]): string {
  const withContainers = profiles.some((p) => p.containers !== undefined)
  const header = ['PROFILE', 'MODE', 'LINES', 'SOURCE', ...(withContainers ? ['CONTAINERS'] : [])]
  return formatTable(
    header,
    profiles.map((p) => [
      p.name,
      p.mode,
      String(p.lines),
      p.source,
      ...(withContainers ? [(p.containers ?? []).map((c) => `${c.host}/${c.container.name}`).join(', ') || '-'] : []),
    ]),
  )
}

/** The profiles, or none from a server that predates them (404 on /v1/profiles). */
export async function listProfilesOrNone(api: ApiClient): Promise<ProfilesBody | undefined> {
  try {
    return await api.listProfiles()
  } catch (e) {
    if (isEgError(e) && e.code === 'EG_NOT_FOUND') return undefined
    throw e
  }
}

const command: Command = {
  summary: 'list the profiles the server distributes and their modes (profile ls)',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'profile' })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const [sub, ...rest] = positionals
    if (sub !== 'ls' || rest.length > 0) throw errors.usage(USAGE)
    const r = await (await adminClient(o)).listProfiles()
    if (o.json) io.stdout(JSON.stringify(r) + '\n')
    else {
      if (r.profiles.length > 0) io.stdout(profileTable(r.profiles))
      io.stderr(`${r.profiles.length} ${r.profiles.length === 1 ? 'profile' : 'profiles'}; policy version ${r.version}\n`)
    }
    return 0
  },
}
export default command
