/**
 * Detectors shared by several languages: hard-coded secrets, SQL built from untrusted pieces, and the
 * "is this code about security at all" context that decides whether a weak PRNG matters.
 */
import type { Finding, Rule } from "./types.js";
import { defineRule, type Arg, type Source, type StringLiteral } from "./source.js";
import type { SafetyLanguage } from "../../../data/languages.js";
import { constantValue, flowOf, identRe, type ConstantValue } from "./flow.js";

type RuleMeta = Omit<Rule, "check">;

/** Identifiers that name a secret. */
const SECRET_NAME =
  /(pass(word|wd|phrase|code)?$|passw|pwd|secret|api_?key|apikey|access_?key|private_?key|secret_?key|signing_?key|encryption_?key|auth_?token|access_?token|bearer|^token$|_token$|Token$|credential|jwt)/i;
/** Identifiers with a secret word that hold something else (prompts, lengths, column names). */
const NOT_SECRET_NAME =
  /(prompt|message|msg|label|hint|placeholder|field|column|header|param|url|uri|path|file|regex|pattern|format|policy|type|mode|length|len$|min|max|count|name$|error|query|sql|stmt|hash|input|entered|provided|attempt|confirm|check|valid|strength|expire|prefix|env|propert|prop$|attr|option|setting|alias|factory|provider|algorithm|class$|(?:pass(?:word)?|pwd|token|credentials?)_?key$|^(?:next|peek|current|cur|prev|previous|last|first|consume|expect|lookahead|skip)_?tokens?$|tokens$|tokeni[sz]er)/i;

/** A literal value that looks like a real secret rather than an empty value or a placeholder. */
function looksLikeSecret(value: string, opts: { placeholders?: boolean } = {}): boolean {
  if (value.length < 3 || /\s/.test(value)) return false;
  if (
    /^(<.*>|\$\{.*\}|\$\(.*\)|%[sv@d]|\{\d*\}|\{[A-Za-z_]\w*\}|your[_-]?\w*|x{3,}|\*+|\.+|null|none|nil|undefined|todo|changeit_later)$/i.test(
      value,
    )
  ) {
    return false;
  }
  if (/^[A-Z][A-Z0-9_]*_(PASSWORD|SECRET|KEY|TOKEN)$/.test(value)) return false; // an environment variable's name
  if (isPropertyPath(value)) return false; // the name of a setting or class: "javax.security.auth.login.password"
  return opts.placeholders === true || !isPlaceholder(value);
}

/**
 * A dotted path of words: a property key, a package or class name, a host name ("jmx.remote.credentials",
 * "sun.security.pkcs11.P11SecretKeyFactory", "db.example.com"). It names where a secret is, not the secret.
 * Two lower-case words at least, so a JWT's or a random token's dotted base64 segments do not match.
 */
function isPropertyPath(value: string): boolean {
  const segs = value.split(".");
  return (
    segs.length >= 3 &&
    segs.every((s) => /^[A-Za-z][A-Za-z0-9_$-]{0,31}$/.test(s)) &&
    segs.filter((s) => /^[a-z]+$/.test(s)).length >= 2
  );
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

/**
 * `pw` abbreviates password in a name of one case (`pw`, `db_pw`, `DB_PW`) or camelCase (`adminPw`); a
 * mixed-case `metaValue_PW` is a country code.
 */
const PW_NAME = /(?:^|_)pw$|^(?:[A-Z0-9]+_)*PW$|[a-z0-9]Pw$/;

function isSecretName(name: string): boolean {
  return (SECRET_NAME.test(name) || PW_NAME.test(name)) && !NOT_SECRET_NAME.test(name);
}

const bare = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "");

/**
 * A constant whose value spells its own name is a label (`SECRET = "secret"`, `NMTOKEN = "NMTOKEN"`,
 * `ATTVAL_NMTOKEN = "NMTOKEN"`, `USER_PWD = "userPassword"`), not a secret.
 */
function isLabel(name: string, value: string): boolean {
  const n = bare(name).replace(/pwd?$/, "password");
  const v = bare(value);
  return v === n || name.endsWith(`_${value}`);
}

/**
 * The names compared with two or more different literals in the snippet: a keyword dispatch
 * (`if (token.equals("-help")) ... else if (token.equals("-version"))`), where the literals are words of a
 * syntax, not one secret that unlocks something.
 */
function dispatchNames(src: Source): Set<string> {
  const seen = new Map<string, Set<string>>();
  for (const c of comparisons(src)) {
    const [a, b] = c.operands.map((o) => src.masked.slice(o.start, o.end).trim());
    const lit = [a, b].map((t, i) =>
      /^"/.test(t!) ? src.literalAt(c.operands[i]!.start)?.value : undefined,
    );
    const k = lit[0] !== undefined ? 1 : lit[1] !== undefined ? 0 : -1;
    if (k < 0 || lit[k] !== undefined) continue;
    const name = operandName([a, b][k]!);
    if (!name) continue;
    const set = seen.get(name) ?? new Set<string>();
    set.add(lit[1 - k]!);
    seen.set(name, set);
  }
  return new Set([...seen].filter(([, v]) => v.size >= 2).map(([n]) => n));
}

/** The last name of an operand: `spec.getMasterSecret().getFormat()` -> getFormat, `self.token` -> token. */
function operandName(text: string): string | undefined {
  return /([A-Za-z_]\w*)\s*(?:\(\s*\))?\s*\)?\s*!?\s*$/.exec(text)?.[1];
}

/** The whole right-hand side is the literal (not `"x" + y`, not a call argument list continuing). */
function endsExpression(src: Source, lit: StringLiteral): boolean {
  return /^[ \t#]*(?:[;,)}\]]|\r?\n|$)/.test(src.masked.slice(lit.end, lit.end + 40));
}

/**
 * Hard-coded passwords, tokens and keys (CWE-798): a literal assigned to a secret-named variable, compared
 * with a secret-named value, inside a connection string, or reaching an API that takes a credential
 * (`sinks`, plus the connection calls above) or an equality test in an authentication check, written there
 * or through variables and constants (flow.ts constantValue). Secret names are a heuristic (as CodeQL's
 * HardcodedCredentials and detect-secrets' keyword plugin use): they decide only where no API gives the
 * value's role (an assignment, an `==`).
 */
export function hardcodedSecrets(
  src: Source,
  rule: RuleMeta,
  sinks: readonly CredentialSink[] = [],
): Finding[] {
  const out: Finding[] = [];
  const msg = (what: string) => `hard-coded ${what}; read secrets from the environment or a secret store`;
  const dispatch = dispatchNames(src);
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
    if (
      assign &&
      isSecretName(assign[1]!) &&
      looksLikeSecret(lit.value) &&
      !isLabel(assign[1]!, lit.value) &&
      endsExpression(src, lit) &&
      !replacedBeforeUse(src, assign[1]!, lit.end)
    ) {
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
      /^\s*(?:==|===|\.equals\s*\(|\.equalsIgnoreCase\s*\()\s*([A-Za-z_][\w.]*(?:\s*\(\s*\)\s*\.\s*[A-Za-z_][\w.]*)*)/.exec(
        after,
      ) ??
      (/\b(?:strn?cmp|strcasecmp)\s*\(\s*$/.test(before) ? /^\s*,\s*([A-Za-z_][\w.]*)/.exec(after) : null);
    const compared = compareBefore?.[1] ?? compareAfter?.[1];
    if (
      compared &&
      isSecretName(compared.split(".").pop()!) &&
      !dispatch.has(compared.split(".").pop()!) &&
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

  // Passwords and tokens that reach an API in that role: written there, or through variables and constants.
  for (const use of sinkValues(src, [...CONNECT_SINKS, ...sinks])) {
    const secretPart =
      !use.sink.connectionString &&
      use.value.parts.some((p) => looksLikeSecret(p.value.replace(AUTH_SCHEME, "")));
    const inConnectionString = !use.value.bytes && connectionStringSecret(use.value.value);
    if (!secretPart && !inConnectionString) continue;
    out.push(src.finding(rule, use.at, msg(`${use.sink.what}${viaText(src, use.value)}`)));
  }
  // Literal secrets compared with a value in an authentication check, through variables and constants.
  for (const c of comparisons(src)) {
    const [a, b] = c.operands;
    const va = constantValue(src, a.start, a.end);
    const vb = constantValue(src, b.start, b.end);
    if ((va === null) === (vb === null)) continue; // nothing fixed, or two constants
    const value = (va ?? vb)!;
    const other = va ? b : a;
    if (value.bytes) continue;
    const otherName = operandName(src.masked.slice(other.start, other.end));
    if (otherName !== undefined && dispatch.has(otherName)) continue;
    const credential =
      c.constantTime || (otherName !== undefined && isSecretName(otherName)) || value.via.some(isSecretName);
    if (!credential || !looksLikeSecret(value.value, { placeholders: true })) continue;
    // A constant that spells its own name is a label (`SECRET = "secret"`, `kPassword = "password"`), not a secret.
    if (value.via.some((n) => isLabel(n, value.value))) continue;
    out.push(
      src.finding(
        rule,
        c.at,
        msg(`secret${viaText(src, value)} compared with ${otherName ? `'${otherName}'` : "a value"}`),
      ),
    );
  }
  return out;
}

/** The names of headers whose value is a credential. */
const AUTH_HEADER_NAMES =
  "Authorization|Proxy-Authorization|X-API-Key|X-Auth-Token|X-Access-Token|Api-Key|X-Api-Token|Private-Token";
/** A header whose value is a credential. */
export const AUTH_HEADER = new RegExp(`^(?:${AUTH_HEADER_NAMES})$`, "i");
/** A whole header line with such a name: "Authorization: Bearer ...". */
export const AUTH_HEADER_LINE = new RegExp(`^(?:${AUTH_HEADER_NAMES})\\s*:`, "i");
/** A header name and a scheme ("Authorization: Bearer ", "Basic ") before a credential in a header value. */
const AUTH_SCHEME = new RegExp(
  `^(?:(?:${AUTH_HEADER_NAMES})\\s*:\\s*)?(?:(?:Bearer|Basic|Token|Digest|ApiKey|Key)\\s+)?`,
  "i",
);

/** A password inside a connection string: user:pass@tcp(...), scheme://user:pass@host, password=... */
function connectionStringSecret(value: string): boolean {
  const dsn = /^[\w.-]+:([^@\s/:]{2,})@(?:tcp|unix|\(|[\w.-]+)/.exec(value);
  const url = /:\/\/[^:/\s@]+:([^@\s]{2,})@/.exec(value);
  const kv = /(?:^|[?;&\s])(?:password|pwd)=(?!\s*[;&?]|$|%s|\{)([^&;\s]+)/i.exec(value);
  return (
    (dsn !== null && looksLikeSecret(dsn[1]!)) ||
    (url !== null && looksLikeSecret(url[1]!)) ||
    (kv !== null && !looksLikeSql(value) && looksLikeSecret(kv[1]!))
  );
}

/** " (the literal on line N, through 'a' -> 'b')" when the value came through variables. */
function viaText(src: Source, v: ConstantValue): string {
  if (v.via.length === 0) return "";
  // The line of the secret itself, not of a format or a header prefix around it.
  const part =
    v.parts.find((p) => looksLikeSecret(p.value.replace(AUTH_SCHEME, ""), { placeholders: true })) ??
    v.parts[0];
  const line = part ? ` on line ${src.lineOf(part.start)}` : "";
  return ` (the literal${line}, through ${v.via.map((n) => `'${n}'`).join(" -> ")})`;
}

/**
 * `name = "literal"` followed, in the same function and before any read of `name`, by a re-assignment
 * from something not fixed in the snippet (an environment read, a key store): the literal is never used.
 */
function replacedBeforeUse(src: Source, name: string, litEnd: number): boolean {
  const flow = flowOf(src);
  const fn = flow.functionAt(litEnd);
  const next = flow
    .assignmentsTo(name)
    .find((a) => a.index > litEnd && a.rhsEnd > a.rhsStart && flow.functionAt(a.index) === fn);
  // Only a whole new value replaces it (not `name[k] = ...`, not `name += ...`).
  if (!next || !/^:?=$/.test(next.op) || /^\s*\[/.test(src.masked.slice(next.index + name.length)))
    return false;
  if (constantValue(src, next.rhsStart, next.rhsEnd) !== null) return false;
  if (
    flow.conditions.some(
      (c) => c.bodyStart < next.index && next.index <= c.elseEnd && !(c.bodyStart < litEnd),
    )
  )
    return false; // replaced on one path only
  return !identRe(name).test(src.masked.slice(litEnd, next.index));
}

/**
 * An API that takes a credential or a key in one argument: `call` matches up to its "(", `arg` is the
 * argument's index or its Swift label; `when` requires another argument to be a given literal (a header
 * setter's header name). `what` names the role in the message.
 */
export interface CredentialSink {
  call: RegExp;
  arg: number | string;
  when?: { arg: number | string; value: RegExp };
  /** The argument is a connection string: only a password inside it counts. */
  connectionString?: boolean;
  what: string;
}

/** Connection calls every language's rule knew before flows were followed (kept for all four). */
const CONNECT_SINKS: CredentialSink[] = [
  {
    call: /\bDriverManager\s*\.\s*getConnection\s*\(/g,
    arg: 2,
    what: "password passed to a connection call",
  },
  { call: /\bmysql_real_connect\s*\(/g, arg: 3, what: "password passed to a connection call" },
  { call: /\bPasswordAuthentication\s*\(/g, arg: 1, what: "password passed to a connection call" },
  { call: /\bsetPassword\s*\(/g, arg: 0, what: "password passed to a connection call" },
];

function pickArg(args: Arg[], which: number | string): { start: number; end: number } | undefined {
  if (typeof which === "number") return args[which];
  for (const a of args) {
    const label = new RegExp(`^${which}\\s*:\\s*`).exec(a.masked);
    if (label) return { start: a.start + label[0].length, end: a.end };
  }
  return undefined;
}

/** Each sink call whose credential argument is fixed by the snippet, with that value. */
function sinkValues(
  src: Source,
  sinks: readonly CredentialSink[],
): { sink: CredentialSink; at: number; value: ConstantValue }[] {
  const out: { sink: CredentialSink; at: number; value: ConstantValue }[] = [];
  for (const sink of sinks)
    for (const m of src.matches(new RegExp(sink.call.source, "g"))) {
      const args = src.callArgs(src.masked.indexOf("(", m.index));
      if (sink.when) {
        const w = pickArg(args, sink.when.arg);
        const lit = w && constantValue(src, w.start, w.end);
        if (!lit || lit.bytes || !sink.when.value.test(lit.value)) continue;
      }
      const arg = pickArg(args, sink.arg);
      const value = arg && constantValue(src, arg.start, arg.end);
      if (value) out.push({ sink, at: m.index, value });
    }
  return out;
}

/**
 * Key material fixed in the snippet (a literal, a list of byte literals, or a variable holding one)
 * reaching a cipher or MAC key parameter (CWE-321). Any non-empty value counts, placeholder-looking
 * ones too: whatever the text, everyone with the code can decrypt or forge.
 */
export function hardcodedKeys(src: Source, rule: RuleMeta, sinks: readonly CredentialSink[]): Finding[] {
  const out: Finding[] = [];
  for (const use of sinkValues(src, sinks)) {
    if (!use.value.bytes && (use.value.value.length === 0 || /^[A-Z][A-Z0-9_]*$/.test(use.value.value)))
      continue;
    out.push(
      src.finding(
        rule,
        use.at,
        `${use.sink.what} is fixed in the code${viaText(src, use.value)}; load keys from a key store or derive them from a secret`,
      ),
    );
  }
  return out;
}

/** An all-zero buffer made at the use: `new byte[16]`, `make([]byte, 16)`, `[UInt8](repeating: 0, count: 16)`. */
const ZERO_BUFFER =
  /^(?:new\s+byte\s*\[\s*[\w.]+\s*\]|make\s*\(\s*\[\]\s*byte\s*,\s*[\w.]+\s*\)|\[UInt8\]\s*\(\s*repeating\s*:\s*0\s*,\s*count\s*:\s*[\w.]+\s*\)|Data\s*\(\s*count\s*:\s*[\w.]+\s*\))$/;

/**
 * An initialisation vector fixed in the code (CWE-329): a literal or byte list reaching a cipher's IV
 * parameter (through variables, as for keys), or an all-zero buffer that nothing fills before it is used
 * (`byte[] iv = new byte[16]; new IvParameterSpec(iv)`: the name appears nowhere else). With a fixed IV, CBC
 * encrypts equal prefixes to equal ciphertext and CTR/OFB reuse their key stream.
 */
export function hardcodedIvs(src: Source, rule: RuleMeta, sinks: readonly CredentialSink[]): Finding[] {
  const out: Finding[] = [];
  const advice =
    "; use a fresh random IV for each message (SecureRandom, RAND_bytes, crypto/rand) and send it along";
  const flow = () => flowOf(src); // built only where a sink is called
  // `if (params == null) params = new IvParameterSpec(new byte[16])`: a default for a parameter, the IV the
  // caller passes is used otherwise (as constantValue treats a parameter given a constant on one path).
  const parameterDefault = (at: number) => {
    const line = src.masked.slice(src.masked.lastIndexOf("\n", at) + 1, at);
    const target = /([A-Za-z_]\w*)\s*=\s*(?:new\s+)?$/.exec(line);
    return (
      target !== null &&
      flow()
        .functionAt(at)
        ?.params.some((p) => p.name === target[1]) === true
    );
  };
  for (const use of sinkValues(src, sinks)) {
    if (!use.value.bytes && use.value.value.length === 0) continue;
    if (parameterDefault(use.at)) continue;
    out.push(
      src.finding(rule, use.at, `${use.sink.what} is fixed in the code${viaText(src, use.value)}${advice}`),
    );
  }
  for (const sink of sinks)
    for (const m of src.matches(new RegExp(sink.call.source, "g"))) {
      const arg = pickArg(src.callArgs(src.masked.indexOf("(", m.index)), sink.arg);
      if (!arg) continue;
      const text = src.masked.slice(arg.start, arg.end).trim();
      let zero = ZERO_BUFFER.test(text);
      if (!zero && /^[A-Za-z_]\w*$/.test(text)) {
        const defs = flow().assignmentsTo(text);
        const only = defs.length === 1 ? defs[0]! : undefined;
        // Declared once as a zero buffer, and otherwise named only as this argument.
        zero =
          only !== undefined &&
          ZERO_BUFFER.test(src.masked.slice(only.rhsStart, only.rhsEnd).trim()) &&
          src.masked.match(new RegExp(identRe(text).source, "g"))!.length === 2;
      }
      if (zero && !parameterDefault(m.index))
        out.push(src.finding(rule, m.index, `${sink.what} is all zeros${advice}`));
    }
  return out;
}

interface Comparison {
  at: number;
  operands: [{ start: number; end: number }, { start: number; end: number }];
  /** A constant-time comparison: made for secrets. */
  constantTime: boolean;
}

/** Simple operand: a (member) name, a no-argument call or a literal. */
const OPERAND = String.raw`(?:(?:self|this)\s*\.\s*)?[A-Za-z_][\w.]*(?:\s*\(\s*\))?!?|"[^"\n]*"`;
const COMPARE_CALLS =
  /\b(strn?cmp|strcasecmp|_?stricmp|memcmp|CRYPTO_memcmp|ConstantTimeCompare|hmac\s*\.\s*Equal|MessageDigest\s*\.\s*isEqual|bytes\s*\.\s*Equal|Arrays\s*\.\s*equals)\s*\(/g;

/** Equality tests between two values: `a == b`, `a.equals(b)`, `strcmp(a, b)`, `subtle.ConstantTimeCompare(a, b)`. */
const comparisonCache = new WeakMap<Source, Comparison[]>();

function comparisons(src: Source): Comparison[] {
  const cached = comparisonCache.get(src);
  if (cached) return cached;
  const m = src.masked;
  const out: Comparison[] = [];
  comparisonCache.set(src, out);
  for (const op of m.matchAll(/[=!]==?/g)) {
    if (
      m[op.index - 1] === "=" ||
      m[op.index - 1] === "!" ||
      m[op.index - 1] === "<" ||
      m[op.index - 1] === ">"
    )
      continue;
    const left = new RegExp(`(${OPERAND})\\s*$`).exec(m.slice(Math.max(0, op.index - 120), op.index));
    const right = new RegExp(`^\\s*(${OPERAND})`).exec(
      m.slice(op.index + op[0].length, op.index + op[0].length + 120),
    );
    if (!left || !right) continue;
    const ls = op.index - left[0].length;
    const rs = op.index + op[0].length + right[0].indexOf(right[1]!);
    out.push({
      at: op.index,
      operands: [
        { start: ls, end: ls + left[1]!.length },
        { start: rs, end: rs + right[1]!.length },
      ],
      constantTime: false,
    });
  }
  for (const eq of m.matchAll(/\.\s*(?:equals|equalsIgnoreCase|compare|compareTo|contentEquals)\s*\(/g)) {
    const recv = new RegExp(`(${OPERAND})\\s*$`).exec(m.slice(Math.max(0, eq.index - 120), eq.index));
    const arg = src.callArgs(eq.index + eq[0].length - 1);
    if (!recv || arg.length !== 1) continue;
    const rs = eq.index - recv[0].length;
    out.push({
      at: eq.index,
      operands: [{ start: rs, end: rs + recv[1]!.length }, arg[0]!],
      constantTime: false,
    });
  }
  for (const call of m.matchAll(COMPARE_CALLS)) {
    const args = src.callArgs(call.index + call[0].length - 1);
    if (args.length < 2) continue;
    out.push({
      at: call.index,
      operands: [args[0]!, args[1]!],
      constantTime: /ConstantTimeCompare|CRYPTO_memcmp|hmac|MessageDigest/.test(call[1]!),
    });
  }
  return out;
}

/** SQL text: upper-case keywords in the usual statement shapes, or unmistakable lower-case ones. */
const SQL_UPPER =
  /\b(SELECT\b[\s\S]*\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\S+\s+SET\b|DELETE\s+FROM\b|WHERE\s+\S+\s*(=(?!=)|<|>|LIKE\b|IN\b)|VALUES\s*\(|DROP\s+TABLE\b)/;
const SQL_LOWER =
  /\b(select\s+(\*|[\w.,\s]+)\s+from\s+\w+|insert\s+into\s+\w+|delete\s+from\s+\w+|update\s+\w+\s+set\s+\w+|where\s+\w+\s*=(?!=))/;

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
    // With `<<`, the operand before must itself be streamed in (`ss << table << " WHERE ..."`): the chain's
    // head is the stream the statement goes to (`sql << "DROP TABLE t"`, SOCI's session), not data.
    const before = /(\S)\s*(\+|<<)\s*$/.exec(m.slice(Math.max(0, lit.start - 80), lit.start));
    const stmt = m
      .slice(Math.max(0, lit.start - 400), lit.start)
      .split(/[;{}]/)
      .pop()!;
    if (
      before &&
      (before[2] === "+" || (opts.streamOperator && (stmt.match(/<</g) ?? []).length >= 2)) &&
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

/** Does the code (or its text from `from` to `to`) deal with secrets: passwords, tokens, keys, nonces, crypto? */
export function securityContext(src: Source, from = 0, to = src.text.length): boolean {
  return /(password|passwd|passcode|\bpwd|token|secret|salt|nonce|\botp\b|session|api_?key|encrypt|decrypt|cipher|credential|\bpin\b|csrf|crypto|\bkey\b|[a-z]Key\b|\bIV\b|\biv\b|verification_?code|reset_?code)/i.test(
    src.text.slice(from, to),
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

/** `<lang>/hardcoded-key` (CWE-321): the same detector in every language, over that language's key sinks. */
export function hardcodedKeyRule(
  language: SafetyLanguage,
  sinks: readonly CredentialSink[],
  title = "Cryptographic key fixed in the code",
): Rule {
  return defineRule(
    { id: `${language}/hardcoded-key`, cwe: "CWE-321", language, title, severity: "medium" },
    (src, rule) => hardcodedKeys(src, rule, sinks),
  );
}

/** `<lang>/static-iv` (CWE-329): the same detector in every language, over that language's IV sinks. */
export function staticIvRule(language: SafetyLanguage, sinks: readonly CredentialSink[]): Rule {
  return defineRule(
    {
      id: `${language}/static-iv`,
      cwe: "CWE-329",
      language,
      title: "Initialisation vector fixed in the code",
      severity: "medium",
    },
    (src, rule) => hardcodedIvs(src, rule, sinks),
  );
}
