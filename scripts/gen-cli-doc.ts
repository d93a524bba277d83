// `npm run docs:cli`: rewrites the generated part of docs/cli.md from the built CLI's `--help` texts
// (npm run build first, which the npm script does). test/docs/cli-doc.test.ts fails until this ran.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { collectHelp, nodeCliRunner, renderHelpBlock, replaceGenerated } from './cli-doc.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const docPath = fileURLToPath(new URL('../docs/cli.md', import.meta.url))
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

const helps = await collectHelp(nodeCliRunner(cli, root))
const before = readFileSync(docPath, 'utf8')
const after = replaceGenerated(before, renderHelpBlock(helps))
if (after === before) {
  process.stdout.write(`docs/cli.md: up to date (${helps.length} help texts)\n`)
} else {
  writeFileSync(docPath, after)
  process.stdout.write(`docs/cli.md: rewrote the help texts (${helps.length}: ${helps.map((h) => ['egress-guard', ...h.args].join(' ')).join(', ')})\n`)
}
