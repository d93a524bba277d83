// POST/DELETE/GET /v1/quarantines: cut one container off (everything but DNS to the sinkhole) through
// the API, audited, distributed with the policy; lift it with a reason; list what is in force and the
// containers each one holds, as the agents report them.
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { AddedQuarantine, QuarantineListItem, QuarantinesBody, RemovedQuarantines } from '../../client/api-types.js'
import type { AgentRecord } from '../../store/types.js'
import type { NewQuarantine, Quarantine, QuarantineMatch } from '../../quarantine/types.js'
import { errors } from '../../errors.js'
import { isExpired, parseExpires } from '../../policy/expiry.js'
import { containerKey, quarantineActive, sameHost } from '../../quarantine/match.js'
import { QUARANTINE_ID } from '../../quarantine/check.js'
import { noQuery, quarantineBody, removeQuarantineParams, requiredReasonQuery } from '../schemas.js'

/** The containers agents report holding in quarantine `id` (their last reports). */
export function matchedBy(agents: readonly AgentRecord[], id: string): QuarantineMatch[] {
  const out: QuarantineMatch[] = []
  for (const a of agents) for (const c of a.containers ?? []) if (c.quarantineId === id) out.push({ host: a.host, container: { id: c.id, name: c.name } })
  return out.sort((x, y) => x.host.localeCompare(y.host) || x.container.name.localeCompare(y.container.name))
}

/** Same container text (a leading `/` aside) on the same host (or both fleet-wide). */
const sameTarget = (q: Quarantine, n: NewQuarantine): boolean =>
  containerKey(q.container) === containerKey(n.container) && (q.host === undefined ? n.host === undefined : n.host !== undefined && sameHost(q.host, n.host))

export default function quarantineRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post<{ Body: NewQuarantine }>(
    '/v1/quarantines',
    { config: { roles: ['admin'] }, schema: { summary: 'Quarantine a container: every egress refused but DNS to the sinkhole; reason required', body: quarantineBody } },
    async (req, reply): Promise<AddedQuarantine> => {
      const actor = req.principal!.actor
      const now = ctx.now()
      const b = req.body
      const reason = b.reason.trim()
      if (!reason) throw errors.badInput('reason must not be blank', { problems: [{ path: '/reason', message: 'reason must not be blank' }] })
      let expires: string | undefined
      if (b.expires !== undefined) {
        expires = parseExpires(b.expires, now)
        if (expires === undefined) throw errors.badInput(`invalid expires ${JSON.stringify(b.expires)} (want 4h, 7d, 2026-12-31 or 2026-12-31T18:00:00Z)`, { problems: [{ path: '/expires', message: 'invalid expires' }] })
        if (isExpired({ expires }, now)) throw errors.badInput(`expires ${expires} is already past`, { problems: [{ path: '/expires', message: 'already past' }] })
      }
      const n: NewQuarantine = { container: b.container, ...(b.host !== undefined ? { host: b.host } : {}), reason, ...(expires !== undefined ? { expires } : {}) }
      const same = (await ctx.store.listQuarantines()).find((q) => quarantineActive(q, now) && sameTarget(q, n))
      if (same) throw errors.conflict(`${JSON.stringify(n.container)}${n.host ? ` on ${n.host}` : ''} is already quarantined (${same.id}, by ${same.actor}: ${same.reason})`, { id: same.id })
      const q = await ctx.store.addQuarantine(n, { actor })
      const policy = await ctx.policy.rebuild(`quarantine of ${q.container}${q.host ? ` on ${q.host}` : ''} added by ${actor}`)
      return reply.code(201).send({ quarantine: q, version: policy.version })
    },
  )

  app.delete<{ Params: { idOrContainer: string }; Querystring: { reason: string } }>(
    '/v1/quarantines/:idOrContainer',
    {
      config: { roles: ['admin'] },
      schema: { summary: 'Lift a quarantine by id, or every quarantine of a container text; reason required', params: removeQuarantineParams, querystring: requiredReasonQuery },
    },
    async (req): Promise<RemovedQuarantines> => {
      const actor = req.principal!.actor
      const reason = req.query.reason.trim()
      if (!reason) throw errors.badInput('reason must not be blank')
      const key = req.params.idOrContainer
      const all = await ctx.store.listQuarantines()
      let hits = QUARANTINE_ID.test(key) ? all.filter((q) => q.id === key) : []
      if (hits.length === 0) hits = all.filter((q) => containerKey(q.container) === containerKey(key))
      if (hits.length === 0) throw errors.notFound(`no quarantine has id or container ${JSON.stringify(key)}`)
      const removed = await ctx.store.removeQuarantines(hits.map((q) => q.id), { actor, reason })
      const policy = await ctx.policy.rebuild(`${removed.length === 1 ? 'quarantine' : `${removed.length} quarantines`} of ${key} lifted by ${actor}`)
      return { removed, version: policy.version }
    },
  )

  app.get(
    '/v1/quarantines',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Quarantines in force and the containers each holds, per host', querystring: noQuery } },
    async (): Promise<QuarantinesBody> => {
      const p = ctx.policy.current
      const agents = await ctx.store.listAgents()
      const quarantines: QuarantineListItem[] = (p.quarantines ?? []).map((q) => ({ ...q, matched: matchedBy(agents, q.id) }))
      return { version: p.version, quarantines }
    },
  )
}
