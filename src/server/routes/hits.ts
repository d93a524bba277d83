// POST /v1/hits (agents upload sinkhole hits in batches) and GET /v1/hits (query them).
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { Hit } from '../../sinkhole/types.js'
import { errors } from '../../errors.js'
import { parseDuration } from '../../config.js'
import { hitsBody, hitsQuery } from '../schemas.js'

/** `1h` (back from now) or an RFC 3339 time. */
export function parseSince(text: string, now: Date): Date {
  const d = parseDuration(text)
  if (d !== undefined) return new Date(now.getTime() - d)
  if (/^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2}))?$/.test(text)) {
    const ms = Date.parse(text)
    if (!Number.isNaN(ms)) return new Date(ms)
  }
  throw errors.badInput(`since: want a duration like 1h or an RFC 3339 time, got ${JSON.stringify(text)}`)
}

/** Copy only the known fields: what is stored is exactly the Hit shape, whatever else was sent. */
function cleanHit(h: Hit, host: string): Hit {
  const c = h.container
  return {
    time: h.time,
    lastTime: h.lastTime,
    count: h.count,
    client: h.client,
    ...(c ? { container: { id: c.id, name: c.name, image: c.image, ...(c.service ? { service: c.service } : {}), ...(c.project ? { project: c.project } : {}) } } : {}),
    name: h.name.toLowerCase().replace(/\.$/, ''),
    qtype: h.qtype,
    action: h.action,
    entry: { value: h.entry.value, source: h.entry.source, mode: h.entry.mode, ...(h.entry.reason ? { reason: h.entry.reason } : {}), ...(h.entry.id ? { id: h.entry.id } : {}) },
    answer: h.answer,
    host,
  }
}

export default function hitRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post<{ Body: { host: string; hits: Hit[] } }>(
    '/v1/hits',
    {
      bodyLimit: ctx.limits.hitsBodyBytes,
      config: { roles: ['agent'] },
      schema: { summary: `Upload a batch of hits (at most ${ctx.limits.hitsPerBatch})`, body: hitsBody(ctx.limits.hitsPerBatch) },
    },
    async (req, reply) => {
      const p = req.principal!
      if (p.host !== req.body.host) throw errors.forbidden(`this agent token is bound to host ${JSON.stringify(p.host ?? '')}, not ${JSON.stringify(req.body.host)}`)
      const accepted = await ctx.store.appendHits(req.body.hits.map((h) => cleanHit(h, req.body.host)))
      ctx.metrics.hitsReceived(accepted)
      return reply.code(202).send({ accepted })
    },
  )

  app.get<{ Querystring: { since?: string; host?: string; container?: string; domain?: string; limit?: number } }>(
    '/v1/hits',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Hits, newest first', querystring: hitsQuery } },
    async (req) => {
      const q = req.query
      const hits = await ctx.store.queryHits({
        ...(q.since ? { since: parseSince(q.since, ctx.now()) } : {}),
        ...(q.host ? { host: q.host } : {}),
        ...(q.container ? { container: q.container } : {}),
        ...(q.domain ? { domain: q.domain } : {}),
        limit: q.limit ?? 1000,
      })
      return { hits }
    },
  )
}
