/**
 * A vLLM-like server of a model folder for the utility benchmarks over HTTP: /v1/completions with `echo` and
 * `logprobs` answers the prompt's log-probabilities as vLLM does (the first position null, then each token's
 * log-softmax given the tokens before it, with the top token's; the prompt's own tokens and text offsets), computed
 * here with one forward pass of the built-in model over the whole prompt; every other request goes to `goodvibe
 * serve` of the same model (serveBuiltin), whose greedy answers are the built-in engine's. GET /v1/models reports
 * `maxModelLen`.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { DecoderModel } from "../../src/models/decoder.js";
import type { HfTokenizer } from "../../src/io/tokenizer.js";
import { BuiltinBackend } from "../../src/eval/generate/builtin.js";
import { serveBuiltin } from "../../src/eval/generate/serve.js";
import { Tensor, noGrad, tidy } from "../../src/tensor/index.js";

export interface EchoServer {
  url: string;
  /** the echo requests answered */
  echoes: number;
  /** the length in tokens of each prompt echoed, in the order asked */
  echoed: number[];
  close(): Promise<void>;
}

/** Each position's log-probability of `ids` (null at the first) and the top one's (token id, log-probability). */
function promptLogprobs(
  model: DecoderModel,
  ids: number[],
): { lp: (number | null)[]; top: [number, number][] } {
  return noGrad(() =>
    tidy(() => {
      const logits = model.forward(Tensor.fromArray(ids, [1, ids.length], "int64"));
      const V = logits.shape[2]!;
      const all = logits.logSoftmax(-1).toFloat32Array(); // [1, n, V]
      const lp: (number | null)[] = [null];
      const top: [number, number][] = [];
      for (let i = 1; i < ids.length; i++) {
        const row = all.subarray((i - 1) * V, i * V);
        lp.push(row[ids[i]!]!);
        let best = 0;
        for (let v = 1; v < V; v++) if (row[v]! > row[best]!) best = v;
        top.push([best, row[best]!]);
      }
      return { lp, top };
    }),
  );
}

export async function startEchoServer(
  model: DecoderModel,
  tok: HfTokenizer,
  name: string,
  maxModelLen: number,
  /** reportMaxModelLen false: GET /v1/models names the model without max_model_len (as some servers do) */
  opts: { reportMaxModelLen?: boolean } = {},
): Promise<EchoServer> {
  const served = await serveBuiltin(new BuiltinBackend(model, tok), { port: 0, modelName: name });
  const state = { echoes: 0, echoed: [] as number[] };
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", async () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      try {
        if (req.method === "GET" && req.url === "/v1/models")
          return send(200, {
            data: [{ id: name, ...(opts.reportMaxModelLen === false ? {} : { max_model_len: maxModelLen }) }],
          });
        const body = JSON.parse(raw || "{}") as Record<string, unknown>;
        if (req.url === "/v1/completions" && body.echo === true) {
          state.echoes++;
          const p = body.prompt;
          const ids = Array.isArray(p) ? (p as number[]) : tok.encode(String(p), { addSpecialTokens: true });
          state.echoed.push(ids.length);
          if (ids.length > maxModelLen - 1)
            return send(400, { error: { message: "maximum context length" } });
          const { lp, top } = promptLogprobs(model, ids);
          const tokens = ids.map((t) => tok.decode([t]));
          const offsets: number[] = [];
          let at = 0;
          for (const t of tokens) {
            offsets.push(at);
            at += [...t].length;
          }
          return send(200, {
            choices: [
              {
                index: 0,
                text: tokens.join(""),
                logprobs: {
                  tokens,
                  token_logprobs: lp,
                  text_offset: offsets,
                  top_logprobs: [null, ...top.map(([t, x]) => ({ [tok.decode([t])]: x }))],
                },
                finish_reason: "length",
              },
            ],
          });
        }
        const r = await fetch(`${served.url}${req.url}`, {
          method: req.method,
          headers: { "content-type": "application/json" },
          ...(req.method === "POST" ? { body: raw } : {}),
        });
        res.writeHead(r.status, { "content-type": "application/json" });
        res.end(await r.text());
      } catch (e) {
        send(500, { error: { message: String(e) } });
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get echoes() {
      return state.echoes;
    },
    get echoed() {
      return state.echoed;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      await served.stop();
    },
  };
}
