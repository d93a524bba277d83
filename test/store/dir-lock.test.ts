// The store directory lock dies with its holder and with nothing else. A lock file left by a crashed
// server whose PID now belongs to someone else (this process; PID 1 in a new PID namespace; another
// live process) is taken over; a lock held by a live server is refused, also from another PID
// namespace, where the holder's PID means nothing; kill -9 of the holder frees it with no clean-up.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LOCK_FILE, openLowdbStore } from '../../src/store/lowdb-store.js'
import { capabilities, requires } from '../helpers/caps.js'
import { runCli } from '../helpers/cli.js'
import { spawnServer, tempDir } from '../server/fixtures/process.js'

type T = Parameters<typeof tempDir>[0]
const conflict = (dir: string) => openLowdbStore(dir, { lock: true }).then(() => undefined, (e: { code: string; message: string }) => e)

function holdLock(t: T, dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./fixtures/hold-lock.ts', import.meta.url)), dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => void child.kill('SIGKILL'))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('locked') && resolve(child))
    child.once('exit', (code) => reject(new Error(`holder exited ${code}`)))
  })
}

t.test('a lock file naming a PID that is now someone else is taken over', async (t) => {
  const dir = await tempDir(t, 'lock')
  const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' })
  t.teardown(() => void sleeper.kill('SIGKILL'))
  // This process's own PID (what a server restarted as PID 1 in a container sees), PID 1, a live
  // stranger: none of them holds the lock, so none of them blocks.
  for (const pid of [process.pid, 1, sleeper.pid!]) {
    await writeFile(join(dir, LOCK_FILE), `${pid}\n`)
    const s = await openLowdbStore(dir, { lock: true }).catch((e: Error) => e)
    t.notOk(s instanceof Error, `a lock file saying ${pid}: taken over${s instanceof Error ? ` (${s.message})` : ''}`)
    if (s instanceof Error) continue
    t.equal((await readFile(join(dir, LOCK_FILE), 'utf8')).trim(), String(process.pid), 'now naming its holder')
    await s.close()
  }
})

t.test('a live holder is refused, in this process and from another; kill -9 frees it', async (t) => {
  const dir = await tempDir(t, 'lock')
  const a = await openLowdbStore(dir, { lock: true })
  const again = await conflict(dir)
  t.equal(again?.code, 'EG_CONFLICT', 'a second open in the same process is refused')
  t.match(again?.message, `in use by process ${process.pid}`)
  await a.close()

  const holder = await holdLock(t, dir)
  const err = await conflict(dir)
  t.equal(err?.code, 'EG_CONFLICT', 'a live holder in another process is refused')
  t.match(err?.message, `in use by process ${holder.pid}`)
  holder.kill('SIGKILL')
  await new Promise((r) => holder.once('close', r))
  t.equal((await readFile(join(dir, LOCK_FILE), 'utf8')).trim(), String(holder.pid), 'the dead holder left its lock file behind')
  const b = await openLowdbStore(dir, { lock: true })
  t.pass('and the lock is free: the kernel dropped it with the process')
  await b.close()
})

t.test('real PID namespaces: the server is PID 1 after a crash and restarts; a second one in another namespace is refused', async (t) => {
  if (!requires(t, capabilities.root(), capabilities.tool('unshare'))) return
  const dir = await tempDir(t, 'pidns')
  const data = join(dir, 'data')
  const tokenFile = join(dir, 'admin.token')
  const made = await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', tokenFile], { cwd: dir })
  t.equal(made.code, 0, made.stderr)
  const args = ['--listen', '127.0.0.1:0', '--data', data, '--blocklists', join(dir, 'none'), '--admin-token-file', tokenFile, '--log-level', 'fatal']
  // A new PID namespace per start, as a container gets: the server is PID 1 in each. SIGKILL to
  // unshare reaches the server too (--kill-child).
  const pidns = ['unshare', '--pid', '--fork', '--kill-child', '--']
  const first = spawnServer(t, args, dir, pidns)
  await first.listening
  t.equal((await readFile(join(data, LOCK_FILE), 'utf8')).trim(), '1', 'the server is PID 1 in its namespace')

  const second = spawnServer(t, args, dir, pidns)
  second.listening.catch(() => {}) // it is not meant to listen
  t.equal(await second.exited, 1, 'a second server in another PID namespace does not start')
  t.match(second.stderr(), `is in use by process 1`)

  first.child.kill('SIGKILL')
  t.equal(await first.exited, null, 'the first one crashed (kill -9)')
  t.equal((await readFile(join(data, LOCK_FILE), 'utf8')).trim(), '1', 'its lock file still says 1')
  const third = spawnServer(t, args, dir, pidns)
  const url = await third.listening
  t.ok(url, 'the restart, PID 1 again, starts')
  t.equal((await fetch(`${url}/healthz`)).status, 200)
  third.child.kill('SIGKILL')
  await third.exited
})
