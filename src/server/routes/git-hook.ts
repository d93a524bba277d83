// POST /v1/hooks/git: a forge's push webhook makes the server fetch its blocklist branch now. No bearer
// token (forges cannot send one): a shared secret from --git-hook-secret-file instead, compared in
// constant time, as `X-Hook-Secret` / `X-Gitlab-Token`, or GitHub's `X-Hub-Signature-256` HMAC of the
// raw body. Refused without it. The fetch runs after the answer (202): the forge does not wait on it,
// and the body is never read for anything but the signature (the branch is ours, not the sender's).
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from '../../errors.js'

export interface GitHookOptions {
  /** The shared secret; undefined: the hook is not configured and every call is refused. */
  secret: Buffer | undefined
  trigger: () => void
}

const same = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b)

function authorized(req: FastifyRequest, body: Buffer, secret: Buffer): boolean {
  const h = req.headers
  const plain = h['x-hook-secret'] ?? h['x-gitlab-token']
  if (typeof plain === 'string') return same(Buffer.from(plain), secret)
  const sig = h['x-hub-signature-256']
  if (typeof sig === 'string' && sig.startsWith('sha256=')) {
    const want = Buffer.from('sha256=' + createHmac('sha256', secret).update(body).digest('hex'))
    return same(Buffer.from(sig), want)
  }
  return false
}

export default async function gitHookRoutes(app: FastifyInstance, o: GitHookOptions): Promise<void> {
  await app.register(async (scope) => {
    // The raw bytes, whatever the content type: the HMAC is over them exactly as sent.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 1 << 20 }, (_req, body, done) => done(null, body))
    scope.post('/v1/hooks/git', { schema: { summary: 'Push webhook: fetch the followed blocklist branch now (shared secret, not a bearer token)' } }, async (req, reply) => {
      if (!o.secret) throw errors.forbidden('the git webhook is not configured (--git-hook-secret-file)')
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
      if (!authorized(req, body, o.secret)) throw errors.unauthorized('missing or wrong webhook secret')
      o.trigger()
      return reply.code(202).send({ ok: true, fetching: true })
    })
  })
}
