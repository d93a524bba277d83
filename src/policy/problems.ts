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
