/**
 * Generation through OpenAI-compatible HTTP servers (vLLM, llama-server, Ollama, …):
 * `POST {base}/completions` for raw prompts and `POST {base}/chat/completions` for chat.
 *
 * - Several base URLs are used round-robin (a fleet); a retry goes to the next one.
 * - At most `concurrency` requests are in flight (a semaphore), across all servers.
 * - 429, 5xx, connection resets/refusals and per-request timeouts are retried with exponential backoff
 *   and jitter (honouring Retry-After), at most `maxRetries` times; other statuses fail at once.
 * - Greedy by default (temperature 0); a seed is sent when given.
 * - A stop request (`signal`: Ctrl-C, SIGTERM) aborts the requests in flight and the waits between retries at
 *   once, with InterruptedError: a hung server does not hold the process for the timeout times the retries.
 *
 * Log-likelihoods use the legacy completions API with `echo: true, logprobs: 1`: the server returns
 * per-token log-probabilities of the prompt itself. vLLM supports this; llama-server and Ollama do not
 * return prompt log-probabilities, and the call fails with a clear error. As lm-evaluation-harness does,
 * we ask for `max_tokens: 1` by default (some servers reject 0) and drop every token past the prompt.
 * Continuation tokens are found by character offset (`text_offset`), so a token that straddles the
 * context/continuation boundary counts towards the continuation. The offsets are Unicode code points, as a Python
 * server counts them (vLLM: the running len() of the token strings), not JavaScript's UTF-16 units: the boundary and
 * the prompt's end are counted alike, else a character beyond U+FFFF (an emoji) before the boundary moved it.
 *
 * A context and continuation longer than the server's context per request (vLLM's max_model_len) is refused by the
 * server. With the model's tokenizer (option `tokenizer`), the pair is encoded as the local engine encodes it
 * (encodeLoglikelihoodPair) and cut as it cuts it (loglikelihoodWindow, lm-evaluation-harness's rule: context
 * tokens dropped from the left, the continuation kept whole), to the window the server can echo (max_model_len
 * less max_tokens, from `maxModelLen` or the servers' /v1/models: contextPerRequest), and sent as token ids; the
 * continuation's log-probabilities are then its last positions'. The window is the server's: where it is smaller
 * than the local engine's (max_position_embeddings + 1 tokens), a pair longer than it keeps fewer context tokens
 * than locally.
 * Without a tokenizer, the server's refusal of a long pair is an error naming the benchmark item.
 */
import { getEventListeners, getMaxListeners, setMaxListeners } from "node:events";
import { GoodVibeError, InputError } from "../../errors.js";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_MAX_RETRIES,
  DEFAULT_PROMPT_COUNT_TOLERANCE_PCT,
  DEFAULT_REQUEST_TIMEOUT_S,
} from "./http-config.js";
import { interrupted } from "../../util/stop.js";
import { allOrCancel } from "../../util/fan-out.js";
import { nearestKey } from "../../util/suggest.js";
import type { ChatMessage } from "../../io/tokenizer.js";
import type { LoglikelihoodRequest, LoglikelihoodResult } from "../utility/model.js";
import {
  cutAtStop,
  encodeLoglikelihoodPair,
  loglikelihoodWindow,
  utilityModelFrom,
  type UtilityModel,
} from "../utility/model.js";
import type { GenerateOptions, GenerationBackend } from "./backend.js";
import { templateDateSetting, templateDateString } from "../../io/chat-template.js";
import { canonicalJson } from "../../io/hash.js";
import {
  contextFix,
  isTokenIds,
  promptMargin,
  promptOpening,
  promptTokenTolerance,
  type PromptContext,
  type ServerKind,
} from "./prompt-fit.js";

export interface HttpBackendOptions {
  /** One or more server roots, e.g. "http://10.0.0.5:8000" or "http://10.0.0.5:8000/v1" ("/v1" is added when missing). */
  baseUrls: string | string[];
  model: string;
  /** API key; default: the environment variable named by `apiKeyEnv` (default OPENAI_API_KEY), if set. */
  apiKey?: string;
  apiKeyEnv?: string;
  /** Requests in flight at once, over all servers. Default DEFAULT_CONCURRENCY (16). */
  concurrency?: number;
  /** Retries after the first attempt. Default DEFAULT_MAX_RETRIES (4). */
  maxRetries?: number;
  /**
   * First backoff delay; doubled each retry, capped by retryMaxMs, then jittered to [50%, 100%]. Default 500. A
   * longer Retry-After from the server is waited instead, up to timeoutMs.
   */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Per-attempt timeout. Default DEFAULT_REQUEST_TIMEOUT_S (300 s). */
  timeoutMs?: number;
  /** max_tokens for loglikelihood requests: 1 (harness, portable) or 0 (where the server allows it). */
  loglikelihoodMaxTokens?: 0 | 1;
  /**
   * The served model's tokenizer: generateTokens re-encodes answers with it, and log-likelihoods are encoded and cut
   * to the server's window with it as the local engine cuts them (see the file's comment).
   */
  tokenizer?: { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] };
  /**
   * The servers' context per request (vLLM's max_model_len), for log-likelihoods with a tokenizer; default: the
   * least the servers' GET /v1/models report for `model` (serverWindow). Refused when more than a server reports.
   */
  maxModelLen?: number;
  /**
   * Merged into every request body (e.g. {"reasoning_effort": "none"} for Ollama), but for its
   * `chat_template_kwargs`, which goes with chat requests only: a completion (a raw prompt, a log-likelihood) has no
   * template. Its keys win over the thinking setting and the day a chat request sends there, and one set to null is
   * left out (a server that refuses `date_string`: `{"chat_template_kwargs": {"date_string": null}}`);
   * `"chat_template_kwargs": null` sends none (for a server that refuses the field).
   */
  extraBody?: Record<string, unknown>;
  /**
   * The day chat templates render on, "YYYY-MM-DD" or "today": sent with every chat request as
   * chat_template_kwargs.date_string ("26 Jul 2024"); default the process's setting (GOODVIBE_TEMPLATE_DATE, else
   * DEFAULT_TEMPLATE_DATE, io/chat-template.ts), the one the built-in engine renders with.
   */
  templateDate?: string;
  /**
   * With `tokenizer`: how many fewer prompt tokens than it counts a server may report (usage.prompt_tokens) before the
   * answer is refused as one to a cut prompt, in percent of the prompt's tokens, besides 2 per message (prompt-fit.ts
   * promptTokenTolerance). Default DEFAULT_PROMPT_COUNT_TOLERANCE_PCT (1); more for a server whose tokenizer counts
   * fewer (a GGUF's), 0 to 100.
   */
  promptCountTolerancePct?: number;
  /** Source of jitter in [0, 1); injectable for tests. */
  random?: () => number;
  /** Stops every request of this backend (Ctrl-C): in flight ones are aborted, with InterruptedError. */
  signal?: AbortSignal;
  /**
   * Told of each failed attempt that will be retried, before the wait: a user watching a run learns that the
   * server is failing or hanging instead of seeing nothing until the last attempt gives up.
   */
  onRetry?: (r: HttpRetry) => void;
}

/** A failed attempt about to be retried. */
export interface HttpRetry {
  url: string;
  /** attempts made so far (1 after the first) and the most there will be */
  attempt: number;
  attempts: number;
  /** what went wrong: "HTTP 503 …", "no answer within 300000 ms", "network error ECONNRESET" */
  problem: string;
  /** the wait before the next attempt */
  waitMs: number;
}

/** How often retries to one URL are summarised after its first warning (retryWarning). */
export const RETRY_SUMMARY_MS = 30_000;

/** What a retry is counted under in a summary: "HTTP 503", "no answer within 300000 ms", "network error ECONNRESET". */
function retryKind(problem: string): string {
  return /^HTTP \d+/.exec(problem)?.[0] ?? problem.slice(0, 80);
}

/** onRetry for a run's log, and what is left to say when the run ends. */
export interface RetryWarner {
  (r: HttpRetry): void;
  /** the retries not yet said (a summary line per URL), e.g. when the run ends or fails */
  flush(): void;
}

/**
 * onRetry for a run's log. A retry is a full warning (the problem with the start of the server's answer, the
 * attempt, the wait) when it is the first to its URL, when it reaches a later attempt than any said for that URL, or
 * when the last line for that URL is `intervalMs` old; the others are counted by kind and said with the next line,
 * or by flush(). One request retried (generate) gets a line per retry as before; a fleet of requests in flight
 * (eval --url: 16 by default) failing together gets a line per attempt level, not one per request and attempt.
 */
export function retryWarning(
  log: { warn(msg: string): void },
  opts: { intervalMs?: number; now?: () => number } = {},
): RetryWarner {
  const interval = opts.intervalMs ?? RETRY_SUMMARY_MS;
  const now = opts.now ?? Date.now;
  const perUrl = new Map<string, { saidAt: number; maxAttempt: number; counts: Map<string, number> }>();
  const pending = (counts: Map<string, number>): string => {
    const n = [...counts.values()].reduce((a, b) => a + b, 0);
    return `${n} more failed attempt${n === 1 ? "" : "s"} retried since the last line (${[...counts]
      .map(([k, c]) => `${k} ×${c}`)
      .join(", ")})`;
  };
  const warner = ((r: HttpRetry) => {
    const st = perUrl.get(r.url);
    if (st && r.attempt <= st.maxAttempt && now() - st.saidAt < interval) {
      const kind = retryKind(r.problem);
      st.counts.set(kind, (st.counts.get(kind) ?? 0) + 1);
      return;
    }
    const also = st && st.counts.size > 0 ? `; also ${pending(st.counts)}` : "";
    log.warn(
      `${r.url}: ${r.problem.slice(0, 200)}; attempt ${r.attempt} of ${r.attempts}, retrying in ` +
        `${(r.waitMs / 1000).toFixed(1)} s${also}` +
        (st
          ? ""
          : ` (other requests' retries to it are counted and summarised, a line at most every ${Math.round(interval / 1000)} s unless one reaches a later attempt)`),
    );
    perUrl.set(r.url, {
      saidAt: now(),
      maxAttempt: Math.max(st?.maxAttempt ?? 0, r.attempt),
      counts: new Map(),
    });
  }) as RetryWarner;
  warner.flush = () => {
    for (const [url, st] of perUrl) {
      if (st.counts.size === 0) continue;
      log.warn(`${url}: ${pending(st.counts)}`);
      st.counts.clear();
      st.saidAt = now();
    }
  };
  return warner;
}

/** A request that failed for good: names the URL, the status (or network error) and the attempts made. */
export class HttpBackendError extends GoodVibeError {
  constructor(
    message: string,
    readonly url: string,
    readonly status: number | null,
    readonly attempts: number,
  ) {
    super(message, 3);
    this.name = "HttpBackendError";
  }
}

/**
 * A server that gives no log-probabilities of the prompt (`echo: true, logprobs` on /v1/completions): llama-server
 * refuses echo ("Only no echo is supported"; ggml-org/llama.cpp#8942, #27174), Ollama's /v1/completions answers
 * without the prompt's positions, `goodvibe serve` refuses both fields; vLLM gives them. Log-likelihood benchmarks
 * (ARC, MMLU, the held-out real-code loss) cannot be scored there: the caller says what to do instead.
 */
export class NoPromptLogprobsError extends HttpBackendError {
  constructor(
    readonly model: string,
    url: string,
    why: string,
    /** what makes this server give them, where it can (a vLLM that refuses them with prefix caching on) */
    readonly remedy?: string,
  ) {
    super(
      `${url} (model "${model}") gives no log-probabilities of the prompt (/v1/completions with echo and ` +
        `logprobs): ${why.slice(0, 300)}. ${remedy ?? "vLLM gives them; llama-server and Ollama do not"}`,
      url,
      null,
      1,
    );
    this.name = "NoPromptLogprobsError";
  }
}

/**
 * vLLM's V1 engine before vllm-project/vllm#13949 refuses prompt log-probabilities while prefix caching is on, its
 * default (400 "Prefix caching with prompt logprobs not yet supported on VLLM V1.": vllm-project/vllm#13409): the
 * server is vLLM, and a restart without prefix caching or a later vLLM gives them.
 */
const VLLM_PREFIX_CACHING = /prefix caching with prompt logprobs/i;

class Semaphore {
  private waiting: (() => void)[] = [];
  private active = 0;
  constructor(private readonly limit: number) {}
  /** A slot; true when it had to wait for one (handed over by a request that ended). */
  async acquire(): Promise<boolean> {
    if (this.active < this.limit) {
      this.active++;
      return false;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    return true;
  }
  release(): void {
    const next = this.waiting.shift();
    if (next)
      next(); // the slot passes straight to the next waiter
    else this.active--;
  }
}

/**
 * A server's 400 for a prompt longer than its context per request: vLLM's OpenAI layer ("This model's maximum context
 * length is ...") and input processor ("... is longer than the maximum model length of ...",
 * vllm/v1/engine/processor.py _validate_model_input), llama-server's ("the request exceeds the available context
 * size", exceed_context_size_error).
 */
const CONTEXT_REFUSAL =
  /context length|context_length|maximum model length|exceeds? the available context size/i;

const RETRYABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

function networkErrorCode(e: unknown): string | undefined {
  const err = e as { name?: string; code?: string; cause?: { code?: string; name?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return "timeout";
  return err?.cause?.code ?? err?.code;
}

/**
 * Why a request got no answer, in words a user reads ("connection refused (ECONNREFUSED)"): fetch's own message is
 * "fetch failed" whatever happened, its cause says what.
 */
function noAnswerWhy(e: unknown, code: string | undefined): string {
  const words: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ECONNRESET: "connection reset",
    UND_ERR_SOCKET: "connection closed by the server",
    EPIPE: "connection closed by the server",
    ENOTFOUND: "no such host",
  };
  const cause = (e as { cause?: { message?: unknown } })?.cause?.message;
  // undici's word for a port on the Fetch standard's blocklist (6000, 6665-6669, 10080, …): no request is made
  if (cause === "bad port")
    return "bad port: Node's fetch makes no request to a port on the Fetch standard's blocklist (6000, 6665-6669, 10080 among others); serve on another port";
  const what =
    (code && words[code]) ??
    (typeof cause === "string" && cause ? cause : ((e as Error)?.message ?? String(e)));
  return `${what}${code ? ` (${code})` : ""}`;
}

/** Wait `ms`, or less when one of `stops` fires or has already fired (an aborted signal fires no more events). */
function sleep(ms: number, stops: readonly AbortSignal[] = []): Promise<void> {
  if (stops.some((s) => s.aborted)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const s of stops) s.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of stops) s.addEventListener("abort", done, { once: true });
  });
}

/**
 * One signal that fires when any of `signals` does (AbortSignal.any, which Node 20.0-20.2 lack); `dispose` takes its
 * listeners off the long-lived stop signal once the request is over.
 */
function anySignal(signals: readonly AbortSignal[]): { signal: AbortSignal; dispose: () => void } {
  const c = new AbortController();
  const dispose = () => c.abort();
  for (const s of signals) {
    if (s.aborted) {
      c.abort(s.reason);
      break;
    }
    // one listener per request in flight on the run's long-lived stop signal (16 with the default --concurrency,
    // twice that with a --base on servers), each removed by dispose: above Node's default of 10 it warned of a leak
    // ("MaxListenersExceededWarning") that cannot be one
    if (getEventListeners(s, "abort").length >= getMaxListeners(s))
      setMaxListeners(getMaxListeners(s) * 2, s);
    s.addEventListener("abort", () => c.abort(s.reason), { once: true, signal: c.signal });
  }
  return { signal: c.signal, dispose };
}

/** A server root as the user gave it, without the "/v1" normaliseBase adds. */
function root(base: string): string {
  return base.replace(/\/v1$/, "");
}

/** An Ollama model name as its list writes it: the default registry and namespace dropped, the tag ":latest" added. */
function ollamaName(name: string): string {
  const bare = name.replace(/^registry\.ollama\.ai\//, "").replace(/^library\//, "");
  return /:[^/]*$/.test(bare) ? bare : `${bare}:latest`;
}

function normaliseBase(url: string): string {
  const u = url.replace(/\/+$/, "");
  return u.endsWith("/v1") ? u : `${u}/v1`;
}

export interface CompletionLogprobs {
  tokens?: string[];
  token_logprobs?: (number | null)[];
  top_logprobs?: (Record<string, number> | null)[] | null;
  text_offset?: number[];
}

/**
 * What an extra body (HttpBackend's extraBody, `--extra-body`) does to one of the chat_template_kwargs keys we send
 * (enable_thinking, date_string), as templateFields merges them: nothing ("ours"), leaves it out ("dropped": the
 * key or the whole field set to null), or sends its own value ("theirs"). For the lines that say what was sent.
 */
export function templateKwargSent(
  extraBody: Record<string, unknown> | undefined,
  key: string,
): { sent: "ours" } | { sent: "dropped" } | { sent: "theirs"; value: unknown } {
  const user = extraBody?.chat_template_kwargs;
  if (user === null) return { sent: "dropped" };
  if (user === undefined || typeof user !== "object" || Array.isArray(user) || !(key in user))
    return { sent: "ours" };
  const value = (user as Record<string, unknown>)[key];
  return value === null ? { sent: "dropped" } : { sent: "theirs", value };
}

/** A server's context per request as its GET /v1/models card states it: the tokens and the field that says so. */
export interface ServerWindow {
  len: number;
  field: string;
}

/**
 * A side endpoint's answer (HttpBackend.probe): its JSON (null: not 2xx, not JSON, or none); why none came, if none;
 * whether the connection was made (false: refused, reset, no such host; true also where the time ran out).
 */
interface ProbeAnswer {
  json: unknown;
  noAnswer: string | null;
  reached: boolean;
}

/** A server's kind and the context it states for prompts (HttpBackend.promptContexts), null where it states none. */
type ServerContext = Omit<PromptContext, "len" | "field"> & { len: number | null; field: string | null };

/** The context per request log-likelihoods are cut to (HttpBackend.contextPerRequest), and whence it comes. */
export interface ContextPerRequest {
  len: number;
  /** "option": maxModelLen (eval --max-model-len); "servers": the least the servers report */
  from: "option" | "servers";
  /** the servers that report theirs, with it; those that report none (a given option is not checked there) */
  reported: (ServerWindow & { url: string })[];
  unreported: string[];
  /** the servers that gave no answer to GET /v1/models (a given option is not checked there either) */
  unanswered: string[];
}

/**
 * The context per request a server's GET /v1/models answer (`body`) states for `model`, null where it states none:
 * vLLM's card `max_model_len`; a LoRA adapter's card has none (vLLM lists adapters with `parent`, their base model,
 * and no max_model_len: vllm/entrypoints/openai/serving_models.py show_available_models), and the adapter runs in its
 * base model's engine, so the parent card's; llama-server's `meta.n_ctx`, its slot's context (tools/server
 * server-context.cpp, `{"n_ctx", meta.slot_n_ctx}`), never `meta.n_ctx_train`, the model's training context, which
 * the server may not have allotted. Ollama's cards state none.
 */
export function serverWindow(body: unknown, model: string): ServerWindow | null {
  const data: unknown = (body as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) return null;
  const card = (id: unknown) => data.find((m) => m !== null && typeof m === "object" && m.id === id);
  const ok = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 2;
  const own = card(model);
  if (!own) return null;
  if (ok(own.max_model_len)) return { len: own.max_model_len, field: "max_model_len" };
  if (ok(own.meta?.n_ctx)) return { len: own.meta.n_ctx, field: "meta.n_ctx" };
  const parent = typeof own.parent === "string" && own.parent !== model ? card(own.parent) : undefined;
  if (ok(parent?.max_model_len))
    return { len: parent.max_model_len, field: `max_model_len (its base model "${own.parent}")` };
  return null;
}

export class HttpBackend implements GenerationBackend {
  readonly name: string;
  private readonly bases: string[];
  private next = 0;
  private readonly semaphore: Semaphore;
  private readonly apiKey: string | undefined;
  /** chat_template_kwargs.date_string of every chat request (templateFields) */
  private readonly dateString: string;
  /**
   * ChatBackend.keyFields: the extra body, as canonical JSON (key order does not matter), when one is given and
   * not empty; nothing otherwise, so answers cached without one keep their keys.
   */
  readonly keyFields: Readonly<Record<string, unknown>>;
  private closed = false;
  /** Requests in flight at most, over all servers (the semaphore's bound). */
  readonly concurrency: number;

  constructor(private readonly opts: HttpBackendOptions) {
    const urls = Array.isArray(opts.baseUrls) ? opts.baseUrls : [opts.baseUrls];
    if (urls.length === 0) throw new GoodVibeError("HTTP backend: no base URL given");
    this.bases = urls.map(normaliseBase);
    this.concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
    this.semaphore = new Semaphore(this.concurrency);
    this.apiKey = opts.apiKey ?? process.env[opts.apiKeyEnv ?? "OPENAI_API_KEY"];
    this.name = `http:${opts.model}`;
    // once per backend: a run's requests carry one day ("today" read once), and a malformed setting stops here
    this.dateString = templateDateString(opts.templateDate ?? templateDateSetting());
    const pct = opts.promptCountTolerancePct;
    if (pct !== undefined && !(Number.isFinite(pct) && pct >= 0 && pct <= 100))
      throw new InputError(`HTTP backend: promptCountTolerancePct ${pct} is not a percent from 0 to 100`);
    const extra = opts.extraBody;
    this.keyFields = extra && Object.keys(extra).length > 0 ? { extraBody: canonicalJson(extra) } : {};
  }

  /**
   * POST a JSON body to `path` on the next server, with the retry policy above; `signal` stops it too. Once
   * `cancelQueued` fires (a fan-out that failed for good, whose answers in flight are kept: allOrCancel), no attempt is
   * started any more (not the first, still queued behind the bound on requests in flight, nor a retry) but the one in
   * flight runs to its end.
   */
  async post(
    path: string,
    body: Record<string, unknown>,
    signal?: AbortSignal,
    cancelQueued?: AbortSignal,
  ): Promise<any> {
    return (await this.postAnswer(path, body, signal, cancelQueued)).json;
  }

  /** post's answer and the URL that gave it: in a fleet, what is said of an answer names its server. */
  private async postAnswer(
    path: string,
    body: Record<string, unknown>,
    signal?: AbortSignal,
    cancelQueued?: AbortSignal,
  ): Promise<{ json: any; url: string }> {
    if (this.closed) throw new GoodVibeError("HTTP backend is closed");
    const stops = [this.opts.signal, signal].filter((s): s is AbortSignal => s !== undefined);
    const stopIfAsked = (url: string) => {
      if (stops.some((s) => s.aborted))
        throw interrupted(
          `generation stopped (a request to ${url} was cancelled; finished answers are kept)`,
        );
      if (cancelQueued?.aborted)
        throw interrupted(`a request to ${url} was not sent: another request of its batch failed for good`);
    };
    const maxRetries = this.opts.maxRetries ?? DEFAULT_MAX_RETRIES;
    const timeoutMs = this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_S * 1000;
    const merged: Record<string, unknown> = { ...this.opts.extraBody, ...body };
    // extraBody's null chat_template_kwargs: the field is left out, not sent as null; and only chat requests carry
    // it (templateFields): a completion's prompt is not templated, and a server that checks its fields (goodvibe
    // serve) refuses template variables there, so --extra-body's would fail every raw prompt and log-likelihood
    if (merged.chat_template_kwargs === null || path !== "/chat/completions")
      delete merged.chat_template_kwargs;
    const payload = JSON.stringify(merged);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let lastProblem = "";
    let lastStatus: number | null = null;
    let url = "";
    for (let attempt = 0; ; attempt++) {
      url = this.bases[this.next++ % this.bases.length]! + path;
      let retryAfterMs: number | undefined;
      stopIfAsked(url);
      const waited = await this.semaphore.acquire();
      try {
        // a slot handed over by a request that failed for good: its error reaches its fan-out (which cancels this
        // request) in the microtasks that run before the next turn of the event loop, not before this line
        if (waited) await new Promise((ok) => setImmediate(ok));
        stopIfAsked(url);
        const timeout = AbortSignal.timeout(timeoutMs);
        const either = stops.length > 0 ? anySignal([...stops, timeout]) : null;
        let res: Response;
        let text: string;
        try {
          res = await fetch(url, {
            method: "POST",
            headers,
            body: payload,
            signal: either?.signal ?? timeout,
          });
          text = await res.text();
        } finally {
          either?.dispose();
        }
        if (res.ok) {
          try {
            return { json: JSON.parse(text), url };
          } catch {
            throw new HttpBackendError(
              `POST ${url}: HTTP ${res.status} but the body is not JSON: ${text.slice(0, 200)}`,
              url,
              res.status,
              attempt + 1,
            );
          }
        }
        lastStatus = res.status;
        lastProblem = `HTTP ${res.status} ${text.slice(0, 300)}`;
        if (res.status !== 429 && res.status < 500) {
          throw new HttpBackendError(`POST ${url} failed: ${lastProblem}`, url, res.status, attempt + 1);
        }
        const ra = Number(res.headers.get("retry-after"));
        if (Number.isFinite(ra) && ra > 0) retryAfterMs = ra * 1000;
      } catch (e) {
        if (e instanceof HttpBackendError) throw e;
        stopIfAsked(url); // an abort by the stop request is not a timeout to retry
        const code = networkErrorCode(e);
        if (!code || (code !== "timeout" && !RETRYABLE_CODES.has(code))) {
          throw new HttpBackendError(`POST ${url} failed: ${noAnswerWhy(e, code)}`, url, null, attempt + 1);
        }
        lastStatus = null;
        lastProblem = code === "timeout" ? `no answer within ${timeoutMs} ms` : `network error ${code}`;
      } finally {
        this.semaphore.release();
      }
      if (attempt >= maxRetries) {
        throw new HttpBackendError(
          `POST ${url} failed after ${attempt + 1} attempts: ${lastProblem}`,
          url,
          lastStatus,
          attempt + 1,
        );
      }
      const base = this.opts.retryBaseMs ?? 500;
      const cap = this.opts.retryMaxMs ?? 20_000;
      const backoff = Math.min(cap, base * 2 ** attempt) * (0.5 + 0.5 * (this.opts.random ?? Math.random)());
      // a server's Retry-After is honoured past our own cap (it knows its load), up to the time one request may
      // take: a server asking for an hour is not waited for an hour
      const waitMs = Math.max(backoff, Math.min(retryAfterMs ?? 0, timeoutMs));
      stopIfAsked(url); // no retry once the call is stopped or its fan-out has failed
      this.opts.onRetry?.({
        url,
        attempt: attempt + 1,
        attempts: maxRetries + 1,
        problem: lastProblem,
        waitMs,
      });
      await sleep(waitMs, cancelQueued ? [...stops, cancelQueued] : stops);
    }
  }

  private samplingFields(opts: {
    maxNewTokens: number;
    temperature?: number;
    topP?: number;
    seed?: number;
    stop?: string[];
  }) {
    return {
      model: this.opts.model,
      max_tokens: opts.maxNewTokens,
      temperature: opts.temperature ?? 0,
      ...(opts.topP !== undefined ? { top_p: opts.topP } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      ...(opts.stop && opts.stop.length > 0 ? { stop: opts.stop } : {}),
    };
  }

  /**
   * A choice cut by the server's own limit (finish_reason "length" before max_tokens: llama-server's or Ollama's
   * context per request filled up) is refused: the answer is shorter than the built-in engine's would be, and kept
   * it would be judged as a whole answer. The fix asks for a context that holds the server's count of the prompt and
   * the whole answer, where the server gives that count.
   */
  private async checkNotCutShort(res: any, url: string, path: string, maxNewTokens: number): Promise<void> {
    const used = res?.usage?.completion_tokens;
    if (res?.choices?.[0]?.finish_reason !== "length" || typeof used !== "number" || used >= maxNewTokens)
      return;
    const prompt = res?.usage?.prompt_tokens;
    const fix =
      typeof prompt === "number" && prompt > 0
        ? `its ${prompt} prompt tokens and the ${maxNewTokens} of the answer need ${prompt + maxNewTokens}: ` +
          contextFix(await this.kindOf(url, path), prompt + maxNewTokens, this.opts.model)
        : "give it a larger one (llama-server: --ctx-size per slot; Ollama: num_ctx)";
    throw new HttpBackendError(
      `${url}: the server stopped the answer at its own limit after ${used} of the ` +
        `${maxNewTokens} tokens asked for (finish_reason "length"): its context per request is too small for the ` +
        `prompt and the answer; ${fix}`,
      url,
      null,
      1,
    );
  }

  /** The kind of the server whose `url` (a base and `path`) answered: promptContexts lists them in the bases' order. */
  private async kindOf(url: string, path: string): Promise<ServerKind> {
    const infos = await this.promptContexts();
    return infos[this.baseIndex(url, path)]?.kind ?? "other";
  }

  /** Which of the bases `url` (a base and `path`) is, -1 for none: what is said of an answer names its server. */
  private baseIndex(url: string, path: string): number {
    return this.bases.findIndex((b) => b + path === url);
  }

  /**
   * Our count of a prompt's own tokens (prompt-fit.ts: a lower bound of what the server sees) and its messages;
   * null without a tokenizer, where neither check can be made.
   */
  private ownPromptTokens(
    prompt: string | ChatMessage[] | number[],
  ): { tokens: number; messages: number } | null {
    const tok = this.opts.tokenizer;
    if (!tok) return null;
    if (typeof prompt === "string")
      return { tokens: tok.encode(prompt, { addSpecialTokens: false }).length, messages: 1 };
    if (isTokenIds(prompt)) return { tokens: prompt.length, messages: 1 };
    const messages = prompt as ChatMessage[];
    let tokens = 0;
    for (const m of messages) tokens += tok.encode(m.content, { addSpecialTokens: false }).length;
    return { tokens, messages: messages.length };
  }

  /**
   * A prompt that cannot fit in the least context a server states (promptContexts) is refused before it is sent,
   * naming it, its tokens, the margin for the server's chat template, the context and whence, and the fix for that
   * server: Ollama would cut it and answer (prompt-fit.ts). Where no server states one, it is sent, and
   * checkPromptWhole reads the server's count. Our count, for checkPromptWhole. A prompt that fits is sent even where
   * its answer of `maxNewTokens` may not (most stop well before: an answer the server stops at its limit is refused
   * after, checkNotCutShort); the fix asks for a context that holds both.
   */
  private async checkPromptFits(
    prompt: string | ChatMessage[] | number[],
    maxNewTokens: number,
  ): Promise<{ tokens: number; messages: number } | null> {
    const own = this.ownPromptTokens(prompt);
    if (!own) return null;
    const known = (await this.promptContexts()).filter(
      (c): c is ServerContext & PromptContext => c.len !== null,
    );
    if (known.length === 0) return own;
    const least = known.reduce((a, b) => (b.len < a.len ? b : a));
    const margin = promptMargin(prompt);
    const need = own.tokens + margin;
    if (need <= least.len) return own;
    throw new InputError(
      `${promptOpening(prompt)} is ${own.tokens} tokens (${this.opts.model}'s tokenizer)` +
        (margin > 0
          ? ` and the server's ${typeof prompt === "string" ? "BOS" : "chat template"} adds some (${margin} allowed for it)`
          : "") +
        `: more than the context of ${least.len} tokens per request ${least.url} has (${least.field}). ` +
        `${least.kind === "ollama" ? "Ollama would cut it and answer as if it were whole" : "It would be refused or cut"}; ` +
        `it is not sent. With its answer (up to ${maxNewTokens} tokens) it needs ${need + maxNewTokens}: ` +
        contextFix(least.kind, need + maxNewTokens, this.opts.model),
    );
  }

  /**
   * After an answer: the server's count of the prompt (usage.prompt_tokens) less than ours by more than the tolerance
   * (prompt-fit.ts) means it cut the prompt (Ollama past num_ctx; an older llama-server with context shift) and
   * answered a part of it as if whole: refused, naming the prompt, both counts and the fix. A server that reports no
   * count, or 0 (Ollama's OpenAI layer did for a prompt read from its cache, openai/openai.go), is not second-guessed.
   */
  private async checkPromptWhole(
    res: any,
    prompt: string | ChatMessage[] | number[],
    own: { tokens: number; messages: number } | null,
    path: string,
    url: string,
    maxNewTokens: number,
  ): Promise<void> {
    const seen = res?.usage?.prompt_tokens;
    if (!own || typeof seen !== "number" || seen <= 0) return;
    const pct = this.opts.promptCountTolerancePct ?? DEFAULT_PROMPT_COUNT_TOLERANCE_PCT;
    const tolerance = promptTokenTolerance(prompt, own, pct);
    if (seen >= own.tokens - tolerance) return;
    const kind = await this.kindOf(url, path);
    const need = own.tokens + promptMargin(prompt) + maxNewTokens;
    // the way out for a server that cut nothing but counts fewer tokens (not for ids: sent as they are, counted alike)
    const short = Math.ceil(((own.tokens - seen) / own.tokens) * 100);
    const counts = isTokenIds(prompt)
      ? `where ${own.tokens} were sent`
      : `where its own text is ${own.tokens} (${this.opts.model}'s tokenizer; ${tolerance} fewer allowed for ` +
        "tokenizer differences)";
    throw new HttpBackendError(
      `${promptOpening(prompt)}: ${url} counted ${seen} prompt tokens ` +
        `(usage.prompt_tokens) ${counts}: the server cut the prompt to its context and answered the rest ` +
        `as if whole${kind === "ollama" ? " (Ollama's runner keeps the prompt's first tokens and its end; its log says \"truncating input prompt\")" : ""}. ` +
        `The answer is not kept. With its answer (up to ${maxNewTokens} tokens) the prompt needs ${need}: ` +
        contextFix(kind, need, this.opts.model) +
        (isTokenIds(prompt)
          ? ""
          : `. If it cut nothing but counts at least ${short}% fewer tokens (a GGUF's tokenizer may; so does an ` +
            "Ollama that leaves the tokens it read from its cache out of usage.prompt_tokens, ollama/ollama#16414), " +
            `allow for that with --prompt-count-tolerance (HttpBackend option promptCountTolerancePct; now ${pct}%)`),
      url,
      null,
      1,
    );
  }

  async generateText(prompt: string, opts: GenerateOptions): Promise<string> {
    const own = await this.checkPromptFits(prompt, opts.maxNewTokens);
    const { json: res, url } = await this.postAnswer(
      "/completions",
      { ...this.samplingFields(opts), prompt },
      undefined,
      opts.cancelQueued,
    );
    this.learnContextAfterAnswer(url, "/completions");
    await this.checkPromptWhole(res, prompt, own, "/completions", url, opts.maxNewTokens);
    await this.checkNotCutShort(res, url, "/completions", opts.maxNewTokens);
    const text = res?.choices?.[0]?.text;
    if (typeof text !== "string")
      throw new HttpBackendError(`${url}: response has no choices[0].text`, url, null, 1);
    return cutAtStop(text, opts.stop ?? []);
  }

  /** Token ids in, token ids out: the prompt goes as ids (vLLM accepts them); the answer is re-encoded. */
  async generateTokens(promptIds: number[], opts: GenerateOptions): Promise<number[]> {
    if (!this.opts.tokenizer)
      throw new GoodVibeError(
        "HTTP backend: generateTokens needs the `tokenizer` option (servers return text)",
      );
    const own = await this.checkPromptFits(promptIds, opts.maxNewTokens);
    const { json: res, url } = await this.postAnswer("/completions", {
      ...this.samplingFields(opts),
      prompt: promptIds,
    });
    this.learnContextAfterAnswer(url, "/completions");
    await this.checkPromptWhole(res, promptIds, own, "/completions", url, opts.maxNewTokens);
    // the answer's own tokens, as the other backends return them: no BOS put in front
    return this.opts.tokenizer.encode(cutAtStop(String(res?.choices?.[0]?.text ?? ""), opts.stop ?? []), {
      addSpecialTokens: false,
    });
  }

  /**
   * The template variables as servers take them, `chat_template_kwargs`: the variables vLLM and llama-server
   * (--jinja) render the chat template with, so the server's template does not decide. `enable_thinking` where a
   * setting is given (vLLM renders Qwen3 with thinking on when not told); `date_string`, the day this tool renders
   * on, always: Llama 3.1/3.2's templates write it as "Today Date: ..." when it is defined, where otherwise vLLM's
   * 3.2 writes the server's day (transformers' strftime_now) and llama-server's 3.1 and 3.2 alike (it sets
   * date_string to its clock's day, common/chat.cpp common_chat_extra_context). A template that does not name a
   * variable is unaffected: vLLM drops such kwargs (vllm/entrypoints/chat_utils.py resolve_chat_template_kwargs
   * keeps the template's undeclared variables and apply_chat_template's parameters), llama-server passes them to
   * the template, which does not read them. extraBody's own chat_template_kwargs keys win, one set to null is left
   * out; its null sends none. Ollama's OpenAI-compatible endpoint does not read the field: it takes
   * `reasoning_effort: "none"` (extraBody).
   */
  private templateFields(enableThinking: boolean | undefined): Record<string, unknown> {
    const user = this.opts.extraBody?.chat_template_kwargs;
    if (user === null) return {};
    const own = user !== undefined && typeof user === "object" && !Array.isArray(user) ? user : {};
    const merged: Record<string, unknown> = {
      ...(enableThinking !== undefined ? { enable_thinking: enableThinking } : {}),
      date_string: this.dateString,
      ...own,
    };
    for (const [k, v] of Object.entries(merged)) if (v === null) delete merged[k];
    return { chat_template_kwargs: merged };
  }

  async chat(
    messages: ChatMessage[],
    opts: GenerateOptions & { signal?: AbortSignal; enableThinking?: boolean },
  ): Promise<string> {
    const own = await this.checkPromptFits(messages, opts.maxNewTokens);
    const { json: res, url } = await this.postAnswer(
      "/chat/completions",
      { ...this.samplingFields(opts), messages, ...this.templateFields(opts.enableThinking) },
      opts.signal,
      opts.cancelQueued,
    );
    this.learnContextAfterAnswer(url, "/chat/completions");
    await this.checkPromptWhole(res, messages, own, "/chat/completions", url, opts.maxNewTokens);
    await this.checkNotCutShort(res, url, "/chat/completions", opts.maxNewTokens);
    const content = res?.choices?.[0]?.message?.content;
    if (content !== null && typeof content !== "string")
      throw new HttpBackendError(`${url}: response has no choices[0].message.content`, url, null, 1);
    return cutAtStop(withReasoning(res.choices[0], content), opts.stop ?? []);
  }

  async loglikelihood(
    reqs: LoglikelihoodRequest[],
    opts: { onResult?: () => void } = {},
  ): Promise<LoglikelihoodResult[]> {
    return allOrCancel(reqs, async (r, _i, signal) => {
      const out = await this.loglikelihoodOne(r, signal);
      opts.onResult?.();
      return out;
    });
  }

  /**
   * The echoed log-probabilities of `prompt` (text or token ids; `promptTokens`: how many ids it is, when ids): a
   * server that refuses echo (llama-server: 400 "Only no echo is supported") or answers without the prompt's
   * positions (Ollama; llama-server versions that give the generated token's alone) is a NoPromptLogprobsError.
   */
  private async echo(
    prompt: string | number[],
    what: string,
    signal?: AbortSignal,
  ): Promise<CompletionLogprobs> {
    const maxTokens = this.opts.loglikelihoodMaxTokens ?? 1;
    let res: any;
    let url: string;
    try {
      ({ json: res, url } = await this.postAnswer(
        "/completions",
        {
          model: this.opts.model,
          prompt,
          echo: true,
          logprobs: 1,
          max_tokens: maxTokens,
          temperature: 0,
        },
        signal,
      ));
    } catch (e) {
      if (!(e instanceof HttpBackendError) || e.status !== 400) throw e;
      // a prompt longer than the server's context: vLLM's 400 "This model's maximum context length is ..." (its
      // OpenAI layer) or "The decoder prompt (length N) is longer than the maximum model length of M" (its input
      // processor, which token ids reach); llama-server's "the request exceeds the available context size"
      if (CONTEXT_REFUSAL.test(e.message))
        throw new HttpBackendError(
          `${what}: ${e.url} refused ${
            typeof prompt === "string" ? "its context and continuation" : `the ${prompt.length} tokens sent`
          } as longer than its context per request (${e.message}); ${await this.contextAdvice(prompt)}`,
          e.url,
          e.status,
          e.attempts,
        );
      // llama-server: "Only no echo is supported"; goodvibe serve: echo and logprobs are not supported; vLLM V1
      // with prefix caching on (early 2025): "Prefix caching with prompt logprobs not yet supported"
      if (/\becho\b|logprobs/i.test(e.message))
        throw new NoPromptLogprobsError(
          this.opts.model,
          e.url.replace(/\/completions$/, ""),
          `it refused the request (${e.message})`,
          VLLM_PREFIX_CACHING.test(e.message)
            ? "This vLLM gives them with prefix caching off: restart it with --no-enable-prefix-caching, or " +
                "serve the model with a vLLM that has vllm-project/vllm#13949 (which gives them with it on)"
            : undefined,
        );
      throw e;
    }
    const lp: CompletionLogprobs | undefined = res?.choices?.[0]?.logprobs;
    const lps = lp?.token_logprobs;
    // an echo's first position is the prompt's first token, which has no log-probability (null); a server that
    // ignores echo gives the generated token's there. With ids, every prompt position is there too
    if (
      !lp ||
      !Array.isArray(lps) ||
      lps[0] !== null ||
      (Array.isArray(prompt) && lps.length < prompt.length)
    )
      throw new NoPromptLogprobsError(
        this.opts.model,
        url.replace(/\/completions$/, ""),
        !lp || !Array.isArray(lps)
          ? "its answer has no logprobs.token_logprobs"
          : `its answer's ${lps.length} log-probabilities are not the prompt's (an echo starts with null, the ` +
              `first prompt token's${Array.isArray(prompt) ? `, and has one for each of its ${prompt.length} tokens` : ""})`,
      );
    return lp;
  }

  /**
   * What to do about a server's refusal of `prompt` as too long, by what was given: the text of a pair cut nowhere
   * (no tokenizer), or token ids cut to a context per request that was the option's (too large for that server) or
   * the servers' own report (which it no longer keeps to).
   */
  private async contextAdvice(prompt: string | number[]): Promise<string> {
    if (typeof prompt === "string")
      return (
        "give the HTTP backend the model's tokenizer (option tokenizer) to cut the context from the left as the " +
        "local engine does"
      );
    const maxTokens = this.opts.loglikelihoodMaxTokens ?? 1;
    const ctx = await this.contextPerRequest().catch(() => null);
    const need = `${prompt.length + maxTokens} with the ${maxTokens === 1 ? "token" : "tokens"} generated`;
    if (!ctx)
      return (
        `they need ${need}; give the servers' context per request (eval --max-model-len; HttpBackend option ` +
        "maxModelLen)"
      );
    if (prompt.length + maxTokens > ctx.len)
      return (
        `they need ${need}, more than the context per request of ${ctx.len} ` +
        `(${ctx.from === "option" ? "--max-model-len" : "the servers' report"}): a held-out code window longer ` +
        "than that cannot be scored there; score --code on the built-in engine (eval --utility-local code)"
      );
    if (ctx.from === "option")
      return (
        `they fit the --max-model-len ${ctx.len} (HttpBackend option maxModelLen) they were cut to, which this ` +
        "server does not take: give its context per request, or leave the flag out where GET /v1/models reports it"
      );
    const reports = ctx.reported.map((r) => `${r.url}: ${r.field} ${r.len}`).join("; ");
    return (
      `they fit the ${ctx.len} its GET /v1/models reported (${reports}) and were cut to: the server takes fewer ` +
      "now (restarted with another context?); give the one it takes with --max-model-len"
    );
  }

  private async loglikelihoodOne(
    req: LoglikelihoodRequest,
    signal?: AbortSignal,
  ): Promise<LoglikelihoodResult> {
    const what = req.item ?? `log-likelihood request ${JSON.stringify(req.continuation)}`;
    const tok = this.opts.tokenizer;
    if (!tok) {
      const prompt = req.context + req.continuation;
      return parseEchoLogprobs(
        await this.echo(prompt, what, signal),
        codePoints(req.context),
        codePoints(prompt),
        prompt,
      );
    }
    // the local engine's encoding and window, to what the server echoes: its context less the tokens it generates
    const { context, continuation } = encodeLoglikelihoodPair(tok, req.context, req.continuation);
    if (continuation.length === 0)
      throw new InputError(`${what}: the continuation ${JSON.stringify(req.continuation)} has no tokens`);
    const window = (await this.maxModelLen()) - (this.opts.loglikelihoodMaxTokens ?? 1);
    // the harness's cut (loglikelihoodWindow) of the model input to `window - 1` tokens: the echo is sent that input
    // and the pair's last token, and the first position echoed has no log-probability
    let cut: { input: number[]; from: number };
    try {
      cut = loglikelihoodWindow(context, continuation, (await this.loglikelihoodInputLength())!);
    } catch (e) {
      throw new InputError(
        `${what}: a continuation of ${continuation.length} tokens does not fit the server's window of ${window} ` +
          `(its max_model_len less max_tokens) after a context token`,
        { cause: e },
      );
    }
    const sent = [...cut.input, continuation[continuation.length - 1]!];
    const lp = await this.echo(sent, what, signal);
    return sumEchoPositions(lp, cut.from + 1, sent.length, what);
  }

  /**
   * Each position's log-probability of token ids `ids` but the first (which has none): the held-out real-code loss's
   * windows (eval/utility/code-loss.ts) scored on the server. `what` names the window in errors.
   */
  async promptLogprobs(ids: readonly number[], what: string, signal?: AbortSignal): Promise<number[]> {
    if (ids.length < 2) throw new InputError(`${what}: a window needs two tokens to score one`);
    const lp = await this.echo([...ids], what, signal);
    const out: number[] = [];
    sumLogprobs(lp, range(1, ids.length), what, (x) => out.push(x));
    return out;
  }

  /**
   * What stops a raw prompt (generateText, /v1/completions) from reaching the model as it is, on any of the servers;
   * null when nothing does. Ollama's /v1/completions renders the prompt into the model's chat template as a user turn
   * (ollama/ollama#5544, #12636: a few-shot GSM8K prompt is answered as a chat message, not continued), unless the
   * model has none (a ":text" model) or one that is the prompt alone. An Ollama server is known by its
   * GET /api/version; its model's template by POST /api/show (each asked once per server: probe). vLLM and
   * llama-server pass the prompt as it is. A server that gives either no answer (connection refused or reset: an
   * Ollama restarting; no answer in time) is an error saying it could not be asked, not "not Ollama": its raw prompts
   * would otherwise go unchecked to a server that may wrap them. An error, not a retry: the check is made once,
   * before any answer (eval's start), where a server that is down fails the run at once and a rerun costs nothing,
   * and the answers' own requests retry (maxRetries) once it runs.
   */
  async rawPromptProblem(): Promise<string | null> {
    for (const base of this.bases) {
      const r = root(base);
      const unasked = (what: string, asked: string) =>
        new HttpBackendError(
          `${r} could not be asked ${what} (${asked}): raw prompts are not sent where it cannot be told ` +
            "whether the server puts them into a chat template (Ollama's /v1/completions does). Check that the " +
            "server is up at that URL, and run again",
          r,
          null,
          1,
        );
      const { version, noAnswer } = await this.ollamaVersionAnswer(base);
      if (noAnswer !== null) throw unasked("whether it is Ollama", `GET ${r}/api/version got ${noAnswer}`);
      if (version === null) continue;
      const show = await this.ollamaShowAnswer(base);
      if (show.noAnswer !== null)
        throw unasked(`for "${this.opts.model}"'s chat template`, `POST ${r}/api/show got ${show.noAnswer}`);
      const template = show.show?.template;
      if (typeof template !== "string") continue;
      const bare = template.replace(/\s+/g, "");
      if (bare === "" || bare === "{{.Prompt}}") continue;
      return (
        `${r} is Ollama ${version}, whose /v1/completions puts the prompt into "${this.opts.model}"'s chat ` +
        "template as a user turn (ollama/ollama#5544, #12636) instead of continuing it"
      );
    }
    return null;
  }

  /** promptContexts' entries, one per base in their order (learnContextAfterAnswer may replace one, once). */
  private promptContextList: Promise<ServerContext>[] | null = null;
  /** the bases (by index) whose Ollama context was asked again after an answer: once each */
  private contextRelearned = new Set<number>();

  /**
   * Each server's kind and the context per request it states, read once (prompt-fit.ts): vLLM's max_model_len and
   * llama-server's meta.n_ctx from GET /v1/models (serverWindow); Ollama (known by GET /api/version) states it for a
   * loaded model in GET /api/ps (context_length, the runner's num_ctx) and, where the model sets one, in POST
   * /api/show's parameters ("num_ctx N", a Modelfile PARAMETER); never its model_info "<arch>.context_length", the
   * training context, which the server may not have allotted. An Ollama default (OLLAMA_CONTEXT_LENGTH, or the
   * version's default: 2048, then 4096, then by GPU memory) is stated nowhere: that context is null, and only the
   * server's count after the answer tells. `maxModelLen` (eval --max-model-len) is not read here: it is the window
   * log-likelihoods are cut to, which a test or a user may set below the server's. Ollama loads a model at its first
   * request, so a freshly started one lists nothing in /api/ps before it: learnContextAfterAnswer asks again.
   */
  private promptContexts(): Promise<ServerContext[]> {
    this.promptContextList ??= this.bases.map((base) => this.promptContextOf(base));
    return Promise.all(this.promptContextList);
  }

  /** promptContexts' entry for one server, from its answers (probe's, kept) and GET /api/ps (asked each time). */
  private async promptContextOf(base: string): Promise<ServerContext> {
    const models = await this.modelList(base);
    const w = serverWindow(models, this.opts.model);
    const data = (models as { data?: unknown } | null)?.data;
    const card = Array.isArray(data) ? data.find((c) => c?.id === this.opts.model) : undefined;
    let kind: ServerKind = "other";
    let len: number | null = null;
    let field: string | null = null;
    if (w) {
      kind = w.field.startsWith("meta.") ? "llama-server" : "vllm";
      [len, field] = [w.len, `GET ${base}/models ${w.field}`];
    } else if (card?.owned_by === "vllm") kind = "vllm";
    else if (card?.owned_by === "llamacpp") kind = "llama-server";
    else {
      const r = root(base);
      const version = await this.ollamaVersion(base);
      if (version !== null) {
        kind = "ollama";
        const loaded = await this.ollamaLoadedContext(base, version);
        if (loaded) [len, field] = [loaded.len, loaded.field];
        else {
          const params = (await this.ollamaShow(base))?.parameters;
          const m = typeof params === "string" ? /(?:^|\n)\s*num_ctx\s+(\d+)/.exec(params) : null;
          if (m) [len, field] = [Number(m[1]), `Ollama ${version}: POST ${r}/api/show parameters num_ctx`];
        }
      }
    }
    return { url: root(base), kind, len, field };
  }

  /**
   * The context Ollama states for the model where it is loaded: GET {root}/api/ps's context_length (the runner's
   * num_ctx), asked each time (not probe: it changes as models load); null where it lists the model without one, or
   * does not list it (not loaded yet, or no more: keep_alive).
   */
  private async ollamaLoadedContext(
    base: string,
    version: string,
  ): Promise<{ len: number; field: string } | null> {
    const r = root(base);
    const ps = ((await this.getJson(`${r}/api/ps`)) as { models?: unknown } | null)?.models;
    const loaded = Array.isArray(ps)
      ? ps.find(
          (m) =>
            m !== null &&
            typeof m === "object" &&
            [m.name, m.model].some(
              (n: unknown) => typeof n === "string" && ollamaName(n) === ollamaName(this.opts.model),
            ),
        )
      : undefined;
    const ok = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 2;
    return ok(loaded?.context_length)
      ? { len: loaded.context_length, field: `Ollama ${version}: GET ${r}/api/ps context_length` }
      : null;
  }

  /**
   * After the first answer from a server whose context promptContexts found stated nowhere, work its entry out once
   * more. A freshly started Ollama lists a model in /api/ps only once a request has loaded it (and /api/show states
   * num_ctx only where a Modelfile sets it): asked again, the model that answered is loaded, and its context_length is
   * the num_ctx every later prompt gets (OLLAMA_CONTEXT_LENGTH or the version's default). A server that gave no answer
   * to GET /v1/models or /api/version then (restarting) is asked again too (probe keeps no failed connection). So later
   * prompts are checked before they are sent. The answers kept (probe) are not asked again: this costs Ollama one GET
   * /api/ps, other servers nothing. Once per server, not after every answer: an Ollama that does not state it then
   * (one too old to give context_length) would cost a request per answer, and the check after each answer still
   * guards. Not awaited here: the next prompt's check waits for it (promptContexts), this answer does not.
   */
  private learnContextAfterAnswer(url: string, path: string): void {
    const list = this.promptContextList;
    const i = this.baseIndex(url, path);
    if (!list || i < 0 || this.contextRelearned.has(i)) return;
    this.contextRelearned.add(i);
    const base = this.bases[i]!;
    const relearned = list[i]!.then((c) => (c.len !== null ? c : this.promptContextOf(base).catch(() => c)));
    relearned.catch(() => {}); // a stop while asking reaches whoever awaits it next; no one may
    list[i] = relearned;
  }

  private windows: Promise<ContextPerRequest> | null = null;

  /** GET `base`/models, once per server (probe): the model check and the contexts per request read one answer. */
  private async modelList(base: string): Promise<unknown> {
    return (await this.probe(`${base}/models`)).json;
  }

  /**
   * The Ollama version a server states on GET {root}/api/version, null where it states none (not Ollama), asked once
   * per server (probe): the model check, the raw-prompt check and the prompts' contexts all need to know.
   */
  private async ollamaVersion(base: string): Promise<string | null> {
    return (await this.ollamaVersionAnswer(base)).version;
  }

  /** ollamaVersion, and why it could not be told where the server gave no answer (probe's noAnswer). */
  private async ollamaVersionAnswer(
    base: string,
  ): Promise<{ version: string | null; noAnswer: string | null }> {
    const a = await this.probe(`${root(base)}/api/version`);
    const version = (a.json as { version?: unknown } | null)?.version;
    return { version: typeof version === "string" ? version : null, noAnswer: a.noAnswer };
  }

  /** Ollama's POST {root}/api/show for the model, once per server (probe): its template and its parameters. */
  private async ollamaShow(base: string): Promise<{ template?: unknown; parameters?: unknown } | null> {
    return (await this.ollamaShowAnswer(base)).show;
  }

  private async ollamaShowAnswer(
    base: string,
  ): Promise<{ show: { template?: unknown; parameters?: unknown } | null; noAnswer: string | null }> {
    const a = await this.probe(`${root(base)}/api/show`, { model: this.opts.model });
    const show = a.json !== null && typeof a.json === "object" ? a.json : null;
    return { show, noAnswer: a.noAnswer };
  }

  private probes = new Map<string, Promise<ProbeAnswer>>();

  /**
   * getJson of a side endpoint whose answer does not change while a run lasts (a server's model list, Ollama's version
   * and model card), asked once per URL and body for the backend's life: concurrent and later checks share it. An
   * answer is kept, whatever it is (vLLM's 404 for /api/version: not Ollama), and so is a request that timed out (the
   * next check would wait as long again for a server that hangs, before any retry warning tells the user). A request
   * that reached no server (connection refused or reset: a server restarting) is not: the next check asks again, so
   * a server that was down for one check is not taken for "not Ollama" (its raw prompts wrapped in a chat template
   * unnoticed) or for one listing nothing by all the others. A stop (InterruptedError) is not kept either. A check
   * that must know (rawPromptProblem, contextPerRequest) reads `noAnswer` and says the server could not be asked.
   */
  private probe(url: string, body?: unknown): Promise<ProbeAnswer> {
    const key = body === undefined ? `GET ${url}` : `POST ${url} ${JSON.stringify(body)}`;
    let asked = this.probes.get(key);
    if (!asked) {
      asked = this.request(url, body).then(
        (r) => {
          if (!r.reached) this.probes.delete(key);
          return { json: r.json, noAnswer: r.noAnswer, reached: r.reached };
        },
        (e: unknown) => {
          this.probes.delete(key);
          throw e;
        },
      );
      this.probes.set(key, asked);
    }
    return asked;
  }

  /**
   * Why servers cannot be used at all, each named: no connection was made for its GET /v1/models (refused or reset,
   * no such host, a port fetch refuses); null where every server answered, with any status, or took the connection
   * and let the request time out (busy: the requests' retries are for that). Asked before a run's local work: a
   * fleet has no failover, so a server that is not there would fail the run at its first request, after the
   * preference scoring and whatever else ran first.
   */
  async unreachable(): Promise<string | null> {
    // every server at once: a large fleet is not asked one after the other
    const answers = await Promise.all(this.bases.map((base) => this.probe(`${base}/models`)));
    const gone = this.bases
      .map((base, i) => ({ base, a: answers[i]! }))
      .filter(({ a }) => a.noAnswer !== null && !a.reached)
      .map(({ base, a }) => `${root(base)} cannot be reached: GET ${base}/models got ${a.noAnswer}`);
    if (gone.length === 0) return null;
    const of = this.bases.length > 1 ? ` (${gone.length} of the ${this.bases.length} servers given)` : "";
    return gone.join("; ") + of;
  }

  /**
   * Why the model is not served by one of the servers, from its GET /v1/models; null where it is, or where that
   * cannot be told. vLLM (cards owned_by "vllm") and `goodvibe serve` answer 404 for a name they do not list, as
   * Ollama does (known by its GET /api/version; "NAME" is its "NAME:latest"); llama-server serves its one model
   * under any name, and a server that lists nothing, or that we do not know, is not second-guessed.
   */
  async modelProblem(): Promise<string | null> {
    const model = this.opts.model;
    for (const base of this.bases) {
      const data: unknown = ((await this.modelList(base)) as { data?: unknown } | null)?.data;
      if (!Array.isArray(data)) continue;
      const cards = data.filter(
        (c): c is { id: string; owned_by?: unknown } =>
          c !== null && typeof c === "object" && typeof c.id === "string",
      );
      if (cards.length === 0 || cards.some((c) => c.id === model)) continue;
      const ids = cards.map((c) => c.id);
      let hint: string;
      if (cards.every((c) => c.owned_by === "vllm"))
        hint =
          "vLLM serves a model under its --served-model-name (by default the path or Hub id it was started " +
          "with) and a LoRA adapter under its --lora-modules name";
      else if (cards.every((c) => c.owned_by === "goodvibe"))
        hint = "goodvibe serve serves its model under its --name";
      else {
        const version = await this.ollamaVersion(base);
        if (version === null || ids.map(ollamaName).includes(ollamaName(model))) continue;
        hint = `Ollama ${version} serves the models \`ollama list\` shows (a NAME is NAME:latest); \`ollama pull\` adds one`;
      }
      const near = nearestKey(model, ids);
      const shown = ids.slice(0, 20).map((id) => JSON.stringify(id));
      return (
        `${root(base)} does not serve "${model}": GET ${base}/models lists ${shown.join(", ")}` +
        `${ids.length > shown.length ? ` and ${ids.length - shown.length} more` : ""}` +
        `${near ? ` (did you mean "${near}"?)` : ""}. ${hint}`
      );
    }
    return null;
  }

  /**
   * The most model-input tokens of a log-likelihood pair (loglikelihoodWindow's maxLength): the server's
   * max_model_len less the max_tokens it generates and the pair's last token, which the echo is sent besides. A
   * pair longer than it loses context tokens from the left; null without a tokenizer (the pair is sent as text,
   * uncut: the server refuses one too long).
   */
  async loglikelihoodInputLength(): Promise<number | null> {
    if (!this.opts.tokenizer) return null;
    return (await this.maxModelLen()) - (this.opts.loglikelihoodMaxTokens ?? 1) - 1;
  }

  private async maxModelLen(): Promise<number> {
    return (await this.contextPerRequest()).len;
  }

  /**
   * The servers' context per request (max_model_len) log-likelihoods are cut to, read once: each server's
   * GET /v1/models card for the model (serverWindow). The option `maxModelLen` where given, refused when it is more
   * than a server reports (the pairs cut to it would be refused there, after the answers); else the least any
   * server reports (a pair cut to it fits each), an error naming a server that reports none.
   */
  contextPerRequest(): Promise<ContextPerRequest> {
    this.windows ??= (async () => {
      const servers = await Promise.all(
        this.bases.map(async (base) => {
          const a = await this.probe(`${base}/models`);
          return { url: base, report: serverWindow(a.json, this.opts.model), noAnswer: a.noAnswer };
        }),
      );
      // a server that gave no answer is asked again by the next call (probe keeps no refused connection): what it
      // reports is not known yet, so neither is this
      if (servers.some((s) => s.noAnswer !== null)) this.windows = null;
      const reported = servers.flatMap((s) => (s.report ? [{ url: s.url, ...s.report }] : []));
      const unreported = servers.filter((s) => !s.report && s.noAnswer === null).map((s) => s.url);
      const unanswered = servers.filter((s) => s.noAnswer !== null).map((s) => s.url);
      const given = this.opts.maxModelLen;
      if (given !== undefined) {
        const over = reported.filter((r) => r.len < given);
        if (over.length > 0) {
          const least = Math.min(...reported.map((r) => r.len));
          const says = over.map((r) => `GET ${r.url}/models reports ${r.field} ${r.len}`).join("; ");
          throw new InputError(
            `--max-model-len ${given} (HttpBackend option maxModelLen) is more than the servers take for ` +
              `"${this.opts.model}": ${says}. ` +
              `Log-likelihood pairs cut to ${given} tokens would be refused there; give at most ${least}, or leave ` +
              "the flag out to use what the servers report",
          );
        }
        return { len: given, from: "option", reported, unreported, unanswered };
      }
      const silent = servers.find((s) => s.noAnswer !== null);
      if (silent)
        throw new HttpBackendError(
          `GET ${silent.url}/models got ${silent.noAnswer}: the server could not be asked its context per request ` +
            `(max_model_len) for "${this.opts.model}". Check that it is up at that URL, or give its context per ` +
            "request in tokens (eval --max-model-len; HttpBackend option maxModelLen) to cut log-likelihood " +
            "contexts to it",
          `${silent.url}/models`,
          null,
          1,
        );
      if (unreported.length > 0)
        throw new InputError(
          `GET ${unreported[0]}/models does not report max_model_len for "${this.opts.model}": give its context ` +
            "per request in tokens (eval --max-model-len; HttpBackend option maxModelLen) to cut log-likelihood " +
            "contexts to it",
        );
      return {
        len: Math.min(...reported.map((r) => r.len)),
        from: "servers",
        reported,
        unreported,
        unanswered,
      };
    })();
    return this.windows;
  }

  /**
   * GET `url` (POST `body` as JSON when given) with the API key: its JSON body, or null (no answer, not 2xx, not
   * JSON). The backend's stop request (Ctrl-C) ends it at once with InterruptedError: a server that does not answer
   * its GET /v1/models at the start of a run does not hold it for the request timeout.
   */
  private async getJson(url: string, body?: unknown): Promise<unknown> {
    return (await this.request(url, body)).json;
  }

  /**
   * getJson's request, and whether it reached a server: false where the connection failed (refused, reset, no such
   * host), true where the server answered (any status) or let the request time out; `noAnswer`, where no answer came
   * (the connection failed or the time ran out), says so for an error ("no answer: connection refused
   * (ECONNREFUSED)"), null where the server answered.
   */
  private async request(
    url: string,
    body?: unknown,
  ): Promise<{ json: unknown; reached: boolean; noAnswer: string | null }> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_S * 1000);
    const either = this.opts.signal ? anySignal([this.opts.signal, timeout]) : null;
    const auth: Record<string, string> = this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
    const method = body === undefined ? "GET" : "POST";
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers: body === undefined ? auth : { "content-type": "application/json", ...auth },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: either?.signal ?? timeout,
      });
      text = await res.text();
    } catch (e) {
      if (this.opts.signal?.aborted) throw interrupted(`stopped (${method} ${url} was cancelled)`);
      const code = timeout.aborted ? "timeout" : networkErrorCode(e);
      const noAnswer =
        code === "timeout"
          ? `no answer within ${this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_S * 1000} ms`
          : `no answer: ${noAnswerWhy(e, code)}`;
      return { json: null, reached: timeout.aborted, noAnswer };
    } finally {
      either?.dispose();
    }
    if (!res.ok) return { json: null, reached: true, noAnswer: null };
    try {
      return { json: JSON.parse(text), reached: true, noAnswer: null };
    } catch {
      return { json: null, reached: true, noAnswer: null };
    }
  }

  /**
   * promptLogprobs of every window at once (`what` names window i in errors); the first to fail for good cancels the
   * rest (allOrCancel).
   */
  async promptLogprobsAll(
    windows: readonly (readonly number[])[],
    what: (i: number) => string,
  ): Promise<number[][]> {
    // a window is scored whole, never cut: one longer than the servers' context per request, where it is known (the
    // servers report it, or --max-model-len), is refused before any window is sent, not by the server after the
    // others' answers
    const ctx = await this.contextPerRequest().catch(() => null);
    if (ctx) {
      const maxTokens = this.opts.loglikelihoodMaxTokens ?? 1;
      const longest = windows.reduce((a, w, i) => (w.length > (windows[a]?.length ?? -1) ? i : a), 0);
      const n = windows[longest]?.length ?? 0;
      if (n + maxTokens > ctx.len) {
        const whence =
          ctx.from === "option"
            ? "--max-model-len (HttpBackend option maxModelLen)"
            : ctx.reported.map((r) => `GET ${r.url}/models: ${r.field} ${r.len}`).join("; ");
        throw new InputError(
          `${what(longest)} is ${n} tokens, ${n + maxTokens} with the ${maxTokens === 1 ? "token" : "tokens"} ` +
            `generated: more than the servers' context per request of ${ctx.len} (${whence}). A window is ` +
            "scored whole, never cut; score --code on the built-in engine (eval --utility-local code), or serve " +
            `the model with a context of at least ${n + maxTokens}`,
        );
      }
    }
    return allOrCancel(windows, (w, i, signal) => this.promptLogprobs(w, what(i), signal));
  }

  asUtilityModel(): UtilityModel {
    return utilityModelFrom(this);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A chat answer's text as the model wrote it. A server with a reasoning parser (vLLM --reasoning-parser, llama-server
 * --reasoning-format) moves the thinking out of `content` into `reasoning` (vLLM >= 0.11; `reasoning_content` before,
 * and llama-server); it is put back between <think> tags, as the built-in engine's answer has it: the judges drop it
 * either way (data/code.ts), and the safe rate's note counts answers that reasoned and never closed the tag (ran out
 * of tokens), which an empty content alone would count as answers without code. The tag stays open when the answer
 * ran out of tokens with no content.
 */
function withReasoning(
  choice: { message?: Record<string, unknown>; finish_reason?: unknown },
  content: string | null,
): string {
  const msg = choice.message ?? {};
  const reasoning = [msg.reasoning, msg.reasoning_content].find(
    (r): r is string => typeof r === "string" && r.trim() !== "",
  );
  if (reasoning === undefined) return content ?? "";
  if (!content && choice.finish_reason === "length") return `<think>\n${reasoning}`;
  return `<think>\n${reasoning}\n</think>\n\n${content ?? ""}`;
}

/**
 * The length in code points of the whole leading tokens an echo has before `prompt`'s text (a start token the server
 * added), 0 when the tokens begin with the prompt or do not spell it after such tokens.
 */
function addedPrefix(tokens: readonly string[], prompt: string): number {
  const all = tokens.join("");
  if (all.startsWith(prompt)) return 0;
  let at = "";
  for (const t of tokens) {
    at += t;
    if (all.startsWith(prompt, at.length)) return codePoints(at);
    if (at.length >= all.length - prompt.length) break;
  }
  return 0;
}

/** A string's length in Unicode code points (Python's len()), the unit of a server's text_offset. */
function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** The integers [from, to). */
function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, k) => from + k);
}

/**
 * The one summing loop of an echo: the log-probabilities at `positions` (each must have one; `what` names the request
 * in the error), whether each is the top one, and each told to `each` (the code loss's per-token scores).
 */
function sumLogprobs(
  lp: CompletionLogprobs,
  positions: Iterable<number>,
  what: string,
  each?: (logprob: number) => void,
): LoglikelihoodResult & { count: number } {
  let logprob = 0;
  let isGreedy = true;
  let count = 0;
  for (const i of positions) {
    const tok = lp.token_logprobs![i];
    if (tok === null || tok === undefined)
      throw new GoodVibeError(
        `${what}: echo logprobs: no log-probability at prompt position ${i}` +
          (i === 0 ? " (the first token has none: an empty context?)" : ""),
      );
    logprob += tok;
    count++;
    each?.(tok);
    const top = lp.top_logprobs?.[i];
    if (top && Object.keys(top).length > 0 && tok < Math.max(...Object.values(top))) isGreedy = false;
  }
  return { logprob, isGreedy, count };
}

/**
 * Sum the echoed log-probabilities of prompt positions [from, to) (a continuation sent as token ids: its last
 * positions), and whether each is the top one.
 */
export function sumEchoPositions(
  lp: CompletionLogprobs,
  from: number,
  to: number,
  what: string,
): LoglikelihoodResult {
  const n = lp.token_logprobs!.length;
  if (n < to) throw new GoodVibeError(`${what}: echo logprobs: ${n} positions for a prompt of ${to} tokens`);
  const { logprob, isGreedy } = sumLogprobs(lp, range(from, to), what);
  return { logprob, isGreedy };
}

/**
 * Sum the log-probabilities of the tokens that cover prompt characters [contextLen, promptLen), in code points.
 * Token i spans [offset[i], offset[i+1]); offsets come from `text_offset`, or from the token strings.
 */
export function parseEchoLogprobs(
  lp: CompletionLogprobs,
  contextLen: number,
  promptLen: number,
  prompt?: string,
): LoglikelihoodResult {
  const n = lp.token_logprobs!.length;
  let offsets = lp.text_offset;
  if (!offsets || offsets.length !== n) {
    if (!lp.tokens || lp.tokens.length !== n)
      throw new GoodVibeError("echo logprobs: neither text_offset nor tokens cover every token");
    offsets = [];
    let at = 0;
    for (const t of lp.tokens) {
      offsets.push(at);
      at += codePoints(t);
    }
  }
  // a start token the server added to a text prompt (vLLM's add_special_tokens, default true: Llama's
  // <|begin_of_text|>) is echoed as its own text, counted in the offsets (vLLM: the running len() of the token
  // strings) though the prompt has no such characters: the prompt's begin where those whole leading tokens end
  const skip = prompt !== undefined && lp.tokens?.length === n ? addedPrefix(lp.tokens, prompt) : 0;
  if (skip > 0) offsets = offsets.map((o) => o - skip);
  // the tokens that cover the continuation: those that start before the prompt's end (the rest are generated,
  // max_tokens >= 1) and end after the context's
  const covering: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = offsets[i]!;
    const end = i + 1 < n ? offsets[i + 1]! : Infinity;
    if (start >= promptLen) break;
    if (end > contextLen) covering.push(i);
  }
  if (covering.length === 0) throw new GoodVibeError("echo logprobs: no token covers the continuation");
  const { logprob, isGreedy } = sumLogprobs(lp, covering, "echo logprobs: the continuation");
  return { logprob, isGreedy };
}
