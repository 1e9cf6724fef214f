/** The task split of a task-held-out study: per language, the hardening tasks and the held-out tasks. */
import type { ExperimentResults } from "./schema.js";
import { num, text, type Table } from "./table.js";

export function taskSplitTable(results: ExperimentResults): Table {
  const s = results.taskSplit;
  const rows = s
    ? Object.entries(s.languages).map(([lang, l]) => [
        text(lang),
        num(l.hardening.length),
        text(l.hardening.map((t) => `${t.task} (${t.cwe})`).join(", ")),
        num(l.heldOut.length),
        text(l.heldOut.map((t) => `${t.task} (${t.cwe})`).join(", ")),
      ])
    : [];
  return {
    id: "table9-task-split",
    title: "Table 9. Task split: hardening tasks and held-out tasks per language",
    howToRead: s
      ? `Identification and training read only the hardening tasks' training pairs (${s.trainPairs} pairs); every ` +
        `evaluation reads only the held-out tasks' pairs (${s.evalPairs} pairs: ` +
        `${s.evaluate === "all" ? "all their instances" : "their dev instances"}). ${Math.round(s.heldOut * 100)}% of ` +
        `each language's tasks are held out, stratified by ${s.stratify === "class" ? "vulnerability class" : s.stratify === "cwe" ? "CWE" : "nothing"}, split seed ${s.seed}.`
      : "",
    columns: [
      { header: "Language" },
      { header: "Hardening tasks", unit: "count" },
      { header: "Hardening (CWE)" },
      { header: "Held-out tasks", unit: "count" },
      { header: "Held out (CWE)" },
    ],
    rows,
    notes: promptNotes(results),
    absentBecause: "not a task-held-out experiment",
  };
}

/** Which held-out prompts the safe rates rest on, when a budget answered only some (results.json lists their ids). */
function promptNotes(results: ExperimentResults): string[] {
  const e = results.evaluation;
  if (!e?.perTask || !e.promptIds) return [];
  return [
    `Safe rates rest on ${e.promptIds.length} generated answers, spread over the held-out tasks: ` +
      Object.entries(e.perTask)
        .map(([t, n]) => `${t} ${n}`)
        .join(", ") +
      " (the prompts' ids are in results.json, evaluation.promptIds).",
  ];
}
