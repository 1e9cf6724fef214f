/**
 * Detectors shared by several languages: hard-coded secrets, SQL built from untrusted pieces, and the
 * "is this code about security at all" context that decides whether a weak PRNG matters.
 */
import type { Finding, Rule } from "./types.js";
import type { Source, StringLiteral } from "./source.js";
import { flowOf } from "./flow.js";

type RuleMeta = Omit<Rule, "check">;

/** Identifiers that name a secret. */
const SECRET_NAME =
  /(pass(word|wd|phrase|code)?$|passw|pwd|secret|api_?key|apikey|access_?key|private_?key|secret_?key|signing_?key|encryption_?key|auth_?token|access_?token|bearer|^token$|_token$|Token$|credential|jwt)/i;
/** Identifiers with a secret word that hold something else (prompts, lengths, column names). */
const NOT_SECRET_NAME =
  /(prompt|message|msg|label|hint|placeholder|field|column|header|param|url|uri|path|file|regex|pattern|format|policy|type|mode|length|len$|min|max|count|name$|error|query|sql|stmt|hash|input|entered|provided|attempt|confirm|check|valid|strength|expire|prefix|env)/i;

/** A literal value that looks like a real secret rather than an empty value or a placeholder. */
function looksLikeSecret(value: string, opts: { placeholders?: boolean } = {}): boolean {
  if (value.length < 3 || /\s/.test(value)) return false;
  if (
    /^(<.*>|\$\{.*\}|\$\(.*\)|%[sv@d]|\{\d*\}|your[_-]?\w*|x{3,}|\*+|\.+|null|none|nil|undefined|todo|changeit_later)$/i.test(
      value,
    )
  ) {
    return false;
  }
  if (/^[A-Z][A-Z0-9_]*_(PASSWORD|SECRET|KEY|TOKEN)$/.test(value)) return false; // an environment variable's name
  return opts.placeholders === true || !isPlaceholder(value);
}

/**
 * Placeholder values that mark "put your credential here" rather than a credential: a generic word
 * (password, secret, test, root, username, changeme, example...), optionally prefixed by my/your/test/db
 * and followed by digits. Like the keyword plugin of Yelp's detect-secrets, which skips such values.
 */
export function isPlaceholder(value: string): boolean {
  const v = value.toLowerCase().replace(/[\s_\-.!]/g, "");
  return /^(?:my|your|test|db|some|dummy|default|sample|example)?(?:password|passwd|passwort|pass|pwd|passphrase|secret|secretkey|apikey|key|token|test|testing|tester|testuser|user|username|root|changeme|changeit|example|sample|dummy|placeholder|foo|bar|foobar|xxx+|abc|qwerty|pw)(?:\d{0,6})$/.test(
    v,
  );
}

function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) && !NOT_SECRET_NAME.test(name);
}

/** The whole right-hand side is the literal (not `"x" + y`, not a call argument list continuing). */
function endsExpression(src: Source, lit: StringLiteral): boolean {
  return /^[ \t#]*(?:[;,)}\]]|\r?\n|$)/.test(src.masked.slice(lit.end, lit.end + 40));
}

export function hardcodedSecrets(src: Source, rule: RuleMeta): Finding[] {
  const out: Finding[] = [];
  const msg = (what: string) => `hard-coded ${what}; read secrets from the environment or a secret store`;
  for (const lit of src.strings) {
    if (lit.interpolated) continue;
    const before = src.masked
      .slice(Math.max(0, lit.start - 160), lit.start)
      .replace(/[ \t]*(?:u8|[LuU@]|R)?$/, "");

    // name = "value", name := "value", Name: "value", let name: String = "value", #define NAME "value"
    const assign =
      /([A-Za-z_]\w*)\s*(?:\[\s*\w*\s*\])?\s*(?::\s*[\w.<>?[\]]+\s*)?(?::=|(?<![=!<>+\-*/])=(?!=)|:)\s*$/.exec(
        before,
      ) ?? /#\s*define\s+([A-Za-z_]\w*)\s+$/.exec(before);
    if (assign && isSecretName(assign[1]!) && looksLikeSecret(lit.value) && endsExpression(src, lit)) {
      out.push(src.finding(rule, lit.start, msg(`secret in '${assign[1]}'`)));
      continue;
    }

    // password == "value", password.equals("value"), strcmp(password, "value"), "value" == password
    const compareBefore =
      /([A-Za-z_]\w*)\s*(?:==|===|\.equals\s*\(|\.equalsIgnoreCase\s*\(|\.compare\s*\(|\.Equal\s*\()\s*$/.exec(
        before,
      ) ??
      /\b(?:strn?cmp|strcasecmp|memcmp|subtle\.ConstantTimeCompare)\s*\(\s*(?:\[\]byte\()?\s*([A-Za-z_][\w.]*)\)?\s*,\s*(?:\[\]byte\()?\s*$/.exec(
        before,
      );
    const after = src.masked.slice(lit.end, lit.end + 80);
    const compareAfter =
      /^\s*(?:==|===|\.equals\s*\(|\.equalsIgnoreCase\s*\()\s*([A-Za-z_][\w.]*)/.exec(after) ??
      (/\b(?:strn?cmp|strcasecmp)\s*\(\s*$/.test(before) ? /^\s*,\s*([A-Za-z_][\w.]*)/.exec(after) : null);
    const compared = compareBefore?.[1] ?? compareAfter?.[1];
    if (
      compared &&
      isSecretName(compared.split(".").pop()!) &&
      looksLikeSecret(lit.value, { placeholders: true })
    ) {
      out.push(src.finding(rule, lit.start, msg(`secret compared with '${compared}'`)));
      continue;
    }

    // Credentials inside connection strings: user:pass@tcp(...), scheme://user:pass@host, password=...
    if (
      (/^[\w.-]+:([^@\s/:]{2,})@(?:tcp|unix|\(|[\w.-]+)/.test(lit.value) &&
        looksLikeSecret(/^[\w.-]+:([^@\s/:]{2,})@/.exec(lit.value)![1]!)) ||
      (/:\/\/[^:/\s@]+:([^@\s]{2,})@/.test(lit.value) &&
        looksLikeSecret(/:\/\/[^:/\s@]+:([^@\s]{2,})@/.exec(lit.value)![1]!)) ||
      (/(?:^|[?;&\s])(?:password|pwd)=(?!\s*[;&?]|$|%s|\{)([^&;\s]+)/i.test(lit.value) &&
        !looksLikeSql(lit.value) &&
        looksLikeSecret(/(?:password|pwd)=([^&;\s]+)/i.exec(lit.value)![1]!))
    ) {
      out.push(src.finding(rule, lit.start, msg("password in a connection string")));
      continue;
    }
  }

  // Literal passwords passed straight to connection APIs.
  const connectCalls: [RegExp, number][] = [
    [/\bDriverManager\s*\.\s*getConnection\s*\(/g, 2],
    [/\bmysql_real_connect\s*\(/g, 3],
    [/\bPasswordAuthentication\s*\(/g, 1],
    [/\bsetPassword\s*\(/g, 0],
  ];
  for (const [re, argIndex] of connectCalls) {
    for (const m of src.matches(re)) {
      const args = src.callArgs(m.index + m[0].length - 1);
      const value = src.literalValue(args[argIndex]);
      if (value !== null && looksLikeSecret(value))
        out.push(src.finding(rule, m.index, msg("password passed to a connection call")));
    }
  }
  return out;
}

/** SQL text: upper-case keywords in the usual statement shapes, or unmistakable lower-case ones. */
const SQL_UPPER =
  /\b(SELECT\b[\s\S]*\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\S+\s+SET\b|DELETE\s+FROM\b|WHERE\s+\S+\s*(=|<|>|LIKE\b|IN\b)|VALUES\s*\(|DROP\s+TABLE\b)/;
const SQL_LOWER =
  /\b(select\s+(\*|[\w.,\s]+)\s+from\s+\w+|insert\s+into\s+\w+|delete\s+from\s+\w+|update\s+\w+\s+set\s+\w+|where\s+\w+\s*=)/;

export function looksLikeSql(value: string): boolean {
  return SQL_UPPER.test(value) || SQL_LOWER.test(value);
}

const FORMAT_CALLS =
  /^(v?sn?w?printf|s?printf_s|format|Sprintf|Fprintf|Printf|Errorf|formatted|stringWithFormat|appendFormat|String|NSString)$/;
const PLACEHOLDER = /%[-+ #0]*\d*(?:\.\d+)?(?:l|ll|h)?[sdiuvqf@]|\{\d*\}/;

/**
 * SQL built from pieces: an SQL literal concatenated with a non-literal (`+`, or `<<` into a C++
 * stream), filled by a printf-style format call, or with Swift interpolation.
 */
export function sqlBuiltFromInput(
  src: Source,
  rule: RuleMeta,
  opts: { streamOperator?: boolean } = {},
): Finding[] {
  const out: Finding[] = [];
  const m = src.masked;
  const isLiteralStart = (k: number) =>
    src.strings.some((s) => s.start === k) || /^(?:u8|[LuU])?R?"/.test(m.slice(k, k + 4));
  for (const lit of src.strings) {
    if (!looksLikeSql(lit.value)) continue;
    if (lit.interpolated) {
      out.push(src.finding(rule, lit.start, "SQL built with string interpolation; use bound parameters"));
      continue;
    }
    // Follow the chain of "+" / "<<" after the literal until a non-literal operand appears.
    const op = opts.streamOperator ? /^\s*(\+|<<)\s*/ : /^\s*\+\s*/;
    let k = lit.end;
    let concatenated = false;
    for (let guard = 0; guard < 20; guard++) {
      const mm = op.exec(m.slice(k, k + 200));
      if (!mm) break;
      const operand = k + mm[0].length;
      if (!isLiteralStart(operand)) {
        concatenated = true;
        break;
      }
      const next =
        src.literalAt(operand) ?? src.strings.find((s) => s.start > operand && s.start < operand + 4);
      if (!next) break;
      k = next.end;
    }
    // Or a non-literal before: `query + " WHERE id = " + ...`, `sql = base + "..."`.
    const before = /(\S)\s*(\+|<<)\s*$/.exec(m.slice(Math.max(0, lit.start - 80), lit.start));
    if (
      before &&
      (before[2] === "+" || opts.streamOperator) &&
      before[1] !== '"' &&
      before[1] !== "`" &&
      before[1] !== "="
    ) {
      concatenated = true;
    }
    if (concatenated) {
      out.push(
        src.finding(
          rule,
          lit.start,
          "SQL built by string concatenation; use a prepared statement with bound parameters",
        ),
      );
      continue;
    }
    if (PLACEHOLDER.test(lit.value)) {
      const call = src.enclosingCall(lit.start);
      const labelled = /format\s*:\s*$/.test(m.slice(Math.max(0, lit.start - 40), lit.start));
      if (
        call &&
        FORMAT_CALLS.test(call.name) &&
        (call.name !== "String" && call.name !== "NSString" ? true : labelled)
      ) {
        out.push(
          src.finding(
            rule,
            lit.start,
            `SQL built with ${call.name}(); use a prepared statement with bound parameters`,
          ),
        );
      }
    }
  }
  return out;
}

/** Does the code deal with secrets (so a predictable random number generator is a weakness)? */
export function securityContext(src: Source): boolean {
  return /(password|passwd|passcode|\bpwd|token|secret|salt|nonce|\botp\b|session|api_?key|encrypt|decrypt|cipher|credential|\bpin\b|csrf|crypto|\bkey\b|[a-z]Key\b|\bIV\b|\biv\b|verification_?code|reset_?code)/i.test(
    src.text,
  );
}

/**
 * Names of values that hold sensitive data, after CodeQL's SensitiveDataHeuristics (passwords,
 * secrets, keys, card and social-security numbers), and the names that say the value was already
 * made safe to show (hashed, masked, encrypted, redacted).
 */
const SENSITIVE_NAME =
  /(pass(?:wd|word|code|phrase)|(?:^|_)pwd|secret|api_?key|apikey|private_?key|secret_?key|access_?token|auth_?token|session_?(?:id|token)|(?:credit_?)?card_?(?:num|no|number)|creditcard|ssn\b|social_?security|cvv|\bpin\b)/i;
const NOT_SENSITIVE_NAME =
  /(hash|digest|mask|redact|censor|obfuscat|encrypt|crypt|salt|length|len\b|count|size|valid|match|correct|field|label|prompt|policy|strength|expir|reset|question|hint|required|regex|pattern|file|path|column|param|format|name\b|manager|service|encoder|checker|util|text_?field|input_?stream)/i;

export function isSensitiveName(name: string): boolean {
  return SENSITIVE_NAME.test(name) && !NOT_SENSITIVE_NAME.test(name);
}

/**
 * Functions defined in the snippet whose body really validates or transforms its input (regex match,
 * allow-list lookup, comparison, character filtering, escaping). A "sanitize(x) { return x }" that
 * does nothing does not count: the function's body is read, not its name.
 */
export function inSnippetValidators(src: Source, bodyCheck: RegExp): string[] {
  const out: string[] = [];
  const re = new RegExp(bodyCheck.source, bodyCheck.flags.replace("g", ""));
  for (const fn of flowOf(src).functions) {
    if (fn.params.length === 0) continue;
    const body = src.text.slice(fn.bodyStart, fn.bodyEnd + 1);
    if (re.test(body)) out.push(fn.name);
  }
  return out;
}

/** A regex alternation of names (escaped), or a pattern that matches nothing. */
export function namesRe(names: string[]): string {
  return names.length ? names.map((n) => n.replace(/[$]/g, "\\$")).join("|") : "(?!x)x";
}
