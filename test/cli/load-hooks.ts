/** Module hooks of load-recorder.ts: each loaded module's URL is appended to the record file. */
import * as fs from "node:fs";

let out = "";

export function initialize(data: { out: string }): void {
  out = data.out;
}

export async function load(
  url: string,
  context: unknown,
  next: (url: string, context: unknown) => Promise<unknown>,
): Promise<unknown> {
  if (out) fs.appendFileSync(out, `load ${url}\n`);
  return next(url, context);
}
