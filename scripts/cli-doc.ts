// The generated part of docs/cli.md: every command's `--help` text, taken from the real CLI, so the
// reference cannot drift from the code. Shared by scripts/gen-cli-doc.ts (writes it) and
// test/docs/cli-doc.test.ts (checks it), so both see the same commands.
import { execFile } from 'node:child_process'

export const BEGIN_MARKER = '<!-- BEGIN generated cli-help -->'
export const END_MARKER = '<!-- END generated cli-help -->'

/** One `--help` run: the words after `egress-guard` (without `--help`) and what it printed. */
export interface HelpText {
  args: string[]
  text: string
  /** Subcommands whose `--help` printed exactly this text too (e.g. `block add`). */
  sameFor: string[][]
}

export function commandLine(args: readonly string[]): string {
  return ['egress-guard', ...args, '--help'].join(' ')
}

/** Command names from the top-level usage: cli.ts prints its command table as `commands: a, b, c`. */
export function parseCommandList(usage: string): string[] {
  const line = usage.split('\n').find((l) => l.startsWith('commands: '))
  if (!line) throw new Error(`no "commands: ..." line in egress-guard --help:\n${usage}`)
  return line
    .slice('commands: '.length)
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '')
}

/**
 * Subcommands named in a command's usage block (the lines before the first blank one): a lower-case
 * word, or `a|b` alternatives, right after `egress-guard CMD`. Placeholders are upper case (`NAME|IP`)
 * and options start with `-`, so neither is taken for a subcommand.
 */
export function parseSubcommands(command: string, help: string): string[] {
  const usage = help.split('\n\n')[0] ?? ''
  const subs: string[] = []
  const re = /egress-guard\s+(\S+)\s+([a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*)(?=\s|$)/g
  for (const m of usage.matchAll(re)) {
    if (m[1] !== command) continue
    for (const s of m[2]!.split('|')) if (!subs.includes(s)) subs.push(s)
  }
  return subs
}

/** Runs the CLI with `args`; the environment without EG_* so a caller's config cannot change the text. */
export type RunHelp = (args: string[]) => Promise<string>

export function nodeCliRunner(cliPath: string, cwd: string): RunHelp {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('EG_')) env[k] = v
  return (args) =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, [cliPath, ...args], { cwd, env, timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${commandLine(args.slice(0, -1))} failed (${err.code ?? err.message}): ${stderr}`))
        else resolve(stdout)
      })
    })
}

/** Runs `tasks` with at most `limit` at a time; results in input order. */
async function pool<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++
      results[i] = await tasks[i]!()
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker))
  return results
}

/**
 * `egress-guard --help`, then `--help` of every command in the table and of every subcommand. A few
 * at a time: each run is a Node start plus the command's imports (fastify for some), mostly waiting.
 */
export async function collectHelp(run: RunHelp, concurrency = 4): Promise<HelpText[]> {
  const top = await run(['--help'])
  const perCommand = await pool(
    parseCommandList(top).map((cmd) => async (): Promise<HelpText[]> => {
      const text = await run([cmd, '--help'])
      const entry: HelpText = { args: [cmd], text, sameFor: [] }
      const own: HelpText[] = [entry]
      for (const sub of parseSubcommands(cmd, text)) {
        const subText = await run([cmd, sub, '--help'])
        if (subText === text) entry.sameFor.push([cmd, sub])
        else own.push({ args: [cmd, sub], text: subText, sameFor: [] })
      }
      return own
    }),
    concurrency,
  )
  return [{ args: [], text: top, sameFor: [] }, ...perCommand.flat()]
}

/** A code fence longer than any run of backticks in the text, so the text is shown verbatim. */
function fenceFor(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length))
  return '`'.repeat(Math.max(3, longest + 1))
}

/** The markdown between (and including) the markers. */
export function renderHelpBlock(helps: readonly HelpText[]): string {
  const lines = [
    BEGIN_MARKER,
    '<!-- written by `npm run docs:cli` from the CLI itself; edit the commands, not this part -->',
    '',
    '## Help text of every command',
    '',
    'What `egress-guard --help` and `egress-guard COMMAND --help` print, for every command in the',
    'command table of `src/cli.ts`.',
  ]
  for (const h of helps) {
    const fence = fenceFor(h.text)
    lines.push('', `### \`${commandLine(h.args)}\``, '')
    if (h.sameFor.length) lines.push(`The same text: ${h.sameFor.map((a) => `\`${commandLine(a)}\``).join(', ')}.`, '')
    lines.push(fence + 'text', h.text.endsWith('\n') ? h.text.slice(0, -1) : h.text, fence)
  }
  lines.push('', END_MARKER)
  return lines.join('\n')
}

/** `doc` with its generated part replaced by `block`; the hand-written text around it is kept. */
export function replaceGenerated(doc: string, block: string): string {
  const begin = doc.indexOf(BEGIN_MARKER)
  const end = doc.indexOf(END_MARKER)
  if (begin < 0 || end < begin) throw new Error(`docs/cli.md needs the lines ${BEGIN_MARKER} and ${END_MARKER} where the help text goes`)
  return doc.slice(0, begin) + block + doc.slice(end + END_MARKER.length)
}

/** The help texts (and the subcommands that print them) that `doc` does not contain verbatim. */
export function missingFromDoc(doc: string, helps: readonly HelpText[]): string[] {
  const missing: string[] = []
  for (const h of helps) {
    if (doc.includes(h.text)) continue
    missing.push(commandLine(h.args), ...h.sameFor.map(commandLine))
  }
  return missing
}
