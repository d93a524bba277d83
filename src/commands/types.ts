// What a command module looks like. Commands are the CLI edge: they turn options into calls to the
// pure core and the I/O components, and print results. cli.ts picks one from the table.

export interface CommandIO {
  stdout: (text: string) => void
  stderr: (text: string) => void
  env: NodeJS.ProcessEnv
  /** Aborted on SIGINT/SIGTERM: long-running commands stop cleanly and resolve. */
  signal: AbortSignal
  /** Register a SIGHUP handler (reload). Returns an unregister function. */
  onReload: (cb: () => void) => () => void
}

export interface Command {
  summary: string
  /** Resolves to the process exit code. Throw EgError for usage/config problems. */
  run(argv: string[], io: CommandIO): Promise<number>
}
