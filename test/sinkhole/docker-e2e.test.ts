// End to end with a real Docker engine in its own namespace: a container whose resolver is the
// sinkhole (on the bridge address) looks up a blocked name, gets the sinkhole answer, and the hit
// names that container; a second container reusing the first one's address is named correctly.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { startDocker, BUSYBOX_IMAGE, type DockerEnv } from '../helpers/docker.js'
import { startDnsmasq } from '../helpers/dnsmasq.js'
import type { Hit } from '../../src/sinkhole/types.js'

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

const BLOCKLIST = `# coin miner pool seen in the incident
evil.example
watch.example mode=alert # trying this one before enforcing it
`

/**
 * The `egress-guard sinkhole` command, run inside the Docker namespace (`ip netns exec`: the test itself
 * cannot bind sockets in another namespace) on the bridge address, with the hit log and Docker
 * attribution on, exactly as an operator would run it on a host.
 */
async function startSinkhole(t: Test, env: DockerEnv, upstreamPort: number, hitFile: string): Promise<{ child: ChildProcess; log: () => string }> {
  const lists = join(env.dir, 'blocklists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'e2e.txt'), BLOCKLIST)
  const child = spawn('ip', ['netns', 'exec', env.ns, process.execPath, CLI, 'sinkhole',
    '--listen', `${env.bridgeIp}:53`, '--upstream', `127.0.0.1:${upstreamPort}`, '--blocklists', lists,
    '--hit-log', hitFile, '--hit-interval', '1s', '--docker-socket', env.sock, '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] })
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
      if (out.includes(`listening udp ${env.bridgeIp}:53`)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sinkhole exited ${code}:\n${out}\n${err.slice(-3000)}`))
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
  if (!existsSync(CLI)) {
    t.fail('dist/ is not built: run `npx tsc -p tsconfig.json` (npm test does) first')
    return
  }
  const env = await startDocker(t)
  t.comment(`docker in ${env.ns}, bridge ${env.bridgeIp}`)
  const upstream = await startDnsmasq(t, { netns: env.ns, hosts: { 'good.example': ['192.0.2.10'], 'watch.example': ['192.0.2.30'] } })
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
    entry: { value: 'evil.example', source: /e2e\.txt:2$/, reason: 'coin miner pool seen in the incident', mode: 'block' },
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
  // Alert mode: the real answer goes through, and the lookup is still a hit naming the container.
  const watched = await env.docker(['exec', id1, 'nslookup', '-type=a', 'watch.example'])
  t.match(watched, /Address:\s+192\.0\.2\.30/, 'alert-mode name gets the upstream answer')
  const alertHit = await waitForHit(hitFile, (h) => h.name === 'watch.example', 'the alert-mode lookup')
  t.match(alertHit, { action: 'alert', answer: 'forwarded', client: ip1, entry: { mode: 'alert', reason: 'trying this one before enforcing it' }, container: { id: id1, name: 'dropper-one' } })

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
