// GET /v1/policy (full, 304, long-poll, diff) and GET /v1/policy/problems.
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ServerContext } from '../context.js'
import { policyQuery, noQuery } from '../schemas.js'

/** If-None-Match may list several etags, quoted or weak (RFC 9110 13.1.2); true when ours is among them. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false
  if (header.trim() === '*') return true
  return header.split(',').some((t) => t.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1') === etag)
}

export default function policyRoutes(app: FastifyInstance, ctx: ServerContext): void {
  // One change wakes thousands of agents asking for the same thing: serialise each answer (the full
  // policy, or the diff since a version) once per policy version, not once per agent.
  let cachedEtag = ''
  const cache = new Map<string, { body: string; diff: boolean }>()
  const answer = (since: number | undefined): { body: string; diff: boolean } => {
    const p = ctx.policy.current
    if (p.etag !== cachedEtag) {
      cache.clear()
      cachedEtag = p.etag
    }
    const key = since === undefined ? 'full' : String(since)
    let a = cache.get(key)
    if (!a) {
      const d = since === undefined ? undefined : ctx.policy.diff(since)
      a = d
        ? // Profiles and quarantines are small and travel whole in every diff: the etag the agent checks covers them.
          { body: JSON.stringify({ version: p.version, etag: p.etag, generatedAt: p.generatedAt, since, added: d.added, removed: d.removed, ...(p.profiles ? { profiles: p.profiles } : {}), ...(p.quarantines ? { quarantines: p.quarantines } : {}) }), diff: true }
        : (cache.get('full') ?? { body: JSON.stringify(p), diff: false })
      // Unknown versions share the full answer; keep the map small when agents send odd versions.
      if (cache.size > 64) cache.clear()
      cache.set(key, a)
    }
    return a
  }
  const send = (reply: FastifyReply, since: number | undefined): FastifyReply => {
    const a = answer(since)
    reply.header('etag', `"${cachedEtag}"`).header('cache-control', 'no-cache').type('application/json; charset=utf-8')
    if (a.diff) reply.header('x-policy-diff', '1')
    return reply.send(a.body)
  }

  app.get<{ Querystring: { wait?: number; since?: number } }>(
    '/v1/policy',
    {
      config: { roles: ['agent', 'read', 'admin'], rateLimit: { max: ctx.limits.policyRatePerMinute } },
      schema: {
        summary: 'The policy: full, 304 when unchanged, long-poll with ?wait, diff with ?since',
        querystring: policyQuery,
        headers: { type: 'object', properties: { 'if-none-match': { type: 'string', maxLength: 1024 } } },
      },
    },
    async (req, reply) => {
      const inm = req.headers['if-none-match']
      const since = req.query.since
      if (!etagMatches(inm, ctx.policy.current.etag)) return send(reply, since)
      const wait = Math.min(req.query.wait ?? 0, ctx.limits.maxWaitSec)
      if (wait > 0) {
        // Hold until the policy changes, the wait ends, the client leaves or the server closes.
        const w = ctx.policy.waiters.wait(wait * 1000)
        const onClose = (): void => w.cancel()
        reply.raw.once('close', onClose)
        const why = await w.promise
        reply.raw.off('close', onClose)
        if (why === 'changed' && !etagMatches(inm, ctx.policy.current.etag)) return send(reply, since)
      }
      reply.header('etag', `"${ctx.policy.current.etag}"`).header('cache-control', 'no-cache')
      return reply.code(304).send()
    },
  )

  app.get(
    '/v1/policy/problems',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Lint problems of the blocklist files, and stored entries not served because they fail validation', querystring: noQuery } },
    async () => ({ version: ctx.policy.current.version, problems: ctx.policy.problems }),
  )
}
