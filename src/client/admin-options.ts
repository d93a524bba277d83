// What every admin command shares: where the server is and which token to use (flag, EG_SERVER /
// EG_TOKEN_FILE, or the config file, through loadOptions), and a small table printer for humans.
import { readFile } from 'node:fs/promises'
import { printable } from '../server/ui/printable.js'
import type { Spec } from '../config.js'
import { errors } from '../errors.js'
import { createApiClient, type ApiClient } from './api-client.js'

export const DEFAULT_SERVER = 'http://127.0.0.1:8787'
export const DEFAULT_TOKEN_FILE = './data/admin.token'

export const adminSpec = {
  server: { type: 'string', default: DEFAULT_SERVER, help: 'server URL (env EG_SERVER)' },
  'token-file': { type: 'string', default: DEFAULT_TOKEN_FILE, help: 'file holding the bearer token (env EG_TOKEN_FILE)' },
  ca: { type: 'string', help: 'PEM file of the CA that signed the server certificate' },
} as const satisfies Spec

/** A client from the resolved options; a missing token file is a config error that says how to make one. */
export async function adminClient(o: { server: string | undefined; 'token-file': string | undefined; ca: string | undefined }): Promise<ApiClient> {
  const url = o.server ?? DEFAULT_SERVER
  if (!/^https?:\/\/[^/]+/.test(url)) throw errors.config(`--server must be an http(s) URL, got ${JSON.stringify(url)}`)
  const file = o['token-file'] ?? DEFAULT_TOKEN_FILE
  let token: string
  try {
    token = (await readFile(file, 'utf8')).trim()
  } catch (e) {
    throw errors.config(`token file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give --token-file or EG_TOKEN_FILE (create one with \`egress-guard token create --role admin --data DIR --out FILE\`)`)
  }
  if (!token) throw errors.config(`token file ${file} is empty`)
  let ca: string | undefined
  if (o.ca) {
    try {
      ca = await readFile(o.ca, 'utf8')
    } catch (e) {
      throw errors.config(`--ca ${o.ca}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
  }
  return createApiClient({ url, token, ...(ca ? { ca } : {}) })
}

/**
 * Left-aligned columns, two spaces apart. Cells hold server data (DNS names as a container sent them,
 * agent reports): every control or hidden character is shown escaped (`\x1b`, `\n`), so a cell is
 * one line and nothing in it can drive the terminal.
 */
export function formatTable(header: string[], rows: string[][]): string {
  const all = [header, ...rows].map((r) => r.map(printable))
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n'
}

/** `3m ago`-style age for people reading a table. */
export function ago(iso: string | undefined, now = new Date()): string {
  if (!iso) return '-'
  const s = Math.round((now.getTime() - Date.parse(iso)) / 1000)
  if (Number.isNaN(s)) return iso
  if (s < 0) return 'just now'
  if (s < 90) return `${s}s ago`
  if (s < 5400) return `${Math.round(s / 60)}m ago`
  if (s < 172800) return `${Math.round(s / 3600)}h ago`
  return `${Math.round(s / 86400)}d ago`
}
