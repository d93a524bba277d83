// `<blocklists dir>/feeds.txt`: one feed a line, `NAME URL format=... [every=6h] [mode=block|alert]
// [max=500000] [min=N] [resolve=yes]`. Pure: text in, feeds and `file:line: message` problems out.
import type { Problem } from '../policy/types.js'
import type { FeedFormat } from './feed-parse.js'

export interface FeedSpec {
  name: string
  url: string
  format: FeedFormat
  everyMs: number
  mode: 'block' | 'alert'
  max: number
  min: number
  /** Resolve its names for the kernel sets too (default: DNS enforcement only). */
  resolve: boolean
  /** `feeds.txt:LINE`. */
  source: string
}

export const FEEDS_FILE = 'feeds.txt'
const DEFAULT_EVERY = 6 * 3600_000
const DEFAULT_MAX = 500_000
const MIN_EVERY = 60_000

function duration(v: string): number | undefined {
  const m = /^(\d+)(s|m|h|d)$/.exec(v)
  return m ? Number(m[1]) * { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[m[2] as 's']! : undefined
}

export function parseFeedsFile(text: string, file: string): { feeds: FeedSpec[]; problems: Problem[] } {
  const feeds: FeedSpec[] = []
  const problems: Problem[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1
    const l = raw.replace(/(^|\s)#.*$/, '').trim()
    if (l === '') return
    const bad = (message: string): void => void problems.push({ file, line, severity: 'error', code: 'bad-feed', message })
    const [name, url, ...opts] = l.split(/\s+/)
    if (!name || !/^[a-z0-9][a-z0-9_-]{0,62}$/i.test(name)) return bad(`feed name ${JSON.stringify(name)}: letters, digits, - and _ (up to 63)`)
    if (feeds.some((f) => f.name === name)) return bad(`feed ${name} is defined twice`)
    let u: URL
    try {
      u = new URL(url ?? '')
    } catch {
      return bad(`feed ${name}: ${JSON.stringify(url ?? '')} is not a URL`)
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return bad(`feed ${name}: only http and https URLs`)
    if (u.username || u.password) return bad(`feed ${name}: no credentials in the URL`)
    const f: Partial<FeedSpec> = { name, url: u.href, everyMs: DEFAULT_EVERY, mode: 'block', max: DEFAULT_MAX, min: 1, resolve: false, source: `${file}:${line}` }
    for (const o of opts) {
      const eq = o.indexOf('=')
      const k = eq > 0 ? o.slice(0, eq) : o
      const v = eq > 0 ? o.slice(eq + 1) : ''
      if (k === 'format') {
        if (['domains', 'hosts', 'adblock', 'drop', 'drop-json'].includes(v)) f.format = { kind: v as 'domains' }
        else if (/^csv:[^\s]+$/.test(v)) f.format = { kind: 'csv', column: v.slice(4) }
        else return bad(`feed ${name}: format=${v}: want domains, hosts, adblock, drop, drop-json or csv:COLUMN`)
      } else if (k === 'every') {
        const ms = duration(v)
        if (ms === undefined || ms < MIN_EVERY) return bad(`feed ${name}: every=${v}: a duration of at least 1m, like 30m, 6h, 1d`)
        f.everyMs = ms
      } else if (k === 'mode') {
        if (v !== 'block' && v !== 'alert') return bad(`feed ${name}: mode=${v}: want block or alert`)
        f.mode = v
      } else if (k === 'max' || k === 'min') {
        if (!/^\d{1,8}$/.test(v)) return bad(`feed ${name}: ${k}=${v}: a whole number`)
        f[k] = Number(v)
      } else if (k === 'resolve') {
        if (v !== 'yes' && v !== 'no') return bad(`feed ${name}: resolve=${v}: want yes or no`)
        f.resolve = v === 'yes'
      } else return bad(`feed ${name}: unknown option ${JSON.stringify(o)}`)
    }
    if (!f.format) return bad(`feed ${name}: format=... is required`)
    if (f.min! > f.max!) return bad(`feed ${name}: min=${f.min} is above max=${f.max}`)
    feeds.push(f as FeedSpec)
  })
  return { feeds, problems }
}
