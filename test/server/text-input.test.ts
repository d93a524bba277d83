// What the API refuses in text that people will read: control, bidi and other hidden characters in
// reports, hit fields that are not DNS names, reasons and token names (400 EG_CONTROL_CHAR), and bodies
// that are not valid UTF-8 (400 EG_BAD_UTF8); each refusal changes nothing. A hit's name is kept as it
// arrived and comes back exact in JSON, with no raw control byte on the wire.
import t from 'tap'
import { makeServer, sampleHit, sampleReport } from './fixtures/server.js'
import { printable } from '../../src/server/ui/printable.js'

const HOSTILE = ['\x1b]0;pwned\x07', 'a\x1b[31mred', 'gnp.\u202eexe', '\u009b31m', 'line\u2028break', 'tab\there', 'del\x7f', 'zw\u200bsp']

t.test('reports: control characters in any text field are refused with EG_CONTROL_CHAR; escaped text is fine', async (t) => {
  const f = await makeServer(t)
  const report = (over: Record<string, unknown>) => f.app.inject({ method: 'POST', url: '/v1/report', headers: f.auth.agent, payload: sampleReport(over) })
  const before = await f.snapshot()
  for (const bad of HOSTILE) {
    for (const over of [{ errors: [bad] }, { drift: ['ok', bad] }, { agentVersion: bad }, { etag: bad }]) {
      const r = await report(over)
      // Labels escaped: a raw U+2028 in an assertion message breaks tap's own output.
      t.equal(r.statusCode, 400, `${printable(JSON.stringify(over))} refused`)
      t.equal(r.json().code, 'EG_CONTROL_CHAR')
      t.match(r.json().details.problems[0].message, /^body\/\w+(\/\d+)? contains a control or invisible character/)
    }
  }
  t.equal(await f.snapshot(), before, 'nothing stored')
  // What a current agent sends instead: the same text escaped.
  t.equal((await report({ errors: ['\\x1b]0;pwned\\x07'], drift: ['gnp.\\u202eexe'] })).statusCode, 204)
  t.same((await f.store.listAgents())[0]?.errors, ['\\x1b]0;pwned\\x07'])
  // Printable non-ASCII is not a control character.
  t.equal((await report({ errors: ['résumé 中文 ✓'] })).statusCode, 204)
})

t.test('hits: names are kept as they arrived; the other fields refuse control characters', async (t) => {
  const f = await makeServer(t)
  const upload = (hits: unknown[]) => f.app.inject({ method: 'POST', url: '/v1/hits', headers: f.auth.agent, payload: { host: 'web1', hits } })
  const before = await f.snapshot()
  for (const over of [
    { client: '172.17.0.5\x1b[2J' },
    { container: { id: 'abc', name: 'web', image: 'nginx', service: 'front\x1b]8;;http://x\x07end' } },
    { entry: { value: 'evil.example', source: 'base.txt:1', reason: 'miner \u202epool', mode: 'block' } },
    { qtype: 'A\u0085' },
    { answer: 'null\r' },
  ]) {
    const r = await upload([sampleHit(), sampleHit(over)])
    t.equal(r.statusCode, 400, `${printable(JSON.stringify(over))} refused`)
    t.equal(r.json().code, 'EG_CONTROL_CHAR')
    t.equal(r.json().details.problems[0].index, 1, 'the problem names the hit')
  }
  t.equal(await f.snapshot(), before, 'nothing stored, not even the good hit of the batch')

  const name = '\x1b]0;pwned\x07x\x9b31m.evil.example'
  t.equal((await upload([sampleHit({ name })])).statusCode, 202, 'a name with control bytes is stored')
  const r = await f.app.inject({ url: '/v1/hits?since=2026-06-01T00:00:00Z', headers: f.auth.read })
  t.equal(r.statusCode, 200)
  t.same(r.json().hits.map((h: { name: string }) => h.name), [name], 'exactly as it arrived')
  t.notOk(/[\x00-\x1f]/.test(r.body), 'no raw C0 control byte in the JSON body')
  t.match(r.body, /\\u001b\]0;pwned\\u0007x/, 'ESC and BEL as JSON escapes')
})

t.test('entries and tokens: reasons and names people read refuse control characters', async (t) => {
  const f = await makeServer(t)
  const before = await f.snapshot()
  const add = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'c2.example', reason: 'incident \x1b[8mhidden' }] } })
  t.equal(add.statusCode, 400)
  t.equal(add.json().code, 'EG_CONTROL_CHAR')
  t.equal(add.json().details.problems[0].path, 'body/entries/0/reason', 'the dashboard puts it next to the reason field')
  const tok = await f.app.inject({ method: 'POST', url: '/v1/tokens', headers: f.auth.admin, payload: { role: 'read', name: 'dash\u202eboard' } })
  t.equal(tok.statusCode, 400)
  t.equal(tok.json().code, 'EG_CONTROL_CHAR')
  t.equal(await f.snapshot(), before, 'nothing changed')
})

t.test('a body that is not valid UTF-8 is refused with EG_BAD_UTF8, not stored as U+FFFD', async (t) => {
  const f = await makeServer(t)
  const before = await f.snapshot()
  const json = { 'content-type': 'application/json' }
  // "café" with é as the Latin-1 byte 0xE9, then a lone continuation byte and a truncated sequence.
  for (const bytes of [[0xe9], [0x80], [0xe2, 0x82]]) {
    const body = Buffer.concat([Buffer.from('{"entries":[{"value":"a.example","reason":"caf'), Buffer.from(bytes), Buffer.from('"}]}')])
    const r = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, ...json }, payload: body })
    t.equal(r.statusCode, 400, `bytes ${bytes.map((b) => b.toString(16)).join(' ')} refused`)
    t.equal(r.json().code, 'EG_BAD_UTF8')
  }
  const text = JSON.stringify(sampleReport({ errors: ['QQQ'] }))
  const at = text.indexOf('QQQ')
  // 0xFF never appears in UTF-8.
  const badReport = Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from([0xff]), Buffer.from(text.slice(at + 3))])
  const r = await f.app.inject({ method: 'POST', url: '/v1/report', headers: { ...f.auth.agent, ...json }, payload: badReport })
  t.equal(r.statusCode, 400)
  t.equal(r.json().code, 'EG_BAD_UTF8')
  t.equal(await f.snapshot(), before, 'nothing changed')

  // Valid UTF-8 still goes through, é and all; broken JSON is still the usual 400.
  const ok = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, ...json }, payload: Buffer.from('{"entries":[{"value":"a.example","reason":"café"}]}') })
  t.equal(ok.statusCode, 201, ok.body)
  t.equal((await f.store.listEntries())[0]?.reason, 'café')
  const broken = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, ...json }, payload: Buffer.from('{"entries":') })
  t.equal(broken.statusCode, 400)
  t.equal(broken.json().code, 'EG_BAD_INPUT')
  const proto = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: { ...f.auth.admin, ...json }, payload: Buffer.from('{"__proto__":{"x":1},"entries":[]}') })
  t.equal(proto.statusCode, 400, 'prototype poisoning is still refused')
})
