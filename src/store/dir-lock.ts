// One process at a time in a store directory (lowdb keeps the data in memory: the last writer would
// win). The lock is flock(2) on DIR/.lock, owned by an open file description that only this process
// holds, so the kernel drops it when the process ends however it ends (kill -9, OOM, a crash). No PID
// is interpreted: in a container or a PID namespace the server is PID 1 again after every restart,
// and a PID from another namespace (two containers on one volume) means nothing here. flock also
// refuses a second server in another container on the same host, which PID + start time cannot see.
//
// Node has no flock(2). `flock -x -n 3` (util-linux) is given our descriptor as its fd 3, locks it and
// exits: a flock lock belongs to the open file description, not to the process that asked for it
// (flock(2): "associated with an open file description"), and we keep that description open until
// close(). No child outlives the call, so nothing else can hold the lock after we are gone.
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from '../enforce/exec.js'
import { errors, isEgError } from '../errors.js'

export const LOCK_FILE = '.lock'

/** Take DIR/.lock or throw EG_CONFLICT; the returned function lets go (the file stays: see below). */
export async function lockDirectory(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, LOCK_FILE)
  let fh: FileHandle
  try {
    // Never O_TRUNC before the lock is ours: the holder's PID in the file is what the refusal shows.
    fh = await open(file, 'a+', 0o600)
  } catch (e) {
    throw errors.storeCorrupt(`store directory ${dir}: cannot open ${file}: ${(e as Error).message}`)
  }
  let r: Awaited<ReturnType<typeof run>>
  try {
    r = await run('flock', ['-x', '-n', '3'], { fds: [fh.fd], reject: false, timeoutMs: 10_000 })
  } catch (e) {
    await fh.close()
    if (isEgError(e) && e.code === 'EG_MISSING_TOOL') throw errors.missingTool(`store directory ${dir}: cannot lock it: flock (util-linux) is not installed`)
    throw e
  }
  if (r.exitCode !== 0) {
    const holder = (await fh.readFile('utf8').catch(() => '')).trim().split(/\s/)[0] ?? ''
    await fh.close()
    if (r.exitCode === 1) {
      const who = /^\d+$/.test(holder) ? `process ${holder}` : 'another process'
      throw errors.conflict(`store directory ${dir} is in use by ${who} (a running server?); stop it first, or use --server with the running one`)
    }
    throw errors.storeCorrupt(`store directory ${dir}: cannot lock ${file}: flock exited ${r.exitCode}: ${r.stderr.trim().slice(0, 500)}`)
  }
  // Ours now: record who holds it, for the message another process shows (PID as seen from our namespace).
  await fh.truncate(0)
  await fh.write(`${process.pid}\n`, 0)
  let released = false
  return async () => {
    if (released) return
    released = true
    // The file is left in place: unlinking it would let a process that opened the old inode and one
    // that creates a new file both hold "the" lock. Closing our description releases it.
    await fh.close()
  }
}
