// `egress-guard token create|ls|rm`: bearer tokens. `create --data DIR` writes straight into the store
// (bootstrapping the first admin token, with the server stopped: the running server keeps the store
// in memory and would not see it); otherwise it asks the server. The secret is printed once, or
// written to --out with mode 0600, and never stored.
import { writeFile } from 'node:fs/promises'
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import type { CreatedToken, Role } from '../client/api-types.js'
import { adminClient, adminSpec, ago, formatTable } from '../client/admin-options.js'
import { openLowdbStore } from '../store/lowdb-store.js'
import { generateToken } from '../server/auth.js'

const spec = {
  ...adminSpec,
  role: { type: 'string', help: 'admin | agent | read' },
  host: { type: 'string', help: 'agent tokens: the host it may speak for' },
  name: { type: 'string', help: 'a label for the audit log' },
  data: { type: 'string', noEnv: true, help: 'write into this store directory directly (bootstrap; server stopped)' },
  out: { type: 'string', noEnv: true, help: 'write the token to this file (mode 0600) instead of stdout' },
} as const satisfies Spec

const USAGE = `usage: egress-guard token create --role admin|agent|read [--host H] [--name N] [--data DIR | --server URL] [--out FILE]
       egress-guard token ls [--json]
       egress-guard token rm ID`

const ROLES: readonly Role[] = ['admin', 'agent', 'read']
const HOST = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/

async function writeSecret(path: string, secret: string): Promise<void> {
  try {
    // 'wx': never replace an existing token file by accident (it may be the only admin credential).
    await writeFile(path, secret + '\n', { mode: 0o600, flag: 'wx' })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw errors.config(`--out ${path}: ${code === 'EEXIST' ? 'already exists; remove it first or choose another file' : `cannot write it (${code ?? (e as Error).message})`}`)
  }
}

const command: Command = {
  summary: 'create, list and revoke bearer tokens (admin, agent per host, read)',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'token' })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const [sub, ...rest] = positionals
    if (sub === 'create') {
      if (rest.length) throw errors.usage(`token create takes no positional arguments, got ${JSON.stringify(rest[0])}`)
      const role = o.role as Role | undefined
      if (!role || !ROLES.includes(role)) throw errors.usage('token create needs --role admin, agent or read')
      if (role === 'agent' && !o.host) throw errors.usage('an agent token needs --host (one token per host)')
      if (role !== 'agent' && o.host) throw errors.usage('--host is only for agent tokens')
      if (o.host && !HOST.test(o.host)) throw errors.usage(`--host ${JSON.stringify(o.host)} is not a host name`)
      let created: CreatedToken
      if (o.data) {
        const store = await openLowdbStore(o.data, { lock: true })
        try {
          if (o.host && (await store.listTokens()).some((t) => t.role === 'agent' && t.host === o.host)) throw errors.conflict(`host ${o.host} already has an agent token`)
          const t = generateToken()
          await store.addToken({ id: t.id, hash: t.hash, role, ...(o.host ? { host: o.host } : {}), ...(o.name ? { name: o.name } : {}), created: new Date().toISOString(), createdBy: 'cli' }, { actor: 'cli', reason: 'token create --data' })
          created = { id: t.id, token: t.secret, role, ...(o.host ? { host: o.host } : {}) }
        } finally {
          await store.close()
        }
      } else {
        const api = await adminClient(o)
        created = await api.createToken({ role, ...(o.host ? { host: o.host } : {}), ...(o.name ? { name: o.name } : {}) })
      }
      if (o.out) {
        await writeSecret(o.out, created.token)
        const info = { id: created.id, role: created.role, ...(created.host ? { host: created.host } : {}), file: o.out }
        io.stdout(o.json ? JSON.stringify(info) + '\n' : `token ${created.id} (${created.role}${created.host ? ` for ${created.host}` : ''}) written to ${o.out}\n`)
      } else if (o.json) {
        io.stdout(JSON.stringify(created) + '\n')
      } else {
        // stdout gets the secret alone so `$(egress-guard token create ...)` captures just it.
        io.stdout(created.token + '\n')
        io.stderr(`token ${created.id} (${created.role}${created.host ? ` for ${created.host}` : ''}): shown once, store it now\n`)
      }
      return 0
    }
    if (sub === 'ls') {
      const { tokens } = await (await adminClient(o)).listTokens()
      if (o.json) io.stdout(JSON.stringify({ tokens }) + '\n')
      else io.stdout(formatTable(['ID', 'ROLE', 'HOST', 'NAME', 'CREATED', 'BY'], tokens.map((t) => [t.id, t.role, t.host ?? '-', t.name ?? '-', ago(t.created), t.createdBy])))
      return 0
    }
    if (sub === 'rm') {
      if (rest.length !== 1) throw errors.usage('usage: egress-guard token rm ID')
      await (await adminClient(o)).removeToken(rest[0]!)
      io.stdout(o.json ? JSON.stringify({ removed: rest[0] }) + '\n' : `token ${rest[0]} revoked\n`)
      return 0
    }
    throw errors.usage(USAGE)
  },
}
export default command
