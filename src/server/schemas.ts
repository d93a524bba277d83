// JSON schemas of the API's bodies and queries: fastify validates every request with them and the
// OpenAPI document is generated from the same objects, so the docs cannot drift from the checks.
const str = (maxLength = 256) => ({ type: 'string', maxLength }) as const
/**
 * Free text that is stored and later shown to people: no control, format or separator characters
 * (ESC, C1, U+202E, U+2028...; see printable.js). Refused with 400 EG_CONTROL_CHAR; agents send
 * theirs escaped (`\x1b`). Registered on the server's ajv in build.ts.
 */
const text = (maxLength = 256) => ({ type: 'string', maxLength, format: 'printable' }) as const
const hostName = { type: 'string', minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' } as const

export const entrySchema = {
  $id: 'Entry',
  type: 'object',
  required: ['kind', 'value', 'allow', 'mode', 'source'],
  properties: {
    kind: { type: 'string', enum: ['domain', 'net'] },
    value: str(4096),
    subdomainsOnly: { type: 'boolean' },
    allow: { type: 'boolean' },
    mode: { type: 'string', enum: ['block', 'alert'] },
    reason: str(1024),
    expires: str(64),
    force: { type: 'boolean' },
    source: str(4096),
    id: str(64),
    added: str(64),
    actor: str(256),
  },
} as const

export const hitSchema = {
  type: 'object',
  required: ['time', 'lastTime', 'count', 'client', 'name', 'qtype', 'action', 'entry', 'answer'],
  properties: {
    time: { type: 'string', format: 'date-time' },
    lastTime: { type: 'string', format: 'date-time' },
    count: { type: 'integer', minimum: 1 },
    client: text(128),
    container: {
      type: 'object',
      required: ['id', 'name', 'image'],
      properties: { id: text(128), name: text(256), image: text(512), service: text(256), project: text(256) },
    },
    // The name exactly as the container asked (one character per byte), control bytes and all: it is
    // the evidence, and every output escapes it. Generous: a refused batch would be retried by the
    // agent forever. The server keeps `host` from the upload, not from each hit.
    name: str(1024),
    qtype: text(16),
    action: { type: 'string', enum: ['block', 'alert', 'deny', 'quarantine'] },
    profile: text(64),
    entry: {
      type: 'object',
      required: ['value', 'source', 'mode'],
      properties: { value: text(4096), source: text(4096), reason: text(1024), id: text(64), mode: { type: 'string', enum: ['block', 'alert'] } },
    },
    answer: text(128),
    host: text(253),
  },
} as const

export const policyQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    wait: { type: 'integer', minimum: 0, maximum: 60, description: 'long-poll: seconds to hold the request (with If-None-Match)' },
    since: { type: 'integer', minimum: 0, description: 'answer with a diff since this version when the server still has it' },
  },
} as const

export const reportBody = {
  type: 'object',
  additionalProperties: false,
  required: ['host', 'version', 'etag', 'counts', 'repairs', 'drift', 'errors', 'agentVersion'],
  properties: {
    host: hostName,
    version: { type: 'integer', minimum: 0 },
    etag: text(128),
    counts: {
      type: 'object',
      additionalProperties: false,
      required: ['entries', 'domains', 'nets', 'v4', 'v6'],
      properties: Object.fromEntries(['entries', 'domains', 'nets', 'v4', 'v6'].map((k) => [k, { type: 'integer', minimum: 0 }])),
    },
    repairs: { type: 'integer', minimum: 0 },
    drift: { type: 'array', maxItems: 1000, items: text(1024) },
    errors: { type: 'array', maxItems: 1000, items: text(2048) },
    agentVersion: text(64),
    dockerApi: {
      type: 'object',
      additionalProperties: false,
      required: ['verdict', 'listeners', 'detail'],
      properties: {
        verdict: { type: 'string', enum: ['ok', 'warn', 'fail'] },
        listeners: { type: 'array', maxItems: 64, items: text(64) },
        detail: text(1024),
      },
    },
    containers: {
      type: 'array',
      maxItems: 4096,
      description: 'containers this host holds to a profile or in quarantine',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'name'],
        properties: {
          id: { type: 'string', pattern: '^[0-9a-f]{12,64}$' },
          name: text(256),
          // The label as given, even when it names no profile (the fleet view says so).
          profile: text(256),
          quarantineId: { type: 'string', pattern: '^q-[0-9a-f]{12}$' },
        },
      },
    },
  },
} as const

export const hitsBody = (maxItems: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    required: ['host', 'hits'],
    properties: { host: hostName, hits: { type: 'array', maxItems, items: hitSchema } },
  }) as const

export const hitsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    since: { type: 'string', maxLength: 64, description: 'a duration back from now (1h, 30m) or an RFC 3339 time' },
    host: str(253),
    container: str(256),
    domain: str(255),
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 },
  },
} as const

export const entriesBody = {
  type: 'object',
  additionalProperties: false,
  required: ['entries'],
  properties: {
    entries: {
      type: 'array',
      minItems: 1,
      maxItems: 10000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['value', 'reason'],
        properties: {
          value: { type: 'string', minLength: 1, maxLength: 4096 },
          reason: { type: 'string', minLength: 1, maxLength: 1024, format: 'printable' },
          expires: { type: 'string', maxLength: 64, format: 'printable', description: '4h, 7d, 2026-12-31 or an RFC 3339 time' },
          mode: { type: 'string', enum: ['block', 'alert'] },
          allow: { type: 'boolean' },
          force: { type: 'boolean' },
        },
      },
    },
  },
} as const

export const entriesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    source: { type: 'string', enum: ['api', 'file'] },
    q: str(256),
    mode: { type: 'string', enum: ['block', 'alert'] },
    allow: { type: 'boolean' },
  },
} as const

export const removeEntryParams = {
  type: 'object',
  required: ['idOrValue'],
  properties: { idOrValue: { type: 'string', minLength: 1, maxLength: 4096 } },
} as const

export const reasonQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { reason: text(1024) },
} as const

export const limitQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 } },
} as const

export const tokenBody = {
  type: 'object',
  additionalProperties: false,
  required: ['role'],
  properties: { role: { type: 'string', enum: ['admin', 'agent', 'read'] }, host: hostName, name: text(128) },
} as const

export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64 } },
} as const

export const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const

/** Docker's container name rule with an optional leading `/` (also covers id prefixes and compose services). */
const containerText = { type: 'string', minLength: 1, maxLength: 256, pattern: '^/?[A-Za-z0-9][A-Za-z0-9_.-]*$' } as const

export const quarantineBody = {
  type: 'object',
  additionalProperties: false,
  required: ['container', 'reason'],
  properties: {
    container: { ...containerText, description: 'a container name, an id prefix (at least 12 hex digits) or a compose service' },
    host: { ...hostName, description: 'only on this host; absent: every host' },
    reason: { type: 'string', minLength: 1, maxLength: 1024 },
    expires: { type: 'string', maxLength: 64, description: '4h, 7d, 2026-12-31 or an RFC 3339 time' },
  },
} as const

export const removeQuarantineParams = {
  type: 'object',
  required: ['idOrContainer'],
  properties: { idOrContainer: containerText },
} as const

export const requiredReasonQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['reason'],
  properties: { reason: { type: 'string', minLength: 1, maxLength: 1024 } },
} as const

export const learnedBody = (maxItems: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    required: ['host', 'records'],
    properties: {
      host: hostName,
      records: {
        type: 'array',
        maxItems,
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['profile', 'name', 'firstSeen', 'lastSeen', 'count', 'containers', 'answers'],
          properties: {
            profile: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9_-]*$' },
            // Checked as a DNS name in normal form by the route (learnedRecordProblem).
            name: { type: 'string', minLength: 1, maxLength: 253 },
            firstSeen: { type: 'string', format: 'date-time' },
            lastSeen: { type: 'string', format: 'date-time' },
            count: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
            containers: { type: 'array', maxItems: 16, items: { type: 'string', minLength: 1, maxLength: 256, pattern: '^/?[A-Za-z0-9][A-Za-z0-9_.-]*$' } },
            answers: { type: 'array', maxItems: 8, items: { type: 'string', maxLength: 45 } },
          },
        },
      },
    },
  }) as const

export const profileNameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9_-]*$' } },
} as const

export const sinceQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { since: { type: 'string', maxLength: 64, description: 'a duration back from now (7d, 1h) or an RFC 3339 time; default 7d' } },
} as const
