// docs/cli.md holds every command's `--help` text verbatim (written by `npm run docs:cli`), so the CLI
// reference cannot drift from the CLI. Runs the built CLI (dist/cli.js, built by `npm test`).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { CLI } from '../helpers/cli.js'
import {
  BEGIN_MARKER,
  END_MARKER,
  collectHelp,
  missingFromDoc,
  nodeCliRunner,
  parseCommandList,
  parseSubcommands,
  renderHelpBlock,
  replaceGenerated,
  type HelpText,
} from '../../scripts/cli-doc.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const docPath = fileURLToPath(new URL('../../docs/cli.md', import.meta.url))

t.test('docs/cli.md contains the --help text of every command and subcommand', async (t) => {
  const helps = await collectHelp(nodeCliRunner(CLI, root))
  const ran = helps.flatMap((h) => [h.args, ...h.sameFor]).map((a) => a.join(' '))
  // The commands come from the CLI's own table; subcommands from each usage block.
  for (const c of ['', 'lint', 'up', 'block', 'block add', 'block rm', 'token create']) t.ok(ran.includes(c), `ran egress-guard ${c} --help`.replace('  ', ' '))
  const missing = missingFromDoc(readFileSync(docPath, 'utf8'), helps)
  t.same(missing, [], `docs/cli.md lacks the current text of: ${missing.join(', ')}. Run \`npm run docs:cli\``)
})

const sample: HelpText[] = [
  { args: [], text: 'usage: egress-guard <command>\n\ncommands: x\n', sameFor: [] },
  { args: ['x'], text: 'usage: egress-guard x add|rm NAME\n\nOptions:\n  --a VALUE      the `a` (```fenced```)\n', sameFor: [['x', 'add'], ['x', 'rm']] },
]

t.test('the check names each help text that is missing or differs by one character', async (t) => {
  const doc = replaceGenerated(`# CLI\n\nprose before\n\n${BEGIN_MARKER}\n${END_MARKER}\n\nprose after\n`, renderHelpBlock(sample))
  t.same(missingFromDoc(doc, sample), [], 'the generated block holds every text verbatim, backticks and all')
  t.match(doc, /^# CLI\n\nprose before\n\n<!-- BEGIN/, 'the prose before the markers is kept')
  t.match(doc, /END generated cli-help -->\n\nprose after\n$/, 'and the prose after them')
  t.equal(replaceGenerated(doc, renderHelpBlock(sample)), doc, 'regenerating changes nothing')
  t.same(missingFromDoc(doc.replace('the `a`', 'the `b`'), sample), ['egress-guard x --help', 'egress-guard x add --help', 'egress-guard x rm --help'])
  t.same(missingFromDoc(doc.replace('commands: x', 'commands: y'), sample), ['egress-guard --help'])
  t.throws(() => replaceGenerated('# CLI without markers\n', 'x'), /needs the lines/)
})

t.test('commands and subcommands are read from the usage text', async (t) => {
  t.same(parseCommandList('usage: egress-guard <command>\n\ncommands: agent, block, up\n'), ['agent', 'block', 'up'])
  t.throws(() => parseCommandList('usage: something else\n'), /no "commands: \.\.\." line/)
  const block = 'usage: egress-guard block add VALUE... --reason TEXT\n       egress-guard block rm ID|VALUE\n       egress-guard block ls [--q TEXT]\n\nOptions:\n  egress-guard block nothere\n'
  t.same(parseSubcommands('block', block), ['add', 'rm', 'ls'], 'one per usage line; lines after the usage block are not read')
  t.same(parseSubcommands('profile', 'usage: egress-guard profile ls|suggest NAME\n'), ['ls', 'suggest'])
  t.same(parseSubcommands('match', 'usage: egress-guard match NAME|IP [--json]\n'), [], 'upper-case placeholders are not subcommands')
  t.same(parseSubcommands('doctor', 'usage: egress-guard doctor [--netns NAME]\n       egress-guard doctor --config F\n'), [])
  t.same(parseSubcommands('apply', 'usage: egress-guard plan x\n'), [], 'another command named in the usage is not ours')
})
