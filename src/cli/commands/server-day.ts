import { templateKwargSent } from "../../eval/generate/http.js";
import { serverDayCaveat } from "../../io/template-clock.js";
import type { Logger } from "../../util/log.js";

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
