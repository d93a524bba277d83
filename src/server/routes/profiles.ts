// GET /v1/profiles: the policy's profiles with their modes and line counts, for `profile ls`,
// `block ls` and the dashboard. Agents get the profiles with the policy itself (GET /v1/policy).
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { ProfileListItem, ProfilesBody } from '../../client/api-types.js'
import { noQuery } from '../schemas.js'

export default function profileRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get(
    '/v1/profiles',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Profiles of the policy: name, mode, destination lines', querystring: noQuery } },
    async (): Promise<ProfilesBody> => {
      const p = ctx.policy.current
      // Hook for the per-container phase: `containers` (per host) joins here from the agents' reports.
      const profiles: ProfileListItem[] = (p.profiles ?? []).map((pr) => ({ name: pr.name, mode: pr.mode, lines: pr.rules.length, source: pr.source, rules: pr.rules }))
      return { version: p.version, profiles }
    },
  )
}
