// POST/DELETE/GET /v1/entries: entries pushed through the API (validated exactly like blocklist lines,
// all-or-nothing), removal with a reason, and listing of the whole merged policy with filters.
import type { FastifyInstance } from 'fastify'
import type { ServerContext } from '../context.js'
import type { Entry } from '../../policy/types.js'
import type { NewEntry } from '../../client/api-types.js'
import { errors } from '../../errors.js'
import { entryFromFields } from '../../policy/parse.js'
import { entriesBody, entriesQuery, reasonQuery, removeEntryParams } from '../schemas.js'
import { COVERS_PROTECTED, coveredProtected, protectedMessage } from '../../policy/protect-check.js'

const sameTarget = (a: Entry, b: Entry): boolean => a.kind === b.kind && a.value === b.value && !!a.subdomainsOnly === !!b.subdomainsOnly && a.allow === b.allow

export default function entryRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post<{ Body: { entries: NewEntry[] } }>(
    '/v1/entries',
    { config: { roles: ['admin'] }, schema: { summary: 'Add entries (all or nothing); reason required', body: entriesBody } },
    async (req, reply) => {
      const actor = req.principal!.actor
      const now = ctx.now()
      const problems: { index: number; message: string; code: string }[] = []
      const warnings: { index: number; message: string; code: string }[] = []
      const out: Entry[] = []
      req.body.entries.forEach((item, index) => {
        const r = entryFromFields(item, `api:${actor}`, now)
        for (const p of r.problems) (p.severity === 'error' ? problems : warnings).push({ index, message: `entries[${index}] ${JSON.stringify(item.value)}: ${p.message}`, code: p.code })
        if (!r.entry || r.problems.some((p) => p.severity === 'error')) return
        // A block that covers the server's own addresses, its resolvers or --protect: refused without
        // force; with force it is added (agents keep their control plane reachable in the kernel).
        const covered = coveredProtected(r.entry, ctx.protect)
        if (covered) (r.entry.force ? warnings : problems).push({ index, message: `entries[${index}] ${JSON.stringify(item.value)}: ${protectedMessage(r.entry, covered)}`, code: COVERS_PROTECTED })
        if (!covered || r.entry.force) out.push(r.entry)
      })
      if (problems.length > 0) {
        const message = problems.length === 1 ? problems[0]!.message : `${problems.length} invalid entries; nothing was added`
        // Only protected coverage: 409 EG_PROTECTED (valid entries, refused for what they would cut).
        if (problems.every((p) => p.code === COVERS_PROTECTED)) throw errors.protectedTarget(message, { problems })
        throw errors.badInput(message, { problems })
      }
      // The entries, the version they make and the audit records: one store write, all or nothing.
      const { result: added, policy } = await ctx.policy.changeEntries(`${count(out.length, 'entry', 'entries')} added by ${actor}`, (seal) => ctx.store.addEntries(out, { actor }, seal))
      return reply.code(201).send({ entries: added, version: policy.version, ...(warnings.length ? { warnings } : {}) })
    },
  )

  app.delete<{ Params: { idOrValue: string }; Querystring: { reason?: string } }>(
    '/v1/entries/:idOrValue',
    { config: { roles: ['admin'] }, schema: { summary: 'Remove an API entry by id, or every API entry for a value', params: removeEntryParams, querystring: reasonQuery } },
    async (req) => {
      const actor = req.principal!.actor
      const key = req.params.idOrValue
      const api = await ctx.store.listEntries()
      let hits = api.filter((e) => e.id === key)
      let probe: Entry | undefined
      if (hits.length === 0) {
        probe = entryFromFields({ value: key }, 'query', ctx.now()).entry
        if (probe) hits = api.filter((e) => sameTarget(e, probe!))
      }
      if (hits.length === 0) {
        const fromFile = ctx.policy.current.entries.find((e) => !e.source.startsWith('api:') && (e.id === key || (probe !== undefined && sameTarget(e, probe))))
        if (fromFile) throw errors.conflict(`${key} comes from ${fromFile.source}: edit the blocklist file to remove it`, { source: fromFile.source })
        throw errors.notFound(`no API entry has id or value ${JSON.stringify(key)}`)
      }
      const { result: removed, policy } = await ctx.policy.changeEntries(`${count(hits.length, 'entry', 'entries')} removed by ${actor}`, (seal) =>
        ctx.store.removeEntries(
          hits.map((e) => e.id),
          { actor, ...(req.query.reason ? { reason: req.query.reason } : {}) },
          seal,
        ),
      )
      return { removed, version: policy.version }
    },
  )

  app.get<{ Querystring: { source?: 'api' | 'file'; q?: string; mode?: 'block' | 'alert'; allow?: boolean } }>(
    '/v1/entries',
    { config: { roles: ['read', 'admin'] }, schema: { summary: 'Entries of the current policy, filtered', querystring: entriesQuery } },
    async (req) => {
      const { source, q, mode, allow } = req.query
      const needle = q?.toLowerCase()
      const p = ctx.policy.current
      const entries = p.entries.filter(
        (e) =>
          (source === undefined || e.source.startsWith('api:') === (source === 'api')) &&
          (mode === undefined || e.mode === mode) &&
          (allow === undefined || e.allow === allow) &&
          (needle === undefined || e.value.includes(needle) || (e.reason?.toLowerCase().includes(needle) ?? false) || e.id === q || e.source.toLowerCase().includes(needle)),
      )
      return { version: p.version, entries }
    },
  )
}

/** `1 entry`, `3 entries`: the policy version's reason is read by people (audit log, dashboard). */
function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`
}
