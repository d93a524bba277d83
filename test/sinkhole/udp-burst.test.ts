// A burst of queries that arrives while the sinkhole's thread is busy (a GC pause, a slow reload, the
// VM descheduled) is queued by the kernel and answered, not dropped: the UDP sockets ask for a 4 MiB
// receive buffer (UDP_RECV_BUFFER in server.ts), where Linux's default holds only ~200 small
// datagrams. A dropped query costs its client a whole retry timeout (1-5 s).
import t from 'tap'
import dgram from 'node:dgram'
import { readFileSync } from 'node:fs'
import dnsPacket from 'dns-packet'
import { createSinkhole } from '../../src/sinkhole/sinkhole.js'
import { UDP_RECV_BUFFER } from '../../src/sinkhole/server.js'
import { buildMatcher } from '../../src/policy/matcher.js'
import { silentLogger } from '../../src/log.js'

const BURST = 2000
const sysctl = (name: string) => Number(readFileSync(`/proc/sys/net/core/${name}`, 'utf8').trim())

// The kernel caps SO_RCVBUF at net.core.rmem_max. If that is no bigger than the default, no program can
// get a bigger buffer on this host and there is nothing to compare (README: raise it on busy hosts).
const rmemMax = sysctl('rmem_max')
const rmemDefault = sysctl('rmem_default')
const noRoom = Math.min(rmemMax, UDP_RECV_BUFFER) < 4 * rmemDefault ? `net.core.rmem_max is ${rmemMax} (default ${rmemDefault}): no room for a bigger receive buffer on this host` : false

t.test(`${BURST} queries sent while the server cannot read are all answered`, { skip: noRoom }, async (t) => {
  const matcher = buildMatcher([{ kind: 'domain', value: 'bad.example', allow: false, mode: 'block', source: 't:1' }])
  const s = createSinkhole({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: '127.0.0.1', port: 9 }], matcher, log: silentLogger })
  await s.start()
  t.teardown(() => s.stop())
  const port = s.addresses().find((a) => a.proto === 'udp')!.port

  const client = dgram.createSocket({ type: 'udp4', recvBufferSize: UDP_RECV_BUFFER })
  t.teardown(() => client.close())
  const seen = new Set<number>()
  let wrong = 0
  client.on('message', (m) => {
    const d = dnsPacket.decode(m)
    if (d.answers?.[0]?.type === 'A' && d.answers[0].data === '0.0.0.0') seen.add(d.id!)
    else wrong++
  })
  // Connected: send() then needs no address lookup and goes to the kernel synchronously, so the whole
  // burst is queued at the server's socket before this process's event loop (the server's too) runs.
  await new Promise<void>((resolve) => client.connect(port, '127.0.0.1', resolve))
  for (let id = 0; id < BURST; id++) {
    client.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: `x${id}.bad.example` }] }))
  }
  const deadline = Date.now() + 5000
  while (seen.size < BURST && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(wrong, 0, 'every reply is the blocked answer')
  t.equal(seen.size, BURST, `all ${BURST} queries answered (none dropped at the receive buffer)`)
})
