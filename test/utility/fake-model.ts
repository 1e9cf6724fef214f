import type { ChatMessage } from "../../src/io/tokenizer.js";
import type {
  LoglikelihoodRequest,
  LoglikelihoodResult,
  UtilityModel,
} from "../../src/eval/utility/model.js";

/**
 * A scripted UtilityModel: log-likelihoods come from `score(context, continuation)`, generations from
 * `answer(prompt)`. It records every request so tests can check the exact prompt strings.
 */
export class FakeModel implements UtilityModel {
  llRequests: LoglikelihoodRequest[] = [];
  genPrompts: string[] = [];
  genOpts: { maxNewTokens: number; stop: string[] }[] = [];
  chatRequests: ChatMessage[][] = [];

  constructor(
    private readonly script: {
      score?: (context: string, continuation: string) => number;
      answer?: (prompt: string) => string;
      chatAnswer?: (messages: ChatMessage[]) => string;
    },
  ) {}

  /** (does not tell its results one by one: `_opts.onResult` is not called, as a model need not) */
  async loglikelihood(
    reqs: LoglikelihoodRequest[],
    _opts?: { onResult?: () => void },
  ): Promise<LoglikelihoodResult[]> {
    this.llRequests.push(...reqs);
    return reqs.map((r) => ({ logprob: this.script.score!(r.context, r.continuation), isGreedy: false }));
  }

  async generate(prompts: string[], opts: { maxNewTokens: number; stop: string[] }): Promise<string[]> {
    this.genPrompts.push(...prompts);
    this.genOpts.push(opts);
    return prompts.map((p) => this.script.answer!(p));
  }

  async chat(messagesList: ChatMessage[][], _opts: { maxNewTokens: number }): Promise<string[]> {
    this.chatRequests.push(...messagesList);
    return messagesList.map((m) => this.script.chatAnswer!(m));
  }
}
