// buildServer(deps): the whole HTTP API as a fastify instance, without listen(), so tests drive it
// with inject() and the `server` command adds the socket. Order matters: swagger and the rate limiter
// register before the routes (both hook into route registration); the rate limiter runs first
// (onRequest), then auth (preParsing), then body parsing and schema validation.
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import { Registry } from 'prom-client'
import type { Logger } from '../log.js'
import type { Store } from '../store/types.js'
import type { PolicyBody } from '../client/api-types.js'
import { EgError, errors, isEgError } from '../errors.js'
import { TokenIndex } from './auth.js'
import { DEFAULT_LIMITS, type ServerContext, type ServerLimits } from './context.js'
import { createServerMetrics } from './metrics.js'
import { hostStatuses } from './fleet.js'
import { PolicyService } from './policy-service.js'
import type { ProtectedNet } from '../policy/protect-check.js'
import { entrySchema } from './schemas.js'
import { isPrintable } from './ui/printable.js'
import policyRoutes from './routes/policy.js'
import fleetRoutes from './routes/fleet.js'
import hitRoutes from './routes/hits.js'
import entryRoutes from './routes/entries.js'
import adminRoutes from './routes/admin.js'
import opsRoutes from './routes/ops.js'
import dashboardRoutes from './routes/dashboard.js'
import profileRoutes from './routes/profiles.js'
import quarantineRoutes from './routes/quarantines.js'
import learnedRoutes from './routes/learned.js'

export interface BuildServerDeps {
  store: Store
  blocklistDirs: string[]
  log: Logger
  registry?: Registry
  now?: () => Date
  /** SHA-256 (hex) of the bootstrap admin token from --admin-token-file (see readAdminTokenFile). */
  adminTokenHash?: string
  limits?: Partial<ServerLimits>
  /** Serve /metrics without a token (for a Prometheus on a trusted network). */
  openMetrics?: boolean
  /** Watch the blocklist directories for changes (the command turns it on; tests call reload()). */
  watch?: boolean
  https?: { cert: string | Buffer; key: string | Buffer }
  /** Versions of the policy kept for diffs. */
  historyKeep?: number
  /**
   * Networks a block entry may cover only with `force` (the server's own addresses, its resolvers,
   * --protect; see protected-addresses.ts). Default none.
   */
  protect?: readonly ProtectedNet[]
  version?: string
}

export interface EgressGuardDecoration {
  /** Re-read the blocklist files (SIGHUP). */
  reload(): Promise<PolicyBody>
  policy: PolicyService
}

declare module 'fastify' {
  interface FastifyInstance {
    eg: EgressGuardDecoration
  }
}

/** Turn anything thrown in a request into the coded error the API promises. */
function toEgError(e: FastifyError | EgError | Error): EgError {
  if (isEgError(e)) return e
  const fe = e as FastifyError
  if (fe.validation) {
    let hidden = false
    const problems = fe.validation.map((v) => {
      const m = /^\/(?:entries|hits|records)\/(\d+)/.exec(v.instancePath)
      const path = `${fe.validationContext ?? ''}${v.instancePath}`
      const isHidden = v.keyword === 'format' && (v.params as { format?: string }).format === 'printable'
      hidden ||= isHidden
      const message = isHidden ? `${path} contains a control or invisible character (send it escaped, e.g. \\x1b)` : `${path} ${v.message ?? 'is invalid'}`
      return { ...(m ? { index: Number(m[1]) } : {}), path, message }
    })
    return hidden ? errors.controlChar(problems.map((p) => p.message).join('; '), { problems }) : errors.badInput(fe.message, { problems })
  }
  const status = fe.statusCode ?? 500
  if (status === 413) return errors.tooLarge(fe.message)
  if (status === 429) return errors.rateLimited(fe.message)
  if (status >= 400 && status < 500) return new EgError('EG_BAD_INPUT', fe.message, status)
  return errors.internal('internal error')
}

export async function buildServer(deps: BuildServerDeps): Promise<FastifyInstance> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...deps.limits }
  const log = deps.log.child({ component: 'server' })
  const now = deps.now ?? (() => new Date())
  const registry = deps.registry ?? new Registry()
  const tokens = new TokenIndex(await deps.store.listTokens(), deps.adminTokenHash)
  // No unauthenticated admin route, ever: without an admin credential there is no server.
  if (!tokens.hasAdmin) {
    throw errors.config('no admin credential: give --admin-token-file FILE (create one with `egress-guard token create --role admin --data DIR --out FILE`)')
  }
  let metrics: ReturnType<typeof createServerMetrics> | undefined
  const policy = new PolicyService({
    store: deps.store,
    blocklistDirs: deps.blocklistDirs,
    log: deps.log.child({ component: 'policy' }),
    now,
    watch: deps.watch ?? false,
    ...(deps.historyKeep !== undefined ? { historyKeep: deps.historyKeep } : {}),
    ...(deps.protect ? { protect: deps.protect } : {}),
    onChange: () => metrics?.policyChange(),
  })
  await policy.init()

  const app = Fastify({
    loggerInstance: log,
    // One line per request is noise with thousands of long-polls; metrics carry latency and counts.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: limits.bodyBytes,
    ...(deps.https ? { https: deps.https } : {}),
    // Unknown fields are an error, not silently dropped; query strings still need type coercion.
    // format `printable`: free text that people will read carries no control characters (schemas.ts).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, formats: { printable: { type: 'string', validate: isPrintable } } } },
    // close(): preClose answers every long-poll (304) and gives the answers a moment to flush; then
    // every connection is cut, so a client that vanished mid-request cannot hold close() for the
    // 72 s keep-alive timeout.
    forceCloseConnections: true,
  }) as unknown as FastifyInstance

  const ctx: ServerContext = {
    store: deps.store,
    policy,
    tokens,
    refreshTokens: async () => tokens.replace(await deps.store.listTokens(), deps.adminTokenHash),
    metrics: (metrics = createServerMetrics(registry, {
      version: () => policy.current.version,
      entries: () => policy.current.entries,
      waiting: () => policy.waiters.size,
      invalidStoreEntries: () => policy.storeProblemCount,
      agentStates: async () => {
        const counts = { 'in-sync': 0, behind: 0, silent: 0, drift: 0 }
        for (const h of hostStatuses(await deps.store.listAgents(), policy.current, now(), limits.silentAfterMs)) counts[h.state]++
        return counts
      },
      dockerApi: async () => {
        const counts = { ok: 0, warn: 0, fail: 0 }
        for (const a of await deps.store.listAgents()) if (a.dockerApi) counts[a.dockerApi.verdict]++
        return counts
      },
    })),
    log,
    now,
    limits,
    protect: deps.protect ?? [],
    version: deps.version ?? '0.1.0',
  }

  app.decorate('eg', { reload: () => policy.reload('reload'), policy })
  // JSON bodies are decoded strictly: fastify's own parser reads them as a string, which turns invalid
  // UTF-8 into U+FFFD, so a name or reason would be stored as something the sender never wrote.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  const utf8 = new TextDecoder('utf-8', { fatal: true })
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let text: string
    try {
      text = utf8.decode(body as Buffer)
    } catch {
      done(errors.badUtf8('the body is not valid UTF-8 (JSON text must be UTF-8, RFC 8259)'), undefined)
      return
    }
    parseJson(req, text, done)
  })
  app.addSchema(entrySchema)

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toEgError(err)
    if (e.statusCode >= 500) log.error({ err, url: req.url }, 'request failed')
    return reply.code(e.statusCode).send({ statusCode: e.statusCode, code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) })
  })
  app.setNotFoundHandler((req) => {
    throw errors.notFound(`no route ${req.method} ${req.url.split('?')[0]}`)
  })

  // Auth runs in preParsing: after the rate limiter (onRequest), so floods of bad tokens are limited
  // too, and before any body is parsed, so an unauthenticated client cannot make us parse 5 MiB.
  app.addHook('preParsing', async (req) => {
    const roles = req.routeOptions.config?.roles
    if (!roles) return
    const p = tokens.lookup(req.headers.authorization)
    if (!p) throw errors.unauthorized('missing or unknown bearer token')
    if (!roles.includes(p.role)) throw errors.forbidden(`a ${p.role} token may not ${req.method} ${req.routeOptions.url}`)
    req.principal = p
  })
  app.addHook('onResponse', async (req, reply) => {
    metrics!.request(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000)
  })
  app.addHook('preClose', async () => {
    policy.waiters.close()
    await new Promise((r) => setTimeout(r, 50))
  })
  app.addHook('onClose', async () => policy.close())

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'egress-guard server API', version: 'v1', description: 'Policy distribution, entries, fleet, hits, audit and tokens. Auth: `Authorization: Bearer <token>`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  })
  if (limits.ratePerMinute > 0) {
    await app.register(rateLimit, {
      max: limits.ratePerMinute,
      timeWindow: 60_000,
      hook: 'onRequest',
      // A token's id is the key (agents behind one NAT are separate); requests without a valid
      // token share their address's budget. One SHA-256 and a Map lookup: cheap enough twice.
      keyGenerator: (req) => tokens.lookup(req.headers.authorization)?.id ?? req.ip,
      // c.after is the time left until this key's window resets, not the window (always a minute).
      errorResponseBuilder: (_req, c) => errors.rateLimited(`rate limit: at most ${c.max} requests per minute; retry in ${c.after}`),
    })
  }

  policyRoutes(app, ctx)
  fleetRoutes(app, ctx)
  hitRoutes(app, ctx)
  entryRoutes(app, ctx)
  profileRoutes(app, ctx)
  quarantineRoutes(app, ctx)
  learnedRoutes(app, ctx)
  adminRoutes(app, ctx)
  opsRoutes(app, ctx, { registry, openMetrics: deps.openMetrics ?? false })
  dashboardRoutes(app)
  await app.ready()
  return app
}
