/**
 * What `goodvibe demo` does: loaded by demo.ts (which registers the command) only when it runs.
 */
import type { OptionValues } from "commander";
import { demoSummary, runDemo } from "../../recipes/demo.js";
import { DEFAULT_DEMO } from "../../recipes/config.js";
import { interruptSignal, makeLogger, output, runCommand } from "../common.js";

export async function demoCommand(g: OptionValues, opts: OptionValues): Promise<void> {
  const log = makeLogger(g);
  await runCommand(g, async () => {
    const r = await runDemo({ ...DEFAULT_DEMO, ...opts }, log, interruptSignal(log));
    log.done();
    output(g, demoSummary(r), {
      // the rates with the intervals results.json and the report give them (over tasks where the pairs name
      // them), as the printed table shows them; base/hardened below are the evaluations as computed (their
      // intervals over items)
      security: r.security,
      base: {
        preference: { ...r.base.preference, perPair: undefined },
        safety: r.base.safety && { ...r.base.safety, items: undefined },
        utility: r.base.utility,
      },
      hardened: {
        preference: { ...r.hardened.preference, perPair: undefined },
        safety: r.hardened.safety && { ...r.hardened.safety, items: undefined },
        utility: r.hardened.utility,
      },
      judge: r.judge,
      departures: r.departures,
      trainableParams: r.harden.trainableParams,
      totalParams: r.harden.totalParams,
      trainFlops: r.harden.train.flops,
      report: r.reportDir,
      results: r.resultsFile,
      wallSeconds: r.wallSeconds,
    });
  });
}
