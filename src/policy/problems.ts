// How per-line problems are shown: the `file:line: message` contract that editors, CI logs and
// people read. Kept apart from the parser so the server and the CLI print them the same way.
import type { Problem, Severity } from './types.js'

/** `file:line: message`, or `file:line: warning: message` for warnings. */
export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}: ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`
}

export function countProblems(problems: readonly Problem[]): Record<Severity, number> {
  let error = 0
  let warning = 0
  for (const p of problems) p.severity === 'error' ? error++ : warning++
  return { error, warning }
}

export function hasErrors(problems: readonly Pick<Problem, 'severity'>[]): boolean {
  return problems.some((p) => p.severity === 'error')
}

/** GitHub workflow-command escaping: data (message) and property values (file) differ. */
const ghData = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')
const ghProp = (s: string): string => ghData(s).replace(/:/g, '%3A').replace(/,/g, '%2C')

/**
 * `::error file=F,line=N::message` (or `::warning`), the annotation a GitHub Actions step prints to
 * mark a line of a pull request. Line 0 (a whole-file problem) names the file only.
 */
export function formatGithubAnnotation(p: Problem): string {
  const props = `file=${ghProp(p.file)}${p.line > 0 ? `,line=${p.line}` : ''}`
  return `::${p.severity === 'warning' ? 'warning' : 'error'} ${props}::${ghData(p.message)}`
}
