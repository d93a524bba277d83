// README.md stays a front page (at most 20,000 bytes) and every relative link in it, in docs/ and in the
// repository's other markdown files points at a file, and a heading, that exists: reference text moved
// between pages must not leave dead links.
import t from 'tap'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { headingAnchors, markdownLinks } from '../helpers/markdown-links.js'

const root = resolve(fileURLToPath(new URL('../../', import.meta.url)))
const README_MAX_BYTES = 20_000

/** Markdown files of the repository (README.md, docs/, blocklists/README.md, ...), not dependencies or builds. */
function markdownUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name)
    if (d.isDirectory()) return ['node_modules', 'dist', '.git'].includes(d.name) ? [] : markdownUnder(p)
    return d.name.endsWith('.md') ? [p] : []
  })
}

/** `file:line: link: problem` for each relative link of `text` (the content of `file`) that leads nowhere. */
function brokenLinks(file: string, text: string): string[] {
  const out: string[] = []
  for (const { line, target } of markdownLinks(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue
    const hash = target.indexOf('#')
    const path = decodeURIComponent(hash < 0 ? target : target.slice(0, hash))
    const anchor = hash < 0 ? '' : decodeURIComponent(target.slice(hash + 1))
    const dest = path ? resolve(dirname(file), path) : file
    // Outside the repository (../shared/DESIGN.md from the root) is not this checkout's to know.
    if (relative(root, dest).startsWith('..')) continue
    const where = `${relative(root, file)}:${line}: ${target}`
    if (dest !== file && !existsSync(dest)) {
      out.push(`${where}: no such file`)
      continue
    }
    if (anchor && dest.endsWith('.md') && (dest === file || statSync(dest).isFile())) {
      const anchors = headingAnchors(dest === file ? text : readFileSync(dest, 'utf8'))
      if (!anchors.has(anchor.toLowerCase())) out.push(`${where}: no heading with that anchor in ${relative(root, dest)}`)
    }
  }
  return out
}

t.test('README.md is a front page of at most 20,000 bytes', async (t) => {
  const size = statSync(join(root, 'README.md')).size
  t.ok(size <= README_MAX_BYTES, `README.md is ${size} bytes (at most ${README_MAX_BYTES}): move reference text to a page under docs/`)
})

t.test('every relative link in README.md, docs/ and the other markdown files leads to an existing file and heading', async (t) => {
  const files = markdownUnder(root)
  t.ok(files.includes(join(root, 'README.md')) && files.includes(join(root, 'docs', 'cli.md')), 'README.md and docs/ are checked')
  let links = 0
  for (const f of files) {
    const text = readFileSync(f, 'utf8')
    links += markdownLinks(text).length
    t.same(brokenLinks(f, text), [], relative(root, f))
  }
  t.ok(links > 50, `links were found (${links})`)
  t.ok(existsSync(join(root, 'docs', 'README.md')), 'docs/README.md indexes the pages')
})

t.test('the checker reports dead files and anchors, not code or URLs', async (t) => {
  const file = join(root, 'docs', 'example.md')
  const text = [
    '# Example page',
    '',
    'A [good link](cli.md#commands), [a heading here](#example-page), [the web](https://example.com/x),',
    'a [dead page](no-such-page.md), a [dead',
    'anchor](cli.md#no-such-heading), an ![image](screenshots/missing.png).',
    '',
    'Code is not a link: `[x](nowhere.md)`, nor is',
    '',
    '```md',
    '[y](nowhere-either.md)',
    '```',
    '',
    '[ref]: ../README.md#quick-start',
    '[bad ref]: ../NOPE.md',
  ].join('\n')
  t.same(brokenLinks(file, text), [
    'docs/example.md:4: no-such-page.md: no such file',
    'docs/example.md:5: cli.md#no-such-heading: no heading with that anchor in docs/cli.md',
    'docs/example.md:5: screenshots/missing.png: no such file',
    'docs/example.md:14: ../NOPE.md: no such file',
  ])
})
