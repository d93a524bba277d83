// POST /v1/learned (agents upload what containers in learn-mode profiles looked up) and
// GET /v1/profiles/:name/learned (what was learned, the input of `profile suggest`).
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { LearnedAccepted, LearnedBody } from '../../client/api-types.js'
import { errors } from '../../errors.js'
import { learnedRecordProblem, type LearnedRecord } from '../../profiles/learned.js'
import { parseSince } from './hits.js'
import { learnedBody, profileNameParams, sinceQuery } from '../schemas.js'

export default function learnedRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post<{ Body: { host: string; records: LearnedRecord[] } }>(
    '/v1/learned',
    {
      bodyLimit: ctx.limits.learnedBodyBytes,
      config: { roles: ['agent'] },
      schema: { summary: `Upload learn-mode records (at most ${ctx.limits.learnedPerBatch}): names looked up per profile`, body: learnedBody(ctx.limits.learnedPerBatch) },
    },
    async (req, reply): Promise<LearnedAccepted> => {
      const p = req.principal!
      if (p.host !== req.body.host) throw errors.forbidden(`this agent token is bound to host ${JSON.stringify(p.host ?? '')}, not ${JSON.stringify(req.body.host)}`)
      // All or nothing, like entries: the agent filters with learnedRecordProblem before it uploads.
      const problems: { index: number; path: string; message: string }[] = []
      req.body.records.forEach((r, index) => {
        const why = learnedRecordProblem(r)
        if (why) problems.push({ index, path: `/records/${index}`, message: `records[${index}] ${JSON.stringify(r.name.slice(0, 80))}: ${why}` })
      })
      if (problems.length > 0) throw errors.badInput(problems.length === 1 ? problems[0]!.message : `${problems.length} invalid records; nothing was stored`, { problems: problems.slice(0, 100) })
      // Only profiles the policy has: this bounds what the store keeps to (profiles x the per-profile cap).
      const known = new Set((ctx.policy.current.profiles ?? []).map((x) => x.name))
      const kept = req.body.records.filter((r) => known.has(r.profile))
      if (kept.length > 0) await ctx.store.mergeLearned(req.body.host, kept)
      return reply.code(202).send({ accepted: kept.length, ignored: req.body.records.length - kept.length })
    },
  )

  app.get<{ Params: { name: string }; Querystring: { since?: string } }>(
    '/v1/profiles/:name/learned',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'What containers held to a profile looked up (learn mode), by name', params: profileNameParams, querystring: sinceQuery } },
    async (req): Promise<LearnedBody> => {
      const name = req.params.name
      const since = parseSince(req.query.since ?? '7d', ctx.now())
      const profile = (ctx.policy.current.profiles ?? []).find((x) => x.name === name)
      const records = await ctx.store.listLearned({ profile: name, since })
      if (!profile && records.length === 0) throw errors.notFound(`no profile ${JSON.stringify(name)} in the policy and nothing learned for it`)
      return { profile: name, ...(profile ? { mode: profile.mode } : {}), records }
    },
  )
}
