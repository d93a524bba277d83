// Every change the store makes is all or nothing. A real write failure, made by putting a directory
// where the temp file goes (rename-over needs the temp file: EISDIR), for each method that changes
// the main file: the call fails with EG_STORE_WRITE, memory and the file are as they were, no temp
// file is left, and the next successful write carries nothing of the failed change. Through the API,
// an add and the version it makes fail together. (write-failure.test.ts does the same with a real
// ENOSPC under a real server.)
import t from 'tap'
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir } from 'node:fs/promises'
import { rmdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MAIN_FILE, openLowdbStore } from '../../src/store/lowdb-store.js'
import type { Store } from '../../src/store/types.js'
import { makeServer } from '../server/fixtures/server.js'

async function tempDir(t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `eg-rollback-${process.pid}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const entry = (value: string) => ({ kind: 'domain' as const, value, allow: false, mode: 'block' as const, source: 'x', reason: 'r' })
const seal = (etag: string) => ({ why: 'test', etagFor: () => etag })

async function state(s: Store) {
  return JSON.stringify({ entries: await s.listEntries(), tokens: await s.listTokens(), audit: await s.listAudit(1e9), version: await s.policyVersion(), problems: await s.problems() })
}

t.test('each change that fails leaves memory and the file exactly as they were', async (t) => {
  const dir = await tempDir(t)
  const s = await openLowdbStore(dir)
  t.teardown(() => s.close().catch(() => {}))
  const [keep] = await s.addEntries([entry('keep.example')], { actor: 'a' }, seal('e1'))
  await s.addToken({ id: 'tok-1', hash: 'ab'.repeat(32), role: 'read', created: 'now', createdBy: 'x' }, { actor: 'a' })
  const tmp = join(dir, `.${MAIN_FILE}.tmp`)
  const changes: [string, () => Promise<unknown>][] = [
    ['addEntries', () => s.addEntries([entry('lost.example')], { actor: 'a' }, seal('e2'))],
    ['removeEntries', () => s.removeEntries([keep!.id], { actor: 'a' }, seal('e3'))],
    ['commitPolicy', () => s.commitPolicy('e4', 'test')],
    ['appendAudit', () => s.appendAudit({ actor: 'a', action: 'x.lost', target: 'lost' })],
    ['addToken', () => s.addToken({ id: 'tok-lost', hash: 'cd'.repeat(32), role: 'read', created: 'now', createdBy: 'x' }, { actor: 'a' })],
    ['removeToken', () => s.removeToken('tok-1', { actor: 'a' })],
  ]
  for (const [name, change] of changes) {
    const mem = await state(s)
    const disk = await readFile(join(dir, MAIN_FILE), 'utf8')
    await mkdir(tmp)
    const err = await change().then(() => undefined, (e: { code?: string; message?: string }) => e)
    t.equal(err?.code, 'EG_STORE_WRITE', `${name}: fails with a coded error`)
    t.match(err?.message, /cannot write it \(EISDIR\); the change was not made/, `${name}: the message says why and that nothing changed`)
    t.equal(await state(s), mem, `${name}: memory unchanged`)
    t.equal(await readFile(join(dir, MAIN_FILE), 'utf8'), disk, `${name}: file unchanged`)
    await rmdir(tmp)
  }
  // The next successful write is of the state before the failures, plus its own change only.
  await s.addEntries([entry('next.example')], { actor: 'a' }, seal('e5'))
  const disk = JSON.parse(await readFile(join(dir, MAIN_FILE), 'utf8'))
  t.same(disk.entries.map((e: { value: string }) => e.value), ['keep.example', 'next.example'])
  t.same(disk.tokens.map((x: { id: string }) => x.id), ['tok-1'])
  t.same(disk.audit.map((e: { action: string; target: string }) => `${e.action} ${e.target}`), ['entry.add keep.example', 'policy.version 1', 'token.create tok-1', 'entry.add next.example', 'policy.version 2'])
  t.same({ version: disk.version, etag: disk.etag }, { version: 2, etag: 'e5' }, 'the failed seals and commit took no version')
  t.same((await readdir(dir)).filter((f) => f.endsWith('.tmp')), [], 'no temp file left')
})

t.test('a change queued behind a failed one is built on the state before it', async (t) => {
  const dir = await tempDir(t)
  const s = await openLowdbStore(dir)
  t.teardown(() => s.close())
  await s.addEntries([entry('keep.example')], { actor: 'a' })
  const tmp = join(dir, `.${MAIN_FILE}.tmp`)
  await mkdir(tmp)
  // Both asked at once; the second one's seal runs after the first write failed and clears the way.
  const first = s.addEntries([entry('lost.example')], { actor: 'a' }, seal('e1'))
  const second = s.addEntries([entry('second.example')], { actor: 'b' }, { why: 'test', etagFor: (api) => (rmdirSync(tmp), api.map((e) => e.value).join(',')) })
  t.equal((await first.then(() => undefined, (e: { code: string }) => e))?.code, 'EG_STORE_WRITE')
  t.equal((await second).length, 1)
  t.same((await s.listEntries()).map((e) => e.value), ['keep.example', 'second.example'])
  t.same(await s.policyVersion(), { version: 1, etag: 'keep.example,second.example' }, 'the seal saw the entries without the failed one')
})

t.test('through the API: a failed add changes neither the store nor the served policy', async (t) => {
  const f = await makeServer(t)
  const before = { snap: await f.snapshot(), policy: f.app.eg.policy.current }
  const tmp = join(f.dir, 'data', `.${MAIN_FILE}.tmp`)
  await mkdir(tmp)
  const r = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'lost.example', reason: 'x' }] } })
  t.equal(r.statusCode, 503)
  t.equal(r.json().code, 'EG_STORE_WRITE')
  t.equal(f.app.eg.policy.current, before.policy, 'the served policy is the same object')
  t.equal(await f.snapshot(), before.snap, 'the store holds exactly what it held')
  await rmdir(tmp)
  const ok = await f.app.inject({ method: 'POST', url: '/v1/entries', headers: f.auth.admin, payload: { entries: [{ value: 'ok.example', reason: 'x' }] } })
  t.equal(ok.statusCode, 201)
  t.equal(ok.json().version, before.policy.version + 1)
  t.notOk(JSON.stringify(f.app.eg.policy.current).includes('lost.example'))
  // The entry and its version are in the file together: one write.
  const disk = JSON.parse(await readFile(join(f.dir, 'data', MAIN_FILE), 'utf8'))
  t.equal(disk.version, ok.json().version)
  t.ok(disk.entries.some((e: { value: string }) => e.value === 'ok.example'))
  // A removal that fails keeps the entry served.
  await mkdir(tmp)
  const rm1 = await f.app.inject({ method: 'DELETE', url: '/v1/entries/ok.example', headers: f.auth.admin })
  t.equal(rm1.statusCode, 503)
  t.ok(f.app.eg.policy.current.entries.some((e) => e.value === 'ok.example'), 'still served')
  t.equal(f.app.eg.policy.current.version, ok.json().version)
  await rmdir(tmp)
  const rm2 = await f.app.inject({ method: 'DELETE', url: '/v1/entries/ok.example', headers: f.auth.admin })
  t.equal(rm2.statusCode, 200)
  t.equal(rm2.json().version, ok.json().version + 1)
})
