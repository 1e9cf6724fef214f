/**
 * How two records of settings differ, in words a user can act on: "train.lr: 0.003 → 0.001, data changed".
 * Used where a cached or resumable result is refused because it was made with other inputs (run-folder stages,
 * training checkpoints).
 */

/** Flattened `a.b.c` → JSON of the value (arrays are leaves). */
export function flattenSettings(
  v: unknown,
  prefix = "",
  out: Record<string, string> = {},
): Record<string, string> {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flattenSettings(x, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix] = JSON.stringify(v);
  return out;
}

/**
 * The keys in which `now` differs from `was`, sorted, each as "key: old → new" ("unset" for a missing side).
 * `names` gives keys that stand for contents (hashes) a readable name: "model folder contents changed". `shown`
 * gives keys held in another form than they were asked their two sides in words (training's checkpointing "auto",
 * keyed as true): used where that key differs; whether it differs is the keys' to say.
 */
export function settingsDifferences(
  was: unknown,
  now: unknown,
  names: Readonly<Record<string, string>> = {},
  shown: Readonly<Record<string, readonly [string, string]>> = {},
): string[] {
  const a = flattenSettings(was);
  const b = flattenSettings(now);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]).sort();
  return [
    ...new Set(
      keys.map((k) => {
        const named = Object.hasOwn(names, k) ? names[k] : undefined;
        if (named) return `${named} changed`;
        const [x, y] = Object.hasOwn(shown, k) ? shown[k]! : [a[k] ?? "unset", b[k] ?? "unset"];
        return `${k}: ${x} → ${y}`;
      }),
    ),
  ];
}
