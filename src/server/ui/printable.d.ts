// Types of printable.js (plain JavaScript: the dashboard loads it in the browser, the CLI imports it).
/** True when the text has no control, format, separator or other hidden character. */
export function isPrintable(text: unknown): boolean
/** The text with every control, format, separator and other hidden character written as an escape (`\x1b`, `\u202e`). */
export function printable(text: unknown): string
/** A whole output stream: hidden characters but newline and tab as \uXXXX (valid inside JSON strings too). */
export function terminalSafe(text: unknown): string
