// The sinkhole as its own process for bench/sinkhole.ts, wired the way a host runs it (blocklist file ->
// matcher -> createSinkhole, optional hit log with metrics), from the built dist/ with plain node so the
// measured load time and memory are not inflated by a TypeScript loader. Used until/unless the
// `egress-guard sinkhole` command takes the same options (bench/sinkhole.ts picks whichever exists).
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    blocklist: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    upstream: { type: 'string' },
    'hit-log': { type: 'string' },
  },
})
const dist = new URL('../../dist/', import.meta.url)
const m = (p) => import(new URL(p, dist).href)
const { loadBlocklists } = await m('policy/load.js')
const { buildMatcher } = await m('policy/matcher.js')
const { createSinkhole } = await m('sinkhole/sinkhole.js')
const { createHitLog } = await m('sinkhole/hit-log.js')
const { createRegistry, createSinkholeMetrics } = await m('metrics.js')
const { createLogger } = await m('log.js')

const log = createLogger({ level: 'warn' })
const loaded = await loadBlocklists([values.blocklist], { duplicates: false })
const matcher = buildMatcher(loaded.entries)
const metrics = createSinkholeMetrics(createRegistry())
const hits = values['hit-log'] ? createHitLog({ file: values['hit-log'], intervalMs: 60_000, log, metrics }) : undefined
const [upHost, upPort] = values.upstream.split(':')
const sinkhole = createSinkhole({
  listen: [{ address: values.listen, port: Number(values.port) }],
  upstreams: [{ address: upHost, port: Number(upPort) }],
  matcher,
  hits,
  log,
})
await sinkhole.start()
process.stdout.write(`READY ${loaded.entries.length}\n`)
const stop = async () => {
  await sinkhole.stop()
  await hits?.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
