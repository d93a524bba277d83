// What the agent sends the API: its own text escaped and cut to the field's limit (the server refuses
// raw control characters, and a refused report or hit batch would hide the host or block the spool);
// a hit's queried name goes as it arrived. Checked against the real server's validation via inject().
import t from 'tap'
import { apiText, hitForUpload } from '../../src/agent/api-text.js'
import { createReporter } from '../../src/agent/reporter.js'
import { silentLogger } from '../../src/log.js'
import type { Hit } from '../../src/sinkhole/types.js'
import type { ReportBody } from '../../src/client/api-types.js'
import { makeServer, sampleHit, sampleReport } from '../server/fixtures/server.js'

t.test('apiText escapes, then cuts without splitting a surrogate pair', async (t) => {
  t.equal(apiText('a\x1b[31mb', 100), 'a\\x1b[31mb')
  t.equal(apiText('\x1b'.repeat(10), 9), '\\x1b\\x1b\\', 'cut after escaping: the limit holds')
  t.equal(apiText('ab😀', 3), 'ab', 'half an emoji is dropped, not sent as a lone surrogate')
  t.equal(apiText('ab😀', 4), 'ab😀')
})

t.test('a hostile hit goes up escaped, name as it arrived, and the server takes it', async (t) => {
  const f = await makeServer(t)
  const name = 'x\x1b]0;pwned\x07.evil.example'
  const hostile = sampleHit({
    name,
    container: { id: 'abc123', name: 'web', image: 'nginx', service: 'front\x1b]8;;http://x\x07' + 'y'.repeat(300), project: 'p\u202e' },
    entry: { value: 'evil.example', source: 'base.txt:1', reason: 'miner \x1b[8mpool', mode: 'block' },
  }) as Hit
  const up = hitForUpload(hostile)
  t.equal(up.name, name, 'the name is untouched')
  t.equal(up.container?.project, 'p\\u202e')
  t.match(up.container?.service, /^front\\x1b\]8;;http:\/\/x\\x07y+$/)
  t.equal(up.container?.service?.length, 256, 'cut to the API limit')
  t.equal(up.entry.reason, 'miner \\x1b[8mpool')
  const raw = await f.app.inject({ method: 'POST', url: '/v1/hits', headers: f.auth.agent, payload: { host: 'web1', hits: [hostile] } })
  t.equal(raw.statusCode, 400, 'unescaped, the server refuses it')
  const r = await f.app.inject({ method: 'POST', url: '/v1/hits', headers: f.auth.agent, payload: { host: 'web1', hits: [up] } })
  t.equal(r.statusCode, 202, r.body)
})

t.test('the reporter escapes drift and errors, and the server takes the report', async (t) => {
  const f = await makeServer(t)
  const sent: ReportBody[] = []
  const reporter = createReporter({
    client: {
      async report(body) {
        sent.push(body)
        const r = await f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth.agent, payload: body })
        if (r.statusCode !== 204) throw new Error(r.body)
      },
    },
    host: 'web1',
    agentVersion: '0.1.0',
    state: () => ({ ...sampleReport(), drift: ['rule\x1b[2J gone'], errors: ['iptables-restore: line 3\nfailed \u009b'] }),
    log: silentLogger,
  })
  t.equal(await reporter.reportNow(), true, reporter.stats().lastError ?? '')
  t.same(sent[0]?.drift, ['rule\\x1b[2J gone'])
  t.same(sent[0]?.errors, ['iptables-restore: line 3\\nfailed \\x9b'])
  t.same((await f.store.listAgents())[0]?.errors, ['iptables-restore: line 3\\nfailed \\x9b'])
})
