// End to end with a real Docker engine in its own namespace: a container whose resolver is the
// sinkhole (on the bridge address) looks up a blocked name, gets the sinkhole answer, and the hit
// names that container; a second container reusing the first one's address is named correctly.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { startDocker, BUSYBOX_IMAGE, type DockerEnv } from '../helpers/docker.js'
import { startDnsmasq } from '../helpers/dnsmasq.js'
import type { Hit } from '../../src/sinkhole/types.js'

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))

/**
 * The sinkhole process. The test cannot bind sockets inside another namespace itself, so it runs this
 * inside one (`ip netns exec`) with the built modules: createSinkhole from the sinkhole core, wired to
 * the hit log and the Docker attribution exactly as a host would run them.
 */
const SINKHOLE_SCRIPT = `
const cfg = JSON.parse(process.env.EG_E2E_CONFIG)
const m = (p) => import(new URL(p, cfg.dist).href)
const { createSinkhole } = await m('sinkhole/sinkhole.js')
const { createHitLog } = await m('sinkhole/hit-log.js')
const { createDockerContainers } = await m('sinkhole/containers.js')
const { buildMatcher } = await m('policy/matcher.js')
const { parseBlocklist } = await m('policy/parse.js')
const { createLogger } = await m('log.js')
const log = createLogger({ level: 'debug' })
const { entries } = parseBlocklist(cfg.blocklist, 'e2e.txt')
const containers = createDockerContainers({ socketPath: cfg.sock, log })
await containers.start()
const hits = createHitLog({ file: cfg.hitFile, intervalMs: 1000, log, containers })
const s = createSinkhole({ listen: [{ address: cfg.listen, port: 53 }], upstreams: [{ address: '127.0.0.1', port: cfg.upstreamPort }],
  matcher: buildMatcher(entries), hits, containers, log })
await s.start()
process.stdout.write('READY\\n')
process.on('SIGTERM', async () => { await s.stop(); await hits.close(); containers.stop(); process.exit(0) })
`

const BLOCKLIST = `# coin miner pool seen in the incident
evil.example
`

async function startSinkhole(t: Test, env: DockerEnv, upstreamPort: number, hitFile: string): Promise<{ child: ChildProcess; log: () => string }> {
  const config = { dist: pathToFileURL(DIST).href, sock: env.sock, listen: env.bridgeIp, upstreamPort, hitFile, blocklist: BLOCKLIST }
  const child = spawn('ip', ['netns', 'exec', env.ns, process.execPath, '--input-type=module', '-e', SINKHOLE_SCRIPT], {
    env: { ...process.env, EG_E2E_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stderr!.on('data', (d) => (err += String(d)))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000)
        child.once('exit', () => {
          clearTimeout(kill)
          resolve()
        })
        child.kill('SIGTERM')
      }),
  )
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sinkhole did not start:\n${err.slice(-3000)}`)), 30_000)
    child.stdout!.on('data', (d) => {
      out += String(d)
      if (out.includes('READY')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sinkhole exited ${code}:\n${err.slice(-3000)}`))
    })
  })
  return { child, log: () => err }
}

function readHits(file: string): Hit[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Hit)
}

/** Poll for a hit: first occurrences are written promptly, but the write is asynchronous. */
async function waitForHit(file: string, pred: (h: Hit) => boolean, what: string, ms = 15_000): Promise<Hit> {
  const end = Date.now() + ms
  for (;;) {
    const h = readHits(file).find(pred)
    if (h) return h
    if (Date.now() > end) throw new Error(`no hit for ${what}; hits: ${JSON.stringify(readHits(file))}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

t.test('a container\'s blocked lookup is answered by the sinkhole and attributed to it, also after address reuse', async (t) => {
  if (!requires(t, capabilities.docker(), capabilities.netns(), capabilities.tool('dnsmasq'))) return
  if (!existsSync(join(DIST, 'sinkhole', 'sinkhole.js')) || !existsSync(join(DIST, 'sinkhole', 'containers.js'))) {
    t.fail('dist/ is not built: run `npx tsc -p tsconfig.json` (npm test does) first')
    return
  }
  const env = await startDocker(t)
  t.comment(`docker in ${env.ns}, bridge ${env.bridgeIp}`)
  const upstream = await startDnsmasq(t, { netns: env.ns, hosts: { 'good.example': ['192.0.2.10'] } })
  const hitFile = join(env.dir, 'hits.jsonl')
  const sinkhole = await startSinkhole(t, env, upstream.port, hitFile)
  t.teardown(() => {
    if (t.passing()) return
    t.comment(`sinkhole log:\n${sinkhole.log().slice(-4000)}`)
    t.comment(`dnsmasq log:\n${upstream.log().slice(-1000)}`)
  })

  // A second tag of the same image, so the image field tells the two containers apart.
  await env.docker(['tag', BUSYBOX_IMAGE, 'eg-busybox:second'])

  // Container 1 looks the blocked name up as its very first action, as a dropper does.
  const id1 = (await env.docker(['run', '-d', '--name', 'dropper-one', '--dns', env.bridgeIp, BUSYBOX_IMAGE,
    'sh', '-c', 'nslookup -type=a pool.evil.example; echo DONE; sleep 3600'])).trim()
  const ip1 = (await env.docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', id1])).trim()
  t.match(ip1, /^172\.17\.\d+\.\d+$/, 'container on the namespace\'s bridge')
  const hit1 = await waitForHit(hitFile, (h) => h.name === 'pool.evil.example' && h.client === ip1, 'container 1')
  t.match(hit1, {
    client: ip1,
    name: 'pool.evil.example',
    qtype: 'A',
    action: 'block',
    answer: 'null',
    count: 1,
    entry: { value: 'evil.example', source: 'e2e.txt:2', reason: 'coin miner pool seen in the incident', mode: 'block' },
    container: { id: id1, name: 'dropper-one', image: BUSYBOX_IMAGE },
  }, 'the hit names the container that asked')

  // What the container was told: the sinkhole answer, not the real one.
  let logs1 = ''
  for (let i = 0; i < 100 && !logs1.includes('DONE'); i++) {
    logs1 = await env.docker(['logs', id1])
    if (!logs1.includes('DONE')) await new Promise((r) => setTimeout(r, 100))
  }
  t.match(logs1, /Name:\s+pool\.evil\.example\s+Address:\s+0\.0\.0\.0/, 'blocked lookup answered 0.0.0.0')
  // ...while an unlisted name still resolves through the upstream (the lookup that still works).
  const good = await env.docker(['exec', id1, 'nslookup', '-type=a', 'good.example'])
  t.match(good, /Address:\s+192\.0\.2\.10/, 'unlisted name forwarded to the real upstream')
  t.notOk(readHits(hitFile).some((h) => h.name === 'good.example'), 'no hit for an unlisted name')

  // Remove it; a new container gets the same address and must be named, not the old one.
  await env.docker(['rm', '-f', id1])
  const id2 = (await env.docker(['run', '-d', '--name', 'dropper-two', '--dns', env.bridgeIp, 'eg-busybox:second',
    'sh', '-c', 'nslookup -type=a pool.evil.example; sleep 3600'])).trim()
  const ip2 = (await env.docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', id2])).trim()
  t.equal(ip2, ip1, 'the second container reuses the first one\'s address')
  const hit2 = await waitForHit(hitFile, (h) => h.name === 'pool.evil.example' && h.container?.id === id2, 'container 2')
  t.match(hit2, { client: ip1, count: 1, container: { id: id2, name: 'dropper-two', image: 'eg-busybox:second' } })
  const wrong = readHits(hitFile).filter((h) => h.container?.id === id1 && Date.parse(h.time) >= Date.parse(hit2.time))
  t.same(wrong, [], 'nothing after the reuse is attributed to the removed container')
})
