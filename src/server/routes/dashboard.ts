// The web dashboard's static files (src/server/ui: index.html, app.js, printable.js, style.css)
// served at `/` and `/ui/*` without a token: they hold no data; every number the page shows comes
// from the token-checked /v1 API, called by app.js with `Authorization: Bearer`. Served with a strict
// Content-Security-Policy (no inline script or style, nothing from another origin), so a value from
// a blocklist or a DNS packet that ever reached the page as markup could still not run.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply } from 'fastify'

/** The header every dashboard answer carries. `frame-ancestors 'none'`: no clickjacking frames. */
export const DASHBOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'printable.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
}

/**
 * Where the files are: next to the compiled routes (dist/server/ui, copied by `npm run build`), or,
 * in a tree compiled with a bare `tsc` (no copy step) or run from src through tsx, src/server/ui.
 */
export function findUiDir(): string | undefined {
  const candidates = [new URL('../ui/', import.meta.url), new URL('../../../src/server/ui/', import.meta.url)].map((u) => fileURLToPath(u))
  return candidates.find((d) => existsSync(`${d}index.html`) && existsSync(`${d}app.js`))
}

/** Read once at startup: four small files, answered from memory. */
export function loadUiFiles(dir: string | undefined = findUiDir()): Map<string, { body: Buffer; type: string }> {
  const m = new Map<string, { body: Buffer; type: string }>()
  if (!dir) return m
  for (const [name, type] of Object.entries(FILES)) {
    if (existsSync(`${dir}${name}`)) m.set(name, { body: readFileSync(`${dir}${name}`), type })
  }
  return m
}

function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cache-control', 'no-cache')
}

export default function dashboardRoutes(app: FastifyInstance, opts: { files?: Map<string, { body: Buffer; type: string }> } = {}): void {
  const files = opts.files ?? loadUiFiles()
  const serve = (name: string) => async (_req: unknown, reply: FastifyReply) => {
    const f = files.get(name)
    if (!f) return secure(reply).code(404).type('text/plain; charset=utf-8').send('dashboard files are missing from this build (src/server/ui)\n')
    return secure(reply).type(f.type).send(f.body)
  }
  const schema = { hide: true }
  app.get('/', { schema }, serve('index.html'))
  app.get('/ui/', { schema }, serve('index.html'))
  app.get('/ui/app.js', { schema }, serve('app.js'))
  app.get('/ui/printable.js', { schema }, serve('printable.js'))
  app.get('/ui/style.css', { schema }, serve('style.css'))
  // Browsers ask for it on their own; an empty answer keeps a 404 out of the console.
  app.get('/favicon.ico', { schema }, async (_req, reply) => secure(reply).code(204).send())
}
