// Typed client for the server's HTTP API (v1): the agent and the admin commands call the server only
// through this, so the wire contract lives in one place. Errors come back as EgError with the server's code.
import { Agent, fetch as undiciFetch } from 'undici'
import { EgError, errors } from '../errors.js'
import type {
  AddedQuarantine, AuditEvent, CreatedToken, EntriesQuery, Entry, Hit, HitsQuery, HostsBody, LearnedAccepted, LearnedBody, LearnedRecord,
  NewEntry, NewQuarantine, PolicyBody, PolicyDiffBody, ProfilesBody, QuarantinesBody, RemovedQuarantines, ReportBody, Role, TokenInfo,
} from './api-types.js'

export interface GetPolicyOptions {
  /** The etag the caller has (unquoted); sent as If-None-Match. */
  etag?: string
  /** Long-poll: hold up to this many seconds (0..60) for a change; needs `etag`. */
  waitSec?: number
  /** Ask for a diff since this version. */
  since?: number
  signal?: AbortSignal
}

export type GetPolicyResult =
  | { status: 200; policy: PolicyBody; diff?: undefined; etag: string }
  | { status: 200; policy?: undefined; diff: PolicyDiffBody; etag: string }
  | { status: 304; policy?: undefined; diff?: undefined; etag: string }

export interface ApiClient {
  readonly url: string
  health(): Promise<{ ok: boolean; version: number }>
  getPolicy(opts?: GetPolicyOptions): Promise<GetPolicyResult>
  policyProblems(): Promise<{ problems: unknown[] }>
  report(body: ReportBody, signal?: AbortSignal): Promise<void>
  uploadHits(host: string, hits: Hit[], signal?: AbortSignal): Promise<{ accepted: number }>
  hits(q?: HitsQuery): Promise<{ hits: Hit[] }>
  addEntries(entries: NewEntry[]): Promise<{ entries: Entry[]; version: number; warnings?: Array<{ index: number; message: string; code: string }> }>
  removeEntry(idOrValue: string, reason?: string): Promise<{ removed: Entry[]; version: number }>
  listEntries(q?: EntriesQuery): Promise<{ version: number; entries: Entry[] }>
  /** `GET /v1/profiles`; a server from before profiles answers 404 (EG_NOT_FOUND). */
  listProfiles(): Promise<ProfilesBody>
  /**
   * `POST /v1/learned` (agent token bound to `host`): learn-mode records, at most 1000 a call, each
   * passing learnedRecordProblem (one bad record refuses the batch: 400 EG_BAD_INPUT, nothing stored).
   * Records are increments (lookups since the last successful upload); the server adds them up.
   */
  uploadLearned(host: string, records: LearnedRecord[], signal?: AbortSignal): Promise<LearnedAccepted>
  /** `GET /v1/profiles/:name/learned?since=` (default 7d). */
  learned(profile: string, since?: string): Promise<LearnedBody>
  /** `POST /v1/quarantines` (admin). */
  addQuarantine(q: NewQuarantine): Promise<AddedQuarantine>
  /** `DELETE /v1/quarantines/:idOrContainer?reason=` (admin; reason required). */
  removeQuarantine(idOrContainer: string, reason: string): Promise<RemovedQuarantines>
  /** `GET /v1/quarantines`: those in force, each with the containers agents report holding in it. */
  listQuarantines(): Promise<QuarantinesBody>
  hosts(): Promise<HostsBody>
  audit(limit?: number): Promise<{ events: AuditEvent[] }>
  createToken(body: { role: Role; host?: string; name?: string }): Promise<CreatedToken>
  listTokens(): Promise<{ tokens: TokenInfo[] }>
  removeToken(id: string): Promise<void>
  metrics(): Promise<string>
}

type Query = Record<string, string | number | boolean | undefined>

function qs(q: Query | undefined): string {
  if (!q) return ''
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v))
  const s = p.toString()
  return s ? `?${s}` : ''
}

/** The server quotes etags (`"abc"`); callers use the bare value. Weak prefixes are dropped too. */
export function unquoteEtag(h: string | null | undefined): string {
  if (!h) return ''
  return h.replace(/^W\//, '').replace(/^"(.*)"$/, '$1')
}

export interface ApiClientOptions {
  url: string
  token: string
  timeoutMs?: number
  ca?: string
  /**
   * Called when a request got no HTTP answer at all (refused, unreachable, timed out): the agent then
   * re-resolves the server's name, which may have moved (src/agent/server-addresses.ts).
   */
  onTransportError?: () => void
}

export function createApiClient(opts: ApiClientOptions): ApiClient {
  const base = opts.url.replace(/\/+$/, '')
  const timeoutMs = opts.timeoutMs ?? 30_000
  // A private CA needs undici's own fetch with a dispatcher; otherwise the global fetch is enough.
  const dispatcher = opts.ca ? new Agent({ connect: { ca: opts.ca } }) : undefined
  const doFetch = (url: string, init: RequestInit & { dispatcher?: Agent }): Promise<Response> =>
    dispatcher ? (undiciFetch(url, { ...(init as object), dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>) : fetch(url, init)

  async function request(method: string, path: string, o: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal; timeoutMs?: number; auth?: boolean } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...o.headers }
    if (o.auth !== false) headers.authorization = `Bearer ${opts.token}`
    if (o.body !== undefined) headers['content-type'] = 'application/json'
    const signals = [AbortSignal.timeout(o.timeoutMs ?? timeoutMs)]
    if (o.signal) signals.push(o.signal)
    let res: Response
    try {
      res = await doFetch(base + path, {
        method,
        headers,
        ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
        signal: AbortSignal.any(signals),
      })
    } catch (e) {
      if (o.signal?.aborted) throw e
      opts.onTransportError?.()
      const err = e as Error & { cause?: Error }
      throw errors.upstream(`${method} ${base}${path}: ${err.cause?.message ?? err.message}`)
    }
    if (res.status >= 400) throw await toError(res, method, path)
    return res
  }

  async function toError(res: Response, method: string, path: string): Promise<EgError> {
    let body: { code?: unknown; message?: unknown; details?: unknown } = {}
    try {
      body = (await res.json()) as typeof body
    } catch {
      /* not JSON (a proxy's page): keep the status */
    }
    const code = typeof body.code === 'string' ? body.code : res.status === 401 ? 'EG_UNAUTHORIZED' : res.status === 403 ? 'EG_FORBIDDEN' : 'EG_UPSTREAM'
    const message = typeof body.message === 'string' ? body.message : `${method} ${path}: HTTP ${res.status}`
    return new EgError(code, message, res.status, body.details)
  }

  const json = async <T>(p: Promise<Response>): Promise<T> => (await (await p).json()) as T

  return {
    url: base,
    health: () => json(request('GET', '/healthz', { auth: false })),
    async getPolicy(g = {}) {
      const headers: Record<string, string> = {}
      if (g.etag) headers['if-none-match'] = `"${g.etag}"`
      const wait = g.etag && g.waitSec ? Math.max(0, Math.min(60, Math.floor(g.waitSec))) : undefined
      // The request may legitimately take the whole wait: allow for it on top of the normal timeout.
      const res = await request('GET', '/v1/policy' + qs({ wait, since: g.since }), {
        headers,
        ...(g.signal ? { signal: g.signal } : {}),
        timeoutMs: timeoutMs + (wait ?? 0) * 1000,
      })
      const etag = unquoteEtag(res.headers.get('etag'))
      if (res.status === 304) {
        await res.body?.cancel()
        return { status: 304, etag: etag || (g.etag ?? '') }
      }
      const body = (await res.json()) as PolicyBody | PolicyDiffBody
      if (res.headers.get('x-policy-diff') === '1') return { status: 200, diff: body as PolicyDiffBody, etag }
      return { status: 200, policy: body as PolicyBody, etag }
    },
    policyProblems: () => json(request('GET', '/v1/policy/problems')),
    async report(body, signal) {
      const res = await request('POST', '/v1/report', { body, ...(signal ? { signal } : {}) })
      await res.body?.cancel()
    },
    uploadHits: (host, hits, signal) => json(request('POST', '/v1/hits', { body: { host, hits }, ...(signal ? { signal } : {}) })),
    hits: (q = {}) => json(request('GET', '/v1/hits' + qs(q as Query))),
    addEntries: (entries) => json(request('POST', '/v1/entries', { body: { entries } })),
    removeEntry: (idOrValue, reason) => json(request('DELETE', `/v1/entries/${encodeURIComponent(idOrValue)}` + qs({ reason }))),
    listEntries: (q = {}) => json(request('GET', '/v1/entries' + qs(q as Query))),
    listProfiles: () => json(request('GET', '/v1/profiles')),
    uploadLearned: (host, records, signal) => json(request('POST', '/v1/learned', { body: { host, records }, ...(signal ? { signal } : {}) })),
    learned: (profile, since) => json(request('GET', `/v1/profiles/${encodeURIComponent(profile)}/learned` + qs({ since }))),
    addQuarantine: (q) => json(request('POST', '/v1/quarantines', { body: q })),
    removeQuarantine: (idOrContainer, reason) => json(request('DELETE', `/v1/quarantines/${encodeURIComponent(idOrContainer)}` + qs({ reason }))),
    listQuarantines: () => json(request('GET', '/v1/quarantines')),
    hosts: () => json(request('GET', '/v1/hosts')),
    audit: (limit) => json(request('GET', '/v1/audit' + qs({ limit }))),
    createToken: (body) => json(request('POST', '/v1/tokens', { body })),
    listTokens: () => json(request('GET', '/v1/tokens')),
    async removeToken(id) {
      const res = await request('DELETE', `/v1/tokens/${encodeURIComponent(id)}`)
      await res.body?.cancel()
    },
    metrics: async () => (await request('GET', '/metrics')).text(),
  }
}
