// The managed hosts block on temporary files: outside lines kept byte for byte, mode kept,
// idempotent, remove restores the original, verify reports drift, and a crash mid-write (killed
// between write and rename, or a failing rename) leaves the old file whole.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BEGIN_MARKER, END_MARKER, createHostsFile, withBlock, renderBlock } from '../../src/enforce/hosts-file.js'

function tmp(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), `eg-hosts-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// Odd bytes on purpose: CRLF, tabs, trailing spaces, a comment, no final newline.
const ORIGINAL = '127.0.0.1\tlocalhost\r\n::1 localhost ip6-localhost   \n# my comment\n\n192.0.2.5 printer.lan'

t.test('apply adds the block, keeps every other byte, keeps the mode; remove restores', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  writeFileSync(path, ORIGINAL + '\n')
  chmodSync(path, 0o640)
  const asRoot = process.getuid?.() === 0
  if (asRoot) chownSync(path, 4321, 4322)
  const h = createHostsFile(path)
  t.same(await h.apply(['evil.example', 'b.example']), { changed: true })
  if (asRoot) t.same([statSync(path).uid, statSync(path).gid], [4321, 4322], 'owner kept')
  const text = readFileSync(path, 'utf8')
  t.ok(text.startsWith(ORIGINAL + '\n'), 'original bytes first, untouched')
  t.equal(text.slice(ORIGINAL.length + 1), [BEGIN_MARKER, '0.0.0.0 b.example', ':: b.example', '0.0.0.0 evil.example', ':: evil.example', END_MARKER, ''].join('\n'))
  t.equal(statSync(path).mode & 0o777, 0o640, 'mode kept')
  t.same(await h.verify(['evil.example', 'b.example']), [])
  t.same(await h.apply(['b.example', 'evil.example']), { changed: false }, 'idempotent')
  const mtime = statSync(path).mtimeMs
  await h.apply(['evil.example', 'b.example'])
  t.equal(statSync(path).mtimeMs, mtime, 'no write when nothing changes')
  await h.remove()
  t.equal(readFileSync(path, 'utf8'), ORIGINAL + '\n', 'remove restores the original byte for byte')
  t.same(readdirSync(dir), ['hosts'], 'no temp files left')
})

t.test('a block in the middle is replaced in place; lines after it are kept', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  const before = 'a\n' + renderBlock(['old.example']) + 'z after\n'
  writeFileSync(path, before)
  const h = createHostsFile(path)
  t.same(await h.plan(['new.example']), { add: ['new.example'], remove: ['old.example'] })
  await h.apply(['new.example'])
  t.equal(readFileSync(path, 'utf8'), 'a\n' + renderBlock(['new.example']) + 'z after\n')
  await h.apply([])
  t.equal(readFileSync(path, 'utf8'), 'a\nz after\n', 'no names: no block')
})

t.test('file without a final newline gets one before the block', async (t) => {
  t.equal(withBlock('x 1', ['e.example']), 'x 1\n' + renderBlock(['e.example']))
  t.equal(withBlock('', ['e.example']), renderBlock(['e.example']))
})

t.test('verify finds an edited, a removed and a duplicated block; apply repairs', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  writeFileSync(path, ORIGINAL)
  const h = createHostsFile(path)
  await h.apply(['evil.example'])
  writeFileSync(path, readFileSync(path, 'utf8').replace('0.0.0.0 evil.example', '# 0.0.0.0 evil.example'))
  let d = await h.verify(['evil.example'])
  t.equal(d.length, 1)
  t.equal(d[0]!.kind, 'hosts-block')
  t.same(await h.apply(['evil.example']), { changed: true })
  t.same(await h.verify(['evil.example']), [])
  writeFileSync(path, ORIGINAL + '\n')
  d = await h.verify(['evil.example'])
  t.match(d[0]!.detail, /missing/)
  writeFileSync(path, ORIGINAL + '\n' + renderBlock(['evil.example']) + 'mid\n' + renderBlock(['x.example']))
  t.equal((await h.verify(['evil.example'])).length, 1, 'a second block is drift')
  await h.apply(['evil.example'])
  t.equal(readFileSync(path, 'utf8'), ORIGINAL + '\n' + renderBlock(['evil.example']) + 'mid\n')
})

t.test('names a hosts file cannot hold are never written', async (t) => {
  const out = renderBlock(['ok.example', '*.wild.example', 'evil.example\n1.2.3.4 bank.example', 'localhost', 'UPPER.example', ''])
  t.equal(out, [BEGIN_MARKER, '0.0.0.0 ok.example', ':: ok.example', END_MARKER, ''].join('\n'))
})

t.test('a begin marker without an end marker is a coded error and nothing is written', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  const broken = ORIGINAL + '\n' + BEGIN_MARKER + '\n0.0.0.0 x.example\n'
  writeFileSync(path, broken)
  await t.rejects(createHostsFile(path).apply(['evil.example']), { code: 'EG_BAD_INPUT' })
  t.equal(readFileSync(path, 'utf8'), broken)
})

t.test('a failing rename leaves the old file whole and no temp file', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  writeFileSync(path, ORIGINAL)
  const h = createHostsFile(path, {
    beforeRename: () => {
      throw Object.assign(new Error('simulated EIO'), { code: 'EIO' })
    },
  })
  await t.rejects(h.apply(['evil.example']), { code: 'EG_FILE', message: /simulated EIO/ })
  t.equal(readFileSync(path, 'utf8'), ORIGINAL)
  t.same(readdirSync(dir), ['hosts'])
})

t.test('a process killed between write and rename leaves the old file whole', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  writeFileSync(path, ORIGINAL)
  const mod = fileURLToPath(new URL('../../src/enforce/hosts-file.ts', import.meta.url))
  const script = `
    const { createHostsFile } = await import(${JSON.stringify(mod)})
    await createHostsFile(${JSON.stringify(path)}, { beforeRename: () => process.kill(process.pid, 'SIGKILL') }).apply(['evil.example'])
  `
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: fileURLToPath(new URL('../..', import.meta.url)) })
  t.equal(r.signal, 'SIGKILL', `child was killed mid-write (${r.stderr.slice(0, 300)})`)
  t.equal(readFileSync(path, 'utf8'), ORIGINAL, 'old file intact')
  const left = readdirSync(dir).filter((f) => f.endsWith('.tmp'))
  t.equal(left.length, 1, 'the written temp file is what the crash left')
  t.match(readFileSync(join(dir, left[0]!), 'utf8'), /0\.0\.0\.0 evil\.example/)
  await createHostsFile(path).apply(['evil.example'])
  t.same(readdirSync(dir), ['hosts'], 'the next apply removes the leftover')
  t.ok(readFileSync(path, 'utf8').startsWith(ORIGINAL + '\n' + BEGIN_MARKER))
})

t.test('a symlinked hosts file stays a symlink; its target gets the block', async (t) => {
  const dir = tmp(t)
  mkdirSync(join(dir, 'real'))
  const real = join(dir, 'real', 'hosts')
  writeFileSync(real, ORIGINAL)
  const link = join(dir, 'hosts')
  symlinkSync('real/hosts', link)
  const h = createHostsFile(link)
  await h.apply(['evil.example'])
  t.ok(lstatSync(link).isSymbolicLink(), 'still a symlink')
  t.ok(readFileSync(real, 'utf8').startsWith(ORIGINAL + '\n' + BEGIN_MARKER))
  t.same(await h.verify(['evil.example']), [])
  await h.remove()
  t.equal(readFileSync(real, 'utf8'), ORIGINAL + '\n')
  t.same(readdirSync(join(dir, 'real')), ['hosts'])
})

t.test('bytes that are not UTF-8 outside the block survive apply and remove byte for byte', async (t) => {
  const dir = tmp(t)
  const path = join(dir, 'hosts')
  // A Latin-1 "é" (0xE9, invalid as UTF-8), a real UTF-8 "ü", a BOM, a lone continuation byte.
  const original = Buffer.concat([
    Buffer.from([0xef, 0xbb, 0xbf]),
    Buffer.from('127.0.0.1 localhost\n# caf'),
    Buffer.from([0xe9]),
    Buffer.from(' printer\n192.0.2.5 b\u00fccher.lan # '),
    Buffer.from([0x80, 0xff]),
    Buffer.from('\n'),
  ])
  writeFileSync(path, original)
  const h = createHostsFile(path)
  t.same(await h.apply(['evil.example']), { changed: true })
  const after = readFileSync(path)
  t.ok(after.subarray(0, original.length).equals(original), 'every byte before the block kept (no U+FFFD)')
  t.ok(after.subarray(original.length).toString('latin1').startsWith(BEGIN_MARKER), 'the block follows')
  t.same(await h.verify(['evil.example']), [])
  await h.remove()
  t.ok(readFileSync(path).equals(original), 'remove restores the original bytes exactly')
})
