// The Docker API exposure check from its parts: dockerd's flags, daemon.json, /proc/net/tcp{,6}, the
// verdict and its wording, and the /proc reader over a fake /proc tree (the real one is proven with a
// real dockerd on tcp://0.0.0.0:2375 in test/e2e/docker-host.test.ts).
import t from 'tap'
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dockerApiState, judgeDockerApi, parseDaemonJson, parseDockerdArgs, parseProcNetTcp, tcpHost, type DockerdFacts } from '../../src/docker/api-exposure.js'
import { dockerApiCheck } from '../../src/doctor/docker-api-check.js'
import { runChecks, type CheckContext } from '../../src/doctor/checks.js'

t.test('dockerd flags (pflag forms) and daemon.json', async (t) => {
  t.same(
    parseDockerdArgs(['dockerd', '-H', 'fd://', '-H=tcp://0.0.0.0:2375', '-Htcp://127.0.0.1:2376', '--host', 'unix:///run/d.sock', '--host=tcp://[::1]:2375', '--tlsverify', '--config-file', '/etc/d.json', '--metrics-addr=127.0.0.1:9323']),
    { hosts: ['fd://', 'tcp://0.0.0.0:2375', 'tcp://127.0.0.1:2376', 'unix:///run/d.sock', 'tcp://[::1]:2375'], tlsVerify: true, configFile: '/etc/d.json', metricsAddr: '127.0.0.1:9323' },
  )
  t.same(parseDockerdArgs(['dockerd', '--tlsverify=false', '--tls=false']), { hosts: [], tlsVerify: false })
  t.same(parseDaemonJson('{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tlsverify": true, "dns": ["172.17.0.1"]}'), { hosts: ['unix:///var/run/docker.sock', 'tcp://0.0.0.0:2376'], tlsVerify: true })
  t.throws(() => parseDaemonJson('[]'))
  t.same(tcpHost('tcp://0.0.0.0:2375', false), { address: '0.0.0.0', port: 2375 })
  t.same(tcpHost('tcp://[::1]:2375', false), { address: '::1', port: 2375 })
  t.same(tcpHost(':2375', false), { address: '0.0.0.0', port: 2375 }, 'no host: judged as every address')
  t.same(tcpHost('tcp://10.0.0.5', true), { address: '10.0.0.5', port: 2376 }, 'TLS default port')
  t.equal(tcpHost('unix:///var/run/docker.sock', false), undefined)
  t.equal(tcpHost('fd://', false), undefined)
})

t.test('/proc/net/tcp and tcp6: listening sockets by inode, addresses in either byte order', async (t) => {
  const head = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
  const v4 = head +
    '   0: 0100007F:0947 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0\n' +
    '   1: 00000000:0947 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0\n' +
    '   2: 0100007F:0947 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 100 0 0 10 0\n'
  t.same([...parseProcNetTcp(v4, true)], [['1001', { address: '127.0.0.1', port: 2375 }], ['1002', { address: '0.0.0.0', port: 2375 }]], 'established ones left out')
  t.same([...parseProcNetTcp('x\n   0: 7F000001:0947 00000000:0000 0A 0 0 0 0 0 2001\n', false)], [['2001', { address: '127.0.0.1', port: 2375 }]], 'big-endian hosts')
  const v6 = head +
    '   0: 00000000000000000000000000000000:0947 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3001 1 0\n' +
    '   1: 00000000000000000000000001000000:0947 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3002 1 0\n' +
    '   2: 0000000000000000FFFF00000100007F:0947 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3003 1 0\n' +
    '   3: B80D0120000000000000000007000000:0947 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3004 1 0\n'
  t.same([...parseProcNetTcp(v6, true).values()].map((a) => a.address), ['::', '::1', '127.0.0.1', '2001:db8::7'])
})

const facts = (over: Partial<DockerdFacts>): DockerdFacts => ({ pids: [42], hosts: [], tlsVerify: false, listening: [], otherPorts: [2377, 7946], ...over })

t.test('the verdict: fail, warn (TLS / loopback), ok; non-API listeners left out', async (t) => {
  t.match(judgeDockerApi(facts({ listening: [{ address: '::', port: 2375 }] })), { verdict: 'fail', listeners: ['[::]:2375'], detail: /dockerd \(pid 42\) listens on \[::\]:2375 without --tlsverify: whoever reaches it controls every container and is root/ })
  t.match(judgeDockerApi(facts({ listening: [{ address: '10.0.0.5', port: 2376 }], tlsVerify: true })), { verdict: 'warn', detail: /with TLS client verification/ })
  t.match(judgeDockerApi(facts({ listening: [{ address: '127.0.0.1', port: 2375 }] })), { verdict: 'warn', detail: /\(loopback\) without TLS/ })
  t.match(judgeDockerApi(facts({ listening: [{ address: '0.0.0.0', port: 2377 }, { address: '127.0.0.1', port: 9323 }], otherPorts: [2377, 7946, 9323] })), { verdict: 'ok', listeners: [], detail: /unix socket only/ }, 'swarm and metrics ports are not the API')
  t.match(judgeDockerApi(facts({ listening: undefined, hosts: ['fd://', 'tcp://0.0.0.0:2375'] })), { verdict: 'fail', detail: /is configured to listen .*could not be read/ }, 'sockets unreadable (not root): the configuration decides')
  t.match(judgeDockerApi(facts({ pids: [], listening: undefined, hosts: ['tcp://127.0.0.1:2375'] })), { verdict: 'warn', detail: /not running; from daemon\.json\) would listen on 127\.0\.0\.1:2375/ })
})

t.test('the /proc reader: dockerd in this network namespace only, its own sockets, its daemon.json', async (t) => {
  const proc = mkdtempSync(join(tmpdir(), `eg-proc-${process.pid}-`))
  t.teardown(() => rmSync(proc, { recursive: true, force: true }))
  const head = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
  mkdirSync(join(proc, 'self', 'ns'), { recursive: true })
  writeFileSync(join(proc, 'self', 'ns', 'net'), 'ours')
  writeFileSync(join(proc, 'other-ns'), 'theirs')
  const daemonJson = join(proc, 'daemon.json')
  writeFileSync(daemonJson, '{"hosts": ["tcp://127.0.0.1:2375"]}')
  const proc1 = (pid: number, comm: string, ns: string, argv: string[], sockets: Record<string, string>): void => {
    const d = join(proc, String(pid))
    mkdirSync(join(d, 'ns'), { recursive: true })
    mkdirSync(join(d, 'fd'))
    mkdirSync(join(d, 'net'))
    writeFileSync(join(d, 'comm'), comm + '\n')
    // Same file = same namespace (the reader compares device and inode, as for nsfs).
    linkSync(ns, join(d, 'ns', 'net'))
    writeFileSync(join(d, 'cmdline'), argv.join('\0') + '\0')
    writeFileSync(join(d, 'environ'), 'PATH=/usr/bin\0')
    let fd = 3
    let rows = head
    for (const [inode, addr] of Object.entries(sockets)) {
      symlinkSync(`socket:[${inode}]`, join(d, 'fd', String(fd++)))
      rows += `   0: ${addr} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0\n`
    }
    // Another process's listener in the same table: not dockerd's.
    rows += '   9: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n'
    writeFileSync(join(d, 'net', 'tcp'), rows)
    writeFileSync(join(d, 'net', 'tcp6'), head)
  }
  proc1(100, 'dockerd', join(proc, 'self', 'ns', 'net'), ['/usr/sbin/dockerd', '-H', 'fd://'], { 555: '00000000:0947' })
  proc1(200, 'dockerd', join(proc, 'other-ns'), ['/usr/sbin/dockerd'], { 777: '00000000:0948' })
  proc1(300, 'containerd', join(proc, 'self', 'ns', 'net'), ['containerd'], { 888: '00000000:0949' })
  const s = await dockerApiState({ proc, daemonJson })
  t.match(s, { verdict: 'fail', listeners: ['0.0.0.0:2375'], detail: /dockerd \(pid 100\) listens on 0\.0\.0\.0:2375/ }, 'the socket-activated listener (fd://) is found from /proc')

  rmSync(join(proc, '100'), { recursive: true })
  t.match(await dockerApiState({ proc, daemonJson }), { verdict: 'warn', detail: /not running; from daemon\.json\) would listen on 127\.0\.0\.1:2375/ }, 'no dockerd here: daemon.json says what it would do')
  t.equal(await dockerApiState({ proc, daemonJson: join(proc, 'absent.json') }), undefined, 'nothing to judge')
})

t.test('doctor: fail is required (exit 1) with the fix; no dockerd is a skip', async (t) => {
  const ctx = (dockerApi: CheckContext['dockerApi']): CheckContext => ({ run: async () => ({ command: '', exitCode: 0, stdout: '', stderr: '' }), procStatus: async () => '', uid: 0, results: new Map(), dockerApi })
  const [fail] = await runChecks(ctx(async () => ({ verdict: 'fail', listeners: ['[::]:2375'], detail: 'dockerd listens on [::]:2375 without --tlsverify' })), [dockerApiCheck])
  t.match(fail, { name: 'Docker API', status: 'fail', required: true, fix: /remove the tcp:\/\/ listener .*--tlsverify.*firewall the port/ })
  const [warn] = await runChecks(ctx(async () => ({ verdict: 'warn', listeners: ['127.0.0.1:2375'], detail: 'loopback' })), [dockerApiCheck])
  t.match(warn, { status: 'warn', required: false, fix: /unix socket/ })
  const [none] = await runChecks(ctx(async () => undefined), [dockerApiCheck])
  t.match(none, { status: 'skip', required: false })
})
