/** Rules for C++ (and the C library calls C++ answers use). */
import { argListStart, defineRule, type Source } from "./source.js";
import {
  expressionEnd,
  flowOf,
  guardedBy,
  identRe,
  matchBracket,
  taintOf,
  type FunctionDef,
  type TaintConfig,
} from "./flow.js";
import {
  copyPastEnd,
  divideByZeroRule,
  outOfBounds,
  sizedArrays,
  unboundedAllocationRule,
  uncheckedIndexes,
} from "./bounds.js";
import {
  hardcodedSecrets,
  securityContext,
  sqlBuiltFromInput,
  AUTH_HEADER_LINE,
  type CredentialSink,
  hardcodedKeyRule,
  staticIvRule,
} from "./common.js";
import type { Finding, Rule } from "./types.js";

/** A free function call (not a member, not a longer name): `strcpy(`, `std::strcpy(`, `::strcpy(`. */
const call = (names: string) => new RegExp(`(?<![\\w.>]|->)(?:std::|::)?\\b(?:${names})\\s*\\(`, "g");

/** Fixed-size arrays declared in the code: name -> size expression. */
function fixedArrays(src: Source): Map<string, string> {
  const arrays = new Map<string, string>();
  const re =
    /\b(?:char|wchar_t|int|unsigned|signed|short|long|float|double|bool|uint8_t|int8_t|uint16_t|int16_t|uint32_t|int32_t|uint64_t|int64_t|size_t|byte|BYTE|[A-Z]\w*)\s+\*?\s*([A-Za-z_]\w*)\s*\[\s*([^\]\s][^\]]*)\]/g;
  for (const m of src.matches(re)) arrays.set(m[1]!, m[2]!.trim());
  return arrays;
}

/** `v` appears in a comparison (`v < n`, `n >= v`), not in a stream `>> v` or member access `->v`. */
const compared = (v: string) => new RegExp(`\\b${v}\\b\\s*[<>](?![<>])|(?<![<>-])[<>]=?\\s*\\b${v}\\b`);

const SHELLS = /^(?:\/bin\/|\/usr\/bin\/)?(?:sh|bash|zsh|dash|ksh)$/;

// ---------------------------------------------------------------------------------------------
// Untrusted input

const EXTERNAL: TaintConfig = {
  sources: /\bargv\b|\b(?:std::)?getenv\s*\(|\bgetpass\s*\(|\bQueryString\b/,
  outSources:
    /\bcin\s*>>|\b(?:std::)?getline\s*\(\s*(?:std::)?cin\s*,|\bcin\s*\.\s*(?:getline|get|read)\s*\(|\b(?:scanf|fscanf|sscanf)\s*\(|\b(?:fgets|gets|read|recv|fread|recvfrom)\s*\(/,
  toNumber:
    /\b(?:std::)?(?:atoi|atol|atoll|stoi|stol|stoll|stoul|stoull|strtol|strtoul|strtoll|strtoull|stof|stod)\s*\(|\b(?:strlen|size|length)\s*\(/,
  sanitizers: /\bbasename\s*\(|\brealpath\s*\(/,
  copyCalls: /\b(?:strcpy|strncpy|strcat|strncat|memcpy|memmove|sprintf|snprintf)\s*\(/,
  propagators:
    /^(?:(?:std::)?(?:string|to_string|stoi|atoi|strcpy|strncpy|strcat|strncat|strdup|basic_string)|\w+\s*\.\s*(?:c_str|data|substr|append|str|insert)|(?:std::)?(?:move|ref))$/,
};

const ENTRY: TaintConfig = {
  ...EXTERNAL,
  paramSources: (fn, p) =>
    fn.name === "main"
      ? /char\s*\*\s*\*|char\s*\*\s*\[|\[\s*\]\s*\[/.test(p.type + "[]") || /argv/.test(p.name)
        ? "text"
        : null
      : /\bchar\s*\*|\bchar\b.*\[|(?:std::)?string\b/.test(p.type)
        ? "text"
        : /^(?:const\s+)?(?:unsigned\s+)?(?:int|long|short|size_t|unsigned|ssize_t|u?int\d+_t)$/.test(
              p.type.trim(),
            )
          ? "number"
          : null,
};

const unboundedCopy = defineRule(
  {
    id: "cpp/unbounded-copy",
    cwe: "CWE-120",
    language: "cpp",
    title: "Unbounded string copy (strcpy, strcat, sprintf, ...) that can overflow the destination",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const arrays = sizedArrays(src);
    const m = src.masked;
    for (const mm of src.matches(
      call("strcpy|strcat|wcscpy|wcscat|stpcpy|lstrcpy|lstrcat|sprintf|vsprintf|swprintf_unbounded"),
    )) {
      const name = /\w+(?=\s*\($)/.exec(mm[0])![0];
      const args = src.callArgs(argListStart(mm));
      const dest = args[0]?.masked.replace(/^\s*&\s*|\s*\[\s*0\s*\]\s*$/g, "").trim() ?? "";
      const size = arrays.get(dest)?.size;
      if (/^(?:sprintf|vsprintf)$/.test(name)) {
        // Only numeric conversions into a buffer that holds them is bounded.
        const fmt = src.literalValue(args[1]);
        if (
          fmt !== null &&
          size !== undefined &&
          !/%[-+ #0]*\d*(?:\.\d+)?[hlLzjt]*s/.test(fmt) &&
          size >= fmt.length + 24 * (fmt.match(/%/g) ?? []).length
        )
          continue;
        if (fmt !== null && size !== undefined && !/%/.test(fmt.replace(/%%/g, "")) && fmt.length < size)
          continue;
      } else {
        const from = args[1];
        if (!from) continue;
        // A literal that fits the destination.
        const lit = src.literalValue(from);
        if (lit !== null && size !== undefined && name !== "strcat" && name !== "wcscat" && lit.length < size)
          continue;
        const fromName = from.masked.trim();
        const idRe = (v: string) => `(?:${identRe(v).source})`;
        const names = [dest, fromName]
          .filter((v) => /^[A-Za-z_][\w.>-]*$/.test(v))
          .map((v) => v.replace(/.*(?:\.|->)/, ""));
        // Length checked first: `if (strlen(src) < size)`, `if (strlen(dest) + strlen(src) >= sizeof(dest)) return;`
        if (
          names.length &&
          guardedBy(
            src,
            mm.index,
            new RegExp(
              `(?:strlen|wcslen|strnlen|size|length)\\s*\\(?\\s*(?:${names.map(idRe).join("|")})[^<>]*[<>]|[<>][^<>]*(?:strlen|wcslen|strnlen)\\s*\\(\\s*(?:${names.map(idRe).join("|")})`,
            ),
          )
        )
          continue;
        // Destination sized from the source: `dest = new char[strlen(src) + 1]`, `malloc(strlen(src) + 1)`.
        if (
          names.length &&
          new RegExp(
            `\\b${identRe(dest.replace(/.*(?:\.|->)/, "")).source}\\s*=\\s*(?:\\([^)]*\\)\\s*)?(?:new\\s+\\w+\\s*\\[|(?:std::)?malloc\\s*\\(|(?:std::)?calloc\\s*\\()[^;]*\\b(?:strlen|wcslen|size|length)\\s*\\(?\\s*${idRe(fromName.replace(/.*(?:\.|->)/, ""))}`,
          ).test(m.slice(0, mm.index))
        )
          continue;
        if (/\bstrdup\b/.test(from.masked)) continue;
      }
      out.push(
        src.finding(
          rule,
          mm.index,
          `${name} does not bound the write to the destination; use snprintf/strncpy with sizeof or std::string`,
        ),
      );
    }
    return out;
  },
);

const gets = defineRule(
  {
    id: "cpp/gets",
    cwe: "CWE-242",
    language: "cpp",
    title: "gets() reads without a bound",
    severity: "high",
  },
  (src, rule) =>
    src
      .matches(call("gets|_getws"))
      // A declaration (`extern "C" char* gets(char* s);` in <cstdio>), not a call.
      .filter(
        (m) =>
          !/[\w*&]\s*$/.test(src.masked.slice(Math.max(0, m.index - 20), m.index)) ||
          /\b(?:return|else|do)\s*$/.test(src.masked.slice(Math.max(0, m.index - 20), m.index)),
      )
      .map((m) =>
        src.finding(rule, m.index, "gets cannot limit the input length; use fgets or std::getline"),
      ),
);

const scanfString = defineRule(
  {
    id: "cpp/scanf-unbounded-string",
    cwe: "CWE-120",
    language: "cpp",
    title: "scanf-family %s / %[ without a field width",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(call("scanf|fscanf|sscanf|wscanf|vscanf|scanf_s_unbounded"))) {
      const name = /\w+(?=\s*\($)/.exec(m[0])![0];
      const args = src.callArgs(argListStart(m));
      const fmt = src.literalValue(args[name === "scanf" || name === "wscanf" || name === "vscanf" ? 0 : 1]);
      if (fmt === null) continue;
      // Conversions after dropping "%%"; a width is digits between % (and an optional *) and the type.
      const conversions = fmt.replace(/%%/g, "").match(/%\*?\d*(?:hh|h|ll|l|L)?(?:s|\[)/g) ?? [];
      if (conversions.some((c) => !/^%\*/.test(c) && !/\d/.test(c))) {
        out.push(
          src.finding(
            rule,
            m.index,
            `${name} with "%s" has no field width; write e.g. "%9s" for a 10-byte buffer`,
          ),
        );
      }
    }
    return out;
  },
);

const cinIntoArray = defineRule(
  {
    id: "cpp/cin-into-char-array",
    cwe: "CWE-120",
    language: "cpp",
    title: "std::cin >> into a char array or char pointer without a width",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    // Every char array / char* the snippet declares (locals, parameters, struct members).
    const charTargets = new Set<string>();
    for (const d of src.matches(/\b(?:unsigned\s+)?char\s*(\*\s*)?([A-Za-z_]\w*)\s*(\[[^\]]*\])?/g))
      if (d[1] || d[3]) charTargets.add(d[2]!);
    for (const m of src.matches(/\bcin\s*((?:>>\s*[A-Za-z_][\w.]*(?:\s*->\s*\w+)?\s*)+)/g)) {
      for (const target of m[1]!.matchAll(/>>\s*([A-Za-z_][\w.]*(?:\s*->\s*\w+)?)/g)) {
        const leaf = target[1]!.split(/\.|->/).pop()!.trim();
        if (!charTargets.has(leaf)) continue;
        // A width set on the stream just before bounds the read.
        const before = src.masked.slice(Math.max(0, m.index - 200), m.index);
        if (/\bsetw\s*\(|\.\s*width\s*\(/.test(before + m[0])) continue;
        out.push(
          src.finding(
            rule,
            m.index,
            `cin >> ${target[1]} can overflow the character buffer; read into std::string or use std::setw`,
          ),
        );
      }
    }
    return out;
  },
);

/** A length that is fixed at compile time or computed from the destination's size. */
const BOUNDED_LENGTH =
  /^(?:sizeof\b.*|\d+[uUlL]*|[A-Z_][A-Z0-9_]*|k[A-Z]\w*|std::min\s*\(.*|min\s*\(.*|\(\s*(?:std::)?min\s*\)\s*\(.*|.*\bsizeof\b.*)$/;

const memcpyIntoFixed = defineRule(
  {
    id: "cpp/memcpy-into-fixed-buffer",
    cwe: "CWE-787",
    language: "cpp",
    title: "memcpy/strncpy into a fixed array with a length not derived from its size",
    severity: "medium",
  },
  (src, rule) => {
    const arrays = fixedArrays(src);
    const out: Finding[] = [];
    for (const m of src.matches(call("memcpy|memmove|strncpy|strncat|wmemcpy|read|fread|recv"))) {
      const name = /\w+(?=\s*\($)/.exec(m[0])![0];
      const args = src.callArgs(argListStart(m));
      const destIndex = name === "read" || name === "recv" ? 1 : 0;
      const lenIndex = name === "fread" ? 2 : name === "read" || name === "recv" ? 2 : 2;
      const dest = args[destIndex]?.masked.replace(/^&\s*|\s*\[\s*0\s*\]$/g, "");
      const len = args[lenIndex]?.masked;
      if (!dest || !len || !arrays.has(dest)) continue;
      const size = arrays.get(dest)!;
      if (BOUNDED_LENGTH.test(len) || len === size) continue;
      // Bounded when every variable in the length is part of the array's size expression, a
      // constant, or compared/min-ed before the call (the usual "if (len >= size) len = size - 1").
      const before = src.masked.slice(0, m.index);
      const names = (len.replace(/\bsizeof\s*\([^)]*\)/g, "").match(/[A-Za-z_]\w*/g) ?? []).filter(
        (v) => !/^(?:std|min|strlen)$/.test(v),
      );
      const bounded = names.every(
        (v) =>
          new RegExp(`\\b${v}\\b`).test(size) ||
          new RegExp(`\\b(?:const|constexpr)\\b[^;=]*\\b${v}\\s*=|#\\s*define\\s+${v}\\b`).test(src.masked) ||
          compared(v).test(before) ||
          new RegExp(`\\b${v}\\s*=\\s*(?:std::)?min\\b`).test(before),
      );
      if (names.length > 0 && bounded) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `${name} into ${dest}[${size}] with length '${len}' not bounded by its size`,
        ),
      );
    }
    return out;
  },
);

/**
 * Is every write to the buffer `v` a sprintf/snprintf whose own format is a literal with numeric conversions
 * only (no %s or %c that could bring text in), and nothing else writes it (no copy, read or assignment)?
 */
function composedFormat(src: Source, v: string): boolean {
  const m = src.masked;
  let writes = 0;
  for (const w of src.matches(new RegExp(`\\b(sn?printf)\\s*\\(\\s*${v}\\s*,`, "g"))) {
    const args = src.callArgs(m.indexOf("(", w.index));
    const pattern = args[w[1] === "snprintf" ? 2 : 1];
    const lit = pattern && src.isLiteral(pattern) ? src.literalAt(pattern.start) : undefined;
    if (!lit || /%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L)?[sScCp]/.test(lit.value.replace(/%%/g, "")))
      return false;
    writes++;
  }
  // Anything else that writes it: a copy or read into it, an assignment, a stream extraction.
  const other = new RegExp(
    `(?<![\\w.>])${v}\\s*=(?!=)|\\b(?:strn?cpy|strn?cat|memcpy|memmove|fgets|gets|fread|vsn?printf|getline)\\s*\\(\\s*${v}\\b|\\b(?:read|recv|getline)\\s*\\([^;,]*,\\s*${v}\\b|\\b(?:sscanf|fscanf|scanf)\\s*\\([^;]*,\\s*&?${v}\\s*[,)]|>>\\s*${v}\\b`,
  );
  const rest = m.replace(new RegExp(`\\bsn?printf\\s*\\(\\s*${v}\\s*,`, "g"), "");
  return writes > 0 && !other.test(rest);
}

const formatString = defineRule(
  {
    id: "cpp/format-string",
    cwe: "CWE-134",
    language: "cpp",
    title: "printf-family call with a non-literal format",
    severity: "high",
  },
  (src, rule) => {
    const formatArg: Record<string, number> = {
      printf: 0,
      vprintf: 0,
      wprintf: 0,
      fprintf: 1,
      vfprintf: 1,
      dprintf: 1,
      sprintf: 1,
      vsprintf: 1,
      snprintf: 2,
      vsnprintf: 2,
      syslog: 1,
      fwprintf: 1,
      printf_s: 0,
      fprintf_s: 1,
    };
    const out: Finding[] = [];
    for (const m of src.matches(call(Object.keys(formatArg).join("|")))) {
      const name = /\w+(?=\s*\($)/.exec(m[0])![0];
      const args = src.callArgs(argListStart(m));
      const fmt = args[formatArg[name]!];
      if (!fmt || fmt.masked === "") continue;
      // Literal formats, and macros such as PRId64 glued to literals, are fixed at compile time.
      if (
        src.isLiteral(fmt) ||
        /^(?:[A-Z_][A-Z0-9_]*\s*)?"/.test(fmt.masked) ||
        /^_\(|^gettext\s*\(/.test(fmt.masked)
      )
        continue;
      // A literal continued over macro lines (`fprintf(   \` then the literal), a choice between two literals
      // (`child ? "Inside" : "Outside"`), or a buffer the program composed only from a literal pattern and
      // numbers (`sprintf(fmt, "%%%dd", width)`, a Fortran-style column format): fixed by the program.
      const bare = fmt.masked.replace(/\\\s*\n/g, " ").trim();
      if (/^"/.test(bare) || /^[^?";]*\?\s*"[^"]*"\s*:\s*"[^"]*"$/.test(bare)) continue;
      if (/^[A-Za-z_]\w*$/.test(bare) && composedFormat(src, bare)) continue;
      // A printf wrapper (`void log(const char* fmt, ...) { va_list ap; ...; vfprintf(stderr, fmt, ap); }`):
      // the format is the wrapper's caller's, checked where the wrapper is called.
      const fn = flowOf(src).functionAt(m.index);
      if (
        fn &&
        /^v/.test(name) &&
        fn.params.some((p) => p.name === fmt.masked.trim() && /\bchar\s*\*|\bwchar_t\s*\*/.test(p.type)) &&
        /\.\.\.\s*\)/.test(src.masked.slice(fn.start, fn.bodyStart))
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `${name} format '${fmt.text}' is not a string literal; use ${name}(..."%s", ${fmt.text})`,
        ),
      );
    }
    return out;
  },
);

const commandInjection = defineRule(
  {
    id: "cpp/command-injection",
    cwe: "CWE-78",
    language: "cpp",
    title: "system/popen/exec with a command built at run time",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(call("system|popen|_popen|_wsystem|WinExec|ShellExecuteA?"))) {
      const name = /\w+(?=\s*\($)/.exec(m[0])![0];
      const args = src.callArgs(argListStart(m));
      const cmd = args[name.startsWith("ShellExecute") ? 2 : 0];
      if (!cmd || src.isLiteral(cmd) || /^(?:NULL|nullptr|0)$/.test(cmd.masked)) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `${name} runs a shell command built at run time ('${cmd.text}'); avoid the shell or use execv with fixed arguments`,
        ),
      );
    }
    const taint = taintOf(src, ENTRY);
    for (const m of src.matches(call("execl|execlp|execle|execv|execvp|execve|execvpe|posix_spawnp?"))) {
      const name = /\w+(?=\s*\($)/.exec(m[0])![0];
      const args = src.callArgs(argListStart(m));
      const programIndex = name.startsWith("posix_spawn") ? 1 : 0;
      const program = args[programIndex];
      const viaShell =
        SHELLS.test(src.literalValue(args[programIndex]) ?? "") &&
        args.some((a) => src.literalValue(a) === "-c");
      const shellCommandDynamic =
        viaShell &&
        args.some(
          (a, k) =>
            k > programIndex &&
            !src.isLiteral(a) &&
            !/^(?:NULL|nullptr|0|\(char\s*\*\)\s*(?:NULL|0))$/.test(a.masked),
        );
      if (
        (program &&
          !src.isLiteral(program) &&
          // Built at run time by concatenation, or from input (main's arguments, a string parameter,
          // the environment, stdin); never decided by what the variable is called.
          (/\+/.test(program.masked) || taint.range(program.start, program.end))) ||
        shellCommandDynamic
      ) {
        out.push(
          src.finding(rule, m.index, `${name} launches a program or shell command built from run-time input`),
        );
      }
    }
    return out;
  },
);

const weakRandom = defineRule(
  {
    id: "cpp/weak-random",
    cwe: "CWE-338",
    language: "cpp",
    title: "rand()/srand(time) used where values must be unpredictable",
    severity: "medium",
  },
  (src, rule) => {
    if (!securityContext(src)) return [];
    const flow = flowOf(src);
    // Where the value is made decides: a function that deals with secrets, or one that returns it to such
    // a function (`pick()` inside `makePassword()`); coordinates in a demo's `void query()` are not secrets.
    // Outside any parsed function the whole file decides, as before.
    const context = new Map<string, boolean>();
    const secretFn = (fn: FunctionDef): boolean => {
      let c = context.get(fn.name);
      if (c !== undefined) return c;
      c =
        securityContext(src, fn.start, fn.bodyEnd) ||
        // A helper returns the value to a caller that uses it (a `void` one, or a call made as a statement,
        // hands nothing on).
        (!/\bvoid\b/.test(src.masked.slice(fn.start, fn.bodyStart).split("(")[0]!) &&
          flow.functions.some(
            (g) =>
              g !== fn &&
              new RegExp(`(?<!(?:^|[;{}]|\\belse|\\)\\s*)\\s*)(?<![\\w.>])${fn.name}\\s*\\(`).test(
                src.masked.slice(g.bodyStart, g.bodyEnd),
              ) &&
              securityContext(src, g.start, g.bodyEnd),
          ));
      context.set(fn.name, c);
      return c;
    };
    // The C library's generators, not a function or object of that name the code defines
    // (`Random* random() { ... }`, `testing::internal::Random random(42);`).
    return src
      .matches(/(?<![\w.>])(?:std::)?\b(rand|srand|random|srandom|drand48|lrand48)\s*\(/g)
      .filter((m) => {
        if (new RegExp(`\\b${m[1]}\\s*\\([^;{}()]*\\)\\s*(?:const\\s*)?\\{`).test(src.masked)) return false;
        if (
          /[\w>]\s+$/.test(src.masked.slice(Math.max(0, m.index - 40), m.index)) &&
          !/\b(?:return|case|else|do|throw|co_return)\s+$/.test(
            src.masked.slice(Math.max(0, m.index - 40), m.index),
          )
        )
          return false;
        const fn = flow.functionAt(m.index);
        return !fn || secretFn(fn);
      })
      .map((m) =>
        src.finding(
          rule,
          m.index,
          `${m[1]}() is predictable; use std::random_device-seeded CSPRNG / RAND_bytes for secrets`,
        ),
      );
  },
);

const weakHash = defineRule(
  {
    id: "cpp/weak-hash",
    cwe: "CWE-328",
    language: "cpp",
    title: "MD5/SHA-1/MD4 hashing",
    severity: "medium",
  },
  (src, rule) =>
    src
      .matches(
        /\b(MD5|MD4|SHA1|MD5_Init|MD5_Update|SHA1_Init|SHA1_Update|EVP_md5|EVP_md4|EVP_sha1|CC_MD5|CC_SHA1|CALG_MD5|CALG_SHA1)\b\s*(?:\(|<|::|;|,|\)|\s+[A-Za-z_])/g,
      )
      .map((m) =>
        src.finding(
          rule,
          m.index,
          `${m[1]} is a broken hash; use SHA-256 or better (and a password KDF for passwords)`,
        ),
      ),
);

const weakCipher = defineRule(
  {
    id: "cpp/weak-cipher",
    cwe: "CWE-327",
    language: "cpp",
    title: "DES/3DES/RC4/Blowfish or ECB mode",
    severity: "medium",
  },
  (src, rule) =>
    src
      .matches(
        /\b(EVP_des_\w+|EVP_rc4\w*|EVP_rc2_\w+|EVP_bf_\w+|EVP_aes_\d+_ecb|DES_\w+crypt\w*|DES_set_key\w*|RC4_set_key|RC4|AES_ecb_encrypt|CALG_DES|CALG_RC4|CALG_3DES|ECB_Mode|DES_EDE\w*)\b/g,
      )
      .map((m) =>
        src.finding(rule, m.index, `${m[1]} is a weak cipher or mode; use AES-GCM or ChaCha20-Poly1305`),
      ),
);

/** APIs that take a password or token in one argument (libcurl, ODBC, libpq, libssh, HTTP headers). */
const CREDENTIAL_SINKS: CredentialSink[] = [
  {
    // libcurl's option decides the role.
    call: /\bcurl_easy_setopt\s*\([^,()]*,\s*CURLOPT_(?:PASSWORD|USERPWD|XOAUTH2_BEARER|PROXYPASSWORD|PROXYUSERPWD|KEYPASSWD|TLSAUTH_PASSWORD)\s*,/g,
    arg: 2,
    what: "password passed to libcurl",
  },
  { call: /\bSQLConnect\w*\s*\(/g, arg: 5, what: "password passed to SQLConnect" },
  {
    call: /\bPQconnectdb\s*\(/g,
    arg: 0,
    connectionString: true,
    what: "password in a libpq connection string",
  },
  { call: /\bssh_userauth_password\s*\(/g, arg: 2, what: "password passed to ssh_userauth_password" },
  { call: /\blibssh2_userauth_password\s*\(/g, arg: 2, what: "password passed to libssh2" },
  {
    call: /\bcurl_slist_append\s*\(/g,
    arg: 1,
    when: { arg: 1, value: AUTH_HEADER_LINE },
    what: "credential in an HTTP header",
  },
];

const hardcodedCredential = defineRule(
  {
    id: "cpp/hardcoded-credential",
    cwe: "CWE-798",
    language: "cpp",
    title: "Hard-coded password or key",
    severity: "medium",
  },
  (src, rule) => hardcodedSecrets(src, rule, CREDENTIAL_SINKS),
);

/** APIs that take a cipher or MAC key (OpenSSL, Crypto++, SQLCipher). */
const KEY_SINKS: CredentialSink[] = [
  { call: /\bEVP_(?:Encrypt|Decrypt|Cipher)Init(?:_ex2?)\s*\(/g, arg: 3, what: "the cipher key" },
  { call: /\bEVP_(?:Encrypt|Decrypt|Cipher)Init\s*\(/g, arg: 2, what: "the cipher key" },
  { call: /\bAES_set_(?:en|de)crypt_key\s*\(/g, arg: 0, what: "the AES key" },
  { call: /\bHMAC\s*\(/g, arg: 1, what: "the HMAC key" },
  { call: /\bHMAC_Init(?:_ex)?\s*\(/g, arg: 1, what: "the HMAC key" },
  { call: /\bEVP_PKEY_new_(?:mac|raw_private)_key\s*\(/g, arg: 2, what: "the MAC key" },
  { call: /\bsqlite3_(?:re)?key\s*\(/g, arg: 1, what: "the database key" },
  { call: /\.\s*SetKey(?:WithIV)?\s*\(/g, arg: 0, what: "the cipher key" },
];

const hardcodedKey = hardcodedKeyRule("cpp", KEY_SINKS);

/** Where an IV goes in when encrypting (OpenSSL, Crypto++). */
const IV_SINKS: CredentialSink[] = [
  { call: /\bEVP_(?:Encrypt|Cipher)Init(?:_ex2?)\s*\(/g, arg: 4, what: "the IV" },
  { call: /\bEVP_(?:Encrypt|Cipher)Init\s*\(/g, arg: 3, what: "the IV" },
  { call: /\bAES_(?:cbc|cfb128|ofb128)_encrypt\s*\(/g, arg: 4, what: "the IV" },
  { call: /\.\s*SetKeyWithIV\s*\(/g, arg: 2, what: "the IV" },
];

const staticIv = staticIvRule("cpp", IV_SINKS);

const sqlInjection = defineRule(
  {
    id: "cpp/sql-injection",
    cwe: "CWE-89",
    language: "cpp",
    title: "SQL built by concatenation or formatting",
    severity: "high",
  },
  (src, rule) => sqlBuiltFromInput(src, rule, { streamOperator: true }),
);

const newDeleteMismatch = defineRule(
  {
    id: "cpp/new-delete-mismatch",
    cwe: "CWE-762",
    language: "cpp",
    title: "new[] freed with delete (or new with free)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const arraysNew = new Set(
      [...src.matches(/\b([A-Za-z_]\w*)\s*=\s*new\s+[\w:<>]+\s*\[/g)].map((m) => m[1]!),
    );
    const scalarNew = new Set(
      [...src.matches(/\b([A-Za-z_]\w*)\s*=\s*new\s+[\w:<>]+\s*(?:\(|\{|;)/g)].map((m) => m[1]!),
    );
    const mallocd = new Set(
      [...src.matches(/\b([A-Za-z_]\w*)\s*=\s*(?:\([^)]*\)\s*)?(?:malloc|calloc|realloc)\s*\(/g)].map(
        (m) => m[1]!,
      ),
    );
    // Only a whole pointer: `delete [] p->names[0]` frees an element of a member, not `p`.
    const whole = String.raw`(?![\w:]|\s*(?:->|\.|\[|::))`;
    for (const m of src.matches(new RegExp(String.raw`\bdelete\s+(?!\[)([A-Za-z_]\w*)` + whole, "g"))) {
      if (arraysNew.has(m[1]!))
        out.push(src.finding(rule, m.index, `${m[1]} was allocated with new[]; free it with delete[]`));
      else if (mallocd.has(m[1]!))
        out.push(src.finding(rule, m.index, `${m[1]} was allocated with malloc; free it with free()`));
    }
    for (const m of src.matches(new RegExp(String.raw`\bdelete\s*\[\s*\]\s*([A-Za-z_]\w*)` + whole, "g"))) {
      if (scalarNew.has(m[1]!) && !arraysNew.has(m[1]!))
        out.push(src.finding(rule, m.index, `${m[1]} was allocated with new; free it with delete`));
    }
    for (const m of src.matches(/(?<![\w.>])free\s*\(\s*([A-Za-z_]\w*)\s*\)/g)) {
      if (arraysNew.has(m[1]!) || scalarNew.has(m[1]!))
        out.push(src.finding(rule, m.index, `${m[1]} was allocated with new; free() is undefined behaviour`));
    }
    return out;
  },
);

// ---------------------------------------------------------------------------------------------
// Ownership: where memory from `new` goes when no `delete` is in sight

const SMART_POINTER =
  /\b(?:unique_ptr|shared_ptr|auto_ptr|scoped_ptr|scoped_array|shared_array|intrusive_ptr)\b/;

/**
 * Calls that read or write through a pointer and never take ownership of it: the C string, memory and I/O
 * functions, stream reads, and the standard algorithms. Any other call may keep the pointer (a container's
 * push_back, a framework's addWidget or a locale's facet constructor), which the rules cannot look into.
 */
const NON_OWNING = new Set(
  (
    "strcpy strncpy strcat strncat strlcpy strlcat memcpy memmove memset memcmp memchr strcmp strncmp " +
    "strcasecmp strlen strnlen strchr strrchr strstr strtok strspn strcspn sprintf snprintf vsprintf vsnprintf " +
    "printf fprintf sscanf scanf fscanf fgets gets fread fwrite fputs puts read write recv send recvfrom sendto " +
    "getline get ignore copy copy_n fill fill_n sort stable_sort find count accumulate transform reverse iota " +
    "atoi atol atof strtol strtoul strtod wcscpy wcsncpy wcslen"
  ).split(" "),
);

/** The index of the unmatched "(", "{" or "[" that encloses `at` (within its statement unless told), or -1. */
function openerOf(m: string, at: number, statementOnly = true): number {
  let depth = 0;
  for (let k = at - 1; k >= 0 && k > at - 4000; k--) {
    const ch = m[k]!;
    if (ch === ")" || ch === "}" || ch === "]") depth++;
    else if (ch === "(" || ch === "{" || ch === "[") {
      if (depth === 0) return k;
      depth--;
    } else if (ch === ";" && depth === 0 && statementOnly) return -1;
  }
  return -1;
}

/**
 * Is the pointer `name` handed on between `from` and `to`: passed whole to a call that may keep it (not
 * NON_OWNING), to a constructor or an initialiser list, stored (`x.f = name;`, `list[i] = name;`), or thrown?
 * Then its owner is elsewhere (Clang's analyzer stops tracking an allocation at such an escape too).
 */
function handedOn(src: Source, name: string, from: number, to: number): boolean {
  const m = src.masked;
  const re = new RegExp(`(?<![\\w.>]|->|::)${name}\\b(?!\\s*(?:->|\\.|\\[|\\(|::))`, "g");
  re.lastIndex = from;
  for (let u = re.exec(m); u && u.index < to; u = re.exec(m)) {
    const before = m.slice(Math.max(0, u.index - 120), u.index);
    const after = m.slice(u.index + name.length, u.index + name.length + 8);
    if (/\bthrow\s*$/.test(before)) return true;
    if (/(?<![=!<>+\-*/%&|^])=\s*$/.test(before) && /^\s*[;,)}]/.test(after)) return true;
    if (!/[(,{]\s*$/.test(before) || !/^\s*[,)}]/.test(after)) continue;
    const open = openerOf(m, u.index);
    if (open < 0 || m[open] === "[") continue;
    if (m[open] === "{") return true; // `{..., p}`: an initialiser list or a braced constructor call
    const callee = /([A-Za-z_]\w*)\s*(?:<[^<>;{}]*>)?\s*$/.exec(m.slice(Math.max(0, open - 120), open))?.[1];
    if (!callee) continue; // `(p)`, `(T*)p`: an expression, not a call
    if (
      /^(?:if|while|for|switch|return|sizeof|alignof|decltype|static_cast|const_cast|reinterpret_cast|dynamic_cast|assert|delete)$/.test(
        callee,
      ) ||
      NON_OWNING.has(callee)
    )
      continue;
    return true;
  }
  return false;
}

/**
 * Does `new T(args)` at `at` give the new object an existing object to register with: `this` or a pointer
 * declared in the code (Qt's `new QPushButton("Quit", this)`, wxWidgets' parent windows)? The parent then
 * owns the child and deletes it; the rules cannot see that constructor.
 */
function givenOwner(src: Source, at: number): boolean {
  const m = src.masked;
  const open = /^new\s+[\w:]+(?:\s*<[^;{}()]*>)?\s*\(/.exec(m.slice(at, at + 200));
  if (!open) return false;
  for (const a of src.callArgs(at + open[0].length - 1)) {
    const arg = a.masked.trim();
    if (arg === "this") return true;
    if (
      /^[A-Za-z_]\w*$/.test(arg) &&
      new RegExp(`[\\w>]\\s*\\*\\s*(?:const\\s+)?${arg}\\s*[;=,)]|\\b${arg}\\s*=\\s*new\\b`).test(m)
    )
      return true;
  }
  return false;
}

const memoryLeak = defineRule(
  {
    id: "cpp/memory-leak",
    cwe: "CWE-401",
    language: "cpp",
    title: "Raw new with no delete",
    severity: "low",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    for (const a of src.matches(/\b([A-Za-z_]\w*)\s*=\s*(new\s+[\w:<>]+)/dg)) {
      const v = a[1]!;
      const newAt = a.indices![2]![0];
      const fn = flowOf(src).functionAt(a.index);
      // Only a function's own local: at file scope it is a global (reachable to the end); `x.p = new`,
      // `p->next = new`, `Class::p = new` and `*out = new` (the caller's pointer) store it in an owner.
      if (!fn) continue;
      const lead = m.slice(Math.max(0, a.index - 200), a.index);
      if (/(?:\.|->|::)\s*$|(?:^|[;{}(,]|\breturn)\s*\*+\s*$/.test(lead)) continue;
      // Declared here (`T* p = new`), or earlier in the function; otherwise a member (constructor-leak's
      // concern) or a global.
      const stmt = lead.slice(
        Math.max(lead.lastIndexOf(";"), lead.lastIndexOf("{"), lead.lastIndexOf("}")) + 1,
      );
      const declaredHere = /[\w>]\s*[*&]*\s*$/.test(stmt) && /[A-Za-z_]/.test(stmt);
      const declaredBefore = new RegExp(
        `(?:^|[;{}(,])\\s*(?:const\\s+)?(?!(?:delete|return|throw|else|case|goto|new)\\b)[A-Za-z_][\\w:]*(?:\\s*<[^;{}]*>)?[\\s*&]+(?:const\\s+)?${v}\\s*[=;,)\\[{]`,
      ).test(m.slice(fn.start, a.index));
      if (!declaredHere && !declaredBefore) continue;
      // A function-local static is made once and lives as long as the program (a deliberate singleton).
      if (declaredHere && /(?:^|\s)static\s/.test(stmt)) continue;
      if (declaredHere && SMART_POINTER.test(stmt)) continue;
      // Freed, returned or owned by a smart pointer.
      if (
        new RegExp(
          `\\bdelete\\s*(?:\\[\\s*\\])?\\s*${v}\\b|\\breturn\\s+${v}\\b|${SMART_POINTER.source}[^;]*\\b${v}\\b|\\breset\\s*\\(\\s*${v}\\b`,
        ).test(m)
      )
        continue;
      // Handed to an owner: a parent given to the constructor, or the pointer passed on or stored after.
      if (givenOwner(src, newAt)) continue;
      const stmtEnd = expressionEnd(src, newAt);
      if (handedOn(src, v, stmtEnd, fn.bodyEnd)) continue;
      out.push(
        src.finding(
          rule,
          a.index,
          `memory from 'new' in ${v} is never deleted; use std::unique_ptr or a container`,
        ),
      );
    }
    return out;
  },
);

const manualCopy = defineRule(
  {
    id: "cpp/unbounded-copy-loop",
    cwe: "CWE-120",
    language: "cpp",
    title: "Copy loop that stops only at the source's terminator",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // while (*s) / while (s[i] != '\0') / for (...; s[i] != '\0'; ...) writing into another buffer.
    for (const mm of src.matches(/\b(while|for)\s*\(/g)) {
      const open = mm.index + mm[0].length - 1;
      const close = matchBracket(src, open);
      const head = m.slice(open + 1, close);
      const cond = mm[1] === "for" ? (head.split(";")[1] ?? "") : head;
      const term =
        /^\s*\*\s*([A-Za-z_]\w*)\s*(?:!=\s*'\s*'|!=\s*0)?\s*$|^\s*([A-Za-z_]\w*)\s*\[\s*(\w+)\s*\]\s*(?:!=\s*'\s*'|!=\s*0)?\s*$|^\s*\(?\s*\*\s*([A-Za-z_]\w*)\s*\+\+\s*=\s*\*\s*([A-Za-z_]\w*)\s*\+\+\s*\)?\s*(?:!=\s*'\s*')?\s*$/.exec(
          cond,
        );
      if (!term) continue;
      if (/&&|\|\|/.test(cond)) continue; // a second condition (a count) bounds it
      const srcName = term[1] ?? term[2] ?? term[5];
      let bodyStart = close + 1;
      while (/\s/.test(m[bodyStart] ?? "")) bodyStart++;
      const bodyEnd = m[bodyStart] === "{" ? matchBracket(src, bodyStart) : expressionEnd(src, bodyStart);
      const body = m.slice(bodyStart, bodyEnd);
      const writes = term[4]
        ? term[4]
        : /\*\s*([A-Za-z_]\w*)\s*(?:\+\+)?\s*=(?!=)|(?<![\w.])([A-Za-z_]\w*)\s*\[\s*\w+\s*\]\s*=(?!=)/
            .exec(body)
            ?.slice(1)
            .find(Boolean);
      if (!writes || writes === srcName) continue;
      if (/\bbreak\b|\breturn\b/.test(body) && /[<>]=?/.test(body)) continue;
      out.push(
        src.finding(
          rule,
          mm.index,
          `copies '${srcName}' into '${writes}' until its terminator without checking the destination's size`,
        ),
      );
    }
    // A destination allocated with strlen(s) bytes, without room for the terminator.
    for (const mm of src.matches(
      /\bnew\s+char\s*\[\s*(?:std::)?strlen\s*\(\s*[\w.>-]+\s*\)\s*\]|\bmalloc\s*\(\s*(?:std::)?strlen\s*\(\s*[\w.>-]+\s*\)\s*\)/g,
    ))
      out.push(
        src.finding(
          rule,
          mm.index,
          "allocates strlen() bytes, one short of the terminating NUL that the copy writes",
        ),
      );
    return out;
  },
);

const arrayBounds = defineRule(
  {
    id: "cpp/out-of-bounds",
    cwe: "CWE-787",
    language: "cpp",
    title: "Index past the end of an array (loop bounds, constants, input, off-by-one)",
    severity: "high",
  },
  (src, rule) => {
    const out = [...outOfBounds(src), ...copyPastEnd(src)].map((f) => src.finding(rule, f.at, f.message));
    const taint = taintOf(src, EXTERNAL);
    for (const f of uncheckedIndexes(src, taint)) out.push(src.finding(rule, f.at, f.message));
    // for (i = 0; i <= n; i++) over a pointer/array parameter whose length is the parameter n.
    for (const fn of flowOf(src).functions) {
      const arrays = fn.params
        .filter((p) => /\*|\[/.test(p.type) || /\[\s*\]/.test(p.type))
        .map((p) => p.name);
      const counts = fn.params
        .filter((p) =>
          /^(?:const\s+)?(?:unsigned\s+)?(?:int|long|size_t|unsigned|short)$/.test(p.type.trim()),
        )
        .map((p) => p.name);
      if (!arrays.length || !counts.length) continue;
      const body = src.masked.slice(fn.bodyStart, fn.bodyEnd);
      for (const l of body.matchAll(
        new RegExp(`\\bfor\\s*\\([^;]*;\\s*(\\w+)\\s*<=\\s*(${counts.join("|")})\\s*;`, "g"),
      )) {
        const i = l[1]!;
        if (new RegExp(`\\b(?:${arrays.join("|")})\\s*\\[\\s*${i}\\s*\\]`).test(body.slice(l.index!)))
          out.push(
            src.finding(
              rule,
              fn.bodyStart + l.index!,
              `loop runs ${i} up to ${l[2]} inclusive: one past the end of an array of ${l[2]} elements`,
            ),
          );
      }
    }
    return out;
  },
);

/**
 * Where straight-line code after `at` stops inside its block: the block's closing brace, or an earlier
 * `return`/`continue`/`break`/`throw`/`goto` at the block's own depth (what follows is another path).
 */
function blockPathEnd(src: Source, at: number): number {
  const m = src.masked;
  let depth = 0;
  for (let k = at; k < m.length; k++) {
    const ch = m[k]!;
    if (ch === "{" || ch === "(" || ch === "[") depth++;
    else if (ch === "}" || ch === ")" || ch === "]") {
      if (depth === 0) return k;
      depth--;
    } else if (depth === 0 && /[rcbtg]/.test(ch) && !/\w/.test(m[k - 1] ?? "")) {
      if (/^(?:return|continue|break|throw|goto)\b/.test(m.slice(k, k + 9))) return k;
    }
  }
  return m.length;
}

const useAfterFree = defineRule(
  {
    id: "cpp/use-after-free",
    cwe: "CWE-416",
    language: "cpp",
    title: "Pointer used or freed again after delete/free",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // `delete p`, `delete[] p`, `free(p)` of a whole pointer: not `deleter_type` or `delete_disposer()` (names
    // that start with "delete"), not a member `pool.free(p)`, not an element (`delete a[i]` frees what
    // a[i] points to, not the array `a`).
    for (const d of src.matches(
      /(?:\bdelete\b\s*(?:\[\s*\])?\s*|(?<![\w.>]|->)(?:std::|::)?free\s*\(\s*)([A-Za-z_][\w.]*(?:->\w+)?)(?![\w.\-:]|\s*(?:\[|\(|<|::|->))/g,
    )) {
      const name = d[1]!;
      if (name === "this") continue; // `delete this;` ends the object's own member function
      const fn = flowOf(src).functionAt(d.index);
      const stmtEnd = m.indexOf(";", d.index);
      if (stmtEnd < 0) continue;
      // The path after the free: to the end of the function, unless a jump ends this block's path first
      // (`delete[] p; continue;`); outside a function found by the parser (an `operator()`), its block.
      const jump = blockPathEnd(src, stmtEnd + 1);
      const jumps = /^(?:return|continue|break|throw|goto)\b/.test(m.slice(jump, jump + 9));
      const end = jumps ? expressionEnd(src, jump) + 1 : !fn ? jump : fn.bodyEnd;
      const after = m.slice(stmtEnd + 1, end);
      const esc = name.replace(/[.>-]/g, (c) => "\\" + c);
      // Given new memory, or a new variable of that name declared (`Expensive *ptr = &*set.begin();`).
      const reassigned = new RegExp(
        `(?<![\\w.>])${esc}\\s*=(?!=)|(?:^|[;{}])\\s*(?:const\\s+)?[A-Za-z_][\\w:]*(?:<[^;{}]*>)?\\s*[*&]*\\s*${esc}\\s*[=;({]`,
      ).exec(after);
      const use = new RegExp(
        `(?<![\\w.>])(?:\\*\\s*${esc}\\b|${esc}\\s*(?:->|\\[)|(?:delete\\s*(?:\\[\\s*\\])?\\s*|free\\s*\\(\\s*)${esc}\\b(?!\\s*\\[)|${esc}\\s*\\.\\s*\\w+\\s*\\()`,
      ).exec(after);
      if (!use || (reassigned && reassigned.index <= use.index)) continue;
      const again = /^(?:delete|free)/.test(use[0]);
      out.push(
        src.finding(
          rule,
          stmtEnd + 1 + use.index,
          again ? `'${name}' is freed twice` : `'${name}' is used after it was freed`,
        ),
      );
    }
    return out;
  },
);

const uninitializedPointer = defineRule(
  {
    id: "cpp/uninitialized-pointer",
    cwe: "CWE-824",
    language: "cpp",
    title: "Pointer dereferenced before it is given memory",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // Local `T* p;` or `T* p = nullptr;` then `*p = ...` / `p->x` / `p[i]` before any assignment. A declaration
    // starts a statement; `return *this;`, `delete *p;` and `x = y * z;` declare nothing. The look-ahead for the
    // type's first letter comes before the look-behind, which scanned back through all the blanks before every
    // blank (quadratic in a run of blank lines).
    for (const d of src.matches(
      /(?=[A-Za-z_])(?<=(?:^|[;{}])\s*(?:(?:const|static|volatile|register)\s+)*)(?!(?:return|delete|throw|case|goto|else|do|co_return|co_yield|sizeof|new)\b)[A-Za-z_][\w:]*\s*\*\s*(?!this\b)([A-Za-z_]\w*)\s*(?:=\s*(?:nullptr|NULL|0)\s*)?;/g,
    )) {
      const fn = flowOf(src).functionAt(d.index);
      if (!fn) continue;
      // A member of a class or struct defined inside the function (a sentry, a functor): its constructor
      // sets it; the member loop below judges members.
      const opener = openerOf(m, d.index, false);
      if (
        opener >= 0 &&
        /\b(?:class|struct|union)\b[^;{}()]*$/.test(m.slice(Math.max(0, opener - 200), opener))
      )
        continue;
      const name = d[1]!;
      const after = m.slice(d.index + d[0].length, fn.bodyEnd);
      // Assigned, its address taken, or passed to a call, which may set it (an out-parameter by reference:
      // codecvt's `out(..., to_next)`).
      const direct = new RegExp(`(?<![\\w.>*])${name}\\s*=(?!=)|&\\s*${name}\\b`).exec(after);
      let assigned: { index: number } | null = direct;
      for (const u of after.matchAll(new RegExp(`[(,]\\s*${name}\\s*[,)]`, "g"))) {
        const at = d.index + d[0].length + u.index!;
        const open = openerOf(m, at + u[0].indexOf(name));
        if (open >= 0 && m[open] === "(" && /[A-Za-z_]\w*\s*$/.test(m.slice(Math.max(0, open - 60), open))) {
          if (!assigned || u.index! < assigned.index) assigned = { index: u.index! };
          break;
        }
      }
      const use = new RegExp(
        `(?:^|[^\\w)\\]])\\*\\s*${name}\\b|(?<![\\w.])${name}\\s*->|(?<![\\w.])${name}\\s*\\[`,
      ).exec(after);
      if (!use || (assigned && assigned.index < use.index)) continue;
      if (
        new RegExp(`${name}\\s*(?:!=|==)\\s*(?:nullptr|NULL|0)|if\\s*\\(\\s*!?\\s*${name}\\s*\\)`).test(
          after.slice(0, use.index),
        )
      )
        continue;
      out.push(
        src.finding(
          rule,
          d.index + d[0].length + use.index,
          `'${name}' does not point to valid memory when it is dereferenced`,
        ),
      );
    }
    // Pointer members that no constructor or method assigns, dereferenced through an object.
    for (const c of src.matches(/\b(?:class|struct)\s+(\w+)[^{;]*\{/g)) {
      const open = c.index + c[0].length - 1;
      const body = m.slice(open, matchBracket(src, open));
      for (const f of body.matchAll(
        /^(?![^\S\n]*\n)\s*(?!(?:return|delete|throw|case|goto|else|do|co_return|co_yield)\b)[A-Za-z_][\w:]*\s*\*\s*(?!this\b)([A-Za-z_]\w*)\s*;/gm,
      )) {
        const name = f[1]!;
        if (
          new RegExp(
            `(?<![\\w])${name}\\s*=(?!=)|\\b${name}\\s*\\(|->\\s*${name}\\s*=(?!=)|\\.\\s*${name}\\s*=(?!=)|\\b${name}\\s*\\{`,
          ).test(m.slice(open))
        )
          continue;
        // Dereferenced through an object (`*obj.p`, `obj.p->x`, `obj->p[i]`) or inside a member function.
        const close = matchBracket(src, open);
        const outside = new RegExp(
          `\\*\\s*\\w+\\s*(?:\\.|->)\\s*${name}\\b|\\w+\\s*(?:\\.|->)\\s*${name}\\s*(?:->|\\[)`,
        ).exec(m.slice(close));
        const inside = new RegExp(
          `(?:^|[^\\w)\\]])\\*\\s*(?:this\\s*->\\s*)?${name}\\b\\s*(?!;)|(?<![\\w.])${name}\\s*(?:->|\\[)`,
        ).exec(body.slice(f.index! + f[0].length));
        if (outside)
          out.push(
            src.finding(
              rule,
              close + outside.index,
              `member '${name}' is never initialised and is dereferenced`,
            ),
          );
        else if (inside)
          out.push(
            src.finding(
              rule,
              open + f.index! + f[0].length + inside.index,
              `member '${name}' is never initialised and is dereferenced`,
            ),
          );
      }
    }
    return out;
  },
);

/**
 * Does a member of this type free what it holds: a smart pointer, a typedef/alias of one (followed through
 * aliases of aliases: `<future>`'s `_Ptr_type` -> `_Ptr<T>` -> `unique_ptr<T, D>`), or a class of the snippet
 * whose destructor deletes (an RAII holder such as libstdc++'s `_Scoped_ptr`)?
 */
function ownsMemory(src: Source, type: string, depth = 0): boolean {
  if (SMART_POINTER.test(type)) return true;
  const name = /([A-Za-z_]\w*)\s*(?:<[^]*>)?\s*$/.exec(type)?.[1];
  if (!name || depth > 3) return false;
  const m = src.masked;
  const alias = new RegExp(
    `\\btypedef\\s+([^;]*?)\\s*\\b${name}\\s*;|\\busing\\s+${name}\\s*=\\s*([^;]*);`,
    "g",
  );
  for (const a of m.matchAll(alias)) if (ownsMemory(src, (a[1] ?? a[2])!, depth + 1)) return true;
  const dtor = new RegExp(`~\\s*${name}\\s*\\(\\s*\\)[^;{]*\\{`).exec(m);
  if (dtor) {
    const open = dtor.index + dtor[0].length - 1;
    if (/\bdelete\b|\bfree\s*\(/.test(m.slice(open, matchBracket(src, open)))) return true;
  }
  return false;
}

const classLeak = defineRule(
  {
    id: "cpp/constructor-leak",
    cwe: "CWE-401",
    language: "cpp",
    title: "Class allocates in its constructor and never frees in its destructor",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    for (const c of src.matches(/\b(?:class|struct)\s+(\w+)[^{;]*\{/g)) {
      const cls = c[1]!;
      const open = c.index + c[0].length - 1;
      const body = m.slice(open, matchBracket(src, open));
      const ctor = new RegExp(`\\b${cls}\\s*\\([^)]*\\)\\s*(?::[^{]*)?\\{`).exec(body);
      if (!ctor) continue;
      const cOpen = open + ctor.index + ctor[0].length - 1;
      const ctorBody = m.slice(cOpen, matchBracket(src, cOpen));
      // Members given memory: `p = new T` / `this->p = malloc(n)` in the body (not a local of the constructor:
      // `T* p = new T` or `char* p; p = new char[4];`), `p(new T)` in the initialiser list when `p` is a
      // field of the class (not a base class's constructor: `Base(new Impl)` hands it to the base).
      const allocated: { name: string; at: number }[] = [];
      for (const x of ctorBody.matchAll(
        /\b(?:this\s*->\s*)?([A-Za-z_]\w*)\s*=\s*(?:new\b|(?:\([^)]*\)\s*)?(?:malloc|calloc)\s*\()/g,
      )) {
        const local = new RegExp(
          `(?:^|[;{}(,])\\s*(?:const\\s+)?(?!(?:delete|return|throw|else|case|goto|new)\\b)[A-Za-z_][\\w:]*(?:\\s*<[^;{}]*>)?[\\s*&]+(?:const\\s+)?${x[1]}\\s*[=;,)\\[{]`,
        );
        if (local.test(ctorBody.slice(0, x.index! + x[0].length))) continue;
        allocated.push({ name: x[1]!, at: cOpen + x.index! + x[0].search(/new\b|malloc|calloc/) });
      }
      const init = /:\s*([^{]*)\{$/.exec(ctor[0]);
      const initAt = open + ctor.index + (init ? ctor[0].length - init[0].length : 0);
      for (const x of init?.[1]?.matchAll(/(\w+)\s*[({]\s*new\b/g) ?? []) {
        const field = new RegExp(`[\\w>*&\\s]\\b${x[1]}\\s*(?:;|=|\\{|\\[)`).test(body);
        if (field) allocated.push({ name: x[1]!, at: m.indexOf("new", initAt + x.index!) });
      }
      if (allocated.length === 0) continue;
      // Destructor in the class or out of line.
      const dtor = new RegExp(`~\\s*${cls}\\s*\\(\\s*\\)\\s*(?:noexcept\\s*)?(?:override\\s*)?\\{`).exec(m);
      const dtorBody = dtor ? m.slice(dtor.index, matchBracket(src, dtor.index + dtor[0].length - 1)) : "";
      const ctorEnd = matchBracket(src, cOpen);
      for (const { name: a, at } of allocated) {
        if (
          new RegExp(
            `\\bdelete\\s*(?:\\[\\s*\\])?\\s*(?:this\\s*->\\s*)?${a}\\b|\\bfree\\s*\\(\\s*(?:this\\s*->\\s*)?${a}\\b`,
          ).test(dtorBody)
        )
          continue;
        // The destructor hands it to what releases it (`_M_pi->_M_release()`, `release(p_)`).
        if (
          dtorBody &&
          (new RegExp(`\\b${a}\\s*->\\s*\\w+\\s*\\(`).test(dtorBody) ||
            handedOn(src, a, dtor!.index, dtor!.index + dtorBody.length))
        )
          continue;
        // A member held by a smart pointer (`std::unique_ptr<T> p_;`, or a typedef of one) frees itself.
        const decl = new RegExp(
          `([A-Za-z_][\\w:]*(?:\\s*<[^;{}]*>)?)\\s*[*&]?\\s*\\b${a}\\s*(?:;|=|\\{)`,
        ).exec(body);
        if (decl && ownsMemory(src, decl[1]!)) continue;
        // Given a parent that owns it (`new QVBox(this)`), or handed on in the constructor (`layout->addWidget(p)`,
        // another member's constructor `streamer_(fake_writer_)`).
        if (m.startsWith("new", at) && givenOwner(src, at)) continue;
        if (handedOn(src, a, at, ctorEnd)) continue;
        out.push(
          src.finding(
            rule,
            cOpen,
            `${cls} allocates '${a}' in its constructor and its destructor never frees it`,
          ),
        );
      }
    }
    return out;
  },
);

const raceCondition = defineRule(
  {
    id: "cpp/race-condition",
    cwe: "CWE-362",
    language: "cpp",
    title: "Global written by several threads without a mutex or atomic",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    const threadFns = new Set<string>();
    for (const t of src.matches(
      /\b(?:std::)?thread\s+\w+\s*[({]\s*&?\s*(\w+)|\bpthread_create\s*\([^,]*,[^,]*,\s*&?\s*(\w+)|\b(?:std::)?(?:async|thread)\s*\(\s*(?:std::launch::\w+\s*,\s*)?&?\s*(\w+)/g,
    ))
      threadFns.add((t[1] ?? t[2] ?? t[3])!);
    if (threadFns.size === 0) return out;
    const globals = new Set(
      src
        .matches(
          /^(?:static\s+|volatile\s+)*(?:int|long|unsigned|double|float|bool|size_t|char|std::string|std::vector<[^>]*>|u?int\d+_t)\s+([A-Za-z_]\w*)\s*(?:=[^;]*)?;/gm,
        )
        .filter((g) => !flowOf(src).functionAt(g.index))
        .map((g) => g[1]!),
    );
    for (const f of flowOf(src).functions) {
      if (!threadFns.has(f.name)) continue;
      const body = m.slice(f.bodyStart, f.bodyEnd);
      if (
        /\block\b|\bmutex\b|lock_guard|unique_lock|shared_lock|scoped_lock|\.\s*(?:try_)?lock(?:_shared|_upgrade|_for|_until)?\s*\(|atomic|pthread_mutex_(?:try)?lock/.test(
          body,
        )
      )
        continue;
      const w = [
        ...body.matchAll(
          /(?<![\w.>])([A-Za-z_]\w*)\s*(?:\+\+|--|[+\-*/]?=(?!=))|(?:\+\+|--)\s*([A-Za-z_]\w*)/g,
        ),
      ].find((x) => globals.has((x[1] ?? x[2])!));
      if (w)
        out.push(
          src.finding(
            rule,
            f.bodyStart + w.index!,
            `threads write the global '${w[1] ?? w[2]}' without a mutex or std::atomic`,
          ),
        );
    }
    return out;
  },
);

const integerOverflow = defineRule(
  {
    id: "cpp/integer-overflow",
    cwe: "CWE-190",
    language: "cpp",
    title: "Arithmetic on a value at its type's maximum (or from input) that overflows",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const MAX =
      /^\s*(?:INT_MAX|LONG_MAX|LLONG_MAX|UINT_MAX|SHRT_MAX|CHAR_MAX|SIZE_MAX|(?:std::)?numeric_limits\s*<[^>]+>\s*::\s*max\s*\(\s*\)|2147483647|4294967295|32767|65535|127|255)\s*$/;
    for (const a of flowOf(src).assignments) {
      if (!MAX.test(src.masked.slice(a.rhsStart, a.rhsEnd))) continue;
      if (
        /^\s*(?:127|255|32767|65535)\s*$/.test(src.masked.slice(a.rhsStart, a.rhsEnd)) &&
        !/char|short|int8|int16/.test(a.type)
      )
        continue;
      const after = src.masked.slice(a.rhsEnd);
      const inc = new RegExp(
        `${identRe(a.name).source}\\s*(?:\\+\\+|\\+=|\\*=|\\+\\s*[1-9\\w]|\\*\\s*[2-9\\w])|\\+\\+\\s*${identRe(a.name).source}`,
      ).exec(after);
      if (!inc) continue;
      const fn = flowOf(src).functionAt(a.index);
      if (
        new RegExp(
          `${identRe(a.name).source}\\s*<\\s*(?:INT_MAX|LONG_MAX|UINT_MAX|\\w+_MAX|std::numeric_limits)`,
        ).test(after.slice(0, inc.index + 40))
      )
        continue;
      out.push(
        src.finding(
          rule,
          a.rhsEnd + inc.index,
          `'${a.name}' holds its type's maximum and overflows when increased`,
        ),
      );
    }
    for (const mm of src.matches(
      /\b(?:INT_MAX|LONG_MAX|UINT_MAX|SIZE_MAX)\s*\+\s*\d|(?:std::)?numeric_limits\s*<[^>]+>\s*::\s*max\s*\(\s*\)\s*\+\s*([A-Za-z_]\w*|\d[\d.eE]*[fF]?)?/g,
    )) {
      // Computed in floating point: stored into a double/float (`const double thr = max() + naf;`), or the other
      // operand is one (a floating literal or a name declared double/float).
      const stmt = src.masked
        .slice(Math.max(0, mm.index - 200), mm.index)
        .split(/[;{}]/)
        .pop()!;
      const other = mm[1];
      if (
        /\b(?:double|float|long\s+double)\s+[A-Za-z_]\w*\s*=\s*$/.test(stmt) ||
        (other &&
          (/[.eEfF]/.test(other) && /^\d/.test(other)
            ? true
            : new RegExp(`\\b(?:double|float)\\s+${other}\\b`).test(src.masked)))
      )
        continue;
      out.push(src.finding(rule, mm.index, "adding to the type's maximum overflows"));
    }
    return out;
  },
);

const unboundedAllocation = unboundedAllocationRule("cpp", EXTERNAL);

const divideByZero = divideByZeroRule("cpp", ENTRY);

export const cppRules: Rule[] = [
  manualCopy,
  arrayBounds,
  useAfterFree,
  uninitializedPointer,
  classLeak,
  raceCondition,
  integerOverflow,
  unboundedAllocation,
  divideByZero,
  unboundedCopy,
  gets,
  scanfString,
  cinIntoArray,
  memcpyIntoFixed,
  formatString,
  commandInjection,
  weakRandom,
  weakHash,
  weakCipher,
  hardcodedCredential,
  hardcodedKey,
  staticIv,
  sqlInjection,
  newDeleteMismatch,
  memoryLeak,
];
