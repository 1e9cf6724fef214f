/** A family's PyTorch identification fixture (test/fixtures/<family>/goodvibe.json.gz) and its samples as identify takes them. */
import { readFixtureJson } from "../fixture-json.js";
import * as path from "node:path";
import type { IdentifySample } from "../../src/method/goodvibe/identify.js";
import type { RowSelection } from "../../src/method/goodvibe/adapter.js";

/** A train_step fixture's row selection (`cluster.selection`, `no_cluster.selection`) as attachGoodVibe takes it. */
export function fixtureSelections(
  sel: Record<string, { rows: number[]; clusters: number[]; n_clusters: number }>,
): Map<string, RowSelection> {
  return new Map(
    Object.entries(sel).map(([n, s]) => [n, { rows: s.rows, clusters: s.clusters, nClusters: s.n_clusters }]),
  );
}

export function readGoodvibeFixture(dir: string): {
  // the fixture's whole record (samples, label ids, PyTorch's importances and top-k), as JSON.parse gives it
  g: ReturnType<typeof JSON.parse>;
  samples: IdentifySample[];
} {
  const g = readFixtureJson(path.join(dir, "goodvibe.json.gz"));
  const samples: IdentifySample[] = g.samples.map((s: { input_ids: number[]; label: 0 | 1 }, i: number) => ({
    id: `s${i}`,
    inputIds: s.input_ids,
    label: s.label,
  }));
  return { g, samples };
}
