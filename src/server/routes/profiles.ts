// GET /v1/profiles: the policy's profiles with their modes and line counts, and the containers held
// to each per host (from the agents' reports), for `profile ls`, `block ls` and the dashboard.
// Agents get the profiles with the policy itself (GET /v1/policy).
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { ProfileHolder, ProfileListItem, ProfilesBody } from '../../client/api-types.js'
import type { AgentRecord } from '../../store/types.js'
import type { Profile } from '../../profiles/types.js'
import { noQuery } from '../schemas.js'

/**
 * The profiles with the containers the agents report holding to each; a container whose label names
 * no profile of the policy goes to `missing`. Both appear once any agent reports its containers.
 */
export function profileList(profiles: readonly Profile[], agents: readonly AgentRecord[]): Pick<ProfilesBody, 'profiles' | 'missing'> {
  const reporting = agents.some((a) => a.containers !== undefined)
  const held = new Map<string, ProfileHolder[]>(profiles.map((p) => [p.name, []]))
  const missing: NonNullable<ProfilesBody['missing']> = []
  for (const a of agents) {
    for (const c of a.containers ?? []) {
      if (c.profile === undefined) continue
      const holder = { host: a.host, container: { id: c.id, name: c.name } }
      const list = held.get(c.profile)
      if (list) list.push(holder)
      else missing.push({ ...holder, profile: c.profile })
    }
  }
  const order = (x: ProfileHolder, y: ProfileHolder): number => x.host.localeCompare(y.host) || x.container.name.localeCompare(y.container.name)
  const list: ProfileListItem[] = profiles.map((pr) => ({
    name: pr.name,
    mode: pr.mode,
    lines: pr.rules.length,
    source: pr.source,
    rules: pr.rules,
    ...(reporting ? { containers: held.get(pr.name)!.sort(order) } : {}),
  }))
  return { profiles: list, ...(reporting ? { missing: missing.sort(order) } : {}) }
}

export default function profileRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get(
    '/v1/profiles',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Profiles of the policy: name, mode, destination lines, containers held to each', querystring: noQuery } },
    async (): Promise<ProfilesBody> => {
      const p = ctx.policy.current
      return { version: p.version, ...profileList(p.profiles ?? [], await ctx.store.listAgents()) }
    },
  )
}
