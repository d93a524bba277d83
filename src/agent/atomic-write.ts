// Replace a state file so that a crash or power cut leaves either the old or the new content, never a
// mix: temp file in the same directory, fsync, rename, fsync of the directory. Used for the agent's
// policy cache and its resolved-address cache.
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

export async function writeFileAtomic(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    const fh = await open(tmp, 'wx', 0o600)
    try {
      await fh.writeFile(text)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  }
  // fsync the directory so the rename itself survives a power cut (POSIX leaves it unspecified otherwise).
  try {
    const dh = await open(dirname(file), 'r')
    try {
      await dh.sync()
    } finally {
      await dh.close()
    }
  } catch {
    /* some filesystems refuse fsync on a directory; the rename is still atomic */
  }
}
