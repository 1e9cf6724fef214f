/**
 * Where the library's long-running work reports to: lines of progress and warnings. The CLI prints them
 * (cli/common.ts makeLogger); library callers pass their own or get the silent one.
 */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  progress(stage: string, done: number, total: number, extra?: string): void;
}

/** A logger that drops everything (the default of every recipe). */
export const silentLogger: Logger = { info() {}, warn() {}, progress() {} };
