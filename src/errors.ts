// The coded error catalogue: every error a user can see has a stable code and, for the API, an HTTP status.
// Handlers and commands throw these; nothing hand-builds an error body (fastify's lib/errors.js habit).

export class EgError extends Error {
  readonly code: string
  readonly statusCode: number
  readonly details?: unknown
  constructor(code: string, message: string, statusCode = 500, details?: unknown) {
    super(message)
    this.name = 'EgError'
    this.code = code
    this.statusCode = statusCode
    this.details = details
  }
}

type Factory = (message: string, details?: unknown) => EgError
function def(code: string, statusCode: number): Factory {
  return (message, details) => new EgError(code, message, statusCode, details)
}

/** Add new codes here, one line each; the code string is part of the public contract. */
export const errors = {
  usage: def('EG_USAGE', 400),
  config: def('EG_CONFIG', 400),
  badInput: def('EG_BAD_INPUT', 400),
  /** A control, format or separator character (ESC, C1, U+202E...) in free text people will read. */
  controlChar: def('EG_CONTROL_CHAR', 400),
  /** A request body that is not valid UTF-8. */
  badUtf8: def('EG_BAD_UTF8', 400),
  notFound: def('EG_NOT_FOUND', 404),
  unauthorized: def('EG_UNAUTHORIZED', 401),
  forbidden: def('EG_FORBIDDEN', 403),
  conflict: def('EG_CONFLICT', 409),
  /** A block entry covers an address the fleet must keep reaching (the server's own, its resolvers, --protect); `force` overrides. */
  protectedTarget: def('EG_PROTECTED', 409),
  tooLarge: def('EG_TOO_LARGE', 413),
  rateLimited: def('EG_RATE_LIMITED', 429),
  fileUnreadable: def('EG_FILE', 400),
  storeCorrupt: def('EG_STORE_CORRUPT', 500),
  /** A store write failed (disk full, I/O error): nothing of the change was kept, in memory or on disk. */
  storeWrite: def('EG_STORE_WRITE', 503),
  exec: def('EG_EXEC', 500),
  missingTool: def('EG_MISSING_TOOL', 500),
  upstream: def('EG_UPSTREAM', 502),
  internal: def('EG_INTERNAL', 500),
  /** The agent's last-good policy cache cannot be read or fails its checksum (never overwritten). */
  cacheCorrupt: def('EG_CACHE_CORRUPT', 500),
} as const

export function isEgError(e: unknown): e is EgError {
  return e instanceof EgError
}
