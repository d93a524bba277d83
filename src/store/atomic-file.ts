// Replace a store file all or nothing: write `.NAME.tmp` beside it, fsync, rename it over the file.
// A write that fails removes its temp file and leaves the file as it was; a temp file left by a
// process killed mid-write is removed when the store opens (removeStaleTemp). One writer per file
// (the store serialises its writes and the directory lock keeps other processes out), so the temp
// name can be fixed: it is the name lowdb's writer (steno) used before, so leftovers of either are
// found. steno is not used: it left its temp file behind when a write failed, did not fsync, and
// coalesced queued writes, so a caller whose data was written could be failed by a later write.
import { open, readFile, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

export function tempFileOf(file: string): string {
  return join(dirname(file), `.${basename(file)}.tmp`)
}

/** Write `text` to `file` atomically; on any failure the temp file is removed and the error rethrown. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = tempFileOf(file)
  try {
    const fh = await open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(text)
      // fsync before the rename: on filesystems that allocate late, ENOSPC or EIO can surface only
      // here, and a rename before it would put a file in place whose data never made it.
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {})
    throw e
  }
  // The rename is done: the new file is in place whatever happens now. fsync the directory so it also
  // survives a power cut; a filesystem that refuses fsync on a directory does not fail the write.
  try {
    const dh = await open(dirname(file), 'r')
    try {
      await dh.sync()
    } finally {
      await dh.close()
    }
  } catch {
    /* best effort, see above */
  }
}

/** Remove the temp file a crash may have left beside `file`. True when there was one. */
export async function removeStaleTemp(file: string): Promise<boolean> {
  try {
    await rm(tempFileOf(file))
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw e
  }
}

/** The file's text and its JSON value; undefined when the file does not exist. Parse errors are thrown as SyntaxError. */
export async function readJsonFile(file: string): Promise<{ value: unknown; text: string } | undefined> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  return { value: JSON.parse(text) as unknown, text }
}
