// Container identity against a fake Docker engine: a node:http server on a unix socket that serves
// /containers/json, /containers/{id}/json and a streamed /events, so reuse, reconnects and a missing
// socket can be driven exactly. The real engine is exercised by docker-e2e.test.ts.
import t, { type Test } from 'tap'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createDockerContainers } from '../../src/docker/containers.js'
import { createLogger, silentLogger } from '../../src/log.js'
import type { ContainerChange } from '../../src/docker/types.js'

interface FakeContainer {
  id: string
  name: string
  image: string
  labels?: Record<string, string>
  running: boolean
  nets: Record<string, { ip: string; ip6?: string }>
}

function networksOf(c: FakeContainer) {
  const out: Record<string, unknown> = {}
  for (const [n, a] of Object.entries(c.nets)) out[n] = { NetworkID: n, IPAddress: c.running ? a.ip : '', GlobalIPv6Address: c.running ? a.ip6 ?? '' : '' }
  return { Networks: out }
}

/** A fake engine. `emit` pushes an event to every open /events stream. */
async function fakeDocker(t: Test, sock: string) {
  const containers = new Map<string, FakeContainer>()
  const streams = new Set<ServerResponse>()
  let eventConnections = 0
  let listCalls = 0
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker')
    if (url.pathname === '/containers/json') {
      listCalls++
      const list = [...containers.values()].filter((c) => c.running).map((c) => ({ Id: c.id, Names: ['/' + c.name], Image: c.image, Labels: c.labels ?? {}, State: 'running', NetworkSettings: networksOf(c) }))
      res.setHeader('content-type', 'application/json')
      return res.end(JSON.stringify(list))
    }
    const m = /^\/containers\/([^/]+)\/json$/.exec(url.pathname)
    if (m) {
      const c = containers.get(m[1]!)
      if (!c) {
        res.statusCode = 404
        return res.end(JSON.stringify({ message: `No such container: ${m[1]}` }))
      }
      return res.end(JSON.stringify({ Id: c.id, Name: '/' + c.name, Config: { Image: c.image, Labels: c.labels ?? null }, State: { Running: c.running, Status: c.running ? 'running' : 'exited' }, NetworkSettings: networksOf(c) }))
    }
    if (url.pathname === '/events') {
      t.same(JSON.parse(url.searchParams.get('filters') ?? '{}'), { type: ['container', 'network'] }, 'events are filtered to containers and networks')
      eventConnections++
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      streams.add(res)
      res.on('close', () => streams.delete(res))
      return
    }
    res.statusCode = 404
    res.end('{}')
  })
  await new Promise<void>((resolve) => server.listen(sock, resolve))
  t.teardown(() => {
    for (const s of streams) s.destroy()
    server.close()
  })
  const emit = (ev: unknown) => {
    for (const s of streams) s.write(JSON.stringify(ev) + '\n')
  }
  return {
    containers,
    server,
    emit,
    raw: (text: string) => {
      for (const s of streams) s.write(text)
    },
    dropStreams: () => {
      for (const s of streams) s.destroy()
    },
    get eventConnections() {
      return eventConnections
    },
    get listCalls() {
      return listCalls
    },
    get openStreams() {
      return streams.size
    },
    /** What the engine sends when a container starts: network connect, then start. */
    run(c: FakeContainer) {
      c.running = true
      containers.set(c.id, c)
      emit({ Type: 'network', Action: 'connect', Actor: { ID: 'net1', Attributes: { container: c.id, name: 'bridge', type: 'bridge' } } })
      emit({ status: 'start', id: c.id, Type: 'container', Action: 'start', Actor: { ID: c.id, Attributes: { name: c.name, image: c.image } } })
    },
    /** `docker rm -f`: die, network disconnect, destroy. */
    remove(id: string) {
      const c = containers.get(id)
      if (c) c.running = false
      emit({ Type: 'container', Action: 'die', Actor: { ID: id, Attributes: {} } })
      emit({ Type: 'network', Action: 'disconnect', Actor: { ID: 'net1', Attributes: { container: id } } })
      containers.delete(id)
      emit({ Type: 'container', Action: 'destroy', Actor: { ID: id, Attributes: {} } })
    },
  }
}

function tmpSock(t: Test): string {
  const d = mkdtempSync(join(tmpdir(), 'eg-dk-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return join(d, 'docker.sock')
}

/** Wait for a condition the component reaches asynchronously (events are applied in order, off the hot path). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

const ID_A = 'a'.repeat(64)
const ID_B = 'b'.repeat(64)
const ID_C = 'c'.repeat(64)

t.test('initial listing: every network address, names without "/", compose labels', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  fake.containers.set(ID_A, { id: ID_A, name: 'shop-web-1', image: 'nginx:1.27', labels: { 'com.docker.compose.service': 'web', 'com.docker.compose.project': 'shop' }, running: true, nets: { bridge: { ip: '172.17.0.2', ip6: '2001:db8:1::2' }, backend: { ip: '172.18.0.5' } } })
  fake.containers.set(ID_B, { id: ID_B, name: 'stopped', image: 'x', running: false, nets: { bridge: { ip: '172.17.0.9' } } })
  const c = createDockerContainers({ socketPath: sock, log: silentLogger })
  t.teardown(() => c.stop())
  await c.start()
  const want = { id: ID_A, name: 'shop-web-1', image: 'nginx:1.27', service: 'web', project: 'shop' }
  t.same(c.byIp('172.17.0.2'), want)
  t.same(c.byIp('172.18.0.5'), want, 'second network')
  t.same(c.byIp('2001:db8:1::2'), want, 'global IPv6 address')
  t.same(c.byIp('2001:0db8:0001:0000:0000:0000:0000:0002'), want, 'non-canonical IPv6 text')
  t.same(c.byIp('::ffff:172.17.0.2'), want, 'IPv4-mapped client address from a dual-stack socket')
  t.equal(c.byIp('172.17.0.9'), undefined, 'stopped containers hold no address')
  t.equal(c.byIp('127.0.0.1'), undefined)
  t.equal(c.byIp('not an ip'), undefined)
  t.equal(c.size(), 3)
})

t.test('events: a started container is attributed; a removed one only for hits stamped within the grace', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  let now = 1_000_000
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, graceMs: 30_000, now: () => now })
  t.teardown(() => c.stop())
  await c.start()
  t.equal(c.size(), 0)
  fake.run({ id: ID_A, name: 'miner', image: 'eg-busybox:test', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  await until(() => c.byIp('172.17.0.2') !== undefined, 'start event')
  t.match(c.byIp('172.17.0.2'), { id: ID_A, name: 'miner', image: 'eg-busybox:test' })
  t.notOk('service' in c.byIp('172.17.0.2')!, 'no compose labels, no service field')

  fake.remove(ID_A)
  await until(() => c.size() === 0, 'die event')
  const removedAt = now
  t.equal(c.byIp('172.17.0.2'), undefined, 'hot path: a removed container holds nothing')
  t.match(c.byIpAt('172.17.0.2', removedAt - 2000), { id: ID_A }, 'a hit stamped before the removal is still its own')
  t.match(c.byIpAt('172.17.0.2', removedAt + 29_000), { id: ID_A }, 'and within the grace after it (recorded late)')
  t.equal(c.byIpAt('172.17.0.2', removedAt + 30_001), undefined, 'after the grace the address is nobody\'s')
})

t.test('address reuse: a new container on the same address is attributed at once', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, graceMs: 60_000 })
  t.teardown(() => c.stop())
  await c.start()
  fake.run({ id: ID_A, name: 'first', image: 'img:a', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  await until(() => c.byIp('172.17.0.2')?.id === ID_A, 'first container')
  fake.remove(ID_A)
  await until(() => c.byIp('172.17.0.2') === undefined, 'first removed')
  // The race the real engine has: B's first query comes before B's start event is processed.
  t.equal(c.byIp('172.17.0.2'), undefined, 'in between, the hot path names nobody (never the removed container)')
  fake.run({ id: ID_B, name: 'second', image: 'img:b', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  await until(() => c.byIp('172.17.0.2')?.id === ID_B, 'second container on the reused address')
  t.match(c.byIp('172.17.0.2'), { id: ID_B, name: 'second', image: 'img:b' })
  t.match(c.byIpAt('172.17.0.2', Date.now()), { id: ID_B }, 'a new holder ends the first one\'s grace at once')
  // A late disconnect/die for the first container must not take the address from the second.
  fake.emit({ Type: 'container', Action: 'die', Actor: { ID: ID_A, Attributes: {} } })
  fake.emit({ Type: 'network', Action: 'disconnect', Actor: { ID: 'n', Attributes: { container: ID_A } } })
  fake.run({ id: ID_C, name: 'marker', image: 'm', running: true, nets: { bridge: { ip: '172.17.0.3' } } })
  await until(() => c.byIp('172.17.0.3') !== undefined, 'marker container (events are applied in order)')
  t.match(c.byIp('172.17.0.2'), { id: ID_B })
})

t.test('network connect/disconnect on a running container updates its addresses', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, graceMs: 0 })
  t.teardown(() => c.stop())
  const a: FakeContainer = { id: ID_A, name: 'a', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.2' } } }
  fake.containers.set(ID_A, a)
  await c.start()
  a.nets.extra = { ip: '172.20.0.7' }
  fake.emit({ Type: 'network', Action: 'connect', Actor: { ID: 'n2', Attributes: { container: ID_A } } })
  await until(() => c.byIp('172.20.0.7') !== undefined, 'connect')
  delete a.nets.bridge
  fake.emit({ Type: 'network', Action: 'disconnect', Actor: { ID: 'n1', Attributes: { container: ID_A } } })
  await until(() => c.byIp('172.17.0.2') === undefined, 'disconnect')
  t.match(c.byIp('172.20.0.7'), { id: ID_A })
})

t.test('a dropped events stream reconnects, and the re-listing catches what was missed', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, backoffMs: { min: 20, max: 100 } })
  t.teardown(() => c.stop())
  fake.containers.set(ID_A, { id: ID_A, name: 'a', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  await c.start()
  t.equal(fake.eventConnections, 1)
  fake.dropStreams()
  // While disconnected: A goes away, B takes its address; no events reach us.
  fake.containers.delete(ID_A)
  fake.containers.set(ID_B, { id: ID_B, name: 'b', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  await until(() => fake.eventConnections >= 2 && c.byIp('172.17.0.2')?.id === ID_B, 'reconnect and re-list')
  t.ok(fake.listCalls >= 2, 'listed again after reconnecting')
})

t.test('garbage on the events stream is skipped, not fatal', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger })
  t.teardown(() => c.stop())
  await c.start()
  fake.raw('not json\n{"Type":"container"}\n[1,2]\nnull\n{"Type":"container","Action":"start","Actor":{"ID":"../../etc"}}\n')
  fake.run({ id: ID_A, name: 'ok', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.4' } } })
  await until(() => c.byIp('172.17.0.4') !== undefined, 'a valid event after the garbage')
  t.equal(fake.openStreams, 1, 'still on the first stream')
  t.equal(fake.eventConnections, 1)
})

t.test('no Docker: start() resolves, logs once, and attaches when the engine appears', async (t) => {
  const sock = tmpSock(t)
  const lines: Record<string, unknown>[] = []
  const log = createLogger({
    level: 'warn',
    destination: new Writable({
      write(chunk, _e, cb) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
        cb()
      },
    }),
  })
  const c = createDockerContainers({ socketPath: sock, log, backoffMs: { min: 20, max: 40 } })
  t.teardown(() => c.stop())
  await c.start()
  t.equal(c.byIp('172.17.0.2'), undefined, 'hits carry only the address')
  await new Promise((r) => setTimeout(r, 200)) // several retries happen meanwhile
  const warned = lines.filter((l) => String(l.msg).startsWith('docker API unavailable'))
  t.equal(warned.length, 1, 'logged once, not once per retry')
  const fake = await fakeDocker(t, sock)
  fake.containers.set(ID_A, { id: ID_A, name: 'late', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  await until(() => c.byIp('172.17.0.2') !== undefined, 'attach to the engine once it is up')
  t.match(c.byIp('172.17.0.2'), { name: 'late' })
})

t.test('stop() ends the stream and the retries', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, backoffMs: { min: 10, max: 10 } })
  await c.start()
  t.equal(fake.openStreams, 1)
  c.stop()
  await until(() => fake.openStreams === 0, 'stream closed')
  await new Promise((r) => setTimeout(r, 100))
  t.equal(fake.eventConnections, 1, 'no reconnect after stop')
})

t.test('stop() then start() again follows one stream, not two', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, backoffMs: { min: 10, max: 10 } })
  t.teardown(() => c.stop())
  await c.start()
  c.stop()
  await c.start()
  await until(() => fake.eventConnections === 2, 'second connection')
  await new Promise((r) => setTimeout(r, 100))
  t.equal(fake.openStreams, 1, 'exactly one events stream open')
  fake.run({ id: ID_A, name: 'after-restart', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.8' } } })
  await until(() => c.byIp('172.17.0.8') !== undefined, 'events still applied')
})

/** Changes as `type name addresses` strings, for compact comparisons. */
function recorder(c: { onChange(fn: (ch: ContainerChange) => void): () => void }) {
  const seen: ContainerChange[] = []
  const off = c.onChange((ch) => void seen.push(ch))
  return { seen, off, text: () => seen.map((ch) => `${ch.type} ${ch.record.name} ${ch.record.addresses.join(',')}`) }
}

t.test('records: labels, the profile label, every network; onChange from the first listing on', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  fake.containers.set(ID_A, { id: ID_A, name: 'shop-web-1', image: 'nginx:1.27', labels: { 'egress-guard.profile': 'web', 'com.docker.compose.service': 'web', odd: 7 as unknown as string }, running: true, nets: { bridge: { ip: '172.17.0.2', ip6: '2001:DB8:1::2' }, backend: { ip: '172.18.0.5' } } })
  fake.containers.set(ID_B, { id: ID_B, name: 'plain', image: 'x', running: true, nets: { bridge: { ip: '172.17.0.3' } } })
  fake.containers.set(ID_C, { id: ID_C, name: 'empty-label', image: 'x', labels: { 'egress-guard.profile': '' }, running: true, nets: { bridge: { ip: '172.17.0.4' } } })
  const c = createDockerContainers({ socketPath: sock, log: silentLogger })
  t.teardown(() => c.stop())
  const r = recorder(c)
  await c.start()
  t.same(r.text().sort(), ['added empty-label 172.17.0.4', 'added plain 172.17.0.3', 'added shop-web-1 172.17.0.2,172.18.0.5,2001:db8:1::2'])
  t.same(c.get(ID_A), {
    id: ID_A, name: 'shop-web-1', image: 'nginx:1.27', service: 'web',
    labels: { 'egress-guard.profile': 'web', 'com.docker.compose.service': 'web' },
    profile: 'web',
    addresses: ['172.17.0.2', '172.18.0.5', '2001:db8:1::2'],
    networks: [{ name: 'backend', ipv4: '172.18.0.5' }, { name: 'bridge', ipv4: '172.17.0.2', ipv6: '2001:db8:1::2' }],
  }, 'a non-string label value is dropped; addresses canonical')
  t.notOk('profile' in c.get(ID_B)!, 'unlabelled: no profile')
  t.equal(c.get(ID_C)!.profile, '', 'an empty label is still a label (it names no profile: fail closed later)')
  t.equal(c.recordByIp('::ffff:172.18.0.5')?.id, ID_A)
  t.equal(c.recordByIp('2001:0db8:1::2')?.id, ID_A)
  t.equal(c.recordByIp('172.17.0.99'), undefined)
  t.ok(Object.isFrozen(c.get(ID_A)) && Object.isFrozen(c.get(ID_A)!.addresses), 'records are immutable snapshots')
  t.same(c.byIp('172.17.0.2'), { id: ID_A, name: 'shop-web-1', image: 'nginx:1.27', service: 'web' }, 'a hit\'s container info stays small (no labels)')
  t.equal(c.list().length, 3)
})

t.test('onChange: connect/disconnect update, a taken-over address updates its old holder, removal, unsubscribe', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, graceMs: 0 })
  t.teardown(() => c.stop())
  await c.start()
  // A listener that throws is logged; the others still hear every change.
  c.onChange(() => {
    throw new Error('listener bug')
  })
  const r = recorder(c)
  const a: FakeContainer = { id: ID_A, name: 'a', image: 'i', labels: { 'egress-guard.profile': 'web' }, running: true, nets: { bridge: { ip: '172.17.0.2' } } }
  fake.run(a)
  await until(() => r.seen.length === 1, 'added')
  a.nets.extra = { ip: '172.20.0.7' }
  fake.emit({ Type: 'network', Action: 'connect', Actor: { ID: 'n2', Attributes: { container: ID_A } } })
  await until(() => r.seen.length === 2, 'connect')
  const up = r.seen[1]!
  t.equal(up.type, 'updated')
  t.same(up.type === 'updated' && up.previous.addresses, ['172.17.0.2'])
  t.same(up.record.addresses, ['172.17.0.2', '172.20.0.7'])
  t.equal(up.record.profile, 'web')
  // Same state again (a restart event after start): nothing to report.
  fake.emit({ Type: 'container', Action: 'restart', Actor: { ID: ID_A, Attributes: {} } })
  // B takes 172.20.0.7 before A's disconnect is seen: A's record loses it at once.
  fake.run({ id: ID_B, name: 'b', image: 'i', running: true, nets: { extra: { ip: '172.20.0.7' } } })
  await until(() => r.seen.length === 4, 'B added and A updated')
  t.same(r.text().slice(2), ['updated a 172.17.0.2', 'added b 172.20.0.7'])
  t.same(c.get(ID_A)!.networks, [{ name: 'bridge', ipv4: '172.17.0.2' }, { name: 'extra' }])
  // Rename (A's late disconnect from extra is already reflected by the engine): a fresh inspect.
  delete a.nets.extra
  a.name = 'a2'
  fake.emit({ Type: 'container', Action: 'rename', Actor: { ID: ID_A, Attributes: { name: 'a2', oldName: '/a' } } })
  await until(() => r.seen.length === 5, 'rename')
  t.same(r.text()[4], 'updated a2 172.17.0.2', 'a fresh inspect shows what the engine says now')
  t.same(c.get(ID_A)!.networks, [{ name: 'bridge', ipv4: '172.17.0.2' }])
  fake.remove(ID_B)
  await until(() => r.seen.length === 6, 'removed')
  t.same(r.text()[5], 'removed b 172.20.0.7')
  r.off()
  fake.remove(ID_A)
  await until(() => c.get(ID_A) === undefined, 'A removed')
  t.equal(r.seen.length, 6, 'nothing after unsubscribing')
})

t.test('after a reconnect only the differences are reported', async (t) => {
  const sock = tmpSock(t)
  const fake = await fakeDocker(t, sock)
  const c = createDockerContainers({ socketPath: sock, log: silentLogger, backoffMs: { min: 20, max: 100 } })
  t.teardown(() => c.stop())
  fake.containers.set(ID_A, { id: ID_A, name: 'stays', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.2' } } })
  fake.containers.set(ID_B, { id: ID_B, name: 'goes', image: 'i', running: true, nets: { bridge: { ip: '172.17.0.3' } } })
  await c.start()
  const r = recorder(c)
  fake.dropStreams()
  fake.containers.delete(ID_B)
  fake.containers.set(ID_C, { id: ID_C, name: 'new', image: 'i', labels: { 'egress-guard.profile': 'db' }, running: true, nets: { bridge: { ip: '172.17.0.3' } } })
  await until(() => c.get(ID_C) !== undefined && c.get(ID_B) === undefined, 're-listed')
  t.same(r.text().sort(), ['added new 172.17.0.3', 'removed goes 172.17.0.3'], 'the unchanged container is not reported')
})
