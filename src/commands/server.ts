// `egress-guard server`: the central API on a socket. Opens the store (a corrupt one stops here),
// checks the admin credential, builds the server, listens, reloads blocklists on SIGHUP, and closes
// cleanly when the CLI's signal aborts.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from './types.js'
import { durationOption, helpText, intOption, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { createLogger } from '../log.js'
import { createRegistry } from '../metrics.js'
import { openLowdbStore } from '../store/lowdb-store.js'
import { readAdminTokenFile } from '../server/auth.js'
import { buildServer } from '../server/build.js'
import { readServerProtected } from '../server/protected-addresses.js'
import { parseCidr } from '../policy/net.js'

const spec = {
  listen: { type: 'string', default: '127.0.0.1:8787', help: 'HOST:PORT to listen on ([::1]:8787 for IPv6)' },
  data: { type: 'string', default: './data', help: 'store directory (lowdb JSON files)' },
  blocklists: { type: 'string', multiple: true, default: ['./blocklists'], help: 'blocklist directory (repeatable)' },
  'admin-token-file': { type: 'string', help: 'file with the bootstrap admin token (default DATA/admin.token when it exists)' },
  'tls-cert': { type: 'string', help: 'PEM certificate: serve HTTPS' },
  'tls-key': { type: 'string', help: 'PEM private key for --tls-cert' },
  'open-metrics': { type: 'boolean', help: 'serve /metrics without a token' },
  protect: { type: 'string', multiple: true, help: 'address or CIDR a block entry may cover only with force (repeatable; this server\'s own addresses and resolvers are always protected)' },
  'silent-after': { type: 'string', default: '90s', help: 'an agent is silent after this long without a report (3 x its interval)' },
  'hits-max': { type: 'string', default: '50000', help: 'hit records kept (oldest dropped first)' },
  'hits-max-age': { type: 'string', default: '7d', help: 'hit records older than this are dropped' },
  'log-level': { type: 'string', default: 'info', help: 'pino level' },
} as const satisfies Spec

const USAGE = `usage: egress-guard server [--config FILE] [--listen HOST:PORT] [--data DIR] [--blocklists DIR]
                           [--admin-token-file F] [--tls-cert F --tls-key F]

The central API: policy distribution (long-poll), entries, fleet, hits, audit, tokens, /metrics.
SIGHUP re-reads the blocklists; so does any change to their files.`

export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v.trim())
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw errors.config(`--listen must be HOST:PORT (e.g. 127.0.0.1:8787 or [::1]:8787), got ${JSON.stringify(v)}`)
  return { host: (m[1] ?? m[2])!, port }
}

async function readPem(flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (e) {
    throw errors.config(`--${flag} ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
}

const command: Command = {
  summary: 'the central API: policy distribution, entries, fleet, hits, audit',
  async run(argv, io) {
    const { options: o } = loadOptions(argv, spec, { env: io.env, section: 'server', allowPositionals: false })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const { host, port } = parseListen(o.listen ?? '127.0.0.1:8787')
    if (!!o['tls-cert'] !== !!o['tls-key']) throw errors.config('--tls-cert and --tls-key go together')
    const silentAfterMs = durationOption('silent-after', o['silent-after'], 90_000)
    const maxHits = intOption('hits-max', o['hits-max'], 50_000, 1, 10_000_000)
    const maxHitAgeMs = durationOption('hits-max-age', o['hits-max-age'], 7 * 86_400_000)
    const extraProtect = o.protect.map((c) => {
      const r = parseCidr(c)
      if (!r.ok) throw errors.config(`--protect ${JSON.stringify(c)}: ${r.message}`)
      return r.canonical
    })
    const log = createLogger({ level: o['log-level'] ?? 'info' })
    const dataDir = o.data ?? './data'
    const store = await openLowdbStore(dataDir, { lock: true, maxHits, maxHitAgeMs })
    let tokenFile = o['admin-token-file']
    if (!tokenFile && existsSync(join(dataDir, 'admin.token'))) tokenFile = join(dataDir, 'admin.token')
    let adminTokenHash: string | undefined
    if (tokenFile) {
      const r = await readAdminTokenFile(tokenFile)
      adminTokenHash = r.hash
      if (r.looseMode) log.warn({ file: tokenFile }, 'admin token file is readable by group or others: chmod 600 it')
    }
    const https = o['tls-cert'] && o['tls-key'] ? { cert: await readPem('tls-cert', o['tls-cert']), key: await readPem('tls-key', o['tls-key']) } : undefined
    const app = await buildServer({
      store,
      blocklistDirs: [...o.blocklists],
      log,
      registry: createRegistry({ processMetrics: true }),
      ...(adminTokenHash ? { adminTokenHash } : {}),
      limits: { silentAfterMs },
      openMetrics: o['open-metrics'],
      watch: true,
      protect: readServerProtected(extraProtect),
      ...(https ? { https } : {}),
    }).catch(async (e: unknown) => {
      await store.close()
      throw e
    })
    const offReload = io.onReload(() => {
      void app.eg.reload().then(
        (p) => log.info({ version: p.version }, 'blocklists reloaded (SIGHUP)'),
        (e: Error) => log.error({ err: e.message }, 'reload failed'),
      )
    })
    try {
      try {
        await app.listen({ host, port })
      } catch (e) {
        throw errors.config(`cannot listen on ${o.listen}: ${(e as Error).message}`)
      }
      const addr = app.server.address()
      const where = typeof addr === 'object' && addr ? `${https ? 'https' : 'http'}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : String(addr)
      log.info({ url: where, version: app.eg.policy.current.version }, 'server listening')
      io.stderr(`egress-guard server: listening on ${where} (policy version ${app.eg.policy.current.version})\n`)
      const invalid = app.eg.policy.storeProblemCount
      if (invalid > 0) io.stderr(`egress-guard server: ${invalid} stored ${invalid === 1 ? 'entry fails' : 'entries fail'} validation and ${invalid === 1 ? 'is' : 'are'} not served; see GET /v1/policy/problems\n`)
      if (!io.signal.aborted) await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }))
      return 0
    } finally {
      offReload()
      await app.close()
      await store.close()
    }
  },
}
export default command
