/**
 * `generate --backend http` against a server that never answers: each attempt ends at --request-timeout, each
 * retry is said on stderr as it happens, and the command ends (exit 3) naming the URL and the attempts, instead of
 * staying silent for the default 300 s times five attempts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { runCli, showRun } from "./cli-helpers.js";

test("generate --backend http --request-timeout: a hung server is retried with a line per retry, then refused by name", async () => {
  let requests = 0;
  const server = http.createServer((req) => {
    requests++;
    req.resume(); // read the body, never answer
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const r = await runCli([
      ...["generate", "--backend", "http", "--url", url, "--server-model", "m", "-p", "hi"],
      ...["--request-timeout", "0.2"],
    ]);
    assert.equal(r.code, 3, showRun(r));
    const retries = r.stderr.match(/no answer within 200 ms; attempt \d of 5, retrying in/g) ?? [];
    assert.equal(retries.length, 4, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(`error: POST ${url}/v1/chat/completions failed after 5 attempts: no answer within 200 ms`),
    );
    assert.equal(requests, 5);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});
