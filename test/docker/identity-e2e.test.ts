// Container identity against a real Docker engine in its own namespace: a labelled container's record
// carries the profile label and its address; `docker network connect` adds an address and
// `disconnect` removes it; `docker restart` and a stop/start that lands on a new address are followed,
// each step reported through onChange, and every record matches what `docker inspect` says.
import t from 'tap'
import { capabilities, requires } from '../helpers/caps.js'
import { startDocker, BUSYBOX_IMAGE, type DockerEnv } from '../helpers/docker.js'
import { until } from '../helpers/wait.js'
import { createDockerContainers } from '../../src/docker/containers.js'
import type { ContainerChange } from '../../src/docker/types.js'
import { silentLogger } from '../../src/log.js'

/** The addresses `docker inspect` reports for a container, per network. */
async function inspectNets(env: DockerEnv, name: string): Promise<Record<string, string>> {
  const nets = JSON.parse(await env.docker(['inspect', '-f', '{{json .NetworkSettings.Networks}}', name])) as Record<string, { IPAddress: string }>
  return Object.fromEntries(Object.entries(nets).filter(([, n]) => n.IPAddress).map(([k, n]) => [k, n.IPAddress]))
}

t.test('labels, addresses, network connect/disconnect, restart and a new address, from a real dockerd', async (t) => {
  if (!requires(t, capabilities.docker(), capabilities.netns())) return
  const env = await startDocker(t)
  const c = createDockerContainers({ socketPath: env.sock, log: silentLogger })
  t.teardown(() => c.stop())
  const seen: ContainerChange[] = []
  c.onChange((ch) => void seen.push(ch))
  await c.start()
  const changesFor = (id: string) => seen.filter((ch) => ch.record.id === id).map((ch) => ch.type)

  await env.docker(['network', 'create', '--subnet', '172.31.7.0/24', 'eg-second'])
  const id = (await env.docker(['run', '-d', '--name', 'web', '--label', 'egress-guard.profile=web', '--label', 'team=payments', BUSYBOX_IMAGE, 'sleep', '600'])).trim()
  const plainId = (await env.docker(['run', '-d', '--name', 'plain', BUSYBOX_IMAGE, 'sleep', '600'])).trim()
  await until('both containers known', () => c.get(id) !== undefined && c.get(plainId) !== undefined, 30_000)
  const web = c.get(id)!
  const nets = await inspectNets(env, 'web')
  t.equal(web.name, 'web')
  t.equal(web.image, BUSYBOX_IMAGE)
  t.equal(web.profile, 'web', 'the egress-guard.profile label')
  t.same(web.labels, { 'egress-guard.profile': 'web', team: 'payments' })
  t.same(web.addresses, [nets.bridge], 'its address as docker inspect reports it')
  t.same(web.networks, [{ name: 'bridge', ipv4: nets.bridge }])
  t.equal(c.recordByIp(nets.bridge!)?.id, id)
  t.equal(c.byIp(nets.bridge!)?.name, 'web', 'the sinkhole lookup names it too')
  t.notOk('profile' in c.get(plainId)!, 'an unlabelled container has no profile')
  t.same(changesFor(id), ['added'])

  // docker network connect: a second address, reported as an update.
  await env.docker(['network', 'connect', 'eg-second', 'web'])
  await until('the second address', () => c.get(id)!.addresses.length === 2, 30_000)
  const both = await inspectNets(env, 'web')
  t.match(both['eg-second'], /^172\.31\.7\.\d+$/)
  t.same(c.get(id)!.addresses, [both.bridge, both['eg-second']].sort())
  t.same(c.get(id)!.networks, [{ name: 'bridge', ipv4: both.bridge }, { name: 'eg-second', ipv4: both['eg-second'] }])
  t.equal(c.recordByIp(both['eg-second']!)?.profile, 'web', 'the new address leads to the labelled record')
  const upd = seen.filter((ch) => ch.record.id === id).at(-1)!
  t.equal(upd.type, 'updated')
  t.same(upd.type === 'updated' && upd.previous.addresses, [nets.bridge], 'with the record before the change')

  // docker restart: removed, then added again, with what the engine assigned after the restart.
  const before = seen.length
  await env.docker(['restart', '-t', '0', 'web'])
  await until('the restart to be followed', () => seen.slice(before).some((ch) => ch.record.id === id && ch.type === 'added'), 30_000)
  t.same(seen.slice(before).filter((ch) => ch.record.id === id).map((ch) => ch.type).filter((x, i, a) => x !== a[i - 1]).slice(0, 2), ['removed', 'added'], 'a restart is removed then added')
  const afterRestart = await inspectNets(env, 'web')
  await until('the record to match the engine', () => JSON.stringify(c.get(id)?.addresses) === JSON.stringify(Object.values(afterRestart).sort()), 30_000)
  t.equal(c.get(id)!.profile, 'web', 'still held to its profile after a restart')

  // A stop, another container taking the freed bridge address, a start: a new address for `web`.
  const oldBridge = afterRestart.bridge!
  await env.docker(['stop', '-t', '0', 'web'])
  await until('web stopped', () => c.get(id) === undefined, 30_000)
  t.equal(c.byIp(oldBridge), undefined, 'a stopped container holds no address')
  // The engine hands out the lowest free address: the new container takes the one `web` held.
  const takerId = (await env.docker(['run', '-d', '--name', 'taker', BUSYBOX_IMAGE, 'sleep', '600'])).trim()
  await until('taker known', () => c.get(takerId) !== undefined, 30_000)
  await env.docker(['start', 'web'])
  await until('web back', () => c.get(id) !== undefined && c.get(id)!.addresses.length === 2, 30_000)
  const moved = await inspectNets(env, 'web')
  t.same(c.get(id)!.addresses, Object.values(moved).sort(), 'the record follows the engine')
  t.equal(c.recordByIp(moved.bridge!)?.id, id)
  if (c.get(takerId)!.addresses.includes(oldBridge)) {
    t.not(moved.bridge, oldBridge, 'web came back on a new bridge address')
    t.equal(c.recordByIp(oldBridge)?.id, takerId, 'its old address now leads to the other container')
  } else t.comment(`the engine gave taker ${c.get(takerId)!.addresses.join(',')}, not ${oldBridge}`)

  // docker network disconnect: the address goes, reported as an update.
  await env.docker(['network', 'disconnect', 'eg-second', 'web'])
  await until('the second address to go', () => c.get(id)!.addresses.length === 1, 30_000)
  t.same(c.get(id)!.networks, [{ name: 'bridge', ipv4: moved.bridge }])
  t.equal(c.recordByIp(moved['eg-second']!), undefined)
  t.equal(seen.filter((ch) => ch.record.id === id).at(-1)!.type, 'updated')
})
