// `egress-guard sinkhole`: the DNS sinkhole alone. Loads blocklists, listens on UDP+TCP, forwards the
// rest upstream, records hits; SIGHUP reloads the blocklists; stops cleanly on SIGINT/SIGTERM.
// First, so that it runs before the other modules load: see why in the file.
import './small-young-heap.js'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import type { Command, CommandIO } from './types.js'
import { durationOption, helpText, intOption, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { createLogger, type Logger } from '../log.js'
import { parseIp, formatIp } from '../policy/net.js'
import { loadBlocklists } from '../policy/load.js'
import { MatcherBuilder } from '../policy/matcher.js'
import { countProblems, formatProblem } from '../policy/problems.js'
import type { Matcher } from '../policy/types.js'
import { parseBlockMode } from '../sinkhole/answer.js'
import { DEFAULT_ALLOW_CLIENTS } from '../sinkhole/acl.js'
import { createSinkhole } from '../sinkhole/sinkhole.js'
import { parseListenSpec } from '../sinkhole/listen-spec.js'
import { createHitLog, type HitLog } from '../sinkhole/hit-log.js'
import { createDockerContainers, type DockerContainers } from '../docker/containers.js'

const spec = {
  listen: { type: 'string', multiple: true, default: ['127.0.0.1:53'], help: 'ADDR:PORT to serve on, UDP and TCP (repeatable; [v6]:port; IFACE:PORT such as docker0:53 follows that interface\'s IPv4 address)' },
  upstream: { type: 'string', multiple: true, help: 'ADDR[:PORT] to forward to (repeatable; tried in order)' },
  'resolv-conf': { type: 'string', help: 'take the upstream from the first nameserver of this resolv.conf-style file' },
  blocklists: { type: 'string', multiple: true, help: 'blocklist file or directory (repeatable); none: forward everything' },
  'block-mode': { type: 'string', default: 'null', help: 'null | nxdomain | refused | IP[,IP]' },
  'block-ttl': { type: 'string', default: '60', help: 'TTL of sinkhole answers, seconds' },
  'allow-client': { type: 'string', multiple: true, help: `client network allowed to query (repeatable; default ${DEFAULT_ALLOW_CLIENTS.join(', ')})` },
  'rate-limit': { type: 'string', help: 'queries per second per client (burst: 2x, at least 20); default off' },
  'cache-size': { type: 'string', default: '10000', help: 'cached answers; 0 disables the cache' },
  'hit-log': { type: 'string', help: 'append hits to this JSON-lines file (at log level info they are also logged)' },
  'hit-interval': { type: 'string', default: '60s', help: 'repeats of a hit are folded into one record per interval' },
  'docker-socket': { type: 'string', help: 'Docker API socket, to name the container behind each hit' },
  'tcp-idle': { type: 'string', default: '10s', help: 'close TCP connections idle this long' },
  'max-tcp-clients': { type: 'string', default: '256', help: 'concurrent TCP connections' },
  'upstream-timeout': { type: 'string', default: '2s', help: 'per-try upstream timeout' },
  'log-level': { type: 'string', default: 'info', help: 'pino level: debug, info, warn, error' },
} as const satisfies Spec

const USAGE = `usage: egress-guard sinkhole --upstream ADDR[:PORT] [--listen ADDR:PORT] [--blocklists DIR] [options]

DNS sinkhole: blocked names get the block-mode answer, everything else is forwarded to the upstream.
SIGHUP reloads the blocklists. The host's own resolver is never used unless named with --resolv-conf.`

/** `1.2.3.4`, `1.2.3.4:53`, `[2001:db8::1]:53`, `2001:db8::1` -> address (canonical) and port. */
export function parseHostPort(text: string, defPort: number, what: string): { address: string; port: number } {
  let host = text.trim()
  let port = defPort
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(host)
  if (v6) {
    host = v6[1]!
    if (v6[2] !== undefined) port = Number(v6[2])
  } else if (isIP(host) === 0) {
    const i = host.lastIndexOf(':')
    if (i > 0 && /^\d+$/.test(host.slice(i + 1))) {
      port = Number(host.slice(i + 1))
      host = host.slice(0, i)
    }
  }
  const ip = parseIp(host)
  if (!ip) throw errors.config(`${what} ${JSON.stringify(text)}: expected ADDR[:PORT] with an IP address`)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw errors.config(`${what} ${JSON.stringify(text)}: port must be 0..65535`)
  return { address: formatIp(ip), port }
}

/** First `nameserver` line of a resolv.conf-style file. */
export function firstNameserver(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line)
    if (m) return m[1]
  }
  return undefined
}

/**
 * Blocklists straight into a matcher. The sinkhole needs neither an etag nor a sorted, merged policy,
 * so buildPolicy (a sort key per entry, a sorted copy, a SHA-256) and the loader's duplicate map are
 * skipped: on a 1,000,000-name list that is most of the load time and peak memory (bench/sinkhole.ts
 * --load-only). The matcher gives the same answers: it drops entries expired at build time, skips
 * expired ones at lookup, and a name listed twice just chains both entries (the first live one in
 * file order decides, where the merged policy would report the merged entry: the action is the same,
 * the reason shown may be the first line's alone). `entries` therefore counts lines, duplicates
 * included. The agent's embedded sinkhole builds from the Policy it already has instead.
 */
async function loadMatcher(paths: readonly string[], io: CommandIO, log: Logger): Promise<{ matcher: Matcher; entries: number }> {
  const now = new Date()
  // Streamed straight from the files' bytes into the matcher's tables (load-stream.ts, MatcherBuilder):
  // a plain name never becomes a string or an Entry, and no file is held in memory whole.
  const builder = new MatcherBuilder({ now })
  const loaded = await loadBlocklists(paths, {
    now,
    duplicates: false,
    sink: builder,
    onFileStart: (_file, lines, bytes) => builder.reserve(lines, bytes),
  })
  for (const p of loaded.problems) if (p.severity === 'error') io.stderr(formatProblem(p) + '\n')
  const counts = countProblems(loaded.problems)
  const entries = builder.count
  log.info({ entries, files: loaded.files.length, errors: counts.error, warnings: counts.warning }, 'blocklists loaded')
  return { matcher: builder.build(), entries }
}

const emptyMatcher: Matcher = { matchName: () => undefined, matchIp: () => undefined }

const command: Command = {
  summary: 'run the DNS sinkhole alone (blocked names answered here, the rest forwarded)',
  async run(argv, io) {
    const { options } = loadOptions(argv, spec, { env: io.env, section: 'sinkhole', allowPositionals: false })
    if (options.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    // Validate everything before binding anything: bad input changes nothing.
    const listen = options.listen.map((l) => parseListenSpec(l, 53, 'listen'))
    const upstreams = options.upstream.map((u) => parseHostPort(u, 53, '--upstream'))
    if (options['resolv-conf'] !== undefined) {
      let text: string
      try {
        text = readFileSync(options['resolv-conf'], 'utf8')
      } catch (e) {
        throw errors.config(`--resolv-conf ${options['resolv-conf']}: ${(e as Error).message}`)
      }
      const ns = firstNameserver(text)
      if (!ns) throw errors.config(`--resolv-conf ${options['resolv-conf']}: no nameserver line`)
      upstreams.push(parseHostPort(ns, 53, `nameserver in ${options['resolv-conf']}`))
    }
    if (upstreams.length === 0) throw errors.usage('sinkhole: --upstream ADDR[:PORT] (or --resolv-conf FILE) is required; the host resolver is never used implicitly')
    for (const u of upstreams) {
      if (u.port === 0) throw errors.config(`--upstream ${u.address}:0: port 0 is not a server`)
      // Forwarding to ourselves would loop every unlisted query until it times out.
      if (listen.some((l) => 'address' in l && l.port === u.port && (l.address === u.address || l.address === '0.0.0.0' || l.address === '::'))) {
        throw errors.config(`--upstream ${u.address}:${u.port} is one of the --listen addresses: queries would loop`)
      }
    }
    const blockMode = parseBlockMode(options['block-mode'] ?? 'null')
    const blockTtl = intOption('block-ttl', options['block-ttl'], 60, 0, 86400)
    const qps = options['rate-limit'] !== undefined ? intOption('rate-limit', options['rate-limit'], 0, 1, 1_000_000) : undefined
    const cacheSize = intOption('cache-size', options['cache-size'], 10000, 0, 10_000_000)
    const tcpIdleMs = durationOption('tcp-idle', options['tcp-idle'], 10_000)
    const upstreamTimeoutMs = durationOption('upstream-timeout', options['upstream-timeout'], 2000)
    const hitIntervalMs = durationOption('hit-interval', options['hit-interval'], 60_000)
    const maxTcpClients = intOption('max-tcp-clients', options['max-tcp-clients'], 256, 1, 100_000)
    const allowClients = options['allow-client'].length > 0 ? [...options['allow-client']] : [...DEFAULT_ALLOW_CLIENTS]

    const log = createLogger({ level: options['log-level'] })
    const blocklists = options.blocklists
    let matcher = emptyMatcher
    let entries = 0
    if (blocklists.length > 0) ({ matcher, entries } = await loadMatcher(blocklists, io, log))
    else log.warn('no --blocklists: every query is forwarded')

    let containers: DockerContainers | undefined
    if (options['docker-socket']) {
      containers = createDockerContainers({ socketPath: options['docker-socket'], log })
      await containers.start()
    }
    // Hits are aggregated and logged (one line per new hit and per interval of repeats) so an operator
    // sees them without a file; --hit-log adds the JSON-lines file. With neither a file nor an
    // info-level log nobody would see them: then no hit is processed at all (it costs per query).
    let hitLog: HitLog | undefined
    const logHits = log.isLevelEnabled('info')
    if (options['hit-log'] || logHits) {
      hitLog = createHitLog({ ...(options['hit-log'] ? { file: options['hit-log'] } : {}), intervalMs: hitIntervalMs, log, containers })
      const hitLogger = log.child({ component: 'hits' })
      if (logHits) {
        hitLog.onHit((h) =>
          hitLogger.info({ domain: h.name, ip: h.client, container: h.container?.name, qtype: h.qtype, action: h.action, answer: h.answer, count: h.count, entry: h.entry.value, source: h.entry.source }, h.action === 'block' ? 'blocked lookup' : 'alert lookup'),
        )
      }
    }

    const sinkhole = createSinkhole({
      listen,
      upstreams,
      matcher,
      blockMode,
      blockTtl,
      allowClients,
      rateLimit: qps ? { qps, burst: Math.max(20, qps * 2) } : undefined,
      cache: cacheSize > 0 ? { maxEntries: cacheSize } : false,
      hits: hitLog,
      containers,
      log,
      tcpIdleMs,
      maxTcpClients,
      upstreamTimeoutMs,
    })
    try {
      await sinkhole.start()
    } catch (e) {
      containers?.stop()
      await hitLog?.close()
      const err = e as NodeJS.ErrnoException
      throw errors.config(`sinkhole: cannot listen: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied (ports below 1024 need root)' : err.message}`)
    }
    const addrs = sinkhole.addresses()
    const waiting = sinkhole.waiting()
    if (options.json) io.stdout(JSON.stringify({ listening: addrs, upstreams, entries, ...(waiting.length ? { waiting } : {}) }) + '\n')
    else for (const a of addrs) io.stdout(`listening ${a.proto} ${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}\n`)
    for (const w of waiting) io.stderr(w + '\n')

    // SIGHUP: reload; a reload that fails keeps the policy in force (never an empty one by accident).
    let reloading = false
    const offReload = io.onReload(() => {
      if (reloading || blocklists.length === 0) return
      reloading = true
      loadMatcher(blocklists, io, log)
        .then((r) => {
          sinkhole.setMatcher(r.matcher)
          io.stdout(`reloaded ${r.entries} entries\n`)
        })
        .catch((e: unknown) => log.error({ err: (e as Error).message }, 'reload failed: keeping the previous policy'))
        .finally(() => (reloading = false))
    })
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) return resolve()
      io.signal.addEventListener('abort', () => resolve(), { once: true })
    })
    offReload()
    await sinkhole.stop()
    containers?.stop()
    await hitLog?.close()
    return 0
  },
}
export default command
