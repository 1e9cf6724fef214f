/**
 * Which builds of the tool computed an experiment's cells (CellResult.build): one line for the report's notes, and
 * a warning when there are several (an experiment resumed after an upgrade, or sharded over machines whose addons
 * take different bf16 routes): such cells can differ in their last bits from what one build computes.
 */
import type { CellResult } from "./schema.js";
// formatting only: the addon is not loaded by importing it (tensor/native.ts loads it at first use)
import { buildKey, describeBuild } from "../tensor/build.js";

type Build = NonNullable<CellResult["build"]>;

const describe = (b: Build | undefined): string => describeBuild(b ?? null);

/**
 * The cells grouped by build (tensor/build.ts buildKey: commits that run the same code are one build), largest
 * group first; cells without a record form one group.
 */
function groups(cells: readonly CellResult[]): { text: string; n: number }[] {
  const by = new Map<string, { text: string; n: number }>();
  const coreOf = (b: Build): string => buildKey({ ...b, bf16Products: undefined });
  // a cell without a bf16 route (a float32 base, a GPU) agrees with any route (isMixed): it is counted with the
  // cells of its own build that have one, not as a build of its own
  const routed = new Map<string, string>();
  for (const c of cells)
    if (c.build?.bf16Products && !routed.has(coreOf(c.build))) routed.set(coreOf(c.build), buildKey(c.build));
  for (const c of cells) {
    const b = c.build;
    const key = !b ? "unrecorded" : b.bf16Products ? buildKey(b) : (routed.get(coreOf(b)) ?? buildKey(b));
    const withRoute =
      b && !b.bf16Products ? cells.find((x) => x.build && buildKey(x.build) === key)?.build : b;
    const g = by.get(key) ?? { text: describe(withRoute ?? b), n: 0 };
    g.n++;
    by.set(key, g);
  }
  return [...by.values()].sort((a, b) => b.n - a.n);
}

/**
 * Whether the cells come from more than one build. A cell whose model does not compute in bf16 on a CPU (a float32
 * base, a GPU) has no bf16 route, and agrees with any: the routes are compared among the cells that have one.
 */
function isMixed(cells: readonly CellResult[]): boolean {
  const core = new Set(
    cells.map((c) => (c.build ? buildKey({ ...c.build, bf16Products: undefined }) : "unrecorded")),
  );
  const routes = new Set(cells.flatMap((c) => (c.build?.bf16Products ? [c.build.bf16Products] : [])));
  return core.size > 1 || routes.size > 1;
}

/** The warning when the cells come from more than one build, else null (results without any record: null). */
export function mixedBuilds(cells: readonly CellResult[]): string | null {
  if (!cells.some((c) => c.build) || !isMixed(cells)) return null;
  const g = groups(cells);
  return (
    `the cells were computed by more than one build of goodvibe, so they can differ in their last bits from what ` +
    `one build computes (a cell without a bf16 route computes in float32 or on a GPU): ${g.map((x) => `${x.n} cell${x.n > 1 ? "s" : ""} by ${x.text}`).join("; ")}. To have one ` +
    `build, delete the other builds' cells (cells/<id>.json) and rerun; for bf16 on CPUs, GOODVIBE_F32_PRODUCTS=1 ` +
    `(or 0) on every machine gives one route`
  );
}

/** The report's note on the builds: which one computed every cell, or the warning for several; null without records. */
export function buildsNote(cells: readonly CellResult[]): string | null {
  if (!cells.some((c) => c.build)) return null;
  const mixed = mixedBuilds(cells);
  if (mixed) return `Builds: ${mixed}.`;
  const withRoute = cells.find((c) => c.build?.bf16Products)?.build;
  const any = withRoute ?? cells.find((c) => c.build)!.build!;
  return `Every cell was computed by ${describe(any)}${withRoute ? " (the bf16 route where a model computes in bf16 on the CPU)" : ""}.`;
}
