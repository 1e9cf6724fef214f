/**
 * One rule's own snippets: every `bad` snippet must fire the rule, its first finding on the line that
 * carries a `// <-` marker (comments are invisible to the rules, so the marker cannot influence them);
 * no `good` snippet (the safe idiom for the same task) may fire it.
 */
export interface Case {
  rule: string;
  bad: string[];
  good: string[];
}

/**
 * A code snippet as written in a template literal, raw (backslashes stay as typed: '\0', "\n") and
 * dedented, with the leading and trailing blank line dropped.
 */
export function code(strings: TemplateStringsArray, ...values: unknown[]): string {
  const raw = String.raw(strings, ...values)
    .replace(/^\n/, "")
    .replace(/\n[ \t]*$/, "");
  const indent = Math.min(
    ...raw
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => /^[ \t]*/.exec(l)![0].length),
  );
  return raw
    .split("\n")
    .map((l) => l.slice(indent))
    .join("\n");
}
