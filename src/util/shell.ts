/**
 * Commands the tool prints for the user to run next: each argument quoted for a POSIX shell, so that a path with
 * spaces, quotes or other special characters pastes back as the same argument.
 */

/** `s` as one POSIX shell word: as it is when it has only characters no shell treats specially, else in '…'. */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command line of these arguments, each quoted. */
export function shellCommand(args: readonly string[]): string {
  return args.map(shellQuote).join(" ");
}
