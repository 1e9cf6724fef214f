/**
 * An OpenAI-compatible server over the built-in engine (`/v1/completions`, `/v1/chat/completions`, `/v1/models`,
 * `/health`), so a hardened checkpoint can sit behind the same HTTP backend as vLLM or llama-server fleets.
 *
 * What it guards against, in the order a request meets it:
 *   - Host header (and Origin, when a browser sends one) must name an allowed host: the loopback names, the bound
 *     address, and `allowedHosts` — a web page cannot drive it through DNS rebinding (403);
 *   - optional API key, `Authorization: Bearer <key>`, compared in constant time (401);
 *   - POST bodies must be `application/json` — an HTML form or a `text/plain` fetch (CSRF without a CORS
 *     preflight) is refused (415) — and at most `maxBodyBytes` (413, answered, not a reset);
 *   - every field validated before any work: prompt ids inside the vocabulary, prompt + max_tokens inside the
 *     model's context, sampling options in their ranges, options it cannot honour refused rather than ignored (400);
 *   - one generation at a time (the engine is single-stream), at most `maxQueue` waiting: 429 beyond that; it starts
 *     on a later turn than its request, and a long prompt is prefilled `prefillChunk` tokens per pass with a turn of
 *     the event loop between, so other clients are answered meanwhile;
 *   - a client that goes away cancels its request; `stop()` answers in-flight and queued requests 503 within one
 *     decoding step (a stream under way: an error event) and closes the listener.
 * A row ends at its first stop string (usage counts the tokens up to it), and `stream: true` answers with
 * server-sent events in OpenAI's chunk format (EventStream below).
 * Every error is JSON in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
 */
import { createHash, randomInt, randomUUID, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { GoodVibeError, InputError, InterruptedError } from "../../errors.js";
import type { ChatMessage } from "../../io/tokenizer.js";
import type { BuiltinBackend } from "./builtin.js";
import { cutAtStop } from "../utility/model.js";
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE, DEFAULT_PREFILL_CHUNK } from "./serve-config.js";
import { rowTextOf, type RowText } from "./text-stream.js";
import { isPlainObject } from "../../util/keys.js";
import { DEFAULT_ENABLE_THINKING } from "../../io/chat-template.js";
import { OPENAI_SAMPLING_DEFAULTS, type ServedSamplingDefaults } from "./generation-config.js";

export interface ServeOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 8000; 0 = any free port). */
  port?: number;
  modelName: string;
  /** Largest max_tokens accepted (default: 4096, and never more than the model's context). */
  maxTokensLimit?: number;
  /** When set, every route but /health needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Host names accepted in the Host header besides the loopback names and `host`; "*" accepts any. */
  allowedHosts?: string[];
  /** Largest request body (default 1 MiB). */
  maxBodyBytes?: number;
  /** Requests that may wait while one generates (default 16); more get 429. */
  maxQueue?: number;
  /** Largest n × number of prompts in one request (default 16). */
  maxBatch?: number;
  /** One line per request (method, path, status, milliseconds). */
  log?: (line: string) => void;
  /**
   * The temperature, top_p and top_k of a request that leaves them out (generation-config.ts
   * servedSamplingDefaults of the model folder, as vLLM takes them); default OpenAI's: temperature 1, no top-p, no
   * top-k.
   */
  samplingDefaults?: ServedSamplingDefaults;
  /** Prompt tokens per forward pass while a prompt prefills (default DEFAULT_PREFILL_CHUNK; 0: all at once). */
  prefillChunk?: number;
}

export interface RunningServer {
  server: http.Server;
  url: string;
  /** The allowed Host names, for the start-up message. */
  allowedHosts: string[];
  /** Generating now and waiting. */
  load(): { running: number; queued: number };
  /** Refuse new requests, answer in-flight and queued ones 503, close the listener and every connection. */
  stop(): Promise<void>;
}

/**
 * max_tokens of a request that gives none, as vLLM (entrypoints: CompletionRequest.max_tokens = 16, get_max_tokens)
 * and OpenAI: a chat completion generates the folder's generation_config.json max_new_tokens (vLLM's default
 * sampling params, ServedSamplingDefaults.maxTokens), else to the end of the context (llama-server's n_predict -1
 * likewise), either bounded by the rest of the context and the largest max_tokens a request may ask for
 * (--max-tokens); a legacy completion generates 16 tokens (vLLM's and OpenAI's /v1/completions default;
 * llama-server's is unbounded). Before 2026-12-02 both were 256: a chat answer cut at 256 tokens where vLLM answers
 * whole.
 */
const DEFAULT_COMPLETION_MAX_TOKENS = 16;
/**
 * Stop strings a request may give. OpenAI's API takes 4; vLLM and llama-server take any number, and eval's own
 * HumanEval list (the Codex paper's) has 5, so `eval --url` against this server needs more than OpenAI's 4 (with 4 it
 * failed HumanEval with a 400). Bounded so that one request cannot make each token's check scan thousands of strings.
 */
const MAX_STOP_SEQUENCES = 16;

type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

/** An error with its HTTP status and OpenAI error fields. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType,
    readonly code: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const bad = (message: string, param: string | null, code = "invalid_value") =>
  new ApiError(400, message, "invalid_request_error", code, param);

// ---------------------------------------------------------------- hosts

/** Loopback: "localhost", 127.0.0.0/8, ::1 (and their IPv4-mapped forms). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (net.isIPv4(h)) return h.startsWith("127.");
  if (net.isIPv6(h)) return h === "::1" || /^::ffff:127\./.test(h) || /^0*:0*:0*:0*:0*:0*:0*:0*1$/.test(h);
  return false;
}

const isWildcard = (host: string) => ["0.0.0.0", "::", "[::]", ""].includes(host);

/** The name in a Host header or an Origin URL's host: lower case, no port, no brackets, no trailing dot. */
function hostName(hostPort: string): string {
  let h = hostPort.trim().toLowerCase();
  if (h.startsWith("[")) h = h.slice(1, h.indexOf("]") > 0 ? h.indexOf("]") : undefined);
  else if (h.split(":").length === 2) h = h.split(":")[0]!;
  return h.replace(/\.$/, "");
}

// ---------------------------------------------------------------- request validation

interface ParsedRequest {
  kind: "completion" | "chat";
  /** Token ids of each prompt (one for chat). */
  prompts: number[][];
  n: number;
  maxTokens: number;
  /** 0: greedy */
  temperature: number;
  /** Sampling only; 1: none. */
  topP: number;
  /** Sampling only; 0: none. */
  topK: number;
  seed: number;
  stop: string[] | undefined;
  /** Server-sent events, a chunk per piece of text as it is generated (OpenAI's `stream`). */
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage (and `usage: null` in every other). */
  includeUsage: boolean;
}

interface Limits {
  modelName: string;
  vocabSize: number;
  context: number;
  maxTokensLimit: number;
  maxBatch: number;
  defaults: ServedSamplingDefaults;
}

const isTokenId = (v: unknown) => typeof v === "number" && Number.isInteger(v);

/** Options of the OpenAI API this server cannot honour: refused when set to anything but their neutral value. */
const UNSUPPORTED: [string, (v: unknown) => boolean][] = [
  ["echo", (v) => v === false],
  ["logprobs", (v) => v === false || v === 0],
  ["top_logprobs", (v) => v === 0],
  ["best_of", (v) => v === 1],
  ["suffix", (v) => v === ""],
  ["presence_penalty", (v) => v === 0],
  ["frequency_penalty", (v) => v === 0],
  ["logit_bias", (v) => isPlainObject(v) && Object.keys(v).length === 0],
  ["tools", (v) => Array.isArray(v) && v.length === 0],
  ["functions", (v) => Array.isArray(v) && v.length === 0],
  ["response_format", (v) => isPlainObject(v) && v.type === "text"],
  ["tool_choice", (v) => v === "none" || v === "auto"],
  ["modalities", (v) => Array.isArray(v) && v.every((m) => m === "text")],
  ["audio", () => false],
  // vLLM's extra sampling and decoding parameters the engine has no processor for (guided decoding, beam search,
  // token-id stops, its template switches): an answer they would constrain is refused, not given unconstrained
  ["min_p", (v) => v === 0],
  ["min_tokens", (v) => v === 0],
  ["ignore_eos", (v) => v === false],
  ["guided_choice", () => false],
  ["guided_json", () => false],
  ["guided_regex", () => false],
  ["guided_grammar", () => false],
  ["structured_outputs", () => false],
  ["stop_token_ids", (v) => Array.isArray(v) && v.length === 0],
  ["bad_words", (v) => Array.isArray(v) && v.length === 0],
  ["allowed_token_ids", () => false],
  ["include_stop_str_in_output", (v) => v === false],
  ["skip_special_tokens", (v) => v === true],
  ["spaces_between_special_tokens", (v) => v === true],
  ["use_beam_search", (v) => v === false],
  ["length_penalty", (v) => v === 1],
  ["truncate_prompt_tokens", () => false],
  ["prompt_logprobs", (v) => v === 0],
  ["add_generation_prompt", (v) => v === true],
  ["continue_final_message", (v) => v === false],
  ["chat_template", () => false],
  // llama-server's
  ["grammar", (v) => v === ""],
  ["json_schema", () => false],
  ["repeat_penalty", (v) => v === 1],
  ["n_probs", (v) => v === 0],
  ["typical_p", (v) => v === 1],
  ["mirostat", (v) => v === 0],
  ["tfs_z", (v) => v === 1],
  ["dry_multiplier", (v) => v === 0],
  ["xtc_probability", (v) => v === 0],
  ["dynatemp_range", (v) => v === 0],
];

function chatMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0)
    throw bad("messages must be a non-empty list of {role, content}", "messages");
  return v.map((m, i) => {
    const where = `messages[${i}]`;
    if (!isPlainObject(m)) throw bad(`${where} must be an object {role, content}`, where);
    const role = m.role === "developer" ? "system" : m.role;
    if (role !== "system" && role !== "user" && role !== "assistant")
      throw bad(`${where}.role must be "system", "user" or "assistant"`, `${where}.role`);
    let content = m.content;
    // the newer content-parts form: [{type: "text", text}]
    if (Array.isArray(content)) {
      if (!content.every((p) => isPlainObject(p) && p.type === "text" && typeof p.text === "string"))
        throw bad(`${where}.content: only text parts are supported`, `${where}.content`);
      // joined as vLLM joins them (chat_utils: "\n".join(texts)): before, they were glued with nothing between
      content = content.map((p) => (p as { text: string }).text).join("\n");
    }
    if (typeof content !== "string") throw bad(`${where}.content must be a string`, `${where}.content`);
    return { role, content };
  });
}

/**
 * `chat_template_kwargs` as vLLM and llama-server take it: the variables a chat request's template is rendered
 * with. This server's template reads two of them: Qwen3's `enable_thinking` (absent: the project's default, off,
 * as every prompt the tool renders) and Llama 3.1/3.2's `date_string` (the day "Today Date: ..." writes, any text,
 * as those servers pass it; absent: the template's own choice on this server's day, GOODVIBE_TEMPLATE_DATE, as the
 * built-in engine renders). A template that does not name one renders the same with it. Any other is refused, as
 * every option it cannot honour. A completions request has no template: there only an empty mapping is neutral.
 */
function chatTemplateKwargs(
  v: unknown,
  kind: ParsedRequest["kind"],
): { enableThinking: boolean; dateString?: string } {
  const off = { enableThinking: DEFAULT_ENABLE_THINKING };
  if (v === undefined || v === null) return off;
  const key = "chat_template_kwargs";
  if (!isPlainObject(v)) throw bad(`${key} must be an object`, key);
  if (kind !== "chat" && Object.keys(v).length > 0)
    throw bad(`${key} applies to chat requests only (a completions prompt is not templated)`, key);
  for (const k of Object.keys(v))
    if (k !== "enable_thinking" && k !== "date_string")
      throw bad(
        `${key}.${k} is not supported by this server (only enable_thinking and date_string)`,
        `${key}.${k}`,
        "unsupported_parameter",
      );
  const t = v.enable_thinking;
  if (t !== undefined && t !== null && typeof t !== "boolean")
    throw bad(`${key}.enable_thinking must be true or false`, `${key}.enable_thinking`);
  const d = v.date_string;
  if (d !== undefined && d !== null && typeof d !== "string")
    throw bad(`${key}.date_string must be a string (e.g. "26 Jul 2024")`, `${key}.date_string`);
  return {
    enableThinking: typeof t === "boolean" ? t : DEFAULT_ENABLE_THINKING,
    ...(typeof d === "string" ? { dateString: d } : {}),
  };
}

/**
 * `reasoning_effort` (OpenAI's; Ollama's thinking switch, which `--extra-body` sends): "none", answering without
 * reasoning, is what this server does unless chat_template_kwargs.enable_thinking is true, so it is honoured; any
 * effort would need the thinking switch (chat_template_kwargs.enable_thinking here) and is refused, not ignored, as
 * every option this server cannot honour; "none" with enable_thinking true contradicts itself.
 */
function reasoningEffort(v: unknown, enableThinking: boolean): void {
  if (v === undefined || v === null) return;
  const key = "reasoning_effort";
  if (v !== "none")
    throw bad(
      `${key} ${JSON.stringify(v)} is not supported by this server (only "none"; its thinking switch is chat_template_kwargs.enable_thinking)`,
      key,
      "unsupported_parameter",
    );
  if (enableThinking) throw bad(`${key} "none" contradicts chat_template_kwargs.enable_thinking true`, key);
}

/**
 * Check a request body against the API and the model, and turn its prompts into token ids. Throws ApiError 400
 * (404 for another model's name) naming the field.
 */
function parseRequest(
  body: unknown,
  kind: ParsedRequest["kind"],
  backend: BuiltinBackend,
  limits: Limits,
): ParsedRequest {
  if (!isPlainObject(body)) throw bad("the request body must be a JSON object", null);
  for (const [key, neutral] of UNSUPPORTED)
    if (body[key] !== undefined && body[key] !== null && !neutral(body[key]))
      throw bad(`${key} is not supported by this server`, key, "unsupported_parameter");
  if (body.model !== undefined && body.model !== null && body.model !== limits.modelName)
    throw new ApiError(
      404,
      `The model \`${String(body.model)}\` does not exist; this server serves "${limits.modelName}"`,
      "not_found_error",
      "model_not_found",
      "model",
    );

  // sampling
  const num = (key: string, ok: (v: number) => boolean, range: string): number | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v))
      throw bad(`${key} must be ${range}, got ${JSON.stringify(v)}`, key);
    return v;
  };
  const int = (key: string, lo: number, hi: number) =>
    num(key, (v) => Number.isInteger(v) && v >= lo && v <= hi, `an integer in [${lo}, ${hi}]`);
  // what a request leaves out is the folder's generation_config.json, else OpenAI's (limits.defaults), as vLLM:
  // a request without temperature is sampled unless the folder says otherwise
  const temperature =
    num("temperature", (v) => v >= 0 && v <= 2, "a number in [0, 2]") ?? limits.defaults.temperature;
  const topP = num("top_p", (v) => v > 0 && v <= 1, "a number in (0, 1]") ?? limits.defaults.topP ?? 1;
  // vLLM's extra repetition_penalty: the engine applies the folder's (generation_config.json) or none, so only that
  // value is honoured; another is refused rather than ignored
  const applied = backend.processors.repetitionPenalty ?? 1;
  const penalty = num("repetition_penalty", (v) => v > 0, "a number > 0");
  if (penalty !== undefined && penalty !== applied)
    throw bad(
      `repetition_penalty ${penalty} is not supported by this server: it applies ${applied} (the model folder's generation_config.json, or 1 for none)`,
      "repetition_penalty",
      "unsupported_parameter",
    );
  // vLLM's extra sampling parameter (-1 or 0: none)
  const topKAsked = int("top_k", -1, Number.MAX_SAFE_INTEGER);
  const topK = topKAsked !== undefined ? Math.max(0, topKAsked) : (limits.defaults.topK ?? 0);
  const seed = int("seed", 0, Number.MAX_SAFE_INTEGER) ?? randomInt(0, 2 ** 47);
  const n = int("n", 1, limits.maxBatch) ?? 1;
  // the newer name wins when it has a value (vLLM's `max_completion_tokens or max_tokens`); one sent as null, as
  // clients that spell out every field do, leaves max_tokens in force
  const maxKey =
    body.max_completion_tokens !== undefined && body.max_completion_tokens !== null
      ? "max_completion_tokens"
      : "max_tokens";
  const requestedMax = int(maxKey, 1, limits.maxTokensLimit);
  // vLLM's CompletionRequest.max_tokens defaults to 16 when the field is left out; sent as null it is None, and
  // the request then gets the chat default (get_max_tokens)
  const completionDefault = kind === "completion" && !("max_tokens" in body);

  let stop: string[] | undefined;
  if (body.stop !== undefined && body.stop !== null) {
    stop = Array.isArray(body.stop) ? body.stop : [body.stop];
    if (stop.length > MAX_STOP_SEQUENCES || !stop.every((s) => typeof s === "string" && s.length > 0))
      throw bad(`stop must be a non-empty string or a list of at most ${MAX_STOP_SEQUENCES} of them`, "stop");
  }

  // streaming
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean")
    throw bad("stream must be true or false", "stream");
  const stream = body.stream === true;
  let includeUsage = false;
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    // as OpenAI and vLLM: stream options without a stream are a mistake
    if (!stream) throw bad("stream_options is only allowed with stream: true", "stream_options");
    if (!isPlainObject(so)) throw bad("stream_options must be an object", "stream_options");
    for (const k of Object.keys(so))
      if (k !== "include_usage")
        throw bad(
          `stream_options.${k} is not supported by this server (only include_usage)`,
          `stream_options.${k}`,
          "unsupported_parameter",
        );
    const u = so.include_usage;
    if (u !== undefined && u !== null && typeof u !== "boolean")
      throw bad("stream_options.include_usage must be true or false", "stream_options.include_usage");
    includeUsage = u === true;
  }

  // prompts
  const templateVars = chatTemplateKwargs(body.chat_template_kwargs, kind);
  // vLLM's add_special_tokens: a completion's text prompt is encoded with the tokenizer's special tokens (Llama's
  // <|begin_of_text|>) unless told otherwise, as vLLM (CompletionRequest, default true) and llama-server (BOS) do
  // and as the built-in engine encodes the utility benchmarks' prompts; a chat prompt without them (ChatCompletion-
  // Request, default false: the template writes its own). Token-id prompts are taken as they are, as vLLM's.
  const ast = body.add_special_tokens;
  if (ast !== undefined && ast !== null && typeof ast !== "boolean")
    throw bad("add_special_tokens must be true or false", "add_special_tokens");
  const addSpecialTokens = typeof ast === "boolean" ? ast : kind === "completion";
  reasoningEffort(body.reasoning_effort, templateVars.enableThinking);
  let prompts: number[][];
  let promptParam: string;
  if (kind === "chat") {
    promptParam = "messages";
    const messages = chatMessages(body.messages);
    prompts = [
      backend.tokenizer!.encode(
        backend.chatPrompt(messages, templateVars.enableThinking, templateVars.dateString),
        { addSpecialTokens },
      ),
    ];
  } else {
    promptParam = "prompt";
    const p = body.prompt;
    const single = typeof p === "string" || (Array.isArray(p) && p.length > 0 && isTokenId(p[0]));
    const list: unknown[] = single ? [p] : Array.isArray(p) ? p : [];
    if (list.length === 0)
      throw bad("prompt must be a string, a list of token ids, or a non-empty list of those", "prompt");
    prompts = list.map((one, i) => {
      const where = single ? "prompt" : `prompt[${i}]`;
      if (typeof one === "string") {
        if (one.length === 0) throw bad(`${where} is empty`, "prompt");
        return backend.tokenizer!.encode(one, { addSpecialTokens });
      }
      if (!Array.isArray(one)) throw bad(`${where} must be a string or a list of token ids`, "prompt");
      if (one.length === 0) throw bad(`${where} is empty`, "prompt");
      for (const [j, t] of one.entries())
        if (!isTokenId(t) || t < 0 || t >= limits.vocabSize)
          throw bad(
            `${where}[${j}] = ${JSON.stringify(t)} is not a token id of this model (integers in [0, ${limits.vocabSize}))`,
            "prompt",
          );
      return one as number[];
    });
  }
  if (prompts.length * n > limits.maxBatch)
    throw bad(`at most ${limits.maxBatch} completions per request (prompts × n)`, "n");

  // context: every prompt and its completion must fit
  const longest = Math.max(...prompts.map((ids) => ids.length));
  const none = prompts.findIndex((ids) => ids.length === 0);
  if (none >= 0)
    throw bad(
      `the ${promptParam}${prompts.length > 1 ? `[${none}]` : ""} is empty after tokenization`,
      promptParam,
    );
  const room = limits.context - longest;
  if (requestedMax !== undefined && requestedMax > room)
    throw bad(
      `This model's maximum context length is ${limits.context} tokens. However, you requested ` +
        `${longest + requestedMax} tokens (${longest} in the ${promptParam}, ${requestedMax} for the completion). ` +
        `Please reduce the length of the ${promptParam} or ${maxKey}.`,
      promptParam,
      "context_length_exceeded",
    );
  if (room < 1)
    throw bad(
      `This model's maximum context length is ${limits.context} tokens, and the ${promptParam} has ${longest}: ` +
        `no room left for a completion.`,
      promptParam,
      "context_length_exceeded",
    );
  const maxTokens =
    requestedMax ??
    Math.min(
      completionDefault ? DEFAULT_COMPLETION_MAX_TOKENS : (limits.defaults.maxTokens ?? Infinity),
      room,
      limits.maxTokensLimit,
    );
  return { kind, prompts, n, maxTokens, temperature, topP, topK, seed, stop, stream, includeUsage };
}

// ---------------------------------------------------------------- the queue

interface Job {
  req: ParsedRequest;
  /** Told of each token of each row (not end-of-sequence); true ends the row (its stop string). */
  onToken: ((row: number, token: number) => boolean) | undefined;
  controller: AbortController;
  resolve: (rows: number[][]) => void;
  reject: (e: unknown) => void;
}

/** One generation at a time (the engine is single-stream), a bounded line of waiting requests. */
class Engine {
  private running: Job | null = null;
  private readonly waiting: Job[] = [];
  private closed = false;
  constructor(
    private readonly backend: BuiltinBackend,
    private readonly maxQueue: number,
    /** undefined: the whole prompt in one pass */
    private readonly prefillChunk: number | undefined,
  ) {}

  load() {
    return { running: this.running ? 1 : 0, queued: this.waiting.length };
  }

  submit(
    req: ParsedRequest,
    clientGone: AbortSignal,
    onToken?: (row: number, token: number) => boolean,
  ): Promise<number[][]> {
    if (this.closed) throw shuttingDown();
    if (this.running && this.waiting.length >= this.maxQueue)
      throw new ApiError(
        429,
        `the server is busy: one request is generating and ${this.waiting.length} are waiting; retry later`,
        "rate_limit_error",
        "queue_full",
        null,
        { "retry-after": "1" },
      );
    return new Promise((resolve, reject) => {
      const job: Job = { req, onToken, controller: new AbortController(), resolve, reject };
      clientGone.addEventListener(
        "abort",
        () => this.cancel(job, new InterruptedError("client disconnected")),
        {
          once: true,
        },
      );
      this.waiting.push(job);
      this.pump();
    });
  }

  private cancel(job: Job, why: unknown): void {
    const i = this.waiting.indexOf(job);
    if (i >= 0) {
      this.waiting.splice(i, 1);
      job.reject(why);
    } else job.controller.abort(why);
  }

  private pump(): void {
    if (this.running || this.waiting.length === 0) return;
    const job = this.waiting.shift()!;
    this.running = job;
    const r = job.req;
    const rows = r.prompts.flatMap((ids) => Array.from({ length: r.n }, () => ids));
    // on the next turn: the request handler returns (a stream's head goes out) before any decoding blocks the thread
    new Promise<void>((started) => setImmediate(started))
      .then(() =>
        // (a request cancelled in between is not started)
        job.controller.signal.throwIfAborted(),
      )
      .then(() =>
        this.backend.generateBatchAsync(rows, {
          maxNewTokens: r.maxTokens,
          temperature: r.temperature,
          topP: r.topP,
          topK: r.topK,
          seed: r.seed,
          signal: job.controller.signal,
          onToken: job.onToken,
          prefillChunk: this.prefillChunk,
        }),
      )
      .then(job.resolve, (e) => job.reject(job.controller.signal.aborted ? job.controller.signal.reason : e))
      .finally(() => {
        this.running = null;
        this.pump();
      });
  }

  /** Refuse new work; answer the waiting and the running request with 503 (the running one within a token). */
  close(): void {
    this.closed = true;
    for (const job of this.waiting.splice(0)) job.reject(shuttingDown());
    this.running?.controller.abort(shuttingDown());
  }
}

const shuttingDown = () =>
  new ApiError(503, "the server is shutting down", "server_error", "shutting_down", null, {
    connection: "close",
  });

// ---------------------------------------------------------------- the server

function checkOptions(opts: ServeOptions): void {
  const port = opts.port ?? 8000;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new InputError(`serve: port must be an integer in [0, 65535], got ${opts.port}`);
  for (const [k, v] of [
    ["maxBodyBytes", opts.maxBodyBytes],
    ["maxQueue", opts.maxQueue],
    ["maxBatch", opts.maxBatch],
    ["maxTokensLimit", opts.maxTokensLimit],
    ["prefillChunk", opts.prefillChunk],
  ] as const) {
    const zeroOk = k === "maxQueue" || k === "prefillChunk";
    if (v !== undefined && (!Number.isInteger(v) || v < (zeroOk ? 0 : 1)))
      throw new InputError(`serve: ${k} must be a ${zeroOk ? "non-negative" : "positive"} integer, got ${v}`);
  }
  if (opts.apiKey !== undefined && opts.apiKey.length === 0)
    throw new InputError("serve: the API key is empty (leave it unset to serve without one)");
  if (!opts.modelName) throw new InputError("serve: the model name is empty");
}

/** Listen, mapping the system's errors on a bad host or port to a clear InputError. */
export async function listenOn(server: net.Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      const why: Record<string, string> = {
        EADDRINUSE: `port ${port} is already in use on ${host}`,
        EACCES: `no permission to listen on ${where} (ports below 1024 need privileges)`,
        EADDRNOTAVAIL: `${host} is not an address of this machine`,
        ENOTFOUND: `cannot resolve host "${host}"`,
        EAI_AGAIN: `cannot resolve host "${host}" (DNS lookup failed)`,
        EAI_FAIL: `cannot resolve host "${host}"`,
        EINVAL: `cannot listen on ${where}`,
      };
      reject(
        new InputError(`serve: ${why[e.code ?? ""] ?? `cannot listen on ${where}: ${e.message}`}`, {
          cause: e,
        }),
      );
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

function sameKey(given: string, key: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(key).digest();
  return timingSafeEqual(a, b);
}

export async function serveBuiltin(backend: BuiltinBackend, opts: ServeOptions): Promise<RunningServer> {
  checkOptions(opts);
  if (!backend.tokenizer) throw new InputError("serve: the backend needs a tokenizer");
  const host = opts.host ?? "127.0.0.1";
  const context = backend.model.cfg.maxPositionEmbeddings;
  const limits: Limits = {
    modelName: opts.modelName,
    vocabSize: backend.model.cfg.vocabSize,
    context,
    maxTokensLimit: Math.min(opts.maxTokensLimit ?? 4096, context),
    maxBatch: opts.maxBatch ?? 16,
    defaults: opts.samplingDefaults ?? OPENAI_SAMPLING_DEFAULTS,
  };
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const prefillChunk = opts.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
  const engine = new Engine(backend, opts.maxQueue ?? DEFAULT_MAX_QUEUE, prefillChunk || undefined);
  const allowAnyHost = (opts.allowedHosts ?? []).includes("*");
  const allowed = new Set(
    [
      "localhost",
      "127.0.0.1",
      "::1",
      ...(isWildcard(host) ? [] : [hostName(host)]),
      ...(opts.allowedHosts ?? []),
    ]
      .filter((h) => h !== "*")
      .map(hostName),
  );
  const hostAllowed = (name: string) => allowAnyHost || allowed.has(name) || isLoopbackHost(name);
  let stopping = false;

  // A missing Host is refused below like a wrong one (as JSON), not by Node's plain-text 400.
  const server = http.createServer({ requireHostHeader: false }, async (req, res) => {
    const started = Date.now();
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      if (res.headersSent || res.destroyed) return;
      const text = JSON.stringify(body);
      res.writeHead(status, {
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(text)),
        ...(stopping ? { connection: "close" } : {}),
        ...headers,
      });
      res.end(text);
      logLine(status);
    };
    const logLine = (status: number) =>
      opts.log?.(`${req.method} ${req.url} ${status} ${Date.now() - started}ms`);
    let stream: EventStream | null = null;
    const sendError = (e: ApiError) =>
      send(
        e.status,
        { error: { message: e.message, type: e.type, param: e.param, code: e.code } },
        e.headers,
      );
    // the client hung up before the answer: cancel its generation
    const clientGone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) clientGone.abort();
    });

    try {
      // 1. Host and Origin: a browser page on another site (DNS rebinding, CSRF) is refused first.
      const hostHeader = req.headers.host ?? "";
      if (!hostAllowed(hostName(hostHeader)))
        throw new ApiError(
          403,
          `Host "${hostHeader}" is not allowed; allowed: ${[...allowed].join(", ")} (start serve with --allowed-host ${hostName(hostHeader) || "NAME"} to add it)`,
          "permission_error",
          "host_not_allowed",
        );
      const origin = req.headers.origin;
      if (origin !== undefined) {
        let originHost = "";
        try {
          originHost = hostName(new URL(origin).host);
        } catch {
          // "null" or garbage: refused below
        }
        if (!originHost || !hostAllowed(originHost))
          throw new ApiError(
            403,
            `Origin "${origin}" is not allowed`,
            "permission_error",
            "origin_not_allowed",
          );
      }

      // 2. Route (query strings are ignored, as OpenAI's API does).
      const pathname = new URL(req.url ?? "/", "http://server").pathname.replace(/\/+$/, "") || "/";
      const routes: Record<string, string> = {
        "/health": "GET",
        "/v1/models": "GET",
        [`/v1/models/${encodeURIComponent(opts.modelName)}`]: "GET",
        "/v1/completions": "POST",
        "/v1/chat/completions": "POST",
      };
      const method = routes[pathname];

      // 3. API key (all but /health).
      if (opts.apiKey !== undefined && pathname !== "/health") {
        const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "");
        if (!m || !sameKey(m[1]!.trim(), opts.apiKey))
          throw new ApiError(
            401,
            m
              ? "Incorrect API key provided"
              : 'Missing API key: send the header "Authorization: Bearer <key>"',
            "authentication_error",
            "invalid_api_key",
            null,
            { "www-authenticate": "Bearer" },
          );
      }
      if (!method)
        throw new ApiError(404, `no route ${req.method} ${pathname}`, "not_found_error", "route_not_found");
      if (req.method !== method && !(method === "GET" && req.method === "HEAD"))
        throw new ApiError(
          405,
          `${pathname} takes ${method}, not ${req.method}`,
          "invalid_request_error",
          "method_not_allowed",
          null,
          { allow: method },
        );

      if (method === "GET") {
        if (pathname === "/health") return send(200, { status: "ok", ...engine.load() });
        // vLLM's ModelCard: `created` is the time of the request (its default_factory int(time.time())), and
        // max_model_len the context a prompt and its completion share
        const model = {
          id: opts.modelName,
          object: "model",
          created: Math.floor(Date.now() / 1000),
          owned_by: "goodvibe",
          max_model_len: context,
        };
        return send(200, pathname === "/v1/models" ? { object: "list", data: [model] } : model);
      }

      // 4. Body: JSON, identity-encoded, bounded.
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
      if (type !== "application/json")
        throw new ApiError(
          415,
          `Content-Type must be application/json, got ${type ? `"${type}"` : "none"}`,
          "invalid_request_error",
          "unsupported_media_type",
        );
      const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
      if (encoding !== "identity")
        throw new ApiError(
          415,
          `Content-Encoding "${encoding}" is not supported`,
          "invalid_request_error",
          "unsupported_media_type",
        );
      const raw = await readBody(req, maxBody);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch (e) {
        throw bad(`the body is not JSON: ${(e as Error).message}`, null, "invalid_json");
      }

      // 5. Validate, queue, generate, answer.
      const kind = pathname === "/v1/completions" ? "completion" : "chat";
      const parsed = parseRequest(body, kind, backend, limits);
      // each row's text as it is generated: a row ends at its first stop string, as vLLM's do, rather than
      // generating on to max_tokens (holding the single-stream engine) and being cut after
      const texts = rowTexts(parsed, backend);
      if (parsed.stream) stream = new EventStream(res, parsed, opts.modelName, () => logLine(200));
      const s = stream;
      const pending = engine.submit(
        parsed,
        clientGone.signal,
        parsed.stop || s
          ? (row, token) => {
              const over = texts[row]!.push(token);
              s?.update(row, texts[row]!.ready());
              return over;
            }
          : undefined,
      ); // (a full queue throws here, answered 429 before a stream begins)
      s?.open();
      const rows = await pending;
      const done = finish(parsed, rows, texts, backend);
      if (s) return s.end(done);
      return send(200, answer(parsed, done, opts.modelName));
    } catch (e) {
      if (e instanceof InterruptedError && clientGone.signal.aborted) return; // nobody to answer
      // a stream under way already said 200: the error is its last event
      const fail = (err: ApiError) => (stream?.opened ? stream.fail(err) : sendError(err));
      if (e instanceof ApiError) return fail(e);
      if (e instanceof InterruptedError) return fail(shuttingDown());
      if (e instanceof GoodVibeError && e.exitCode === 2) return fail(bad(e.message, null));
      process.stderr.write(`serve: internal error on ${req.method} ${req.url}: ${(e as Error).stack ?? e}\n`);
      return fail(
        new ApiError(500, `internal error: ${(e as Error).message}`, "server_error", "internal_error"),
      );
    }
  });
  // Requests Node cannot parse are answered in the same JSON shape.
  server.on("clientError", (e: NodeJS.ErrnoException, socket: net.Socket) => {
    if (!socket.writable) return void socket.destroy();
    const [status, reason] =
      e.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large"]
        : e.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout"]
          : [400, "Bad Request"];
    const text = JSON.stringify({
      error: {
        message: `malformed HTTP request: ${e.message}`,
        type: "invalid_request_error",
        param: null,
        code: "bad_http",
      },
    });
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
    );
  });
  // slow or stuck clients do not hold a connection for ever
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 256;

  await listenOn(server, host, opts.port ?? 8000);
  const addr = server.address() as AddressInfo;
  const urlHost = net.isIPv6(host) ? `[${host}]` : host;

  let stopped: Promise<void> | null = null;
  return {
    server,
    url: `http://${urlHost}:${addr.port}`,
    allowedHosts: allowAnyHost ? ["*"] : [...allowed],
    load: () => engine.load(),
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        stopping = true;
        engine.close();
        server.close(() => resolve());
        server.closeIdleConnections();
        // answers already sent go out; whatever is still open after a moment is cut
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      });
      return stopped;
    },
  };
}

/** After the limit, how much more of a body is read and dropped before the 413 goes out anyway, and for how long. */
const DRAIN_BYTES = 64 << 20;
const DRAIN_MS = 10_000;

/**
 * The body, at most `limit` bytes. Past that: 413, answered once the client has sent the rest (read and dropped, up
 * to DRAIN_BYTES or DRAIN_MS). Answering first and closing would leave its bytes unread, and Linux resets such a
 * connection: a client still sending then sees EPIPE or ECONNRESET instead of the answer.
 */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let timer: NodeJS.Timeout | undefined;
    const refuse = () => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      // whatever still comes is dropped by the stream, which keeps flowing with no listener
      reject(
        new ApiError(
          413,
          `the request body is larger than ${limit} bytes`,
          "invalid_request_error",
          "request_too_large",
          null,
          { connection: "close" },
        ),
      );
    };
    const overLimit = () => {
      over = true;
      chunks.length = 0;
      timer = setTimeout(refuse, DRAIN_MS).unref();
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (over) {
        if (size - limit > DRAIN_BYTES) refuse();
      } else if (size > limit) overLimit();
      else chunks.push(c);
    };
    const onEnd = () => (over ? refuse() : resolve(Buffer.concat(chunks)));
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      // more than the drain takes: answer now (the client may see a reset; no honest client sends that much)
      if (declared - limit > DRAIN_BYTES) return refuse();
      overLimit();
    }
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", reject);
  });
}

/** One RowText per generated row (prompts × n, in that order), watching for the request's stop strings. */
function rowTexts(r: ParsedRequest, backend: BuiltinBackend): RowText[] {
  // the answer's text is the tokenizer's decoding (finish), its clean-up of spaces included
  return Array.from({ length: r.prompts.length * r.n }, () => rowTextOf(backend.tokenizer!, r.stop));
}

interface Finished {
  /** Each row's text and why it ended. */
  choices: { text: string; finishReason: "stop" | "length" }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

function finish(r: ParsedRequest, rows: number[][], texts: RowText[], backend: BuiltinBackend): Finished {
  let completionTokens = 0;
  const choices = rows.map((ids, index) => {
    const full = backend.tokenizer!.decode(ids, { skipSpecialTokens: true });
    const text = cutAtStop(full, r.stop);
    // the engine ends a row before max_tokens only at its stop string or at the end-of-sequence token, which it
    // drops from the ids; that token was generated all the same, and vLLM's usage counts it (its output token_ids
    // hold it), as OpenAI bills it
    const byStop = texts[index]!.stopAt !== null;
    const byEos = !byStop && ids.length < r.maxTokens;
    completionTokens += ids.length + (byEos ? 1 : 0);
    const stopped = byStop || byEos || text.length < full.length;
    return { text, finishReason: stopped ? ("stop" as const) : ("length" as const) };
  });
  const promptTokens = r.prompts.reduce((a, p) => a + p.length, 0);
  return {
    choices,
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}

const completionId = (r: ParsedRequest) => `${r.kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;

function answer(r: ParsedRequest, done: Finished, model: string): unknown {
  return {
    id: completionId(r),
    object: r.kind === "chat" ? "chat.completion" : "text_completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: done.choices.map(({ text, finishReason: finish_reason }, index) =>
      r.kind === "chat"
        ? {
            index,
            message: { role: "assistant", content: text, refusal: null },
            finish_reason,
            logprobs: null,
          }
        : { index, text, finish_reason, logprobs: null },
    ),
    usage: done.usage,
  };
}

/**
 * A streamed answer: server-sent events in OpenAI's chunk format, as vLLM sends them. Chat: `chat.completion.chunk`
 * objects, each choice's first delta `{role: "assistant", content: ""}`, then `{content}` pieces; completions:
 * `text_completion` objects with `text` pieces. Each choice ends with a chunk carrying its finish_reason (an empty
 * delta / text); with stream_options.include_usage every chunk has `usage: null` and a last one, `choices: []`,
 * the usage. Then `data: [DONE]`. Text is sent as whole characters, and the end of it that could still become a
 * stop string is held back until it cannot (RowText.ready).
 */
class EventStream {
  private readonly id: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly sent: string[];
  opened = false;

  constructor(
    private readonly res: http.ServerResponse,
    private readonly r: ParsedRequest,
    private readonly model: string,
    private readonly onEnd: () => void,
  ) {
    this.id = completionId(r);
    this.sent = new Array<string>(r.prompts.length * r.n).fill("");
  }

  /** The 200 head and each chat choice's role; once. */
  open(): void {
    if (this.opened) return;
    this.opened = true;
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no", // a proxy in front (nginx) passes each event on at once
    });
    if (this.r.kind === "chat")
      for (let row = 0; row < this.sent.length; row++)
        this.chunk(row, { role: "assistant", content: "" }, null);
  }

  private event(data: unknown): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    this.res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  }

  private chunk(index: number, piece: string | Record<string, string>, finish_reason: string | null): void {
    const choice =
      this.r.kind === "chat"
        ? {
            index,
            delta: typeof piece === "string" ? (piece ? { content: piece } : {}) : piece,
            logprobs: null,
            finish_reason,
          }
        : { index, text: piece, logprobs: null, finish_reason };
    this.event({ ...this.head(), choices: [choice], ...(this.r.includeUsage ? { usage: null } : {}) });
  }

  /** The fields every chunk of this answer begins with. */
  private head() {
    return {
      id: this.id,
      object: this.r.kind === "chat" ? "chat.completion.chunk" : "text_completion",
      created: this.created,
      model: this.model,
    };
  }

  /** Row `row` can show `ready` now: send what of it was not sent. */
  update(row: number, ready: string): void {
    this.open(); // (opened already: the first decoding step runs on a later turn than the request's)

    const sent = this.sent[row]!;
    if (ready.length <= sent.length || !ready.startsWith(sent)) return;
    this.chunk(row, ready.slice(sent.length), null);
    this.sent[row] = ready;
  }

  /** The rest of each row's final text, its finish_reason, the usage when asked, and [DONE]. */
  end(done: Finished): void {
    done.choices.forEach(({ text, finishReason }, row) => {
      const sent = this.sent[row]!;
      if (text.length > sent.length && text.startsWith(sent)) this.chunk(row, text.slice(sent.length), null);
      this.chunk(row, "", finishReason);
    });
    if (this.r.includeUsage) this.event({ ...this.head(), choices: [], usage: done.usage });
    this.close();
  }

  /** An error after the stream began (the server stopping): an error event in OpenAI's shape, then [DONE]. */
  fail(e: ApiError): void {
    this.event({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
    this.close();
  }

  private close(): void {
    this.event("[DONE]");
    if (!this.res.destroyed && !this.res.writableEnded) this.res.end();
    this.onEnd();
  }
}
