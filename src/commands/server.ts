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
import { GitFollower } from '../sources/git-follower.js'
import { readServerProtected } from '../server/protected-addresses.js'
import { parseCidr } from '../policy/net.js'

const spec = {
  listen: { type: 'string', default: '127.0.0.1:8787', help: 'HOST:PORT to listen on ([::1]:8787 for IPv6)' },
  data: { type: 'string', default: './data', help: 'store directory (lowdb JSON files)' },
  blocklists: { type: 'string', multiple: true, help: 'blocklist directory (repeatable; default ./blocklists unless --blocklists-git is given)' },
  'blocklists-git': { type: 'string', help: 'follow this git repository (URL or path; credentials via git: credential helper or GIT_SSH_COMMAND, never in the URL)' },
  'git-branch': { type: 'string', default: 'main', help: 'the branch to follow (fast-forward only)' },
  'git-subdir': { type: 'string', default: 'blocklists', help: 'the blocklist directory inside the repository' },
  'git-interval': { type: 'string', default: '60s', help: 'fetch this often (also on SIGHUP and POST /v1/hooks/git)' },
  'git-hook-secret-file': { type: 'string', help: 'file with the shared secret of POST /v1/hooks/git (without it the hook refuses every call)' },
  'admin-token-file': { type: 'string', help: 'file with the bootstrap admin token (default DATA/admin.token when it exists)' },
  'tls-cert': { type: 'string', help: 'PEM certificate: serve HTTPS' },
  'tls-key': { type: 'string', help: 'PEM private key for --tls-cert' },
  'open-metrics': { type: 'boolean', help: 'serve /metrics without a token' },
  protect: { type: 'string', multiple: true, help: 'address or CIDR a block entry may cover only with force (repeatable; this server\'s own addresses and resolvers are always protected)' },
  'silent-after': { type: 'string', default: '90s', help: 'an agent is silent after this long without a report (3 x its interval)' },
  'hits-max': { type: 'string', default: '50000', help: 'hit records kept (oldest dropped first)' },
  'hits-max-age': { type: 'string', default: '7d', help: 'hit records older than this are dropped' },
  'feed-shrink-limit': { type: 'string', default: '50%', help: 'refuse a feed refresh that shrinks the feed by more than this against its last good copy' },
  'log-level': { type: 'string', default: 'info', help: 'pino level' },
} as const satisfies Spec

const USAGE = `usage: egress-guard server [--config FILE] [--listen HOST:PORT] [--data DIR] [--blocklists DIR]
                           [--admin-token-file F] [--tls-cert F --tls-key F]

The central API: policy distribution (long-poll), entries, fleet, hits, audit, tokens, /metrics.
SIGHUP re-reads the blocklists; so does any change to their files.
--blocklists-git URL|PATH follows a branch of a blocklist repository (checkout under DATA/git): each
new commit is linted before it is served; a commit with errors or a force-push is refused and reported.`

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
    const gitUrl = o['blocklists-git']
    const blocklistDirs = o.blocklists.length > 0 ? [...o.blocklists] : gitUrl ? [] : ['./blocklists']
    const subdir = o['git-subdir'] ?? 'blocklists'
    if (subdir.split('/').some((p) => p === '..' || p === '') || subdir.startsWith('/')) throw errors.config(`--git-subdir ${JSON.stringify(subdir)}: a relative path inside the repository`)
    const gitIntervalMs = durationOption('git-interval', o['git-interval'], 60_000)
    const follower = gitUrl ? new GitFollower({ url: gitUrl, branch: o['git-branch'] ?? 'main', subdir, dir: join(dataDir, 'git'), log: log.child({ component: 'git' }) }) : undefined
    let hookSecret: Buffer | undefined
    if (o['git-hook-secret-file']) {
      const text = await readFile(o['git-hook-secret-file'], 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw errors.config(`--git-hook-secret-file ${o['git-hook-secret-file']}: cannot read it (${e.code ?? e.message})`)
      })
      hookSecret = Buffer.from(text.trim())
      if (hookSecret.length < 16) throw errors.config('--git-hook-secret-file: the secret must be at least 16 characters')
    }
    const shrink = /^(\d{1,3})%$/.exec(o['feed-shrink-limit'] ?? '50%')
    if (!shrink || Number(shrink[1]) > 100) throw errors.config(`--feed-shrink-limit must be a percentage like 50%; got ${JSON.stringify(o['feed-shrink-limit'])}`)
    const https = o['tls-cert'] && o['tls-key'] ? { cert: await readPem('tls-cert', o['tls-cert']), key: await readPem('tls-key', o['tls-key']) } : undefined
    // This server's addresses, its resolvers and --protect: a block entry covers them only with force,
    // a feed never (buildServer hands the same list to the feed fetcher).
    const protect = readServerProtected(extraProtect)
    const app = await buildServer({
      store,
      blocklistDirs,
      // Feeds of feeds.txt; a copy of each under DATA/feeds.
      feeds: { dir: join(dataDir, 'feeds'), shrinkLimit: Number(shrink[1]) / 100 },
      ...(follower ? { git: { follower, ...(hookSecret ? { hookSecret } : {}) } } : {}),
      log,
      registry: createRegistry({ processMetrics: true }),
      ...(adminTokenHash ? { adminTokenHash } : {}),
      limits: { silentAfterMs },
      openMetrics: o['open-metrics'],
      watch: true,
      protect,
      ...(https ? { https } : {}),
    }).catch(async (e: unknown) => {
      await store.close()
      throw e
    })
    const offReload = io.onReload(() => {
      void follower?.sync()
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
      if (follower) {
        void follower.sync()
        follower.start(gitIntervalMs)
      }
      if (!io.signal.aborted) await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }))
      return 0
    } finally {
      follower?.close()
      offReload()
      await app.close()
      await store.close()
    }
  },
}
export default command
