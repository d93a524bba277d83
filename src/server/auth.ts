// Bearer tokens: generation, hashing, the weak-token check and the per-request lookup.
// Tokens are 32 random bytes (256 bits) in base64url with an `eg_` prefix. They are stored as plain
// SHA-256 hashes: a slow KDF (scrypt/argon2) protects low-entropy passwords against guessing, but a
// 256-bit random secret cannot be guessed from its hash, so a fast hash costs nothing in safety and
// keeps every request cheap.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { errors } from '../errors.js'
import type { Role } from '../client/api-types.js'
import type { StoredToken } from '../store/types.js'

export const TOKEN_PREFIX = 'eg_'
/** 32 bytes in base64url without padding. */
export const MIN_SECRET_CHARS = 43

export interface Principal {
  /** Token id (used as the rate-limit key and in the audit log). */
  id: string
  role: Role
  host?: string
  /** Who, for the audit log: the token name, or `<role>:<id>`. */
  actor: string
}

export function hashToken(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex')
}

export function generateToken(): { id: string; secret: string; hash: string } {
  const secret = TOKEN_PREFIX + randomBytes(32).toString('base64url')
  return { id: `tok-${randomBytes(5).toString('hex')}`, secret, hash: hashToken(secret) }
}

/**
 * Throws EG_CONFIG when a secret is too short or looks non-random. The checks are heuristics on top of
 * the length: the Shannon entropy of its characters times its length, and no repeated 6-character run
 * (a 64-hex-digit `openssl rand -hex 32` passes; `aaaa...`, `abcabc...` or a sentence do not).
 */
export function assertStrongSecret(secret: string, where: string): void {
  const s = secret.startsWith(TOKEN_PREFIX) ? secret.slice(TOKEN_PREFIX.length) : secret
  if (s.length < MIN_SECRET_CHARS) {
    throw errors.config(`${where}: the admin token is too short (${s.length} characters; need at least ${MIN_SECRET_CHARS}, i.e. 32 random bytes in base64url): create one with \`egress-guard token create --role admin --data DIR --out FILE\``)
  }
  if (/\s/.test(s)) throw errors.config(`${where}: the admin token contains whitespace`)
  const freq = new Map<string, number>()
  for (const ch of s) freq.set(ch, (freq.get(ch) ?? 0) + 1)
  let bitsPerChar = 0
  for (const n of freq.values()) bitsPerChar -= (n / s.length) * Math.log2(n / s.length)
  const seen = new Set<string>()
  let repeated = false
  for (let i = 0; i + 6 <= s.length; i++) {
    const g = s.slice(i, i + 6)
    if (seen.has(g)) repeated = true
    seen.add(g)
  }
  if (freq.size < 10 || bitsPerChar * s.length < 180 || repeated) {
    throw errors.config(`${where}: the admin token looks weak (few distinct characters or repeated patterns); use 32 random bytes: \`egress-guard token create --role admin --data DIR --out FILE\``)
  }
}

function eqHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && timingSafeEqual(x, y)
}

/**
 * Resolves `Authorization: Bearer <token>` to a principal. The index is keyed by the SHA-256 of the
 * secret, so a lookup's timing can only depend on a hash the caller cannot steer toward a stored one;
 * the final comparison is still constant-time over the hashes.
 */
export class TokenIndex {
  #byHash = new Map<string, Principal & { hash: string }>()

  constructor(tokens: StoredToken[], bootstrapAdminHash?: string) {
    this.replace(tokens, bootstrapAdminHash)
  }

  replace(tokens: StoredToken[], bootstrapAdminHash?: string): void {
    const m = new Map<string, Principal & { hash: string }>()
    for (const t of tokens) m.set(t.hash, { id: t.id, role: t.role, ...(t.host ? { host: t.host } : {}), actor: t.name ?? `${t.role}:${t.id}`, hash: t.hash })
    if (bootstrapAdminHash) m.set(bootstrapAdminHash, { id: 'admin-file', role: 'admin', actor: 'admin', hash: bootstrapAdminHash })
    this.#byHash = m
  }

  get hasAdmin(): boolean {
    for (const p of this.#byHash.values()) if (p.role === 'admin') return true
    return false
  }

  /** undefined when the header is missing, malformed or the token unknown. */
  lookup(authorization: string | undefined): Principal | undefined {
    if (!authorization) return undefined
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    if (!m || m[1]!.length > 512) return undefined
    const h = hashToken(m[1]!)
    const p = this.#byHash.get(h)
    if (!p || !eqHex(p.hash, h)) return undefined
    const { hash: _h, ...principal } = p
    return principal
  }
}

/**
 * Read the bootstrap admin token file (`--admin-token-file`): one line, the secret. Refuses a missing,
 * empty or weak token (EG_CONFIG). Returns its hash; the secret does not outlive this call.
 */
export async function readAdminTokenFile(path: string): Promise<{ hash: string; looseMode: boolean }> {
  const { readFile, stat } = await import('node:fs/promises')
  let text: string
  let mode: number
  try {
    text = await readFile(path, 'utf8')
    mode = (await stat(path)).mode
  } catch (e) {
    throw errors.config(`--admin-token-file ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
  const secret = text.trim()
  assertStrongSecret(secret, `--admin-token-file ${path}`)
  // Group/other-readable token files are reported by the caller, not refused: some setups need it.
  return { hash: hashToken(secret), looseMode: (mode & 0o077) !== 0 }
}
