// GET /v1/audit and the token routes (POST/GET/DELETE /v1/tokens): admin bookkeeping.
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { Role } from '../../client/api-types.js'
import { errors } from '../../errors.js'
import { generateToken } from '../auth.js'
import { idParams, limitQuery, noQuery, tokenBody } from '../schemas.js'

export default function adminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Querystring: { limit?: number } }>(
    '/v1/audit',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Audit log, newest first', querystring: limitQuery } },
    async (req) => ({ events: await ctx.store.listAudit(req.query.limit ?? 100) }),
  )

  app.post<{ Body: { role: Role; host?: string; name?: string } }>(
    '/v1/tokens',
    { config: { roles: ['admin'] }, schema: { summary: 'Create a token (the secret is in this answer only)', body: tokenBody } },
    async (req, reply) => {
      const { role, host, name } = req.body
      if (role === 'agent' && !host) throw errors.badInput('an agent token needs a host: one token per host, so a host can be cut off alone')
      if (role !== 'agent' && host) throw errors.badInput('only agent tokens are bound to a host')
      if (host && (await ctx.store.listTokens()).some((t) => t.role === 'agent' && t.host === host)) {
        throw errors.conflict(`host ${host} already has an agent token; remove it first (DELETE /v1/tokens/ID)`)
      }
      const t = generateToken()
      const actor = req.principal!.actor
      await ctx.store.addToken({ id: t.id, hash: t.hash, role, ...(host ? { host } : {}), ...(name ? { name } : {}), created: ctx.now().toISOString(), createdBy: actor }, { actor })
      await ctx.refreshTokens()
      return reply.code(201).send({ id: t.id, token: t.secret, role, ...(host ? { host } : {}) })
    },
  )

  app.get(
    '/v1/tokens',
    { config: { roles: ['admin'] }, schema: { summary: 'Tokens, without secrets or hashes', querystring: noQuery } },
    async () => ({ tokens: (await ctx.store.listTokens()).map(({ hash: _h, ...t }) => t) }),
  )

  app.delete<{ Params: { id: string } }>(
    '/v1/tokens/:id',
    { config: { roles: ['admin'] }, schema: { summary: 'Revoke a token', params: idParams, querystring: noQuery } },
    async (req, reply) => {
      const removed = await ctx.store.removeToken(req.params.id, { actor: req.principal!.actor })
      if (!removed) throw errors.notFound(`no token with id ${JSON.stringify(req.params.id)}`)
      await ctx.refreshTokens()
      return reply.code(204).send()
    },
  )
}
