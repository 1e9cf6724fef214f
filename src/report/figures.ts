/**
 * The report's figures as Vega-Lite specs rendered to SVG headless. Vega lays out text with
 * node-canvas when it is installed and with its built-in width estimate when not (our case: .npmrc
 * omits optional packages), so labels can sit a pixel or two off but render without native code.
 * Vega and Vega-Lite are imported when a figure is rendered, not with this module: loading them took
 * 0.3 of the CLI's 0.45 s start-up for every command, most of which never draw a figure.
 */
import type { TopLevelSpec } from "vega-lite";
import { groupBySetting, type Setting } from "./aggregate.js";
import type { CellResult, ExperimentResults, Method } from "./schema.js";
import { scheduleMark } from "./schedule.js";
import {
  isLossLike,
  METHOD_LABELS,
  utilityBenchmarks,
  utilityDelta,
  utilityDeltaCell,
} from "./paper-tables.js";

export interface Figure {
  /** File stem, e.g. "figure1-utility-delta". */
  id: string;
  title: string;
  /** What the figure shows and which runs it is drawn from. */
  caption: string;
  spec: TopLevelSpec;
}

const METHOD_ORDER = (["goodvibe", "lora", "full"] as Method[]).map((m) => METHOD_LABELS[m]);
const METHOD_COLORS = ["#1b9e77", "#7570b3", "#d95f02"];
const FONT = "Helvetica, Arial, sans-serif";
const CONFIG = { font: FONT, view: { stroke: "#ddd" }, axis: { labelFontSize: 11, titleFontSize: 12 } };

/** Figure 3 of the paper: utility change vs base per benchmark, bars grouped by method. */
export function utilityDeltaFigure(results: ExperimentResults): Figure | undefined {
  const settings = groupBySetting(results.cells, results.partial?.missing).filter(
    (s) => s.ablation === undefined,
  );
  const benchmarks = utilityBenchmarks(results.cells);
  const values: Record<string, string | number | null>[] = [];
  const seedsOf = new Map<string, number>();
  // bars of runs that trained nothing or barely (schedule.ts): the caption names them, as the tables mark them
  const marked = new Set<string>();
  for (const s of settings) {
    if (s.method === "base") continue;
    const base = settings.find((b) => b.model === s.model && b.method === "base");
    for (const benchmark of benchmarks) {
      const delta = utilityDelta(s, base, benchmark);
      if (delta === undefined) continue;
      const metric = s.cells.find((c) => c.utility?.[benchmark])?.utility?.[benchmark]?.metric ?? "";
      const loss = isLossLike(benchmark, metric);
      const scale = loss ? 1 : 100;
      // Error bars: Δ's 95% interval over the benchmark's items, as Table 3 gives it (evaluation noise; the
      // spread over seeds is Table 3's ± sd)
      const cell = utilityDeltaCell(s, base, benchmark);
      const hasInterval = cell.kind === "number" && cell.low !== undefined && cell.high !== undefined;
      values.push({
        model: s.model,
        panel: `${benchmark} (${loss ? "Δ loss, lower is better" : "Δ pp"})`,
        method: METHOD_LABELS[s.method],
        delta: delta * scale,
        low: hasInterval ? cell.low! * scale : null,
        high: hasInterval ? cell.high! * scale : null,
      });
      if (base) seedsOf.set(`${s.model}\u0000${METHOD_LABELS.base}`, base.cells.length);
      seedsOf.set(`${s.model}\u0000${METHOD_LABELS[s.method]}`, s.cells.length);
      const mark = scheduleMark(s.cells);
      if (mark) marked.add(`${s.model} ${METHOD_LABELS[s.method]}${mark}`);
    }
  }
  if (values.length === 0) return undefined;
  const panels = [...new Set(values.map((v) => v.panel as string))];
  // the legend lists only methods with bars; each method keeps its colour whichever others are present
  const present = METHOD_ORDER.filter((m) => values.some((v) => v.method === m));
  const colors = present.map((m) => METHOD_COLORS[METHOD_ORDER.indexOf(m)]!);
  const manyModels = new Set(values.map((v) => v.model)).size > 1;
  const x = {
    field: "method",
    type: "nominal",
    sort: present,
    axis: { title: null, labelAngle: 0 },
  } as const;
  const spec: TopLevelSpec = {
    data: { values },
    facet: {
      column: { field: "panel", type: "nominal", title: null, header: { labelFontSize: 12 }, sort: panels },
      ...(manyModels ? { row: { field: "model", type: "nominal", title: null } } : {}),
    },
    spec: {
      width: 150,
      height: 200,
      layer: [
        {
          mark: "bar",
          encoding: {
            x,
            y: { field: "delta", type: "quantitative", title: "change vs base" },
            color: {
              field: "method",
              type: "nominal",
              sort: present,
              scale: { domain: present, range: colors },
              legend: { title: "Method" },
            },
          },
        },
        {
          mark: { type: "rule", color: "#333" },
          transform: [{ filter: "datum.low != null" }],
          encoding: { x, y: { field: "low", type: "quantitative" }, y2: { field: "high" } },
        },
        { mark: { type: "rule", color: "#999" }, encoding: { y: { datum: 0 } } },
      ],
    },
    resolve: { scale: { y: "independent" } },
    config: CONFIG,
  };
  return {
    id: "figure1-utility-delta",
    title: "Figure 1. Utility change vs base by method",
    caption:
      "Mean over seeds of each method minus the base model, per benchmark (rates in percentage points, " +
      "losses raw; each panel has its own scale). Whiskers: Δ's 95% interval over the benchmark's items, as in " +
      "Table 3 (paired item by item where Table 3 says so, Newcombe's interval for 0/1 scores, mean ± " +
      "1.96·sd/√n of the per-item differences for real ones, the held-out code loss per held-out pair, the " +
      "--code real-code loss per document; otherwise " +
      "unpaired, Newcombe's interval for two independent proportions for 0/1 scores, from both sides' " +
      "standard errors for the rest; averaged " +
      "over seeds: evaluation noise, not training noise; " +
      "Table 3 gives the spread across seeds). Bars near zero mean utility was kept. Seeds: " +
      [...seedsOf]
        .map(
          ([k, n]) =>
            `${k
              .split("\u0000")
              .filter((x, i) => i === 1 || manyModels)
              .join(" ")} ${n}`,
        )
        .join(", ") +
      "." +
      (marked.size
        ? ` ${[...marked].join("; ")}: these bars are not the method's effect on utility (the notes and the ` +
          "training-schedule table say why)."
        : ""),
    spec,
  };
}

/** The run the neuron figures are drawn from: GoodVibe without ablation, lowest seed, with data. */
export function neuronSourceCell(
  settings: readonly Setting[],
  model: string,
  needImportance: boolean,
): CellResult | undefined {
  const goodvibe = settings.filter((s) => s.model === model && s.method === "goodvibe");
  goodvibe.sort((a, b) => (a.ablation === undefined ? -1 : 0) - (b.ablation === undefined ? -1 : 0));
  for (const s of goodvibe) {
    for (const c of s.cells) {
      if (!c.neurons) continue;
      if (needImportance && Object.keys(c.neurons.importanceByModule ?? {}).length === 0) continue;
      return c;
    }
  }
  return undefined;
}

/**
 * "organism: GoodVibe, seed 0 (one run of 2 seeds: Table 8 has every run's clusters)": the figures show one run,
 * and a reader should know that other seeds selected other neurons.
 */
function describeSource(cells: readonly CellResult[], all: readonly CellResult[]): string {
  return cells
    .map((c) => {
      const seeds = all.filter(
        (x) => x.model === c.model && x.method === c.method && x.ablation === c.ablation && x.neurons,
      ).length;
      const of = seeds > 1 ? ` (one run of ${seeds} seeds: Table 8 has every run's clusters)` : "";
      return `${c.model}: GoodVibe${c.ablation ? ` (${c.ablation})` : ""}, seed ${c.seed}${of}`;
    })
    .join("; ");
}

/** Figure 4 of the paper: importance of the selected neurons per module, coloured by cluster. */
export function importanceFigure(results: ExperimentResults): Figure | undefined {
  const settings = groupBySetting(results.cells, results.partial?.missing);
  const sources = [...new Set(results.cells.map((c) => c.model))]
    .map((m) => neuronSourceCell(settings, m, true))
    .filter((c): c is CellResult => c !== undefined);
  const values = sources.flatMap((c) =>
    Object.entries(c.neurons!.importanceByModule!).flatMap(([module, points]) =>
      points.map((p) => ({
        model: c.model,
        module,
        neuron: p.neuron,
        importance: p.importance,
        cluster: String(p.cluster),
      })),
    ),
  );
  if (values.length === 0) return undefined;
  const modules = [...new Set(values.map((v) => v.module))];
  const spec: TopLevelSpec = {
    data: { values },
    facet: {
      // Modules in the runner's order (q, k, v), not alphabetical.
      column: { field: "module", type: "nominal", title: null, header: { labelFontSize: 12 }, sort: modules },
      ...(sources.length > 1 ? { row: { field: "model", type: "nominal", title: null } } : {}),
    },
    spec: {
      width: 220,
      height: 180,
      mark: { type: "point", filled: true, size: 30, opacity: 0.8 },
      encoding: {
        x: { field: "neuron", type: "quantitative", title: "neuron (output row)" },
        y: { field: "importance", type: "quantitative", title: "importance" },
        color: {
          field: "cluster",
          type: "nominal",
          legend: { title: "Cluster" },
          scale: { scheme: "tableau10" },
        },
      },
    },
    resolve: { scale: { x: "independent" } },
    config: CONFIG,
  };
  return {
    id: "figure2-importance-clusters",
    title: "Figure 2. Importance of selected neurons, coloured by cluster",
    caption:
      "Each point is one selected security neuron (an output row of the module's weight) at its index and " +
      "gradient importance; colour is its cluster, which shares one update in training. Clusters that group " +
      `neurons of similar importance are what makes one update per cluster reasonable. Drawn from ${describeSource(sources, results.cells)}.`,
    spec,
  };
}

/** The last part of a module path: "model.layers.3.self_attn.q_proj" -> "q_proj". */
export function moduleType(module: string): string {
  return module.split(".").pop()!;
}

/** Security neurons per layer, stacked by module type. */
export function neuronsByLayerFigure(results: ExperimentResults): Figure | undefined {
  const settings = groupBySetting(results.cells, results.partial?.missing);
  const sources = [...new Set(results.cells.map((c) => c.model))]
    .map((m) => neuronSourceCell(settings, m, false))
    .filter((c): c is CellResult => c !== undefined && c.neurons!.perLayer.length > 0);
  const values = sources.flatMap((c) =>
    c.neurons!.perLayer.map((p) => ({
      model: c.model,
      layer: p.layer,
      module: moduleType(p.module),
      count: p.count,
    })),
  );
  if (values.length === 0) return undefined;
  const bars = {
    mark: "bar",
    encoding: {
      x: { field: "layer", type: "ordinal", title: "layer", axis: { labelAngle: 0 } },
      y: { aggregate: "sum", field: "count", type: "quantitative", title: "security neurons" },
      color: {
        field: "module",
        type: "nominal",
        legend: { title: "Module" },
        scale: { scheme: "tableau10" },
      },
    },
  } as const;
  const spec: TopLevelSpec =
    sources.length > 1
      ? {
          data: { values },
          facet: { row: { field: "model", type: "nominal", title: null } },
          spec: { width: 480, height: 200, ...bars },
          config: CONFIG,
        }
      : { data: { values }, width: 480, height: 220, ...bars, config: CONFIG };
  return {
    id: "figure3-neurons-by-layer",
    title: "Figure 3. Security neurons by layer and module",
    caption:
      "Number of selected security neurons in each layer, stacked by module type (attention projections " +
      `and MLP projections). Where they concentrate is where the method spends its updates. Drawn from ${describeSource(sources, results.cells)}.`,
    spec,
  };
}

export function buildFigures(results: ExperimentResults): Figure[] {
  return [utilityDeltaFigure(results), importanceFigure(results), neuronsByLayerFigure(results)].filter(
    (f): f is Figure => f !== undefined,
  );
}

/**
 * Render a Vega-Lite spec to an SVG string. `idPrefix` makes the SVG's internal ids (clip paths,
 * gradients) unique, since several SVGs inlined into one HTML page share one id namespace.
 */
export async function renderSvg(spec: TopLevelSpec, idPrefix: string): Promise<string> {
  const [vega, { compile }] = await Promise.all([import("vega"), import("vega-lite")]);
  const compiled = compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none", logLevel: vega.Error });
  try {
    const svg = await view.toSVG();
    return svg
      .replace(/\bid="([^"]+)"/g, (_, id: string) => `id="${idPrefix}-${id}"`)
      .replace(/url\(#([^)]+)\)/g, (_, id: string) => `url(#${idPrefix}-${id})`)
      .replace(/href="#([^"]+)"/g, (_, id: string) => `href="#${idPrefix}-${id}"`);
  } finally {
    view.finalize();
  }
}
