/**
 * `generate --backend http` against a server that never answers: each attempt ends at --request-timeout, each
 * retry is said on stderr as it happens, and the command ends (exit 3) naming the URL and the attempts, instead of
 * staying silent for the default 300 s times five attempts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { runCli, showRun } from "./cli-helpers.js";
import { scratchDir } from "../scratch.js";

/**
 * Preloaded into the CLI: each fetch call is written to $GV_FETCH_RECORD as it is made. Attempts are counted where
 * they are made: the server's count cannot be exact, as the last attempt's request may not be written before its
 * 200 ms run out and the process exits (under load it was not, in 2 of 5 runs).
 */
const FETCH_RECORDER =
  "data:text/javascript," +
  encodeURIComponent(
    `import { appendFileSync } from "node:fs";
     const f = globalThis.fetch;
     globalThis.fetch = (input, init) => {
       appendFileSync(process.env.GV_FETCH_RECORD, (init?.method ?? "GET") + " " + String(input) + "\\n");
       return f(input, init);
     };`,
  );

test("generate --backend http --request-timeout: a hung server is retried with a line per retry, then refused by name", async () => {
  let requests = 0;
  const server = http.createServer((req) => {
    requests++;
    req.resume(); // read the body, never answer
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const record = path.join(scratchDir("gv-http-retry-"), "fetches");
  try {
    const r = await runCli(
      [
        ...["generate", "--backend", "http", "--url", url, "--server-model", "m", "-p", "hi"],
        ...["--request-timeout", "0.2"],
      ],
      {
        env: {
          NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${FETCH_RECORDER}`.trim(),
          GV_FETCH_RECORD: record,
        },
      },
    );
    assert.equal(r.code, 3, showRun(r));
    const retries = r.stderr.match(/no answer within 200 ms; attempt \d of 5, retrying in/g) ?? [];
    assert.equal(retries.length, 4, showRun(r));
    assert.match(
      r.stderr,
      new RegExp(`error: POST ${url}/v1/chat/completions failed after 5 attempts: no answer within 200 ms`),
    );
    // the documented policy: the first attempt and DEFAULT_MAX_RETRIES (4) retries, each a real POST to the server
    const fetches = fs.readFileSync(record, "utf8").split("\n").filter(Boolean);
    // (after the one GET of the model list, the --server-model check, which the hung server leaves unanswered)
    assert.deepEqual(fetches, [`GET ${url}/v1/models`, ...Array(5).fill(`POST ${url}/v1/chat/completions`)]);
    // and they reach it: all but perhaps the last, which the exit may cut before it is written
    assert.ok(requests >= 5 && requests <= 6, `${requests} requests reached the server`);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});
