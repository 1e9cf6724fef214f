/** Rules for Go. */
import { argListStart, defineRule, type Source } from "./source.js";
import {
  AUTH_HEADER,
  hardcodedSecrets,
  inSnippetValidators,
  isSensitiveName,
  namesRe,
  securityContext,
  sqlBuiltFromInput,
  type CredentialSink,
  hardcodedKeyRule,
  staticIvRule,
} from "./common.js";
import {
  expressionEnd,
  flowOf,
  GO_EXIT,
  identRe,
  matchBracket,
  taintOf,
  type FunctionDef,
  type TaintConfig,
} from "./flow.js";
import {
  constValue,
  copyPastEnd,
  divideByZeroRule,
  inputBoundedLoops,
  outOfBounds,
  unboundedAllocationRule,
  uncheckedIndexes,
  uncheckedSlices,
} from "./bounds.js";
import type { Finding, Rule } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Untrusted input

const SOURCES =
  /\bos\s*\.\s*Args\b|\bos\s*\.\s*Getenv\s*\(|\bos\s*\.\s*LookupEnv\s*\(|\bflag\s*\.\s*(?:Arg|Args|String)\s*\(|\bmux\s*\.\s*Vars\s*\(|\.\s*(?:ReadString|ReadLine|ReadBytes|ReadRune)\s*\(|\.\s*Text\s*\(\s*\)|\b(?:ioutil|io)\s*\.\s*ReadAll\s*\(|\.\s*(?:Param|Query|PostForm|DefaultQuery|FormFile|GetHeader)\s*\(\s*"/;
const OUT_SOURCES = /\bfmt\s*\.\s*(?:Scan|Scanln|Scanf|Fscan|Fscanln|Fscanf)\s*\(/;
const TO_NUMBER = /\bstrconv\s*\.\s*(?:Atoi|ParseInt|ParseUint|ParseFloat)\s*\(|\blen\s*\(/;
const SANITIZERS =
  /\b(?:html\s*\.\s*EscapeString|template\s*\.\s*(?:HTMLEscapeString|JSEscapeString|URLQueryEscaper)|url\s*\.\s*(?:QueryEscape|PathEscape)|filepath\s*\.\s*Base|path\s*\.\s*Base|strconv\s*\.\s*Quote|bluemonday\s*\.\s*\w+)\s*\(/;

/**
 * Sources that depend on the snippet: request parameters of handlers (`r *http.Request`, any name), and the
 * entry names of archives being read (`for _, f := range zr.File` over a zip reader, `hdr, err := tr.Next()`
 * over a tar reader): an archive's author chooses its names, `../../etc/cron.d/x` included (Zip Slip).
 */
function requestSources(src: Source): { text?: RegExp; number?: RegExp } {
  const names = flowOf(src)
    .functions.flatMap((f) => f.params)
    .filter((p) => /\*\s*http\s*\.\s*Request\b/.test(p.type))
    .map((p) => p.name);
  const text: string[] = [];
  if (names.length > 0)
    text.push(
      `\\b(?:${namesRe(names)})\\s*\\.\\s*(?:URL|Form|PostForm|MultipartForm|Header|Body|Host|RequestURI|FormValue|PostFormValue|Cookie|Cookies|UserAgent|Referer)\\b`,
    );
  const zipReaders = src
    .matches(/\b([A-Za-z_]\w*)\s*(?:,\s*\w+\s*)?:?=\s*zip\s*\.\s*(?:OpenReader|NewReader)\s*\(/g)
    .map((z) => z[1]!);
  const tarReaders = src.matches(/\b([A-Za-z_]\w*)\s*:?=\s*tar\s*\.\s*NewReader\s*\(/g).map((t) => t[1]!);
  const entries = [
    ...(zipReaders.length
      ? src.matches(
          new RegExp(
            `\\bfor\\s+(?:_|\\w+)\\s*,\\s*([A-Za-z_]\\w*)\\s*:=\\s*range\\s+(?:${namesRe(zipReaders)})\\s*\\.\\s*File\\b`,
            "g",
          ),
        )
      : []),
    ...(tarReaders.length
      ? src.matches(
          new RegExp(
            `\\b([A-Za-z_]\\w*)\\s*,\\s*\\w+\\s*:?=\\s*(?:${namesRe(tarReaders)})\\s*\\.\\s*Next\\s*\\(`,
            "g",
          ),
        )
      : []),
  ].map((e) => e[1]!);
  if (entries.length > 0) text.push(`\\b(?:${namesRe(entries)})\\s*\\.\\s*(?:Name|Linkname)\\b`);
  return {
    ...(text.length > 0 && { text: new RegExp(text.join("|")) }),
    ...(names.length > 0 && {
      number: new RegExp(`\\b(?:${namesRe(names)})\\s*\\.\\s*ContentLength\\b`),
    }),
  };
}

/** Calls whose result carries their argument: string building, conversion, path joining. */
const PROPAGATORS =
  /^(?:fmt\s*\.\s*Sprint\w*|strings\s*\.\s*\w+|bytes\s*\.\s*\w+|filepath\s*\.\s*(?:Join|Clean|Abs|Dir|Ext)|path\s*\.\s*(?:Join|Clean|Dir)|string|\[\]byte|\[\]rune|strconv\s*\.\s*\w+|url\s*\.\s*(?:Parse|QueryUnescape|PathUnescape)|\w+\s*\.\s*(?:Get|Query|FormValue|PostFormValue|Value|Text|String|Bytes|Trim\w*|Fields)|append|len|copy|html\s*\.\s*UnescapeString|base64\s*\.\s*\w+\s*\.\s*DecodeString|\w+\s*\.\s*ReadString|\w+\s*\.\s*ReadAll|(?:ioutil|io)\s*\.\s*ReadAll)$/;

const EXTERNAL: TaintConfig = {
  sources: SOURCES,
  propagators: PROPAGATORS,
  outSources: OUT_SOURCES,
  toNumber: TO_NUMBER,
  sanitizers: SANITIZERS,
  dynamicSources: requestSources,
};

/** Also the string/[]byte/int parameters of the snippet's functions (callers unknown). */
/** Is the function literal `fn` an argument of sort.Slice/SliceStable/Search (its indices are below the length)? */
function sortCallback(src: Source, fn: FunctionDef): boolean {
  if (fn.name !== "") return false;
  const before = src.masked.slice(Math.max(0, fn.start - 200), fn.start);
  const call = [...before.matchAll(/\bsort\s*\.\s*(?:Slice|SliceStable|Search)\s*\(/g)].pop();
  if (!call) return false;
  const open = Math.max(0, fn.start - 200) + call.index + call[0].length - 1;
  return matchBracket(src, open) > fn.start;
}

const ENTRY: TaintConfig = {
  ...EXTERNAL,
  paramSources: (fn, p, src) =>
    // sort.Interface's Less(i, j int) and Swap(i, j int), and the callbacks of sort.Slice and sort.Search, get
    // indices below the length from package sort.
    fn.name === "main" ||
    (/^(?:Less|Swap)$/.test(fn.name) && fn.params.length === 2 && p.type === "int") ||
    (p.type === "int" && sortCallback(src, fn))
      ? null
      : /^(?:string|\[\]byte|\[\]string|\.\.\.string)$/.test(p.type)
        ? "text"
        : /^(?:int|int64|int32|uint|uint64|uint32)$/.test(p.type)
          ? "number"
          : null,
};

const VALIDATION =
  /\bstrings\s*\.\s*(?:Contains\w*|HasPrefix|HasSuffix|EqualFold|IndexAny|Index)\s*\(|\bregexp\b|\.\s*(?:MatchString|Match|FindString)\s*\(|==|!=|\ballow|\bwhitelist|\bvalid|\bswitch\b|\bok\b|\[\s*\w+\s*\]/i;

function validators(src: Source): RegExp {
  const names = inSnippetValidators(
    src,
    /\bstrings\s*\.\s*(?:Contains\w*|HasPrefix|HasSuffix|IndexAny)\s*\(|\.\s*MatchString\s*\(|\bregexp\b|\bunicode\s*\.\s*Is\w+\s*\(|[<>]=?\s*['\d]/,
  );
  return new RegExp(`${VALIDATION.source}|\\b(?:${namesRe(names)})\\s*\\(`, "i");
}

// ---------------------------------------------------------------------------------------------
// Errors

/** Calls whose error must be checked for the program to stay safe: files, processes, crypto, parsing, network, SQL. */
const SECURITY_CALL =
  /^(?:fmt\s*\.\s*(?:Scan|Scanln|Scanf|Sscan|Sscanf|Sscanln|Fscan|Fscanln|Fscanf)|os\s*\.\s*(?:Open|OpenFile|Create|ReadFile|WriteFile|Remove|RemoveAll|Mkdir|MkdirAll|Chmod|Chown|Lchown|Rename|Symlink|Link|Setenv|Truncate|Chdir)|ioutil\s*\.\s*(?:ReadFile|WriteFile|ReadAll|ReadDir|TempFile)|io\s*\.\s*(?:ReadFull|ReadAll)|rand\s*\.\s*Read|json\s*\.\s*Unmarshal|xml\s*\.\s*Unmarshal|yaml\s*\.\s*Unmarshal|strconv\s*\.\s*(?:Atoi|ParseInt|ParseUint|ParseFloat|ParseBool)|sql\s*\.\s*Open|http\s*\.\s*(?:Get|Post|PostForm|Head|NewRequest)|tls\s*\.\s*(?:Dial|LoadX509KeyPair|Listen)|x509\s*\.\s*Parse\w*|bcrypt\s*\.\s*\w+|net\s*\.\s*(?:Dial|Listen)\w*|exec\s*\.\s*Command\s*\([^)]*\)\s*\.\s*(?:Run|Output|CombinedOutput|Start)|\w+\s*\.\s*(?:Run|Output|CombinedOutput|Exec|ExecContext|Query|QueryContext|Prepare|Ping|Begin|Commit|Rollback|Decode|Unmarshal|Chmod|Chown))$/;

/** SECURITY_CALL, plus the methods of an *exec.Cmd the snippet made (`cmd.Start()`, `cmd.StdoutPipe()`, `cmd.Wait()`). */
/**
 * Is the call a security-relevant one whose error matters? `openParen` is the call's "(": an *exec.Cmd's
 * Run/Output/CombinedOutput/Start take no arguments, so `t.Run("case", func(t *testing.T) {...})` (a subtest,
 * which returns a bool) or `srv.Start(addr)` is not one.
 */
function isSecurityCall(src: Source, callee: string, openParen?: number): boolean {
  if (
    openParen !== undefined &&
    /\.(?:Run|Output|CombinedOutput|Start)$/.test(callee) &&
    !/^exec\.Command/.test(callee) &&
    src.callArgs(openParen).length > 0
  )
    return false;
  // encoding/pem's Decode returns (block, rest): its second result is the input left over, not an error.
  if (/^pem\.Decode$/.test(callee)) return false;
  if (SECURITY_CALL.test(callee)) return true;
  const cmd = /^([A-Za-z_]\w*)\.(?:Start|Wait|StdoutPipe|StderrPipe|StdinPipe)$/.exec(callee);
  return (
    !!cmd &&
    flowOf(src)
      .assignmentsTo(cmd[1]!)
      .some((a) => /^\s*exec\s*\.\s*Command(?:Context)?\s*\(/.test(src.masked.slice(a.rhsStart, a.rhsEnd)))
  );
}

const discardedError = defineRule(
  {
    id: "go/discarded-error",
    cwe: "CWE-252",
    language: "go",
    title: "Error of a security-relevant call assigned to _",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    // x, _ := f(...)  /  _ = f(...)  (not `for _, v := range`, `v, ok := m[k]`, `v, _ := x.(T)`, `<-ch`)
    for (const m of src.matches(/^[ \t]*((?:(?:[A-Za-z_]\w*|_)\s*,\s*)*_)\s*:?=\s*([^\n]+)/gm)) {
      const rhs = m[2]!.trim();
      const callee = /^([\w.]+(?:\s*\([^()]*\)\s*\.\s*\w+)?)\s*\(/.exec(rhs);
      const open = m.index + m[0].length - m[2]!.length + m[2]!.indexOf(rhs) + (callee?.[0].length ?? 0) - 1;
      if (!callee || !isSecurityCall(src, callee[1]!.replace(/\s+/g, ""), open)) continue;
      // Only the error is dropped when `_` is the last target.
      if (!/_\s*$/.test(m[1]!)) continue;
      out.push(
        src.finding(
          rule,
          m.index + m[0].length - m[0].trimStart().length,
          `the error from ${callee[1]} is discarded with _; a failure goes unnoticed`,
        ),
      );
    }
    return out;
  },
);

const uncheckedError = defineRule(
  {
    id: "go/unchecked-error",
    cwe: "CWE-252",
    language: "go",
    title: "Error of a security-relevant call never checked",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // A bare call statement whose only result is an error.
    for (const mm of src.matches(/^[ \t]*([A-Za-z_][\w.]*(?:\s*\([^()\n]*\)\s*\.\s*\w+)?)\s*\(/gm)) {
      const name = mm[1]!.replace(/\s+/g, "");
      // bufio.Scanner's Scan() returns a bool, not an error; fmt.Scan returns (n, err) like fmt.Scanln.
      if (
        !isSecurityCall(src, name, argListStart(mm)) ||
        /^(?:\w+\.)?(?:Write|WriteString|Decode)$/.test(name) ||
        (/^(?:\w+\.)?Scan$/.test(name) && name !== "fmt.Scan")
      )
        continue;
      const lineEnd = m.indexOf("\n", mm.index + mm[0].length);
      const stmt = m.slice(mm.index, lineEnd < 0 ? m.length : lineEnd);
      if (/\)\s*\.\s*\w+\s*\(/.test(stmt.slice(mm[0].length)) && !/exec\.Command/.test(name)) continue;
      out.push(
        src.finding(
          rule,
          mm.index + mm[0].length - mm[0].trimStart().length,
          `the error returned by ${name} is ignored`,
        ),
      );
    }
    return out;
  },
);

/**
 * The snippet's functions that take one error and stop when it is not nil (`func check(err error) { if err !=
 * nil { log.Fatal(err) } }`, a test script's `ts.check(err)` that calls Fatalf): a call to one checks the error.
 */
function errorStoppers(src: Source): string[] {
  const stops = /\b(?:panic|os\s*\.\s*Exit|log\s*\.\s*(?:Fatal|Panic)\w*)\s*\(/;
  const fns = flowOf(src).functions;
  // Functions that end the program or the test, and calls to them (`ts.fatalf(...)` wrapping `t.Fatalf`).
  const exiting = fns
    .filter(
      (f) =>
        f.name &&
        (GO_EXIT.test(src.masked.slice(f.bodyStart, f.bodyEnd)) ||
          stops.test(src.masked.slice(f.bodyStart, f.bodyEnd))),
    )
    .map((f) => f.name);
  const exits = exiting.length
    ? new RegExp(
        `${GO_EXIT.source}|${stops.source}|(?<![\\w])(?:[A-Za-z_]\\w*\\s*\\.\\s*)?(?:${namesRe(exiting)})\\s*\\(`,
      )
    : new RegExp(`${GO_EXIT.source}|${stops.source}`);
  return fns
    .filter((f) => {
      if (!f.name || f.params.length !== 1 || f.params[0]!.type.trim() !== "error") return false;
      const body = src.masked.slice(f.bodyStart, f.bodyEnd);
      const p = identRe(f.params[0]!.name).source;
      return new RegExp(`${p}\\s*!=\\s*nil|nil\\s*!=\\s*${p}`).test(body) && exits.test(body);
    })
    .map((f) => f.name);
}

const errorNotHandled = defineRule(
  {
    id: "go/error-not-handled",
    cwe: "CWE-755",
    language: "go",
    title: "Result used although its error was not checked, or the check does not stop",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    const flow = flowOf(src);
    const stoppers = errorStoppers(src);
    for (const mm of src.matches(/(?<![\w.])([A-Za-z_]\w*)\s*,\s*(err|_)\s*:?=\s*([A-Za-z_][\w.]*)\s*\(/g)) {
      const [, value, errName, callee] = mm;
      if (value === "_" || /^(?:ok|_)$/.test(value!)) continue;
      const fn = flow.functionAt(mm.index);
      const end = fn ? fn.bodyEnd : m.length;
      const stmtEnd = expressionEnd(src, mm.index + mm[0].length - 1, { newlineEnds: true });
      const rest = m.slice(stmtEnd, end);
      const useRe = new RegExp(`${identRe(value!).source}\\s*(?:\\.\\s*\\w|\\[)`);
      if (errName === "_") {
        // A pointer or file from a call whose error is dropped, then dereferenced.
        if (
          !/^(?:os\.(?:Open|OpenFile|Create)|\w+\.(?:Query|QueryRow|Prepare|Get|Post|Do|Dial)|http\.(?:Get|Post|NewRequest)|net\.Dial|sql\.Open|tls\.Dial)$/.test(
            callee!,
          ) &&
          !flow.functions.some(
            (f) => f.name === callee && /\breturn\s+nil\s*,/.test(m.slice(f.bodyStart, f.bodyEnd)),
          )
        )
          continue;
        const use = useRe.exec(rest);
        if (use)
          out.push(
            src.finding(
              rule,
              stmtEnd + use.index,
              `'${value}' is used although the error from ${callee} was discarded (it may be nil)`,
            ),
          );
        continue;
      }
      // Used before `err` is looked at (e.g. `defer f.Close()` above `if err != nil`); handing it to one of the
      // snippet's helpers that stops on a non-nil error (`check(err)`, `ts.must(err)`) looks at it too.
      const check = new RegExp(
        `\\berr\\s*(?:!=|==)\\s*nil|\\bnil\\s*(?:!=|==)\\s*err\\b|\\berrors\\s*\\.\\s*(?:Is|As)\\s*\\(\\s*err|\\bif\\s+err\\b${
          stoppers.length
            ? `|(?<![\\w])(?:[A-Za-z_]\\w*\\s*\\.\\s*)?(?:${namesRe(stoppers)})\\s*\\(\\s*err\\s*\\)`
            : ""
        }`,
      ).exec(rest);
      const use = useRe.exec(rest);
      const reassigned = /(?:^|[\s,(])err\s*:?=(?!=)/.exec(rest);
      if (use && (!check || use.index < check.index) && (!reassigned || use.index < reassigned.index)) {
        out.push(
          src.finding(
            rule,
            stmtEnd + use.index,
            `'${value}' is used before the error from ${callee} is checked`,
          ),
        );
        continue;
      }
      if (!check) continue;
      // The check's block neither returns nor stops, and the value is used after it.
      const at = stmtEnd + check.index;
      const cond = flow.conditions.find((c) => c.start - 4 <= at && at <= c.end && c.kind === "if");
      if (!cond || cond.exits) continue;
      const condText = m.slice(cond.start, cond.end);
      if (!/\berr\s*!=\s*nil/.test(condText) || cond.elseEnd > cond.bodyEnd) continue;
      const after = m.slice(cond.bodyEnd + 1, end);
      const use2 = useRe.exec(after);
      if (use2)
        out.push(
          src.finding(
            rule,
            cond.start,
            `the error from ${callee} is only reported; execution goes on and uses '${value}'`,
          ),
        );
    }
    return out;
  },
);

// ---------------------------------------------------------------------------------------------

const SHELL = /^(?:\/bin\/|\/usr\/bin\/)?(?:sh|bash|zsh|dash|cmd|cmd\.exe|powershell)$/;

const commandInjection = defineRule(
  {
    id: "go/command-injection",
    cwe: "CWE-78",
    language: "go",
    title: "exec.Command with a program or shell command from input",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    const check = validators(src);
    for (const m of src.matches(/\bexec\s*\.\s*(Command|CommandContext)\s*\(/g)) {
      const args = src.callArgs(argListStart(m)).slice(m[1] === "CommandContext" ? 1 : 0);
      const program = args[0];
      if (!program) continue;
      const programValue = src.literalValue(program);
      const dashC = args.findIndex((a) => ["-c", "/c", "/C"].includes(src.literalValue(a) ?? ""));
      const viaShell = programValue !== null && SHELL.test(programValue) && dashC > 0;
      const risky = viaShell ? args.slice(dashC + 1) : [program];
      const bad = risky.find(
        (a) =>
          !src.isLiteral(a) &&
          (taint.range(a.start, a.end) || /\bSprintf\s*\(|\+/.test(a.masked)) &&
          !taint.guarded(taint.varsIn(a.start, a.end), m.index, check),
      );
      if (bad)
        out.push(
          src.finding(
            rule,
            m.index,
            viaShell
              ? "shell -c with a command built from input; call the program directly with validated arguments"
              : `the program to run ('${bad.text}') comes from input; allow-list it`,
          ),
        );
    }
    return out;
  },
);

const sqlInjection = defineRule(
  {
    id: "go/sql-injection",
    cwe: "CWE-89",
    language: "go",
    title: "database/sql query built with Sprintf, + or from input",
    severity: "high",
  },
  (src, rule) => {
    const out = sqlBuiltFromInput(src, rule);
    const taint = taintOf(src, EXTERNAL);
    for (const m of src.matches(
      /\.\s*(Query|QueryRow|Exec|QueryContext|QueryRowContext|ExecContext|Prepare|Raw|Where)\s*\(/g,
    )) {
      const args = src.callArgs(argListStart(m));
      const q = args[/Context$/.test(m[1]!) ? 1 : 0];
      if (!q || src.isLiteral(q)) continue;
      if (
        /\bfmt\s*\.\s*Sprintf\s*\(/.test(q.masked) ||
        (/\+/.test(src.shape(q)) && !src.isLiteral(q)) ||
        (args.length === 1 && taint.range(q.start, q.end))
      )
        out.push(
          src.finding(
            rule,
            m.index,
            `${m[1]} with a query built from run-time values; use placeholders (? or $1) and pass values as arguments`,
          ),
        );
    }
    return out;
  },
);

const weakRandom = defineRule(
  {
    id: "go/weak-random",
    cwe: "CWE-338",
    language: "go",
    title: "math/rand used for secrets",
    severity: "medium",
  },
  (src, rule) => {
    if (!securityContext(src) && !/\brand\s*\.\s*Seed\s*\(\s*time\s*\.\s*Now/.test(src.masked)) return [];
    const imports = src.strings.filter((s) => /^math\/rand(\/v2)?$/.test(s.value));
    if (imports.length > 0)
      return imports.map((s) =>
        src.finding(
          rule,
          s.start,
          "math/rand is predictable; use crypto/rand for tokens, keys and passwords",
        ),
      );
    return src
      .matches(
        /\brand\s*\.\s*(Intn|Int31|Int31n|Int63|Int63n|Float64|Float32|Perm|Seed|Shuffle|Uint32|Uint64|IntN|N)\s*\(/g,
      )
      .map((m) => src.finding(rule, m.index, "math/rand is predictable; use crypto/rand for secrets"));
  },
);

const weakCrypto = defineRule(
  {
    id: "go/weak-crypto",
    cwe: "CWE-327",
    language: "go",
    title: "crypto/md5, crypto/sha1, crypto/des, crypto/rc4",
    severity: "medium",
  },
  (src, rule) => {
    const imports = src.strings.filter((s) => /^crypto\/(md5|sha1|des|rc4)$/.test(s.value));
    if (imports.length > 0)
      return imports.map((s) =>
        src.finding(rule, s.start, `${s.value} is broken; use crypto/sha256 or AES-GCM`),
      );
    return src
      .matches(/\b(md5|sha1|des|rc4)\s*\.\s*(New|Sum|NewCipher|NewTripleDESCipher)\w*\s*\(/g)
      .map((m) => src.finding(rule, m.index, `${m[1]} is broken; use crypto/sha256 or AES-GCM`));
  },
);

/** APIs that take a password or token in one argument (HTTP headers and basic auth, SMTP, SSH, SQL DSNs). */
const CREDENTIAL_SINKS: CredentialSink[] = [
  {
    call: /\.\s*Header\s*\.\s*(?:Set|Add)\s*\(/g,
    arg: 1,
    when: { arg: 0, value: AUTH_HEADER },
    what: "credential in an HTTP header",
  },
  { call: /\.\s*SetBasicAuth\s*\(/g, arg: 1, what: "password passed to SetBasicAuth" },
  { call: /\bsmtp\s*\.\s*PlainAuth\s*\(/g, arg: 2, what: "password passed to smtp.PlainAuth" },
  { call: /\bssh\s*\.\s*Password\s*\(/g, arg: 0, what: "password passed to ssh.Password" },
  {
    call: /\bsql\s*\.\s*Open\s*\(/g,
    arg: 1,
    connectionString: true,
    what: "password in a database connection string",
  },
];

const hardcodedCredential = defineRule(
  {
    id: "go/hardcoded-credential",
    cwe: "CWE-798",
    language: "go",
    title: "Hard-coded password or key",
    severity: "medium",
  },
  (src, rule) => hardcodedSecrets(src, rule, CREDENTIAL_SINKS),
);

/** APIs that take a cipher, MAC or token-signing key. */
const KEY_SINKS: CredentialSink[] = [
  {
    call: /\b(?:aes|des|blowfish|twofish|cast5)\s*\.\s*New(?:TripleDES)?Cipher\s*\(/g,
    arg: 0,
    what: "the cipher key",
  },
  { call: /\bchacha20poly1305\s*\.\s*NewX?\s*\(/g, arg: 0, what: "the cipher key" },
  { call: /\bhmac\s*\.\s*New\s*\(/g, arg: 1, what: "the HMAC key" },
  { call: /\.\s*SignedString\s*\(/g, arg: 0, what: "the token-signing key" },
];

/** Where an IV goes in when encrypting (crypto/cipher block modes). */
const IV_SINKS: CredentialSink[] = [
  { call: /\bcipher\s*\.\s*New(?:CBCEncrypter|CFBEncrypter|CTR|OFB)\s*\(/g, arg: 1, what: "the IV" },
];

const staticIv = staticIvRule("go", IV_SINKS);

const hardcodedKey = hardcodedKeyRule("go", KEY_SINKS);

const PATH_CHECKS =
  /filepath\s*\.\s*(?:Clean|Rel|Base|IsLocal|EvalSymlinks|Abs)\s*\(|path\s*\.\s*(?:Clean|Base)\s*\(|strings\s*\.\s*(?:HasPrefix|Contains)\s*\(|SecureJoin|\.\./;

const pathTraversal = defineRule(
  {
    id: "go/path-traversal",
    cwe: "CWE-22",
    language: "go",
    title: "File path from input without Clean and a base-folder check",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    const external = taintOf(src, EXTERNAL);
    for (const m of src.matches(
      /\b(?:os\s*\.\s*(?:Open|OpenFile|ReadFile|Create|WriteFile|Remove|RemoveAll|ReadDir|Stat)|ioutil\s*\.\s*(?:ReadFile|WriteFile|ReadDir)|http\s*\.\s*ServeFile|filepath\s*\.\s*Join|path\s*\.\s*Join)\s*\(/g,
    )) {
      const args = src.callArgs(argListStart(m));
      const paths = /ServeFile/.test(m[0]) ? args.slice(2, 3) : /Join/.test(m[0]) ? args : args.slice(0, 1);
      // Input from outside anywhere in the path; a caller's value only when joined under a base folder.
      const underBase = (p: { start: number; end: number; masked: string }, isJoinArg: boolean): boolean => {
        if (isJoinArg) return taint.range(p.start, p.end);
        // A name joined under a base: a non-first argument of Join, or the right side of a "+".
        const join = /\b(?:filepath|path)\s*\.\s*Join\s*\(/.exec(p.masked);
        if (join)
          return src
            .callArgs(p.start + join.index + join[0].length - 1)
            .slice(1)
            .some((a) => taint.range(a.start, a.end));
        const plus = p.masked.indexOf("+");
        return plus > 0 && taint.range(p.start + plus + 1, p.end);
      };
      const bad = paths.find(
        (p, k) => external.range(p.start, p.end) || underBase(p, /Join/.test(m[0]) && k > 0),
      );
      if (!bad) continue;
      const vars = taint.varsIn(bad.start, bad.end);
      if (PATH_CHECKS.test(bad.masked) || taint.guarded(vars, m.index, PATH_CHECKS)) continue;
      // Cleaned and prefix-checked anywhere in the function counts too.
      const fn = flowOf(src).functionAt(m.index);
      const scope = src.masked.slice(fn ? fn.bodyStart : 0, fn ? fn.bodyEnd : undefined);
      if (
        /filepath\s*\.\s*(?:Clean|Rel|Abs|EvalSymlinks|IsLocal)[\s\S]*(?:HasPrefix|\.\.)/.test(scope) ||
        (/filepath\s*\.\s*(?:Clean|Rel|Abs|EvalSymlinks|IsLocal)\s*\(/.test(scope) &&
          /\bHasPrefix\s*\(/.test(scope))
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "file path built from input without Clean and a check that it stays under the base folder",
        ),
      );
    }
    return out;
  },
);

const unsafePointer = defineRule(
  {
    id: "go/unsafe-pointer",
    cwe: "CWE-119",
    language: "go",
    title: "unsafe pointer arithmetic or reinterpretation of memory",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    // Pointer arithmetic through uintptr, and casts of an element's address to a wider type.
    for (const m of src.matches(
      /\bunsafe\s*\.\s*Pointer\s*\(\s*uintptr\s*\(|\bunsafe\s*\.\s*(?:Add|Slice|String)\s*\(|uintptr\s*\([^)]*\)\s*\+|\+\s*uintptr\s*\(/g,
    ))
      out.push(src.finding(rule, m.index, "pointer arithmetic with unsafe/uintptr is not bounds checked"));
    for (const m of src.matches(
      /\(\s*\*\s*(\[\s*\d+\s*\]\w+|u?int(?:16|32|64)?|float\d+|\w+)\s*\)\s*\(\s*unsafe\s*\.\s*Pointer\s*\(/g,
    ))
      out.push(
        src.finding(
          rule,
          m.index,
          `memory reinterpreted as *${m[1]} through unsafe.Pointer without a size check`,
        ),
      );
    // A slice or string header rewritten by hand: Len/Cap/Data set past the backing array.
    const headers = src
      .matches(
        /\b([A-Za-z_]\w*)\s*:?=\s*\(\s*\*\s*reflect\s*\.\s*(?:SliceHeader|StringHeader)\s*\)\s*\(\s*unsafe\s*\.\s*Pointer\s*\(/g,
      )
      .map((h) => h[1]!);
    if (headers.length > 0) {
      for (const w of src.matches(
        new RegExp(`(?<![\\w.])(?:${namesRe(headers)})\\s*\\.\\s*(?:Len|Cap|Data)\\s*=(?!=)`, "g"),
      )) {
        const fn = flowOf(src).functionAt(w.index);
        const before = src.masked.slice(fn ? fn.bodyStart : 0, w.index);
        if (/\bif\b[^{\n]*(?:\.\s*(?:Len|Cap)\b[^{\n]*[<>]=?|[<>]=?[^{\n]*\.\s*(?:Len|Cap)\b)/.test(before))
          continue;
        out.push(
          src.finding(
            rule,
            w.index,
            "a slice/string header's Len, Cap or Data is set by hand with no check against the backing array's capacity",
          ),
        );
        break;
      }
    }
    return out;
  },
);

const formatString = defineRule(
  {
    id: "go/format-string",
    cwe: "CWE-134",
    language: "go",
    title: "Printf-family call with a non-constant format",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const constants = new Set(
      src
        .matches(/\bconst\s+([A-Za-z_]\w*)|^(?![^\S\n]*\n)\s*([A-Za-z_]\w*)\s*:?=\s*["`][^\n]*$/gm)
        .map((m) => m[1] ?? m[2]!),
    );
    for (const m of src.matches(
      /\b(fmt|log|t|b)\s*\.\s*(Printf|Sprintf|Errorf|Fprintf|Fatalf|Panicf|Logf|Skipf)\s*\(/g,
    )) {
      const args = src.callArgs(argListStart(m));
      const fmt = args[m[2] === "Fprintf" ? 1 : 0];
      if (!fmt || src.isLiteral(fmt) || constants.has(fmt.masked)) continue;
      // A printf wrapper (`func errorf(format string, args ...any) { log.Printf(format, args...) }`) hands its
      // own format and variadic arguments on: the format is its caller's (checked where the wrapper is called).
      const fn = flowOf(src).functionAt(m.index);
      const last = args[args.length - 1]?.masked.trim() ?? "";
      if (
        fn?.params.some((p) => p.name === fmt.masked.trim() && /^string$/.test(p.type.trim())) &&
        fn.params.some((p) => `${p.name}...` === last.replace(/\s+/g, "") && /^\.\.\./.test(p.type.trim()))
      )
        continue;
      // Percent signs escaped or removed first.
      const v = fmt.masked.trim();
      const defs = flowOf(src).assignmentsTo(v);
      if (defs.some((a) => /Replace(?:All)?\s*\([^)]*%/.test(src.text.slice(a.rhsStart, a.rhsEnd)))) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `${m[1]}.${m[2]} format '${fmt.text}' is not constant; use ${m[1]}.${m[2]}("%s", ${fmt.text})`,
        ),
      );
    }
    return out;
  },
);

const insecureTls = defineRule(
  {
    id: "go/tls-insecure-skip-verify",
    cwe: "CWE-295",
    language: "go",
    title: "TLS certificate verification disabled",
    severity: "high",
  },
  (src, rule) =>
    src
      .matches(/\bInsecureSkipVerify\s*:\s*true\b/g)
      .map((m) =>
        src.finding(rule, m.index, "InsecureSkipVerify disables certificate checks (man-in-the-middle)"),
      ),
);

const indexOutOfRange = defineRule(
  {
    id: "go/index-out-of-range",
    cwe: "CWE-129",
    language: "go",
    title: "Index past the end of a slice/array, or from input without a length check",
    severity: "medium",
  },
  (src, rule) => {
    const out = [...outOfBounds(src), ...copyPastEnd(src)].map((f) => src.finding(rule, f.at, f.message));
    // os.Args[k] without a len(os.Args) check.
    const argsChecked = /\blen\s*\(\s*os\s*\.\s*Args\s*\)|\bflag\s*\.\s*NArg\s*\(/.test(src.masked);
    if (!argsChecked)
      for (const m of src.matches(/\bos\s*\.\s*Args\s*\[\s*([1-9]\d*)\s*\]/g)) {
        out.push(
          src.finding(
            rule,
            m.index,
            `os.Args[${m[1]}] panics when the argument is missing; check len(os.Args) first`,
          ),
        );
        break;
      }
    // Slice expressions with constant bounds past a known length: s[10:20], s[:100] or s[n:] (n a constant) on a
    // string variable given one literal and never reassigned (Go strings are immutable), in the same function.
    for (const m of src.matches(/\b([A-Za-z_]\w*)\s*\[\s*(\w*)\s*:\s*(\w*)\s*\]/g)) {
      const defs = flowOf(src).assignmentsTo(m[1]!);
      if (defs.length !== 1 || flowOf(src).functionAt(defs[0]!.index) !== flowOf(src).functionAt(m.index))
        continue;
      const lit = src.literalAt(defs[0]!.rhsStart);
      if (!lit || src.masked.slice(lit.end, defs[0]!.rhsEnd).trim() !== "" || defs[0]!.index > m.index)
        continue;
      const length = Buffer.byteLength(lit.value, "utf8");
      const bound = [m[3]!, m[2]!]
        .filter(Boolean)
        .map((b) => ({ b, v: constValue(src, b) }))
        .find((x) => x.v !== null && x.v > length);
      if (bound)
        out.push(
          src.finding(
            rule,
            m.index,
            `slice bound ${bound.b}${bound.b === String(bound.v) ? "" : ` (= ${bound.v})`} is past the end of '${m[1]}' (${length} bytes): it panics`,
          ),
        );
    }
    const taint = taintOf(src, ENTRY);
    for (const f of uncheckedIndexes(src, taint)) out.push(src.finding(rule, f.at, f.message));
    for (const f of uncheckedSlices(src, taint)) out.push(src.finding(rule, f.at, f.message));
    for (const f of inputBoundedLoops(src, taint)) out.push(src.finding(rule, f.at, f.message));
    return out;
  },
);

/**
 * A regular expression source matching an assignment to `id` (already a regex source): alone (`p = f()`,
 * `p := f()`), or as one target of several (`p, err = f()`, `if p, err = parse(b); err != nil`), not a
 * dereference (`*p = v`), a comparison, or a field of another value (`x.p = v`).
 */
function assignedTo(id: string): string {
  const target = `(?<![.*]\\s*)(?<!\\w)[A-Za-z_][\\w.]*`;
  return `(?<![.*]\\s*)${id}(?:\\s*,\\s*[A-Za-z_][\\w.]*)*\\s*:?=(?!=)|${target}(?:\\s*,\\s*[A-Za-z_][\\w.]*)*\\s*,\\s*${id}(?:\\s*,\\s*[A-Za-z_][\\w.]*)*\\s*:?=(?!=)`;
}

/** Is the package-level variable `name` assigned inside one of the snippet's functions? */
function assignedInAFunction(src: Source, name: string): boolean {
  const flow = flowOf(src);
  const re = new RegExp(assignedTo(identRe(name).source), "g");
  return [...src.masked.matchAll(re)].some((a) => flow.functionAt(a.index) !== undefined);
}

/**
 * Does every method of the snippet named `name` take a pointer receiver and test it for nil before any use of
 * it (`func (p *T) M() { if p == nil { return } ... }`), or leave it unnamed (`func (*T) M()`)? Calling such a
 * method on a nil pointer is safe.
 */
function nilSafeMethod(src: Source, name: string): boolean {
  const decls = src.matches(
    new RegExp(
      `\\bfunc\\s*\\(\\s*(?:(\\w+)\\s+)?(\\*?)\\s*[\\w.]+\\s*\\)\\s*${name}\\s*\\([^)]*\\)[^{\\n]*\\{`,
      "g",
    ),
  );
  return (
    decls.length > 0 &&
    decls.every((d) => {
      if (!d[2]) return false;
      // An unnamed (or `_`) pointer receiver is never touched.
      if (!d[1] || d[1] === "_") return true;
      const open = d.index + d[0].length - 1;
      const body = src.masked.slice(open, matchBracket(src, open));
      const r = identRe(d[1]!).source;
      const check = new RegExp(`${r}\\s*==\\s*nil|nil\\s*==\\s*${r}`).exec(body);
      const use = new RegExp(`${r}\\s*\\.|\\*\\s*${r}`).exec(body);
      return !!check && (!use || check.index < use.index);
    })
  );
}

const nilDereference = defineRule(
  {
    id: "go/nil-dereference",
    cwe: "CWE-476",
    language: "go",
    title: "A pointer that is nil is dereferenced",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const flow = flowOf(src);
    const m = src.masked;
    // `var p *T` (nil) or `p := (*T)(nil)` / `var p *T = nil`, then p.Field before any assignment or nil check.
    const nilPtrs = [
      ...src.matches(/\bvar\s+([A-Za-z_]\w*)\s+\*\s*[\w.]+\s*(?:=\s*nil\s*)?$/gm),
      // Not a field (`b.buf = nil`) nor the type of `var p *T = nil`.
      ...src.matches(
        /(?<![.*]\s*)\b([A-Za-z_]\w*)\s*:?=\s*(?:\(\s*\*\s*[\w.]+\s*\)\s*\(\s*nil\s*\)|nil)\s*$/gm,
      ),
    ];
    for (const p of nilPtrs) {
      const name = p[1]!;
      const fn = flow.functionAt(p.index);
      // A package-level variable set by any function (init, a constructor) is not nil when another runs.
      if (!fn && assignedInAFunction(src, name)) continue;
      const end = fn ? fn.bodyEnd : m.length;
      const after = m.slice(p.index + p[0].length, end);
      const id = identRe(name).source;
      const reassigned = new RegExp(`${assignedTo(id)}|&\\s*${id}\\b|\\bnew\\s*\\(`).exec(after);
      const limit = reassigned ? reassigned.index : after.length;
      // A field read or `*p` dereferences; so does a method call or method value (`p.M`), unless the method is
      // the snippet's own with a pointer receiver that tests the receiver for nil before touching it (a nil
      // receiver is valid in Go).
      const use = [
        ...after
          .slice(0, limit)
          .matchAll(new RegExp(`${id}\\s*\\.\\s*([A-Za-z_]\\w*)\\b(\\s*\\()?|\\*\\s*${id}\\b`, "g")),
      ].find((u) => !(u[1] && nilSafeMethod(src, u[1])));
      if (!use) continue;
      if (new RegExp(`${id}\\s*(?:==|!=)\\s*nil|nil\\s*(?:==|!=)\\s*${id}`).test(after.slice(0, use.index)))
        continue;
      out.push(
        src.finding(rule, p.index + p[0].length + use.index, `'${name}' is nil here and is dereferenced`),
      );
    }
    // `var m map[K]V` is a nil map: writing to it panics until it is made.
    for (const d of src.matches(/\bvar\s+([A-Za-z_]\w*)\s+map\s*\[[^\]\n]+\][^=\n]*$/gm)) {
      const name = d[1]!;
      const fn = flow.functionAt(d.index);
      if (!fn && assignedInAFunction(src, name)) continue;
      const after = m.slice(d.index + d[0].length, fn ? fn.bodyEnd : m.length);
      const id = identRe(name).source;
      const made = new RegExp(`${id}\\s*=(?!=)|&\\s*${id}\\b`).exec(after);
      const write = new RegExp(`${id}\\s*\\[[^\\]\\n]*\\]\\s*(?:[+\\-*/]?=(?!=)|\\+\\+|--)`).exec(
        after.slice(0, made ? made.index : after.length),
      );
      if (write)
        out.push(
          src.finding(
            rule,
            d.index + d[0].length + write.index,
            `'${name}' is a nil map (declared, never made); writing to it panics; use make(map...)`,
          ),
        );
    }
    // Functions of the snippet that can return a nil pointer as their only result, used without a check.
    for (const f of flow.functions) {
      // A function literal has no name to be called by. A `return nil` right after a call that does not return
      // (`t.Fatalf(...)`, `log.Fatal(...)`, `panic(...)`) is never reached: a test helper that fails the test.
      if (!f.name) continue;
      const body = m.slice(f.bodyStart, f.bodyEnd);
      const reachable = [...body.matchAll(/\breturn\s+nil\s*$/gm)].some((r) => {
        const prev = body.slice(0, r.index).trimEnd().split("\n").pop() ?? "";
        return (
          !GO_EXIT.test(prev) && !/\b(?:panic|os\s*\.\s*Exit|log\s*\.\s*(?:Fatal|Panic)\w*)\s*\(/.test(prev)
        );
      });
      if (!reachable) continue;
      for (const c of src.matches(new RegExp(`(?<![\\w.])([A-Za-z_]\\w*)\\s*:?=\\s*${f.name}\\s*\\(`, "g"))) {
        const name = c[1]!;
        const fn = flow.functionAt(c.index);
        const after = m.slice(c.index + c[0].length, fn ? fn.bodyEnd : m.length);
        const id = identRe(name).source;
        const use = new RegExp(`${id}\\s*\\.\\s*[A-Za-z_]\\w*`).exec(after);
        if (!use || new RegExp(`${id}\\s*(?:==|!=)\\s*nil`).test(after.slice(0, use.index))) continue;
        out.push(
          src.finding(
            rule,
            c.index + c[0].length + use.index,
            `${f.name}() can return nil and '${name}' is dereferenced without a check`,
          ),
        );
      }
    }
    return out;
  },
);

const inconsistentLocking = defineRule(
  {
    id: "go/inconsistent-locking",
    cwe: "CWE-667",
    language: "go",
    title: "Field guarded by a mutex in one method and accessed without it in another",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    const methods = [
      ...src.matches(/\bfunc\s*\(\s*(\w+)\s+\*?\s*(\w+)\s*\)\s*(\w+)\s*\([^)]*\)[^{\n]*\{/g),
    ].map((mm) => {
      const open = mm.index + mm[0].length - 1;
      return {
        recv: mm[1]!,
        type: mm[2]!,
        name: mm[3]!,
        at: mm.index,
        body: m.slice(open, matchBracket(src, open)),
      };
    });
    const byType = new Map<string, typeof methods>();
    for (const me of methods) byType.set(me.type, [...(byType.get(me.type) ?? []), me]);
    for (const [, ms] of byType) {
      const fieldsOf = (me: (typeof methods)[number]) =>
        new Set(
          [
            ...me.body.matchAll(
              new RegExp(
                `\\b${me.recv}\\s*\\.\\s*([A-Za-z_]\\w*)\\b(?!\\s*\\(|\\s*\\.\\s*(?:Lock|Unlock|RLock|RUnlock)\\b)`,
                "g",
              ),
            ),
          ].map((f) => f[1]!),
        );
      const locks = (me: (typeof methods)[number]) =>
        new RegExp(`\\b${me.recv}\\s*\\.\\s*(?:\\w+\\s*\\.\\s*)?R?Lock\\s*\\(`).test(me.body);
      /** The parts of a body run with the lock held: from each Lock() to its Unlock(), or to the end when deferred. */
      const lockedParts = (me: (typeof methods)[number]) => {
        const parts: string[] = [];
        const lockRe = new RegExp(`\\b${me.recv}\\s*\\.\\s*(?:\\w+\\s*\\.\\s*)?R?Lock\\s*\\(`, "g");
        const unlockRe = new RegExp(
          `(?<!\\bdefer\\s+)\\b${me.recv}\\s*\\.\\s*(?:\\w+\\s*\\.\\s*)?R?Unlock\\s*\\(`,
          "g",
        );
        for (const l of me.body.matchAll(lockRe)) {
          unlockRe.lastIndex = l.index;
          const u = unlockRe.exec(me.body);
          parts.push(me.body.slice(l.index, u ? u.index : me.body.length));
        }
        return parts;
      };
      const guarded = new Set<string>();
      for (const me of ms)
        for (const part of lockedParts(me)) for (const f of fieldsOf({ ...me, body: part })) guarded.add(f);
      if (guarded.size === 0) continue;
      for (const me of ms) {
        if (locks(me)) continue;
        // A helper called only where the lock is already held (from other methods' locked parts).
        const call = new RegExp(`\\b\\w+\\s*\\.\\s*${me.name}\\s*\\(`);
        const callers = ms.filter((o) => o !== me && call.test(o.body));
        if (callers.length > 0 && callers.every((o) => lockedParts(o).some((part) => call.test(part))))
          continue;
        // Fields read or written through sync/atomic (`atomic.AddInt32(&rw.readerWait, -1)`) are synchronised.
        const atomicField = new RegExp(
          `\\batomic\\s*\\.\\s*\\w+\\s*\\(\\s*&\\s*${me.recv}\\s*\\.\\s*(\\w+)`,
          "g",
        );
        const atomics = new Set([...me.body.matchAll(atomicField)].map((a) => a[1]!));
        const f = [...fieldsOf(me)].find((x) => guarded.has(x) && !atomics.has(x));
        if (f)
          out.push(
            src.finding(rule, me.at, `${me.name} reads or writes '${f}' without the lock other methods take`),
          );
      }
    }
    return out;
  },
);

/**
 * A pointer-receiver method of the snippet named `name` that writes a field of its receiver
 * (`c.n++`, `c.n += x`, `c.n = c.n + x`, `c.m[k] = v`) and takes no lock: racy when called concurrently.
 */
function unlockedMutator(src: Source, name: string): { method: string; field: string } | null {
  const m = src.masked;
  for (const mm of src.matches(
    new RegExp(`\\bfunc\\s*\\(\\s*(\\w+)\\s+\\*\\s*\\w+\\s*\\)\\s*${name}\\s*\\([^)]*\\)[^{\\n]*\\{`, "g"),
  )) {
    const open = mm.index + mm[0].length - 1;
    const body = m.slice(open, matchBracket(src, open));
    if (/\.\s*(?:Lock|RLock)\s*\(\s*\)|\batomic\s*\.|<-/.test(body)) continue;
    const recv = identRe(mm[1]!).source;
    const w = new RegExp(
      `${recv}\\s*\\.\\s*(\\w+)(?:\\s*\\[[^\\]]*\\])?\\s*(?:\\+\\+|--|[+\\-*/]=|=(?!=)\\s*[^\\n]*\\b${recv}\\s*\\.\\s*\\1\\b)|${recv}\\s*\\.\\s*(\\w+)\\s*\\[[^\\]]*\\]\\s*=(?!=)`,
    ).exec(body);
    if (w) return { method: name, field: (w[1] ?? w[2])! };
  }
  return null;
}

/** Is `name` declared as a slice or array (`make([]T, n)`, `[]T{...}`, `[N]T{...}`, `var x [N]T`, `var x []T`)? */
function sliceOrArray(src: Source, name: string): boolean {
  const id = identRe(name).source;
  return (
    new RegExp(`\\bvar\\s+${id}\\s+\\[`).test(src.masked) ||
    flowOf(src)
      .assignmentsTo(name)
      .some((a) => a.decl && /^\s*(?:make\s*\(\s*)?\[/.test(src.masked.slice(a.rhsStart, a.rhsEnd)))
  );
}

const raceCondition = defineRule(
  {
    id: "go/race-condition",
    cwe: "CWE-362",
    language: "go",
    title: "Shared variable written by goroutines without synchronisation",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    const flow = flowOf(src);
    const goStmts = src.matches(/\bgo\s+(?:func\s*\(([^)]*)\)[^{]*\{|([A-Za-z_][\w.]*)\s*\()/g);
    if (goStmts.length === 0) return out;
    // A goroutine closure reads a variable that the spawning function assigns afterwards with nothing in
    // between that waits for it (WaitGroup.Wait, a channel receive, a lock).
    for (const g of goStmts) {
      if (g[2] || (g[1] ?? "").trim()) continue;
      const open = g.index + g[0].length - 1;
      const close = matchBracket(src, open);
      const fn = flow.functionAt(g.index);
      if (!fn) continue;
      const body = m.slice(open, close);
      const after = m.slice(close, fn.bodyEnd);
      const sync = /\.\s*(?:Wait|Lock)\s*\(|<-/.exec(after);
      const read = [...body.matchAll(/(?<![\w.])([A-Za-z_]\w*)\s*\.\s*[A-Za-z_]/g)].map((r) => r[1]!);
      for (const name of new Set(read)) {
        if (!flow.assignmentsTo(name).some((a) => a.decl && a.index > fn.bodyStart && a.index < g.index))
          continue;
        const w = new RegExp(`(?<![\\w.])${name}\\s*=(?!=)`).exec(after);
        if (!w || (sync && sync.index < w.index)) continue;
        out.push(
          src.finding(
            rule,
            close + w.index,
            `'${name}' is reassigned while a goroutine started above may still read it (no Wait, channel or lock in between)`,
          ),
        );
        break;
      }
    }
    // Concurrency: a go statement inside a loop, or more than one.
    const inLoop = (at: number) =>
      flow.conditions.some((c) => c.kind === "for" && c.bodyStart < at && at < c.bodyEnd);
    if (goStmts.length < 2 && !goStmts.some((g) => inLoop(g.index))) return out;
    for (const g of goStmts) {
      let body: [number, number];
      let locals: string[];
      if (g[2]) {
        const fn = flow.functions.find((f) => f.name === g[2]!.split(".").pop());
        if (!fn) continue;
        body = [fn.bodyStart, fn.bodyEnd];
        locals = fn.params.map((p) => p.name);
      } else {
        const open = g.index + g[0].length - 1;
        body = [open, matchBracket(src, open)];
        locals = (g[1] ?? "")
          .split(",")
          .map((p) => p.trim().split(/\s+/)[0]!)
          .filter(Boolean);
      }
      const text = m.slice(body[0], body[1]);
      // A channel receive in the goroutine can serialise it (a semaphore); a send alone (`done <- true`) does not.
      if (/\.\s*(?:Lock|RLock)\s*\(\s*\)|\batomic\s*\.|(?<![\w\])]\s*)<-|\bsync\s*\.\s*Once\b/.test(text))
        continue;
      // A method of the snippet called here that updates its receiver's fields without a lock of its own.
      const racy = [...text.matchAll(/(?<![\w.])[A-Za-z_]\w*\s*\.\s*([A-Za-z_]\w*)\s*\(/g)]
        .map((c) => unlockedMutator(src, c[1]!))
        .find((x) => x !== null);
      if (racy) {
        out.push(
          src.finding(
            rule,
            g.index,
            `goroutines call ${racy.method}(), which updates '${racy.field}' without a mutex or atomic`,
          ),
        );
        continue;
      }
      // Each goroutine's own arguments (`go func(i int) {...}(i)`): an index among them is its own.
      const params = [...locals];
      // Locals declared inside the body, every target of `req, err := ...` included.
      for (const d of text.matchAll(
        /(?<![\w.])((?:[A-Za-z_]\w*\s*,\s*)*[A-Za-z_]\w*)\s*:=|\bvar\s+([A-Za-z_]\w*)/g,
      ))
        locals.push(...(d[1] ?? d[2])!.split(",").map((x) => x.trim()));
      for (const w of text.matchAll(
        /(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*\w+|\s*\[[^\]]*\])*)\s*(\+\+|--|[+\-*/]?=(?!=))/g,
      )) {
        const name = w[1]!;
        if (locals.includes(name) || name === "_" || /^(?:err|ok)$/.test(name)) continue;
        // `results[i] = ...` with `i` the goroutine's own argument, into a slice or array (not a map, whose
        // writes race even on distinct keys): each goroutine writes its own element, a separate variable.
        const own = /^\s*\[\s*([A-Za-z_]\w*)\s*\]\s*$/.exec(w[2]!);
        if (own && params.includes(own[1]!) && sliceOrArray(src, name)) continue;
        // Shared: declared outside the goroutine (package level or in the enclosing function).
        const decl = flow.assignmentsTo(name).find((a) => a.decl && (a.index < body[0] || a.index > body[1]));
        const pkgVar = new RegExp(`^var\\s+${name}\\b|^\\s*${name}\\s+[\\w.*\\[\\]]+\\s*$`, "m").test(m);
        const param = flow.functionAt(body[0])?.params.some((p) => p.name === name && /^\*/.test(p.type));
        if (!decl && !pkgVar && !param) continue;
        out.push(
          src.finding(
            rule,
            body[0] + w.index!,
            `goroutines write '${name}${w[2]!.replace(/\s+/g, "")}' without a mutex or atomic`,
          ),
        );
        break;
      }
    }
    return out;
  },
);

const unboundedRead = defineRule(
  {
    id: "go/unbounded-read",
    cwe: "CWE-400",
    language: "go",
    title: "Request body read without a size limit",
    severity: "medium",
  },
  (src, rule) => {
    if (/MaxBytesReader|LimitReader|LimitedReader/.test(src.masked)) return [];
    const out: Finding[] = [];
    for (const m of src.matches(
      /\b(?:ioutil|io)\s*\.\s*ReadAll\s*\(\s*([A-Za-z_]\w*)\s*\.\s*Body\b|\bjson\s*\.\s*NewDecoder\s*\(\s*([A-Za-z_]\w*)\s*\.\s*Body\b/g,
    )) {
      const req = (m[1] ?? m[2])!;
      const isRequest = flowOf(src).functions.some((f) =>
        f.params.some((p) => p.name === req && /http\s*\.\s*Request/.test(p.type)),
      );
      if (isRequest)
        out.push(
          src.finding(
            rule,
            m.index,
            "the whole request body is read into memory; wrap it in http.MaxBytesReader",
          ),
        );
    }
    return out;
  },
);

const openRedirect = defineRule(
  {
    id: "go/open-redirect",
    cwe: "CWE-601",
    language: "go",
    title: "Redirect to a URL from the request",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, EXTERNAL);
    for (const m of src.matches(/\bhttp\s*\.\s*Redirect\s*\(/g)) {
      const target = src.callArgs(argListStart(m))[2];
      if (!target || !taint.range(target.start, target.end)) continue;
      if (
        taint.guarded(taint.varsIn(target.start, target.end), m.index, /HasPrefix|Host|==|!=|allow|valid|\[/i)
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "redirect target comes from the request; allow-list destinations or redirect to local paths only",
        ),
      );
    }
    return out;
  },
);

/**
 * A regular expression that only matches markup-free text: anchored (`^...$`), made of character classes and word
 * characters, none of which admits `<`, `>`, `&`, `"` or `'` (`^[a-zA-Z0-9_]*$`). A value it accepts cannot open a
 * tag or an attribute.
 */
function markupFree(pattern: string): boolean {
  const m = /^\^((?:\[[^\]]*\]|\\[wd]|[\w-])(?:[*+?]|\{\d+(?:,\d*)?\})?)+\$$/.exec(pattern);
  if (!m) return false;
  const classes = [...pattern.matchAll(/\[([^\]]*)\]/g)].map((c) => c[1]!);
  return classes.every((c) => !c.startsWith("^") && !/[<>&"']|\\[WDSsx]/.test(c));
}

/**
 * Calls that check a value against a markup-free pattern: `re.MatchString(v)` with `re := regexp.MustCompile(p)`, or
 * `ok(v)` with `ok := regexp.MustCompile(p).MatchString`; `regexp.MustCompile(p).MatchString(v)` in place.
 */
function markupFreeChecks(src: Source): RegExp | null {
  const names: string[] = [];
  const inPlace: string[] = [];
  for (const c of src.matches(/\bregexp\s*\.\s*MustCompile\s*\(/g)) {
    const arg = src.callArgs(argListStart(c))[0];
    const pattern = arg && src.literalValue(arg);
    if (pattern === null || pattern === undefined || !markupFree(pattern)) continue;
    const close = matchBracket(src, argListStart(c));
    const rest = src.masked.slice(close + 1, close + 40);
    const stmt = src.masked.slice(src.masked.lastIndexOf("\n", c.index) + 1, c.index);
    const target = /(?:^|\s)(?:var\s+)?([A-Za-z_]\w*)\s*(?:[\w.*]+\s*)?:?=\s*$/.exec(stmt);
    if (/^\s*\.\s*MatchString\s*\(/.test(rest)) inPlace.push(`${c.index}`);
    if (target) names.push(target[1]!);
  }
  if (names.length === 0 && inPlace.length === 0) return null;
  const alts = [
    ...(names.length ? [`(?<![\\w.])(?:${namesRe(names)})\\s*(?:\\.\\s*MatchString\\s*)?\\(`] : []),
    ...(inPlace.length
      ? ["\\bregexp\\s*\\.\\s*MustCompile\\s*\\([^)]*\\)\\s*\\.\\s*MatchString\\s*\\("]
      : []),
  ];
  return new RegExp(alts.join("|"));
}

const xss = defineRule(
  {
    id: "go/xss",
    cwe: "CWE-79",
    language: "go",
    title: "Request data written to the response without HTML escaping",
    severity: "high",
  },
  (src, rule) => {
    const writers = flowOf(src)
      .functions.flatMap((f) => f.params)
      .filter((p) => /http\s*\.\s*ResponseWriter/.test(p.type))
      .map((p) => p.name);
    if (writers.length === 0) return [];
    // JSON or plain-text responses are not HTML.
    if (/Content-Type"\s*,\s*"(?:application\/json|text\/plain)/.test(src.text)) return [];
    const taint = taintOf(src, EXTERNAL);
    const out: Finding[] = [];
    const w = namesRe(writers);
    // Checked against a markup-free allow-list pattern before it is written (`if !isLegal(cmd) { return }`).
    const allowList = markupFreeChecks(src);
    const unchecked = (a: { start: number; end: number }, at: number) =>
      taint.range(a.start, a.end) &&
      !(allowList && taint.guarded(taint.varsIn(a.start, a.end), at, allowList));
    for (const m of src.matches(
      new RegExp(
        `\\bfmt\\s*\\.\\s*Fprint(?:f|ln)?\\s*\\(\\s*(?:${w})\\s*,|\\b(?:${w})\\s*\\.\\s*Write\\s*\\(|\\bio\\s*\\.\\s*WriteString\\s*\\(\\s*(?:${w})\\s*,`,
        "g",
      ),
    )) {
      const args = src.callArgs(src.masked.indexOf("(", m.index));
      const data = /\.\s*Write\s*\($/.test(m[0]) ? args : args.slice(1);
      if (data.some((a) => unchecked(a, m.index)))
        out.push(
          src.finding(
            rule,
            m.index,
            "request data echoed into the response; escape it with html.EscapeString or use html/template",
          ),
        );
    }
    // template.HTML(x) / template.JS(x) / template.URL(x) mark request data as safe: html/template skips escaping it.
    for (const m of src.matches(/\btemplate\s*\.\s*(HTML|HTMLAttr|JS|JSStr|URL|CSS|Srcset)\s*\(/g)) {
      const arg = src.callArgs(src.masked.indexOf("(", m.index))[0];
      if (arg && taint.range(arg.start, arg.end))
        out.push(
          src.finding(
            rule,
            m.index,
            `request data converted to template.${m[1]} is trusted as markup and not escaped; pass it as a plain string`,
          ),
        );
    }
    // text/template does not escape HTML: request data executed into the response is reflected as markup.
    if (/"text\/template"/.test(src.text) && !/"html\/template"/.test(src.text))
      for (const m of src.matches(new RegExp(`\\.\\s*Execute(?:Template)?\\s*\\(\\s*(?:${w})\\s*,`, "g"))) {
        const args = src.callArgs(src.masked.indexOf("(", m.index));
        if (args.slice(1).some((a) => taint.range(a.start, a.end)))
          out.push(
            src.finding(
              rule,
              m.index,
              "request data rendered into the response with text/template, which does not escape HTML; use html/template",
            ),
          );
      }
    return out;
  },
);

const filePermissions = defineRule(
  {
    id: "go/file-permissions",
    cwe: "CWE-732",
    language: "go",
    title: "File or folder created world-writable, or readable by all with sensitive content",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/\b(?:os|ioutil)\s*\.\s*(WriteFile|OpenFile|Mkdir|MkdirAll|Chmod)\s*\(/g)) {
      const args = src.callArgs(argListStart(m));
      const mode = args[args.length - 1]?.masked.trim() ?? "";
      const mm = /^(?:os\s*\.\s*FileMode\s*\()?0o?([0-7]{3,4})\)?$/.exec(mode);
      if (!mm) continue;
      const bits = parseInt(mm[1]!, 8);
      // The path as written, or the literal a variable holding it was given.
      const pathArg = src.masked.slice(args[0]?.start ?? 0, args[0]?.end ?? 0).trim();
      const pathDefs = /^[A-Za-z_]\w*$/.test(pathArg) ? flowOf(src).assignmentsTo(pathArg) : [];
      const name =
        src.text.slice(args[0]?.start ?? 0, args[0]?.end ?? 0) +
        pathDefs.map((a) => src.text.slice(a.rhsStart, a.rhsEnd)).join(" ");
      const worldWritable = (bits & 0o002) !== 0;
      const sensitive =
        (bits & 0o044) !== 0 &&
        /secret|sensitive|password|passwd|private|credential|token|\.key\b|\.pem\b/i.test(
          name + src.text.slice(args[1]?.start ?? 0, args[1]?.end ?? 0),
        );
      if (worldWritable || sensitive)
        out.push(
          src.finding(
            rule,
            m.index,
            worldWritable
              ? `mode ${mode} lets every user write it`
              : `mode ${mode} lets other users read sensitive data; use 0600`,
          ),
        );
    }
    return out;
  },
);

const typeAssertion = defineRule(
  {
    id: "go/unchecked-type-assertion",
    cwe: "CWE-704",
    language: "go",
    title: "Single-value type assertion (panics on a mismatch)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/(?<![\w.])([A-Za-z_]\w*)\s*\.\s*\(\s*(\*?[\w.]+)\s*\)/g)) {
      if (m[2] === "type") continue;
      // `v, ok := x.(T)` and `switch x.(type)` are safe; a single-value assertion panics.
      const stmtStart =
        Math.max(src.masked.lastIndexOf("\n", m.index), src.masked.lastIndexOf(";", m.index)) + 1;
      const before = src.masked.slice(stmtStart, m.index);
      if (/,\s*(?:ok|\w+)\s*:?=\s*$/.test(before)) continue;
      // Inside a function that recovers, the panic is handled deliberately.
      const fn = flowOf(src).functionAt(m.index);
      if (fn && /\brecover\s*\(\s*\)/.test(src.masked.slice(fn.bodyStart, fn.bodyEnd))) continue;
      // A value declared with a named interface type (`n ir.Node`, `typ Type`) holds one of that interface's
      // implementations, which the code chooses; an empty interface (`interface{}`, `any`) or a value of unknown
      // type can hold whatever a caller or decoded input put there.
      const declared =
        fn?.params.find((p) => p.name === m[1])?.type ??
        flowOf(src)
          .assignmentsTo(m[1]!)
          .filter((a) => a.decl && a.index < m.index && flowOf(src).functionAt(a.index) === fn)
          .pop()?.type ??
        "";
      if (declared.trim() && !/^(?:interface\s*\{\s*\}|any)$/.test(declared.trim())) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `${m[1]}.(${m[2]}) panics when the value is not a ${m[2]}; use the two-value form`,
        ),
      );
    }
    return out;
  },
);

const unboundedAllocation = unboundedAllocationRule("go", EXTERNAL);

const divideByZero = divideByZeroRule("go", ENTRY);

const sensitiveLog = defineRule(
  {
    id: "go/sensitive-data-exposure",
    cwe: "CWE-532",
    language: "go",
    title: "Password or secret printed or logged",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(
      /\b(?:fmt\s*\.\s*(?:Print|Println|Printf)|log\s*\.\s*(?:Print|Println|Printf|Fatal|Fatalf|Panic|Panicf))\s*\(/g,
    )) {
      const args = src.callArgs(argListStart(m));
      const hit = args
        .map((a) =>
          a.masked.replace(/(?<![\w.])[\w.]+\s*\((?:[^()]|\([^()]*\))*\)/g, (c) =>
            /^(?:string|fmt\s*\.\s*Sprint\w*)\s*\(/.test(c) ? c : "",
          ),
        )
        .flatMap((a) => [...a.matchAll(/(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)*)(?!\s*\()/g)])
        .find((v) => isSensitiveName((v[2] ? v[2].split(".").pop()! : v[1]!).trim()));
      if (hit)
        out.push(src.finding(rule, m.index, `'${hit[0].trim()}' is sensitive and is printed in clear`));
    }
    return out;
  },
);

const closedResourceReturned = defineRule(
  {
    id: "go/use-after-close",
    cwe: "CWE-672",
    language: "go",
    title: "A file or connection closed by defer is returned to the caller",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    for (const fn of flowOf(src).functions) {
      const body = m.slice(fn.bodyStart, fn.bodyEnd);
      for (const d of body.matchAll(/\bdefer\s+([A-Za-z_]\w*)\s*\.\s*Close\s*\(\s*\)/g)) {
        const id = identRe(d[1]!).source;
        // `return f` / `return f, nil` in this function (not in a nested closure).
        for (const r of body.matchAll(new RegExp(`\\breturn\\s+${id}\\s*(?:,|$|\\n|\\})`, "gm"))) {
          const at = fn.bodyStart + r.index!;
          if (r.index! < d.index! || flowOf(src).functionAt(at) !== fn) continue;
          out.push(
            src.finding(
              rule,
              at,
              `'${d[1]}' is closed by the deferred Close() when this function returns; the caller gets a closed handle`,
            ),
          );
          break;
        }
      }
    }
    return out;
  },
);

const INT_MAX: Record<string, number> = {
  int8: 127,
  uint8: 255,
  byte: 255,
  int16: 32767,
  uint16: 65535,
  int32: 2147483647,
  uint32: 4294967295,
};

const integerOverflow = defineRule(
  {
    id: "go/integer-overflow",
    cwe: "CWE-190",
    language: "go",
    title: "Sized integer holding its type's maximum is increased (wraps around silently)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // `var x uint8 = 255`, `x := uint8(255)`, `x := uint8(math.MaxUint8)`, `var x int32 = math.MaxInt32`.
    for (const d of src.matches(
      /\bvar\s+([A-Za-z_]\w*)\s+(u?int(?:8|16|32)|byte)\s*=\s*([\w.]+)|\b([A-Za-z_]\w*)\s*:=\s*(u?int(?:8|16|32)|byte)\s*\(\s*([\w.]+)\s*\)/g,
    )) {
      const name = (d[1] ?? d[4])!;
      const type = (d[2] ?? d[5])!;
      const value = (d[3] ?? d[6])!;
      const max = INT_MAX[type]!;
      const atMax =
        value === String(max) ||
        new RegExp(
          `^math\\.Max${type === "byte" ? "Uint8" : type.replace(/^u?int/, (t) => (t === "uint" ? "Uint" : "Int"))}$`,
        ).test(value);
      if (!atMax) continue;
      const after = m.slice(d.index + d[0].length);
      const id = identRe(name).source;
      const inc = new RegExp(`${id}\\s*(?:\\+\\+|\\+=|\\*=)|${id}\\s*=\\s*${id}\\s*[+*]`).exec(after);
      if (!inc) continue;
      out.push(
        src.finding(
          rule,
          d.index + d[0].length + inc.index,
          `'${name}' holds the maximum ${type} (${max}); increasing it wraps around to a small value`,
        ),
      );
    }
    return out;
  },
);

const rangeOverOpenChannel = defineRule(
  {
    id: "go/unclosed-channel-range",
    cwe: "CWE-833",
    language: "go",
    title: "range over a channel that nothing closes (the loop never ends: deadlock or leaked goroutine)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    // Only where the snippet makes the channel and never calls close() at all.
    if (src.has(/\bclose\s*\(/)) return out;
    const channels = new Set(src.matches(/\b([A-Za-z_]\w*)\s*:?=\s*make\s*\(\s*chan\b/g).map((c) => c[1]!));
    for (const r of src.matches(
      /\bfor\s+(?:[A-Za-z_]\w*\s*(?:,\s*[A-Za-z_]\w*\s*)?:=\s*)?range\s+([A-Za-z_]\w*)\s*\{/g,
    ))
      if (channels.has(r[1]!))
        out.push(
          src.finding(
            rule,
            r.index,
            `'${r[1]}' is never closed, so this range never ends once the senders stop; close it after the last send`,
          ),
        );
    return out;
  },
);

const deferInLoop = defineRule(
  {
    id: "go/defer-in-loop",
    cwe: "CWE-772",
    language: "go",
    title: "Resource opened in a loop and closed by defer (every one stays open until the function returns)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    for (const loop of flowOf(src).conditions.filter((c) => c.kind === "for")) {
      const body = m.slice(loop.bodyStart, loop.bodyEnd);
      // Not inside a function literal run per iteration (`func() { f := open(); defer f.Close() }()`).
      if (/\bfunc\s*\(/.test(body)) continue;
      for (const d of body.matchAll(/\bdefer\s+([A-Za-z_]\w*)\s*\.\s*Close\s*\(\s*\)/g)) {
        // Made in this iteration by a call (`os.Open`, `net.Dial`, `db.Query`, a constructor of the snippet's own
        // type): each iteration's value is closed only at return, so all of them are held at once.
        const opened = new RegExp(
          `(?<![\\w.])${identRe(d[1]!).source}\\s*(?:,\\s*\\w+\\s*)?:?=(?!=)\\s*[A-Za-z_][\\w.]*\\s*\\(`,
        ).test(body.slice(0, d.index));
        if (!opened) continue;
        out.push(
          src.finding(
            rule,
            loop.bodyStart + d.index!,
            `'${d[1]}' is opened on every iteration but its deferred Close() runs only when the function returns; close it in the loop`,
          ),
        );
        break;
      }
    }
    return out;
  },
);

const readCountIgnored = defineRule(
  {
    id: "go/read-count-ignored",
    cwe: "CWE-908",
    language: "go",
    title: "Buffer filled by Read() used whole: bytes past the count read are stale or zero",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // `n, err := r.Read(buf)`, `_, err = f.Read(buf)`, `r.Read(buf)`; one argument (not binary.Read), and not
    // crypto/rand's Read, which fills the buffer or fails.
    for (const r of src.matches(
      /(?:\b([A-Za-z_]\w*)\s*,\s*[A-Za-z_]\w*\s*:?=\s*|^[ \t]*)([A-Za-z_][\w.]*)\s*\.\s*Read\s*\(\s*([A-Za-z_]\w*)\s*\)/gm,
    )) {
      const [count, recv, buf] = [r[1], r[2]!, r[3]!];
      if (/^(?:rand|crand|cryptorand)$/.test(recv)) continue;
      const fn = flowOf(src).functionAt(r.index);
      const end = fn ? fn.bodyEnd : m.length;
      const after = m.slice(r.index + r[0].length, end);
      const id = identRe(buf).source;
      // Sliced to the count somewhere after the read: the author tracks it.
      if (
        count &&
        count !== "_" &&
        new RegExp(`${id}\\s*\\[\\s*\\w*\\s*:\\s*${identRe(count).source}\\s*\\]`).test(after)
      )
        continue;
      // A whole use: converted, passed as an argument (not a Read/copy destination, not len/cap), ranged over.
      const use = new RegExp(
        `(?:\\bstring\\s*\\(\\s*${id}\\s*\\)|\\brange\\s+${id}\\b(?!\\s*\\[)|[(,]\\s*${id}\\s*(?:\\.\\.\\.)?\\s*[,)])`,
        "g",
      );
      for (const u of after.matchAll(use)) {
        const at = r.index + r[0].length + u.index!;
        const call = src.enclosingCall(at + u[0].indexOf(buf));
        if (call && /^(?:Read|ReadFull|ReadAtLeast|len|cap|copy|Fill)$/.test(call.name)) {
          if (call.name !== "copy" || src.callArgs(call.open)[0]?.masked === buf) continue;
        }
        // Reassigned before this use: a new buffer.
        if (new RegExp(`\\b${id}\\s*:?=[^=]`).test(m.slice(r.index + r[0].length, at))) break;
        out.push(
          src.finding(
            rule,
            at,
            count && count !== "_"
              ? `'${buf}' is used whole after Read(); only its first ${count} bytes were read, use ${buf}[:${count}]`
              : `the byte count of Read() is discarded and '${buf}' is used whole; a short read leaves stale or zero bytes`,
          ),
        );
        break;
      }
    }
    return out;
  },
);

export const goRules: Rule[] = [
  discardedError,
  uncheckedError,
  errorNotHandled,
  commandInjection,
  sqlInjection,
  weakRandom,
  weakCrypto,
  hardcodedCredential,
  hardcodedKey,
  staticIv,
  pathTraversal,
  unsafePointer,
  formatString,
  insecureTls,
  indexOutOfRange,
  nilDereference,
  raceCondition,
  inconsistentLocking,
  unboundedRead,
  openRedirect,
  xss,
  filePermissions,
  divideByZero,
  unboundedAllocation,
  typeAssertion,
  sensitiveLog,
  closedResourceReturned,
  integerOverflow,
  rangeOverOpenChannel,
  deferInLoop,
  readCountIgnored,
];
