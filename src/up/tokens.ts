// The two credentials `up` needs, made on first start and kept in the data directory: the admin token
// (a bootstrap file the server reads, for the operator's `block`/`hits` commands) and an agent-role
// token for this host's agent (stored hashed in the store, the secret in a 0600 file). Secrets are
// written to files only; nothing here logs or returns them.
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateToken, hashToken } from '../server/auth.js'
import { openLowdbStore } from '../store/lowdb-store.js'

export interface UpTokens {
  adminFile: string
  agentFile: string
  /** What was made on this start (for the progress lines). */
  created: Array<'admin' | 'agent'>
  /** An existing token file was readable by group/others and was tightened to 0600. */
  tightened: string[]
}

async function writeSecret(path: string, secret: string): Promise<void> {
  // 'wx' never replaces a token file someone else made meanwhile; mode applies at creation (umask
  // can only remove bits, and 0600 has none it could add).
  await writeFile(path, secret + '\n', { mode: 0o600, flag: 'wx' })
}

async function tighten(path: string, out: string[]): Promise<void> {
  if (((await stat(path)).mode & 0o077) !== 0) {
    await chmod(path, 0o600)
    out.push(path)
  }
}

/**
 * Make sure DATA/admin.token and DATA/agent.token exist and that the store knows the agent token for
 * `host`. Opens the store (with its lock) only when the agent token has to be (re)registered, so this
 * must run before the server opens the same store.
 */
export async function ensureTokens(dataDir: string, host: string): Promise<UpTokens> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const adminFile = join(dataDir, 'admin.token')
  const agentFile = join(dataDir, 'agent.token')
  const created: UpTokens['created'] = []
  const tightened: string[] = []

  if (!existsSync(adminFile)) {
    await writeSecret(adminFile, generateToken().secret)
    created.push('admin')
  } else await tighten(adminFile, tightened)

  const existing = existsSync(agentFile) ? (await readFile(agentFile, 'utf8')).trim() : undefined
  if (existing) await tighten(agentFile, tightened)
  const store = await openLowdbStore(dataDir, { lock: true })
  try {
    const tokens = await store.listTokens()
    const known = existing !== undefined && tokens.some((t) => t.role === 'agent' && t.hash === hashToken(existing) && t.host === host)
    if (!known) {
      // A missing/unknown file or a renamed host: revoke this host's agent tokens and any up made
      // before (up runs one agent), then make a new one.
      for (const t of tokens) {
        if (t.role === 'agent' && (t.host === host || t.createdBy === 'up')) await store.removeToken(t.id, { actor: 'up', reason: 'agent token replaced by up' })
      }
      const t = generateToken()
      await store.addToken({ id: t.id, hash: t.hash, role: 'agent', host, name: `up:${host}`, created: new Date().toISOString(), createdBy: 'up' }, { actor: 'up', reason: 'agent token for egress-guard up' })
      await rm(agentFile, { force: true })
      await writeSecret(agentFile, t.secret)
      created.push('agent')
    }
  } finally {
    await store.close()
  }
  return { adminFile, agentFile, created, tightened }
}
