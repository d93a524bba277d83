// `egress-guard apply --once` as a real process: iptables and nftables inside throwaway namespaces
// (--netns), names resolved at a real dnsmasq, a temporary hosts file; the second run changes nothing.
import t from 'tap'
import { chmodSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI, runCli } from '../helpers/cli.js'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs } from '../helpers/netns.js'
import { startDnsmasq } from '../resolve/dnsmasq.js'

const LIST = [
  'evil.example',
  '198.51.100.0/24',
  'watch.example mode=alert',
  '@@192.0.2.1',
  '*.wild.example',
  'this is not valid !!',
  '',
].join('\n')

function fixture(t: { teardown: (f: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), `eg-apply-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'bl'))
  writeFileSync(join(dir, 'bl', 'list.txt'), LIST)
  const hosts = join(dir, 'hosts')
  writeFileSync(hosts, '127.0.0.1 localhost\n')
  return { dir, bl: join(dir, 'bl'), hosts }
}

const DNS = ['--host-record=evil.example,203.0.113.7,2001:db8::7', '--host-record=watch.example,203.0.113.50', '--local-ttl=300']

/** iptables-save without counters and comment lines: what must not change on a second apply. */
function rules(ns: string, save: string): string {
  return inNs(ns, save, []).split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/, '')).join('\n')
}

for (const backend of ['iptables', 'nftables'] as const) {
  t.test(`${backend}: apply --once writes sets, rules and hosts block; the second run changes nothing`, async (t) => {
    if (!requires(t, capabilities.netns(), capabilities.tool('dnsmasq'), capabilities.tool(backend === 'iptables' ? 'ipset' : 'nft'))) return
    const ns = makeNs(t, backend === 'iptables' ? 'ai' : 'an')
    const dm = await startDnsmasq(t, DNS)
    const f = fixture(t)
    const args = ['apply', '--once', '--backend', backend, '--netns', ns, '--blocklists', f.bl, '--hosts-file', f.hosts, '--upstream', `127.0.0.1:${dm.port}`]
    const r1 = await runCli(args)
    t.equal(r1.code, 0, r1.stderr)
    t.match(r1.stdout, /kernel: changed/)
    t.match(r1.stdout, /hosts file .*: updated \(1 names\)/)
    t.match(r1.stderr, /skipped: .*list\.txt:6/, 'the invalid line is reported and skipped')
    if (backend === 'iptables') {
      const block4 = inNs(ns, 'ipset', ['list', 'egress-guard-block4'])
      t.match(block4, /203\.0\.113\.7/)
      t.match(block4, /198\.51\.100\.0\/24/)
      t.match(inNs(ns, 'ipset', ['list', 'egress-guard-block6']), /2001:db8::7/)
      t.match(inNs(ns, 'ipset', ['list', 'egress-guard-alert4']), /203\.0\.113\.50/)
      t.match(inNs(ns, 'ipset', ['list', 'egress-guard-allow4']), /192\.0\.2\.1/)
    } else {
      const table = inNs(ns, 'nft', ['list', 'table', 'inet', 'egress_guard'])
      t.match(table, /203\.0\.113\.7/)
      t.match(table, /198\.51\.100\.0\/24/)
      t.match(table, /2001:db8::7/)
    }
    const hostsText = readFileSync(f.hosts, 'utf8')
    t.ok(hostsText.startsWith('127.0.0.1 localhost\n# BEGIN egress-guard managed block'))
    t.match(hostsText, /0\.0\.0\.0 evil\.example\n:: evil\.example\n/)
    t.notMatch(hostsText, /watch\.example|wild\.example/, 'alert and wildcard names stay out of the hosts file')

    const before = backend === 'iptables' ? rules(ns, 'iptables-save') + rules(ns, 'ip6tables-save') + inNs(ns, 'ipset', ['save']) : inNs(ns, 'nft', ['list', 'ruleset'])
    const r2 = await runCli(args)
    t.equal(r2.code, 0, r2.stderr)
    t.match(r2.stdout, /kernel: unchanged/)
    t.match(r2.stdout, /hosts file .*: unchanged/)
    const after = backend === 'iptables' ? rules(ns, 'iptables-save') + rules(ns, 'ip6tables-save') + inNs(ns, 'ipset', ['save']) : inNs(ns, 'nft', ['list', 'ruleset'])
    t.equal(after, before, 'no duplicate rules, same sets')
    t.equal(readFileSync(f.hosts, 'utf8'), hostsText)

    const j = await runCli([...args, '--json'])
    t.equal(j.code, 0)
    const doc = JSON.parse(j.stdout)
    t.equal(doc.report.changed, false)
    t.same(doc.stats.block4, 2)
  })
}

for (const backend of ['iptables', 'nftables'] as const) {
  t.test(`${backend}: the first apply in a fresh namespace reports what it created, even for an empty list`, async (t) => {
    if (!requires(t, capabilities.netns(), capabilities.tool(backend === 'iptables' ? 'ipset' : 'nft'))) return
    const ns = makeNs(t, backend === 'iptables' ? 'fi' : 'fn')
    const f = fixture(t)
    writeFileSync(join(f.bl, 'list.txt'), '# nothing blocked yet\n')
    const args = ['apply', '--once', '--backend', backend, '--netns', ns, '--blocklists', f.bl, '--no-hosts', '--upstream', '127.0.0.1:5399']
    const r1 = await runCli(args)
    t.equal(r1.code, 0, r1.stderr)
    t.match(r1.stdout, /kernel: changed/, `sets, chain and jumps were created:\n${r1.stdout}`)
    t.match(r1.stdout, backend === 'iptables' ? /create chain EGRESS-GUARD/ : /create chain guard/, 'the creation is listed')
    // The upstream is part of the control plane: exempt ahead of every policy set.
    const ctl = backend === 'iptables' ? inNs(ns, 'ipset', ['list', 'egress-guard-ctl4']) : inNs(ns, 'nft', ['list', 'set', 'inet', 'egress_guard', 'ctl4'])
    t.match(ctl, backend === 'iptables' ? /127\.0\.0\.1,udp:5399/ : /127\.0\.0\.1 \. udp \. 5399/)
    const r2 = await runCli(args)
    t.equal(r2.code, 0, r2.stderr)
    t.match(r2.stdout, /kernel: unchanged/, 'the second run has nothing to create')
  })
}

t.test('dry-run backend prints what it would do and writes nothing', async (t) => {
  if (!requires(t, capabilities.tool('dnsmasq'))) return
  const dm = await startDnsmasq(t, DNS)
  const f = fixture(t)
  const r = await runCli(['apply', '--once', '--backend', 'dry-run', '--blocklists', f.bl, '--hosts-file', f.hosts, '--upstream', `127.0.0.1:${dm.port}`])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /would: add egress-guard-block4 203\.0\.113\.7\/32/)
  t.match(r.stdout, /would: add egress-guard-alert4 203\.0\.113\.50\/32/)
  t.match(r.stdout, /would: hosts .*: add 0\.0\.0\.0 evil\.example/)
  t.equal(readFileSync(f.hosts, 'utf8'), '127.0.0.1 localhost\n', 'hosts file untouched')
})

t.test('bad input changes nothing and exits non-zero', async (t) => {
  const f = fixture(t)
  let r = await runCli(['apply', '--once', '--backend', 'dry-run', '--blocklists', join(f.dir, 'missing'), '--hosts-file', f.hosts])
  t.equal(r.code, 1)
  t.match(r.stderr, /cannot load the blocklists, nothing changed/)
  r = await runCli(['apply', '--backend', 'dry-run', '--blocklists', f.bl])
  t.equal(r.code, 2)
  t.match(r.stderr, /needs --once/)
  r = await runCli(['apply', '--once', '--backend', 'pf', '--blocklists', f.bl])
  t.equal(r.code, 2)
  r = await runCli(['apply', '--once', '--backend', 'dry-run', '--blocklists', f.bl, '--upstream', 'dns.example'])
  t.equal(r.code, 2)
  t.match(r.stderr, /--upstream must be IP/)
  t.equal(readFileSync(f.hosts, 'utf8'), '127.0.0.1 localhost\n')
})

t.test('missing firewall tools: exit 1 with what to install', async (t) => {
  const f = fixture(t)
  writeFileSync(join(f.bl, 'list.txt'), '203.0.113.0/24\n')
  // An empty PATH: nothing can be spawned, so this never reaches the machine's own firewall.
  const r = await runCli(['apply', '--once', '--backend', 'iptables', '--blocklists', f.bl, '--no-hosts'], { env: { PATH: '/nonexistent' } })
  t.equal(r.code, 1, r.stderr)
  t.match(r.stderr, /command not found.*needs iptables ipset \(apt-get install iptables ipset\)/)
})

t.test('--server: the policy comes from a real egress-guard server', async (t) => {
  const f = fixture(t)
  writeFileSync(join(f.bl, 'list.txt'), '203.0.113.0/24\n@@192.0.2.9\n')
  mkdirSync(join(f.dir, 'data'))
  const tok = join(f.dir, 'token')
  writeFileSync(tok, randomBytes(32).toString('hex') + '\n')
  chmodSync(tok, 0o600)
  const srv = spawn(process.execPath, [CLI, 'server', '--listen', '127.0.0.1:0', '--data', join(f.dir, 'data'), '--blocklists', f.bl, '--admin-token-file', tok, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => void srv.kill('SIGKILL'))
  const url = await new Promise<string>((resolve, reject) => {
    let err = ''
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 30_000)
    srv.stderr!.on('data', (d) => {
      err += d
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(err)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
  })
  const r = await runCli(['apply', '--once', '--backend', 'dry-run', '--server', url, '--token-file', tok, '--no-hosts'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /would: add egress-guard-block4 203\.0\.113\.0\/24/)
  t.match(r.stdout, /would: add egress-guard-allow4 192\.0\.2\.9\/32/)
  const bad = await runCli(['apply', '--once', '--backend', 'dry-run', '--server', url, '--token-file', f.hosts, '--no-hosts'])
  t.equal(bad.code, 1, 'a wrong token changes nothing and fails')
  t.match(bad.stderr, /cannot get the policy from .*nothing changed/)
  const both = await runCli(['plan', '--server', url, '--token-file', tok, '--blocklists', f.bl])
  t.equal(both.code, 2)
})

t.test('the --server address is protected (literal, or its name resolved as the HTTP client resolves it)', async (t) => {
  const { serverAddresses } = await import('../../src/commands/apply.js')
  t.same(await serverAddresses('https://192.0.2.80:8787'), ['192.0.2.80'])
  t.same(await serverAddresses('http://[2001:db8::80]:8787/'), ['2001:db8::80'])
  // getaddrinfo, like fetch: the hosts file's localhost (nothing here is written to /etc/hosts).
  t.ok((await serverAddresses('http://localhost:8787')).some((a) => a === '127.0.0.1' || a === '::1'), 'localhost resolves through the system resolver')
  t.same(await serverAddresses('https://policy.example:8787', async () => ['198.51.100.80', '0.0.0.0']), ['198.51.100.80'], 'a hosts-block answer (0.0.0.0) is never the server')
  t.same(await serverAddresses('https://policy.example:8787', async () => Promise.reject(new Error('ENOTFOUND'))), [], 'no answer: nothing (best effort)')
})
