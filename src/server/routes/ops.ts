// GET /healthz (no auth), GET /metrics (Prometheus; read/admin unless metrics are open), GET /openapi.json.
import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import type { ServerContext } from '../context.js'
import { noQuery } from '../schemas.js'

export default function opsRoutes(app: FastifyInstance, ctx: ServerContext, opts: { registry: Registry; openMetrics: boolean }): void {
  app.get('/healthz', { schema: { summary: 'Liveness and the current policy version', querystring: noQuery } }, async () => ({ ok: true, version: ctx.policy.current.version }))

  app.get(
    '/metrics',
    { config: opts.openMetrics ? {} : { roles: ['read', 'admin'] }, schema: { summary: 'Prometheus metrics (text exposition)', querystring: noQuery } },
    async (_req, reply) => reply.header('content-type', opts.registry.contentType).send(await opts.registry.metrics()),
  )

  app.get('/openapi.json', { schema: { hide: true } }, async () => (app as FastifyInstance & { swagger: () => unknown }).swagger())
}
