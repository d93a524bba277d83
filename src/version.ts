// The version of this egress-guard, from its package.json (one place to bump): shown by
// `egress-guard --version` and reported by agents. Both the built tree (dist/) and the sources (src/,
// through tsx) sit one directory below package.json, in a clone and in an npm-installed package alike.
import { readFileSync } from 'node:fs'

function read(): string {
  try {
    const v = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version
    return typeof v === 'string' ? v : '0.0.0'
  } catch {
    return '0.0.0'
  }
}

export const VERSION: string = read()
