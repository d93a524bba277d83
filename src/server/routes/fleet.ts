// POST /v1/report (agents say what they applied) and GET /v1/hosts (the fleet's state).
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { ReportBody } from '../../client/api-types.js'
import { errors } from '../../errors.js'
import { hostStatuses } from '../fleet.js'
import { noQuery, reportBody } from '../schemas.js'

export default function fleetRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post<{ Body: ReportBody }>(
    '/v1/report',
    { config: { roles: ['agent'] }, schema: { summary: 'An agent reports the policy it has applied', body: reportBody } },
    async (req, reply) => {
      const p = req.principal!
      // One token per host: a stolen token can only speak for its own host.
      if (p.host !== req.body.host) throw errors.forbidden(`this agent token is bound to host ${JSON.stringify(p.host ?? '')}, not ${JSON.stringify(req.body.host)}`)
      await ctx.store.upsertAgent({ ...req.body, lastSeen: ctx.now().toISOString() })
      return reply.code(204).send()
    },
  )

  app.get(
    '/v1/hosts',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Fleet: each host, what it applied, its state', querystring: noQuery } },
    async () => {
      const cur = ctx.policy.current
      return { current: { version: cur.version, etag: cur.etag }, hosts: hostStatuses(await ctx.store.listAgents(), cur, ctx.now(), ctx.limits.silentAfterMs) }
    },
  )
}
