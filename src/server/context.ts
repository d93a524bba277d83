// What every route gets: the store, the policy, the token index, metrics and limits. Built once by
// buildServer and handed to each route module, so routes hold no module-level state.
import type { Logger } from '../log.js'
import type { Store } from '../store/types.js'
import type { Role } from '../client/api-types.js'
import type { PolicyService } from './policy-service.js'
import type { Principal, TokenIndex } from './auth.js'
import type { ServerMetrics } from './metrics.js'
import type { ProtectedNet } from '../policy/protect-check.js'

export interface ServerLimits {
  /** Default body limit (bytes). */
  bodyBytes: number
  /** Body limit of POST /v1/hits (bytes). */
  hitsBodyBytes: number
  /** Hits per upload batch. */
  hitsPerBatch: number
  /** Body limit of POST /v1/learned (bytes). */
  learnedBodyBytes: number
  /** Learn-mode records per upload batch. */
  learnedPerBatch: number
  /** Longest long-poll wait (seconds). */
  maxWaitSec: number
  /** Requests per minute per token (or per IP without a valid token) on ordinary routes; 0 disables rate limiting. */
  ratePerMinute: number
  /** Requests per minute per agent on GET /v1/policy (long-polls come back at once after a change). */
  policyRatePerMinute: number
  /** An agent is silent when its last report is older than this. */
  silentAfterMs: number
}

export const DEFAULT_LIMITS: ServerLimits = {
  bodyBytes: 1 << 20,
  hitsBodyBytes: 5 << 20,
  hitsPerBatch: 1000,
  // A record is at most ~1.7 KB (a 253-character name, 16 container names, 8 addresses).
  learnedBodyBytes: 2 << 20,
  learnedPerBatch: 1000,
  maxWaitSec: 60,
  ratePerMinute: 600,
  policyRatePerMinute: 1200,
  // 3 x the agent's default 30 s report interval.
  silentAfterMs: 90_000,
}

export interface ServerContext {
  store: Store
  policy: PolicyService
  tokens: TokenIndex
  /** Reload the token index from the store (after a token is created or removed). */
  refreshTokens: () => Promise<void>
  metrics: ServerMetrics
  log: Logger
  now: () => Date
  limits: ServerLimits
  /** Networks a block entry may cover only with `force` (see src/policy/protect-check.ts). */
  protect: readonly ProtectedNet[]
  version: string
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Roles allowed on the route; absent: no authentication (healthz, openapi). */
    roles?: Role[]
  }
  interface FastifyRequest {
    principal?: Principal
  }
}
