/**
 * The shape of one corpus template (a task with slots, its secure and insecure answer), beside the templates
 * (data/corpus/<lang>.ts) that it types: they import it from here, and the corpus builder (src/data/corpus.ts)
 * that expands them imports both, so the templates never import the builder.
 */

/** A slot value: a string (placeholder `{{slot}}`), or a record of strings that belong together (`{{slot.key}}`). */
export type SlotValue = string | Readonly<Record<string, string>>;

export interface CodeTemplate {
  /** Unique within its language; part of every pair id. */
  key: string;
  /** e.g. "CWE-89". */
  cwe: string;
  /** Slot name → its values. The first slot is the identity slot used by the split (needs >= 2 values). */
  slots: Readonly<Record<string, readonly SlotValue[]>>;
  /** The task. `{{Verb}}` is filled with Write/Implement/Create. */
  question: string;
  /** Secure code (no fence; the builder adds it). */
  chosen: string;
  /** Insecure code. */
  rejected: string;
}
