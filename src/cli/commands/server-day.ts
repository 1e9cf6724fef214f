import { templateKwargSent } from "../../eval/generate/http.js";
import { serverDayCaveat } from "../../io/template-clock.js";
import type { Logger } from "../../util/log.js";
import { generationConfigCaveat } from "../../eval/generate/generation-config.js";
import { DEFAULT_APPLY_GENERATION_CONFIG } from "../../eval/config.js";

/**
 * The caveats `eval` and `generate` both say of answers: the template day a server writes (serverDayCaveats) and the
 * generation_config.json fields the answers may lack (generationConfigCaveats).
 */

/**
 * The template-day caveat of answers a server renders (io/template-clock.ts serverDayCaveat), for `eval --url` and
 * `generate --backend http` alike: `template` is the model folder's (null: not known, `whyUnknown` says why), and
 * the requests carry chat_template_kwargs.date_string unless `extraBody` leaves it out. Warned once, before the
 * answers, and returned for the output's caveats ([] where there is none).
 */
export function serverDayCaveats(
  command: string,
  template: string | null,
  extraBody: Record<string, unknown> | undefined,
  log: Pick<Logger, "warn">,
  whyUnknown?: string,
): string[] {
  const caveat = serverDayCaveat(
    template,
    templateKwargSent(extraBody, "date_string").sent !== "dropped",
    whyUnknown,
  );
  if (caveat === null) return [];
  log.warn(`${command}: ${caveat}`);
  return [`template day: ${caveat}`];
}

/**
 * Whether `eval` and `generate` apply the model folders' generation_config.json: `--no-generation-config` sets
 * commander's `generationConfig` false; unset, the default of eval/config.ts (its one home).
 */
export function applyGenerationConfigOption(opts: { generationConfig?: unknown }): boolean {
  return opts.generationConfig === false ? false : DEFAULT_APPLY_GENERATION_CONFIG;
}

/**
 * The generation-config caveat of each folder whose answers the output holds (generation-config.ts
 * generationConfigCaveat: fields transformers applies that the answers may lack), for `eval` and `generate` alike:
 * `who` prefixes a folder's lines ("" for the model, "--base: "), `server` says a server answered from it,
 * `sampled` that a local engine sampled its answers (the sampling warpers it lacks are named then). Warned
 * once each, before the answers are used, and returned for the output's caveats ([] where there is none).
 */
export function generationConfigCaveats(
  command: string,
  folders: readonly { who: string; dir: string | undefined; server: boolean; sampled?: boolean }[],
  applied: boolean,
  log: Pick<Logger, "warn">,
): string[] {
  const out: string[] = [];
  for (const { who, dir, server, sampled } of folders) {
    const c = dir ? generationConfigCaveat(dir, { server, applied, sampled }) : null;
    if (c === null) continue;
    log.warn(`${command}: ${who}${c}`);
    out.push(`generation config: ${who}${c}`);
  }
  return out;
}
