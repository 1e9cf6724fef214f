/** Rules for Java. */
import { argListStart, defineRule, type Source } from "./source.js";
import {
  AUTH_HEADER,
  hardcodedSecrets,
  inSnippetValidators,
  isSensitiveName,
  namesRe,
  sqlBuiltFromInput,
  type CredentialSink,
  hardcodedKeyRule,
  staticIvRule,
} from "./common.js";
import {
  expressionEnd,
  flowOf,
  identRe,
  matchBracket,
  taintOf,
  type Taint,
  type TaintConfig,
} from "./flow.js";
import { copyPastEnd, divideByZeroRule, outOfBounds, sizedArrays, uncheckedIndexes } from "./bounds.js";
import type { Finding, Rule } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Untrusted input

/** Reads of request, environment and deserialized data (console and socket readers: see readers()). */
const SOURCES =
  /\.\s*(?:getParameter|getParameterValues|getParameterMap|getHeader|getHeaders|getQueryString|getPathInfo|getRequestURI|getRequestURL|getCookies|getText|getPassword|readObject|readUnshared)\s*\(|\bSystem\s*\.\s*(?:getenv|getProperty)\s*\(|\bSystem\s*\.\s*console\s*\(\s*\)\s*\.\s*read(?:Line|Password)|\bnew\s+Scanner\s*\([^)]*\)\s*\.\s*next\w*\s*\(/;
const NUMBER_SOURCES = /\bnew\s+Scanner\s*\([^)]*\)\s*\.\s*next(?:Int|Long|Short|Byte|Double|Float)\s*\(/;

/** Variables that read from the console, a socket, a request or a file: Scanner, BufferedReader, Console, DataInputStream. */
function readers(src: Source): { text?: RegExp; number?: RegExp } {
  const names = new Set<string>();
  for (const a of flowOf(src).assignments) {
    const rhs = src.masked.slice(a.rhsStart, a.rhsEnd);
    if (
      /^(?:final\s+)?(?:Scanner|BufferedReader|Console|DataInputStream|InputStreamReader|LineNumberReader)$/.test(
        a.type,
      ) ||
      /^\s*(?:new\s+(?:Scanner|BufferedReader|DataInputStream|InputStreamReader|LineNumberReader)\s*\(|System\s*\.\s*console\s*\()/.test(
        rhs,
      )
    )
      names.add(a.name);
  }
  for (const f of flowOf(src).functions)
    for (const p of f.params)
      if (/^(?:Scanner|BufferedReader|Console|DataInputStream)$/.test(p.type)) names.add(p.name);
  if (names.size === 0) return {};
  const alt = namesRe([...names]);
  return {
    text: new RegExp(`\\b(?:${alt})\\s*\\.\\s*(?:next|nextLine|readLine|readUTF|readPassword)\\s*\\(`),
    number: new RegExp(`\\b(?:${alt})\\s*\\.\\s*next(?:Int|Long|Short|Byte|Double|Float|BigInteger)\\s*\\(`),
  };
}

const TO_NUMBER =
  /\b(?:Integer\s*\.\s*(?:parseInt|valueOf)|Long\s*\.\s*(?:parseLong|valueOf)|Short\s*\.\s*parseShort|Byte\s*\.\s*parseByte|Double\s*\.\s*parseDouble|Float\s*\.\s*parseFloat)\s*\(|\.\s*(?:length|size)\s*\(\s*\)/;
const SANITIZERS =
  /\b(?:encodeFor\w+|escape(?:Html\w*|Xml\w*|Sql|Java\w*|EcmaScript)?|htmlEscape|HtmlUtils|StringEscapeUtils|Encode\s*\.\s*for\w+|URLEncoder\s*\.\s*encode|FilenameUtils\s*\.\s*getName|Jsoup\s*\.\s*clean|sanitize\w*|Normalizer\s*\.\s*normalize)\s*\(|\.\s*getFileName\s*\(\s*\)/;

/** Calls whose result carries their argument: string building, conversion, files and URLs built from a name. */
const PROPAGATORS =
  /^(?:String\s*\.\s*(?:format|valueOf|join)|\w+\s*\.\s*(?:trim|strip|substring|toLowerCase|toUpperCase|replace|replaceAll|replaceFirst|concat|split|toString|getBytes|toCharArray|charAt|append|insert|intern|format|formatted|repeat|lines|chars|get|getPath|getAbsolutePath|toPath|toFile|resolve|decode|valueOf|asList|of|copyOf|copyOfRange)|new (?:String|StringBuilder|StringBuffer|File|URL|URI|StringReader|ByteArrayInputStream|InputStreamReader|BufferedReader|Scanner)|Paths\s*\.\s*get|Path\s*\.\s*of|Arrays\s*\.\s*(?:asList|copyOf\w*|toString)|List\s*\.\s*of|Objects\s*\.\s*toString|URLDecoder\s*\.\s*decode|\w*Base64\s*\.\s*\w+|Integer\s*\.\s*\w+|Long\s*\.\s*\w+|Double\s*\.\s*\w+)$/;

/** Input from outside the program only. */
const EXTERNAL: TaintConfig = {
  propagators: PROPAGATORS,
  sources: SOURCES,
  numberSources: NUMBER_SOURCES,
  toNumber: TO_NUMBER,
  sanitizers: SANITIZERS,
  dynamicSources: readers,
  paramSources: (fn, p) => (fn.name === "main" && /String\s*(?:\[\s*\]|\.\.\.)/.test(p.type) ? "text" : null),
};

/** Also the String and int parameters of the snippet's methods: the snippet is a library whose callers are unknown. */
const ENTRY: TaintConfig = {
  ...EXTERNAL,
  paramSources: (fn, p) =>
    (fn.name === "main" && /String\s*(?:\[\s*\]|\.\.\.)/.test(p.type)) || /^(?:final\s+)?String$/.test(p.type)
      ? "text"
      : /^(?:final\s+)?(?:int|long|short|Integer|Long)$/.test(p.type) &&
          !/^(?:main|equals|compare)$/.test(fn.name)
        ? "number"
        : null,
};

/** Checks that validate text before a command, query, path or class name is built from it. */
const VALIDATION =
  /\.\s*(?:matches|matcher|find|contains|containsKey|equals|equalsIgnoreCase|startsWith|endsWith|isEmpty|chars|allMatch|test)\s*\(|\bPattern\b|[<>]=?|\bswitch\b|\bvalid|\ballow|\bwhitelist|\bpermit/i;

function validators(src: Source): RegExp {
  const names = inSnippetValidators(
    src,
    /\.\s*(?:matches|matcher|contains|equals|startsWith|replaceAll|replace|isLetterOrDigit|isLetter|isDigit)\s*\(|\bPattern\b|\bthrow\b/,
  );
  return new RegExp(`${VALIDATION.source}|\\b(?:${namesRe(names)})\\s*\\(`, "i");
}

// ---------------------------------------------------------------------------------------------

const sqlInjection = defineRule(
  {
    id: "java/sql-injection",
    cwe: "CWE-89",
    language: "java",
    title: "SQL built by concatenation, String.format or from input",
    severity: "high",
  },
  (src, rule) => {
    const out = sqlBuiltFromInput(src, rule);
    const taint = taintOf(src, ENTRY);
    const external = taintOf(src, EXTERNAL);
    for (const m of src.matches(
      /\.\s*(executeQuery|executeUpdate|execute|executeLargeUpdate|addBatch|prepareStatement|prepareCall|createQuery|createNativeQuery|queryForList|queryForObject|queryForMap)\s*\(|\b(?:jdbcTemplate|jdbc|template)\s*\.\s*(update|query)\s*\(/g,
    )) {
      const arg = src.callArgs(argListStart(m))[0];
      if (!arg || arg.masked === "" || src.isLiteral(arg)) continue;
      const concatenated =
        (/\+/.test(src.shape(arg)) &&
          taint.varsIn(arg.start, arg.end).length + (/\w\s*\(/.test(arg.masked) ? 1 : 0) > 0) ||
        /\bString\s*\.\s*format\s*\(/.test(arg.masked);
      if (concatenated || external.range(arg.start, arg.end)) {
        out.push(
          src.finding(
            rule,
            m.index,
            `${m[1] ?? m[2]} runs a query built from run-time values; use PreparedStatement with ? parameters`,
          ),
        );
      }
    }
    return out;
  },
);

const SHELLS = /^(?:\/bin\/|\/usr\/bin\/)?(?:sh|bash|zsh|dash|ksh|cmd(?:\.exe)?|powershell(?:\.exe)?)$/;

const commandInjection = defineRule(
  {
    id: "java/command-injection",
    cwe: "CWE-78",
    language: "java",
    title: "Runtime.exec/ProcessBuilder with a command from input",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    const check = validators(src);
    const dynamic = (a: { start: number; end: number; masked: string }) =>
      !src.isLiteral(a) &&
      (taint.range(a.start, a.end) || (/\+/.test(src.shape(a)) && taint.varsIn(a.start, a.end).length > 0));
    const unguarded = (a: { start: number; end: number }, at: number) =>
      !taint.guarded(taint.varsIn(a.start, a.end), at, check);
    const sinks: { at: number; args: { start: number; end: number; masked: string }[] }[] = [];
    for (const m of src.matches(
      /\bgetRuntime\s*\(\s*\)\s*\.\s*exec\s*\(|\b(?:runtime|rt|r)\s*\.\s*exec\s*\(/g,
    ))
      sinks.push({ at: m.index, args: src.callArgs(argListStart(m)).slice(0, 1) });
    for (const m of src.matches(/\bnew\s+ProcessBuilder\s*\(|\.\s*command\s*\(/g)) {
      const args = src.callArgs(argListStart(m));
      const list =
        args.length === 1 && /^(?:Arrays\.asList|List\.of)\s*\(/.test(args[0]!.masked)
          ? src.callArgs(args[0]!.start + args[0]!.masked.indexOf("("))
          : args;
      // A shell with -c runs its argument as a command line; otherwise only the program matters.
      const values = list.map((a) => src.literalValue(a));
      const dashC = values.findIndex((v) => v === "-c" || v === "/c" || v === "/C" || v === "-Command");
      const viaShell = dashC > 0 && SHELLS.test(values[0] ?? "");
      sinks.push({ at: m.index, args: viaShell ? list.slice(dashC + 1) : list.slice(0, 1) });
    }
    for (const s of sinks) {
      const bad = s.args.find((a) => dynamic(a) && unguarded(a, s.at));
      if (bad)
        out.push(
          src.finding(
            rule,
            s.at,
            `command built from input ('${src.text.slice(bad.start, bad.end).trim()}'); use a fixed program and validated, separate arguments`,
          ),
        );
    }
    return out;
  },
);

/** Methods the JVM calls while deserializing (gadget entry points). */
const DESERIALIZATION_HOOKS =
  /\b(?:private|protected|public)?\s*(?:void|Object)\s+(readObject|readResolve|readExternal|readObjectNoData|validateObject)\s*\([^)]*\)[^{]*\{/g;
const DANGEROUS_CALLS =
  /\.\s*exec\s*\(|\bnew\s+ProcessBuilder\b|\bClass\s*\.\s*forName\s*\(|\.\s*invoke\s*\(|\.\s*newInstance\s*\(|\bnew\s+(?:FileOutputStream|FileWriter)\b|\bFiles\s*\.\s*(?:delete|write)\w*\s*\(|\bSystem\s*\.\s*load\w*\s*\(|\bnew\s+URL\s*\(/;

const deserialization = defineRule(
  {
    id: "java/unsafe-deserialization",
    cwe: "CWE-502",
    language: "java",
    title: "Deserialization that runs code, or of untrusted data without a class filter",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    // A gadget: a deserialization callback that executes commands, loads classes or writes files.
    for (const m of src.matches(DESERIALIZATION_HOOKS)) {
      const open = m.index + m[0].length - 1;
      const body = src.masked.slice(open, matchBracket(src, open));
      if (DANGEROUS_CALLS.test(body))
        out.push(
          src.finding(
            rule,
            m.index,
            `${m[1]}() runs commands or loads code while deserializing; any serialized stream can trigger it`,
          ),
        );
    }
    const filtered = src.has(
      /setObjectInputFilter|ObjectInputFilter|resolveClass\s*\(|ValidatingObjectInputStream|SerialKiller|LookAheadObjectInputStream/,
    );
    // readObject on a stream from a socket, request, file or console.
    if (!filtered) {
      const streams = [
        ...src.matches(/\bnew\s+ObjectInputStream\s*\(([^;]*)/g),
        ...src.matches(/\bObjectInputStream\s+\w+\s*=\s*new\s+ObjectInputStream\s*\(([^;]*)/g),
      ];
      for (const m of streams) {
        const arg = m[1]!;
        const origin = arg.match(/\b[A-Za-z_]\w*/g) ?? [];
        // Streams a caller hands in count as untrusted too.
        const streamParams = flowOf(src)
          .functions.flatMap((f) => f.params)
          .filter((p) =>
            /^(?:final\s+)?(?:InputStream|ObjectInputStream|byte\s*\[\s*\]|Socket|HttpServletRequest)$/.test(
              p.type,
            ),
          )
          .map((p) => p.name);
        const external =
          /getInputStream\s*\(|System\s*\.\s*in\b|FileInputStream|openStream|getBody|Files\s*\.\s*newInputStream|Base64/.test(
            arg,
          ) ||
          origin.some((v) => streamParams.includes(v)) ||
          origin.some((v) =>
            flowOf(src)
              .assignmentsTo(v)
              .some((a) =>
                /getInputStream\s*\(|System\s*\.\s*in\b|FileInputStream|openStream|Files\s*\.\s*newInputStream|decode\s*\(/.test(
                  src.masked.slice(a.rhsStart, a.rhsEnd),
                ),
              ),
          );
        if (external) {
          out.push(
            src.finding(
              rule,
              m.index,
              "ObjectInputStream reads a stream from outside the program without a class allow-list (ObjectInputFilter)",
            ),
          );
          break;
        }
      }
    }
    for (const m of src.matches(/\bnew\s+XMLDecoder\s*\(/g))
      out.push(src.finding(rule, m.index, "XMLDecoder can instantiate arbitrary objects from its input"));
    for (const m of src.matches(/\bnew\s+(?:XStream|Yaml)\s*\(\s*\)/g)) {
      if (!src.has(/allowTypes|addPermission|SafeConstructor/))
        out.push(
          src.finding(
            rule,
            m.index,
            "XStream/SnakeYAML without a type allow-list deserializes arbitrary objects",
          ),
        );
    }
    for (const m of src.matches(/\.\s*enableDefaultTyping\s*\(|\.\s*activateDefaultTyping\s*\(/g))
      out.push(
        src.finding(rule, m.index, "Jackson default typing lets the input choose classes to instantiate"),
      );
    return out;
  },
);

const weakHash = defineRule(
  {
    id: "java/weak-hash",
    cwe: "CWE-328",
    language: "java",
    title: "MessageDigest with MD5/SHA-1/MD2",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/\bMessageDigest\s*\.\s*getInstance\s*\(/g)) {
      const alg = src.literalValue(src.callArgs(argListStart(m))[0]);
      if (alg !== null && /^(MD5|MD4|MD2|SHA-?1|SHA)$/i.test(alg))
        out.push(
          src.finding(
            rule,
            m.index,
            `${alg} is a broken hash; use SHA-256 (and PBKDF2/bcrypt/Argon2 for passwords)`,
          ),
        );
    }
    for (const m of src.matches(/\bDigestUtils\s*\.\s*(md5|md2|sha1|sha)(?:Hex)?\s*\(/g))
      out.push(src.finding(rule, m.index, `DigestUtils.${m[1]} is a broken hash`));
    return out;
  },
);

const weakCipher = defineRule(
  {
    id: "java/weak-cipher",
    cwe: "CWE-327",
    language: "java",
    title: 'Cipher DES/3DES/RC4/Blowfish, ECB mode or bare "AES"',
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(
      /\b(Cipher|KeyGenerator|SecretKeyFactory)\s*\.\s*getInstance\s*\(|\bnew\s+SecretKeySpec\s*\(/g,
    )) {
      const args = src.callArgs(argListStart(m));
      const alg = src.literalValue(m[1] ? args[0] : args[args.length - 1]);
      if (alg === null) continue;
      if (
        /^(DES|DESede|TripleDES|RC4|ARCFOUR|RC2|Blowfish)(\/|$)/i.test(alg) ||
        /\/ECB\//i.test(alg) ||
        (m[1] === "Cipher" && /^AES$/i.test(alg))
      ) {
        out.push(
          src.finding(
            rule,
            m.index,
            `"${alg}" is a weak cipher or uses ECB (bare "AES" defaults to AES/ECB); use AES/GCM/NoPadding`,
          ),
        );
      }
    }
    return out;
  },
);

/** APIs that take key material (JCE key and IV specs, JWT libraries' HMAC secrets). */
const KEY_SINKS: CredentialSink[] = [
  {
    call: /\bnew\s+(?:SecretKeySpec|PBEKeySpec|DESKeySpec|DESedeKeySpec)\s*\(/g,
    arg: 0,
    what: "key material",
  },
  { call: /\bAlgorithm\s*\.\s*HMAC(?:256|384|512)\s*\(/g, arg: 0, what: "the JWT HMAC secret" },
  { call: /\bKeys\s*\.\s*hmacShaKeyFor\s*\(/g, arg: 0, what: "the JWT HMAC secret" },
  { call: /\.\s*signWith\s*\(\s*SignatureAlgorithm\s*\.\s*\w+\s*,/g, arg: 1, what: "the JWT signing secret" },
];

const hardcodedKey = hardcodedKeyRule("java", KEY_SINKS, "Cryptographic key from a string literal");

/** Where an IV or nonce goes in: JCE parameter specs. */
const IV_SINKS: CredentialSink[] = [
  { call: /\bnew\s+IvParameterSpec\s*\(/g, arg: 0, what: "the IV" },
  { call: /\bnew\s+GCMParameterSpec\s*\(/g, arg: 1, what: "the GCM nonce" },
];

const staticIv = staticIvRule("java", IV_SINKS);

const insecureRandom = defineRule(
  {
    id: "java/insecure-random",
    cwe: "CWE-330",
    language: "java",
    title: "java.util.Random / Math.random, or a SecureRandom with a fixed seed",
    severity: "medium",
  },
  (src, rule) => {
    // As FindSecBugs' PREDICTABLE_RANDOM: every use is reported, the snippet cannot show the value stays harmless.
    const out = src
      .matches(
        /\bnew\s+(?:java\.util\.)?Random\s*\(|\bMath\s*\.\s*random\s*\(|\bThreadLocalRandom\s*\.\s*current\s*\(|\bRandomStringUtils\s*\.\s*random\w*\s*\(/g,
      )
      .map((m) =>
        src.finding(rule, m.index, "java.util.Random is predictable; use java.security.SecureRandom"),
      );
    for (const m of src.matches(/\.\s*setSeed\s*\(|\bnew\s+SecureRandom\s*\(\s*(?=\S)(?!\))/g)) {
      const arg = src.callArgs(argListStart(m))[0];
      if (!arg) continue;
      const fixed =
        src.isLiteral(arg) ||
        /^\s*\d+L?\s*$/.test(arg.masked) ||
        /^[A-Z_][A-Z0-9_]*$/.test(arg.masked.trim()) ||
        /^\s*"[^"]*"\s*\.\s*getBytes/.test(arg.text);
      if (fixed) out.push(src.finding(rule, m.index, "a fixed seed makes SecureRandom's output predictable"));
    }
    return out;
  },
);

/** APIs that take a password or token in one argument beyond the connection calls (HTTP headers, key stores). */
const CREDENTIAL_SINKS: CredentialSink[] = [
  {
    call: /\.\s*(?:setRequestProperty|addRequestProperty|setHeader|addHeader|header)\s*\(/g,
    arg: 1,
    when: { arg: 0, value: AUTH_HEADER },
    what: "credential in an HTTP header",
  },
  { call: /\.\s*getKey\s*\(/g, arg: 1, what: "key store password" },
];

const hardcodedCredential = defineRule(
  {
    id: "java/hardcoded-credential",
    cwe: "CWE-798",
    language: "java",
    title: "Hard-coded password or key",
    severity: "medium",
  },
  (src, rule) => hardcodedSecrets(src, rule, CREDENTIAL_SINKS),
);

const PATH_CHECK =
  /getCanonicalPath|getCanonicalFile|toRealPath|\.normalize\s*\(\s*\)|startsWith|FilenameUtils|getFileName|\.\.|matches|contains|equals/;

const pathTraversal = defineRule(
  {
    id: "java/path-traversal",
    cwe: "CWE-22",
    language: "java",
    title: "File path from input without canonicalisation and a base-folder check",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    const external = taintOf(src, EXTERNAL);
    const normalised = src.has(
      /(?:getCanonicalPath|getCanonicalFile|toRealPath|normalize\s*\(\s*\))[\s\S]*startsWith/,
    );
    const re =
      /\bnew\s+(File|FileInputStream|FileOutputStream|FileReader|FileWriter|RandomAccessFile|PrintWriter)\s*\(|\b(Paths\s*\.\s*get|Path\s*\.\s*of|Files\s*\.\s*(?:readAllBytes|readAllLines|readString|newInputStream|newOutputStream|newBufferedReader|newBufferedWriter|write|writeString|delete|deleteIfExists|copy|move|lines|exists))\s*\(/g;
    for (const m of src.matches(re)) {
      const args = src.callArgs(argListStart(m));
      const pathArgs = args.filter(
        (a) => !/^(?:StandardCharsets|true|false|\d|"rw?"?)/.test(a.masked) && !src.isLiteral(a),
      );
      // Input from outside anywhere in the path; a caller's value only when joined under a base folder.
      const joined =
        pathArgs.length < args.filter((a) => !/^(?:StandardCharsets|true|false|\d)/.test(a.masked)).length;
      const bad = pathArgs.find(
        (a) =>
          external.range(a.start, a.end) ||
          (taint.range(a.start, a.end) && (joined || /\+/.test(src.shape(a)))),
      );
      if (!bad || normalised) continue;
      if (taint.guarded(taint.varsIn(bad.start, bad.end), m.index, PATH_CHECK)) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "file path built from input; canonicalise it and check it stays under the base folder",
        ),
      );
    }
    return out;
  },
);

const printStackTrace = defineRule(
  {
    id: "java/stack-trace-exposure",
    cwe: "CWE-209",
    language: "java",
    title: "printStackTrace leaks internals",
    severity: "low",
  },
  (src, rule) =>
    src
      .matches(/\.\s*printStackTrace\s*\(/g)
      .map((m) =>
        src.finding(
          rule,
          m.index,
          "printStackTrace exposes internals; log a message through a logger instead",
        ),
      ),
);

const emptyCatch = defineRule(
  {
    id: "java/empty-catch",
    cwe: "CWE-390",
    language: "java",
    title: "Exception swallowed by an empty catch",
    severity: "low",
  },
  (src, rule) =>
    src
      .matches(/\bcatch\s*\([^)]*\)\s*\{\s*\}/g)
      .map((m) => src.finding(rule, m.index, "empty catch block hides the error")),
);

const xxe = defineRule(
  {
    id: "java/xxe",
    cwe: "CWE-611",
    language: "java",
    title: "XML parser without external entities disabled",
    severity: "high",
  },
  (src, rule) => {
    const hardened = src.has(
      /disallow-doctype-decl|external-general-entities|FEATURE_SECURE_PROCESSING|ACCESS_EXTERNAL_DTD|SUPPORT_DTD|IS_SUPPORTING_EXTERNAL_ENTITIES|setExpandEntityReferences\s*\(\s*false/,
    );
    if (hardened) return [];
    return src
      .matches(
        /\b(DocumentBuilderFactory|SAXParserFactory|XMLInputFactory|TransformerFactory|SchemaFactory|XMLReaderFactory)\s*\.\s*(?:newInstance|newFactory|newDefaultInstance|createXMLReader)\s*\(|\bnew\s+(SAXReader|SAXBuilder)\s*\(/g,
      )
      .map((m) =>
        src.finding(
          rule,
          m.index,
          `${m[1] ?? m[2]} resolves external entities by default; set disallow-doctype-decl or FEATURE_SECURE_PROCESSING`,
        ),
      );
  },
);

const xss = defineRule(
  {
    id: "java/xss",
    cwe: "CWE-79",
    language: "java",
    title: "Request data written into an HTML response without encoding",
    severity: "high",
  },
  (src, rule) => {
    // Responses: parameters typed as servlet responses (or named so in a servlet handler).
    const responses = new Set(
      flowOf(src)
        .functions.flatMap((f) => f.params)
        .filter((p) => /\b(?:Http)?ServletResponse\b/.test(p.type))
        .map((p) => p.name),
    );
    if (responses.size === 0) return [];
    const taint = taintOf(src, EXTERNAL);
    const writers = new Set(
      flowOf(src)
        .assignments.filter((a) => {
          const w = /([A-Za-z_]\w*)\s*\.\s*(?:getWriter|getOutputStream)\s*\(/.exec(
            src.masked.slice(a.rhsStart, a.rhsEnd),
          );
          return w !== null && responses.has(w[1]!);
        })
        .map((a) => a.name),
    );
    const out: Finding[] = [];
    for (const m of src.matches(
      /(?:\b(\w+)\s*\.\s*getWriter\s*\(\s*\)|\b([A-Za-z_]\w*))\s*\.\s*(?:print|println|write|append|printf|format)\s*\(/g,
    )) {
      if (m[1] ? !responses.has(m[1]) : !writers.has(m[2]!)) continue;
      const args = src.callArgs(argListStart(m));
      if (args.some((a) => taint.range(a.start, a.end)))
        out.push(
          src.finding(
            rule,
            m.index,
            "request data echoed into the page; HTML-encode it (e.g. OWASP Encoder)",
          ),
        );
    }
    return out;
  },
);

const openRedirect = defineRule(
  {
    id: "java/open-redirect",
    cwe: "CWE-601",
    language: "java",
    title: "Redirect to a URL from the request",
    severity: "medium",
  },
  (src, rule) => {
    const taint = taintOf(src, EXTERNAL);
    const out: Finding[] = [];
    for (const m of src.matches(/\.\s*sendRedirect\s*\(|\.\s*setHeader\s*\(\s*"Location"\s*,/g)) {
      const args = src.callArgs(src.masked.indexOf("(", m.index));
      const target = args[args.length - 1];
      if (
        target &&
        taint.range(target.start, target.end) &&
        !taint.guarded(taint.varsIn(target.start, target.end), m.index, VALIDATION)
      )
        out.push(
          src.finding(rule, m.index, "redirect target comes from the request; allow-list the destinations"),
        );
    }
    return out;
  },
);

/** The call's first argument when it carries input that no validation before the call checks. */
function unvalidatedInputArg(src: Source, taint: Taint, m: RegExpExecArray): boolean {
  const arg = src.callArgs(argListStart(m))[0];
  return (
    arg !== undefined &&
    taint.range(arg.start, arg.end) &&
    !taint.guarded(taint.varsIn(arg.start, arg.end), m.index, VALIDATION)
  );
}

const ssrf = defineRule(
  {
    id: "java/ssrf",
    cwe: "CWE-918",
    language: "java",
    title: "Outgoing request to a URL from input",
    severity: "medium",
  },
  (src, rule) => {
    const taint = taintOf(src, EXTERNAL);
    const out: Finding[] = [];
    for (const m of src.matches(/\bnew\s+URL\s*\(|\bURI\s*\.\s*create\s*\(|\bnew\s+Socket\s*\(/g)) {
      if (unvalidatedInputArg(src, taint, m))
        out.push(
          src.finding(rule, m.index, "the program connects to an address taken from input; allow-list hosts"),
        );
    }
    return out;
  },
);

const reflection = defineRule(
  {
    id: "java/unsafe-reflection",
    cwe: "CWE-470",
    language: "java",
    title: "Class or method chosen by input",
    severity: "high",
  },
  (src, rule) => {
    const taint = taintOf(src, EXTERNAL);
    const out: Finding[] = [];
    for (const m of src.matches(
      /\bClass\s*\.\s*forName\s*\(|\.\s*loadClass\s*\(|\.\s*getMethod\s*\(|\.\s*getDeclaredMethod\s*\(/g,
    )) {
      if (unvalidatedInputArg(src, taint, m))
        out.push(
          src.finding(rule, m.index, "input selects the class or method to load; map input to an allow-list"),
        );
    }
    return out;
  },
);

/** Is the receiver of the `.format(` at `dot` a java.text.Format or a DateTimeFormatter? */
function formatObject(src: Source, dot: number): boolean {
  const FORMAT_TYPE =
    /\b(?:(?:Message|Date|SimpleDate|Number|Decimal|Choice|Compact(?:Number)?)Format|Format|DateTimeFormatter)\b/;
  const before = src.masked.slice(Math.max(0, dot - 200), dot);
  if (
    /\b(?:(?:Message|Date|Number|Decimal)Format|DateTimeFormatter)\s*\.\s*\w+\s*\([^()]*\)\s*$/.test(before)
  )
    return true;
  if (/\bnew\s+(?:Message|SimpleDate|Decimal|Choice)Format\s*\([^()]*\)\s*\)?\s*$/.test(before)) return true;
  const recv = /(?<![\w.])(?:this\s*\.\s*)?([A-Za-z_]\w*)\s*$/.exec(before)?.[1];
  if (!recv) return false;
  const flow = flowOf(src);
  const types = [
    ...flow.functions.flatMap((f) => f.params.filter((p) => p.name === recv).map((p) => p.type)),
    ...flow
      .assignmentsTo(recv)
      .filter((a) => a.decl)
      .map((a) => a.type),
  ];
  return types.some((t) => FORMAT_TYPE.test(t));
}

const formatString = defineRule(
  {
    id: "java/format-string",
    cwe: "CWE-134",
    language: "java",
    title: "String.format/printf with a format from input",
    severity: "medium",
  },
  (src, rule) => {
    const taint = taintOf(src, ENTRY);
    const out: Finding[] = [];
    for (const m of src.matches(/\bString\s*\.\s*format\s*\(|\.\s*(?:printf|format)\s*\(/g)) {
      const args = src.callArgs(argListStart(m));
      const fmt = /^Locale\b/.test(args[0]?.masked ?? "") ? args[1] : args[0];
      if (!fmt || src.isLiteral(fmt)) continue;
      // java.text.Format / DateTimeFormatter objects format their argument with their own pattern:
      // `messageFormat.format(fields)`, `NumberFormat.getInstance().format(x)` take data, not a format.
      if (!/^String\b/.test(m[0]) && /format/.test(m[0]) && formatObject(src, m.index)) continue;
      // A constant (static final, or a local only ever assigned a literal) is fixed text.
      const v = /^[A-Za-z_]\w*$/.exec(fmt.masked.trim());
      const defs = v ? flowOf(src).assignmentsTo(v[0]) : [];
      const constant =
        defs.length > 0 && defs.every((a) => src.isLiteral({ start: a.rhsStart, end: a.rhsEnd }));
      if (constant) continue;
      const alone = args.length === 1 + (fmt === args[1] ? 1 : 0);
      if (taint.range(fmt.start, fmt.end) || alone)
        out.push(
          src.finding(
            rule,
            m.index,
            `format string '${fmt.text}' comes from input; use a literal format with %s`,
          ),
        );
    }
    return out;
  },
);

const sensitiveLog = defineRule(
  {
    id: "java/sensitive-data-exposure",
    cwe: "CWE-532",
    language: "java",
    title: "Password or secret written to the console, a log or an exception",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(
      /\bSystem\s*\.\s*(?:out|err)\s*\.\s*(?:print|println|printf|format)\s*\(|\b(?:log|logger|LOG|LOGGER|Log)\s*\.\s*(?:info|debug|warn|warning|error|trace|fine|finer|finest|severe|log)\s*\(|\bnew\s+\w*(?:Exception|Error)\s*\(/g,
    )) {
      for (const a of src.callArgs(argListStart(m))) {
        // Read at the top level of the argument (not passed through a masking function first).
        const top = a.masked.replace(/(?<![\w.])\w+\s*\((?:[^()]|\([^()]*\))*\)/g, (call) =>
          /^(?:String\s*\.\s*valueOf|toString|get\w*|String\s*\.\s*format)\b/.test(call) ? call : "",
        );
        const hit = [
          ...top.matchAll(
            /(?<![\w.])(?:this\s*\.\s*)?([A-Za-z_]\w*)(?:\s*\.\s*(get\w+)\s*\(\s*\))?(?!\s*\.\s*(?:length|size|hashCode|isEmpty|isBlank|equals\w*|matches|startsWith|endsWith|contains|compareTo\w*|indexOf|charAt|chars)\s*\()/g,
          ),
        ].find(
          (v) =>
            (isSensitiveName(v[2] ? v[2].replace(/^get/, "") : v[1]!) && !/^[A-Z_]+$/.test(v[1]!)) ||
            (v[2] && isSensitiveName(v[2].replace(/^get/, ""))),
        );
        if (hit) {
          out.push(
            src.finding(
              rule,
              m.index,
              `'${hit[0].trim()}' is sensitive and is written out in clear; mask it or leave it out`,
            ),
          );
          break;
        }
      }
    }
    return out;
  },
);

/** Closeable resources opened outside try-with-resources and never closed in a finally. */
const RESOURCE =
  /\bnew\s+(?:FileInputStream|FileOutputStream|FileReader|FileWriter|RandomAccessFile|Scanner\s*\(\s*new\s+File)\s*\(|\bFiles\s*\.\s*(?:newInputStream|newBufferedReader|newOutputStream|newBufferedWriter|lines)\s*\(/;

const resourceLeak = defineRule(
  {
    id: "java/resource-leak",
    cwe: "CWE-772",
    language: "java",
    title: "Stream, reader, socket or connection not closed on every path",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const flow = flowOf(src);
    const m = src.masked;
    // try-with-resources headers.
    const twr: [number, number][] = src
      .matches(/\btry\s*\(/g)
      .map((t) => [t.index, matchBracket(src, t.index + t[0].length - 1)]);
    const finallies = src
      .matches(/\bfinally\s*\{/g)
      .map((f) => m.slice(f.index, matchBracket(src, f.index + f[0].length - 1)));
    for (const a of flow.assignments) {
      const rhs = m.slice(a.rhsStart, a.rhsEnd);
      if (!RESOURCE.test(src.text.slice(a.rhsStart, a.rhsEnd)) && !RESOURCE.test(rhs)) continue;
      if (twr.some(([s, e]) => s < a.index && a.index < e)) continue;
      // Wrapped by a resource that is itself handled, returned, or stored in a field: not this method's leak.
      const name = a.name;
      const id = identRe(name).source;
      if (new RegExp(`\\breturn\\s+${id}|\\bthis\\s*\\.\\s*\\w+\\s*=\\s*${id}`).test(m)) continue;
      const wrappers = flow.assignments
        .filter(
          (b) => b !== a && new RegExp(`\\bnew\\s+\\w+\\s*\\([^;]*${id}`).test(m.slice(b.rhsStart, b.rhsEnd)),
        )
        .map((b) => b.name);
      const names = [name, ...wrappers];
      const closedSafely = names.some((n) => {
        const close = new RegExp(
          `${identRe(n).source}\\s*\\.\\s*close\\s*\\(|closeQuietly\\s*\\(\\s*${identRe(n).source}`,
        );
        return (
          finallies.some((f) => close.test(f)) ||
          twr.some(([s, e]) => new RegExp(identRe(n).source).test(m.slice(s, e)))
        );
      });
      if (closedSafely) continue;
      out.push(
        src.finding(
          rule,
          a.index,
          `'${name}' is not closed in a finally block or try-with-resources; it leaks when an exception is thrown`,
        ),
      );
    }
    return out;
  },
);

const nullDereference = defineRule(
  {
    id: "java/null-dereference",
    cwe: "CWE-476",
    language: "java",
    title: "A value that is or may be null is dereferenced without a check",
    severity: "medium",
  },
  (src, rule) => nullDerefs(src, rule),
);

/** Null checks that make a later dereference safe. */
const nullCheck = (name: string) =>
  new RegExp(
    `${identRe(name).source}\\s*(?:!=|==)\\s*null|null\\s*(?:!=|==)\\s*${identRe(name).source}|Objects\\s*\\.\\s*(?:requireNonNull|isNull|nonNull)\\s*\\(\\s*${identRe(name).source}|${identRe(name).source}\\s+instanceof\\b|Optional\\s*\\.\\s*ofNullable\\s*\\(\\s*${identRe(name).source}`,
  );

function nullDerefs(src: Source, rule: Omit<Rule, "check">): Finding[] {
  const out: Finding[] = [];
  const flow = flowOf(src);
  const m = src.masked;
  const deref = (name: string) =>
    new RegExp(`${identRe(name).source}\\s*(?:\\.\\s*(?!length\\b)[A-Za-z_]\\w*|\\.\\s*length\\b|\\[)`, "g");
  // Methods of the snippet that can return null.
  const nullReturning = new Set(
    flow.functions
      .filter((f) => /\breturn\s+null\s*;/.test(m.slice(f.bodyStart, f.bodyEnd)))
      .map((f) => f.name),
  );
  // Maps: Map.get returns null for a missing key. Methods returning map.get(...) may return null too.
  const maps = new Set(
    flow.assignments
      .filter((a) =>
        /\b(?:Hash|Tree|LinkedHash|Concurrent)?Map\s*</.test(a.type + " " + m.slice(a.rhsStart, a.rhsEnd)),
      )
      .map((a) => a.name),
  );
  for (const f of flow.functions) {
    const body = m.slice(f.bodyStart, f.bodyEnd);
    const ret = /\breturn\s+([A-Za-z_]\w*)\s*\.\s*get\s*\([^;]*\)\s*;/.exec(body);
    if (ret && maps.has(ret[1]!) && !/containsKey|getOrDefault/.test(body)) nullReturning.add(f.name);
  }
  const maybeNull = (a: { rhsStart: number; rhsEnd: number }) => {
    const rhs = m.slice(a.rhsStart, a.rhsEnd).trim();
    if (rhs === "null") return "is null";
    const call = /^(?:[\w.]+\s*\.\s*)?([A-Za-z_]\w*)\s*\([^;]*\)$/.exec(rhs);
    if (call && nullReturning.has(call[1]!)) return `may be null (${call[1]}() returns null)`;
    const get = /^([A-Za-z_]\w*)\s*\.\s*get\s*\([^;]*\)$/.exec(rhs);
    if (get && maps.has(get[1]!)) return `may be null (Map.get of a missing key)`;
    return null;
  };
  for (const a of flow.assignments) {
    // `items[i] = null` empties an element; the array itself is not null.
    if (m.slice(a.index, a.rhsStart).includes("[")) continue;
    const why = maybeNull(a);
    if (!why) continue;
    const fn = flow.functionAt(a.index);
    const end = fn ? fn.bodyEnd : m.length;
    // The first dereference before any reassignment or check.
    const after = m.slice(a.rhsEnd, end);
    const reassigned = new RegExp(`${identRe(a.name).source}\\s*=(?!=)`).exec(after);
    const limit = reassigned ? reassigned.index : after.length;
    const d = deref(a.name).exec(after.slice(0, limit));
    if (!d) continue;
    const at = a.rhsEnd + d.index;
    const between = m.slice(a.rhsEnd, at);
    if (nullCheck(a.name).test(between)) continue;
    // Inside a lambda or another method than the one where it was assigned.
    if (flow.functionAt(at) !== fn) continue;
    // In a try whose catch handles NullPointerException deliberately, the crash is still the program's behaviour.
    out.push(src.finding(rule, at, `'${a.name}' ${why} and is dereferenced without a null check`));
  }
  // Direct dereference of a map lookup: map.get(k).foo()
  for (const d of src.matches(/(?<![\w.])([A-Za-z_]\w*)\s*\.\s*get\s*\(([^;()]*)\)\s*\.\s*[A-Za-z_]/g)) {
    if (!maps.has(d[1]!)) continue;
    const fn = flow.functionAt(d.index);
    const scope = m.slice(fn ? fn.bodyStart : 0, d.index);
    if (/containsKey|!=\s*null|==\s*null/.test(scope)) continue;
    out.push(
      src.finding(rule, d.index, `${d[1]}.get(...) is null for a missing key and is dereferenced directly`),
    );
  }
  // Direct dereference of a call that returns null: getUser().getName()
  for (const name of nullReturning) {
    for (const d of src.matches(new RegExp(`(?<![\\w.])${name}\\s*\\([^;()]*\\)\\s*\\.\\s*[A-Za-z_]`, "g"))) {
      const fn = flow.functionAt(d.index);
      if (fn && fn.name === name) continue;
      out.push(
        src.finding(rule, d.index, `${name}() can return null and its result is dereferenced directly`),
      );
    }
  }
  // Collections that hold null elements, iterated and dereferenced without a check.
  const withNull = new Set<string>();
  for (const c of src.matches(/\b([A-Za-z_]\w*)\s*\.\s*add\s*\(\s*null\s*\)/g)) withNull.add(c[1]!);
  for (const c of src.matches(
    /\b([A-Za-z_]\w*)\s*=\s*(?:Arrays\s*\.\s*asList|new\s+\w+\s*\[\s*\]\s*)\s*[({][^;]*\bnull\b/g,
  ))
    withNull.add(c[1]!);
  for (const loop of flow.assignments.filter((a) => a.op === "in")) {
    const coll = /^\s*([A-Za-z_]\w*)/.exec(m.slice(loop.rhsStart, loop.rhsStart + 80));
    if (!coll || !withNull.has(coll[1]!)) continue;
    const close = matchBracket(src, m.lastIndexOf("(", loop.index));
    const bodyStart = close + 1;
    const bodyEnd = /^\s*\{/.test(m.slice(bodyStart))
      ? matchBracket(src, m.indexOf("{", bodyStart))
      : expressionEnd(src, bodyStart);
    const body = m.slice(bodyStart, bodyEnd);
    const d = deref(loop.name).exec(body);
    if (
      d &&
      !nullCheck(loop.name).test(body.slice(0, d.index)) &&
      !/\bcatch\s*\(\s*NullPointerException/.test(m.slice(bodyEnd, bodyEnd + 200))
    )
      out.push(
        src.finding(
          rule,
          bodyStart + d.index,
          `'${coll[1]}' holds null elements and '${loop.name}' is dereferenced without a check`,
        ),
      );
  }
  return out;
}

const arrayBounds = defineRule(
  {
    id: "java/array-index-out-of-bounds",
    cwe: "CWE-129",
    language: "java",
    title: "Array index past the end, or from input without a bounds check",
    severity: "medium",
  },
  (src, rule) => {
    const out = [...outOfBounds(src), ...copyPastEnd(src)].map((f) => src.finding(rule, f.at, f.message));
    // System.arraycopy into a fixed array with a length taken from the source.
    const arrays = sizedArrays(src);
    for (const m of src.matches(/\bSystem\s*\.\s*arraycopy\s*\(/g)) {
      const args = src.callArgs(argListStart(m));
      const dst = args[2]?.masked.trim();
      const len = args[4]?.masked.trim() ?? "";
      if (!dst || !arrays.has(dst)) continue;
      if (
        new RegExp(`^${dst}\\s*\\.\\s*length$|\\bMath\\s*\\.\\s*min\\b`).test(len) ||
        (/^\d+$/.test(len) && parseInt(len, 10) <= arrays.get(dst)!.size)
      )
        continue;
      if (/\.\s*(?:length|size)\b/.test(len))
        out.push(
          src.finding(
            rule,
            m.index,
            `arraycopy into ${dst}[${arrays.get(dst)!.size}] with the source's length '${len}'`,
          ),
        );
    }
    const taint = taintOf(src, ENTRY);
    for (const f of uncheckedIndexes(src, taint)) out.push(src.finding(rule, f.at, f.message));
    return out;
  },
);

const threadMisuse = defineRule(
  {
    id: "java/thread-stop",
    cwe: "CWE-662",
    language: "java",
    title: "Thread.stop/suspend/resume (releases locks mid-update)",
    severity: "medium",
  },
  (src, rule) => {
    const threads = threadVariables(src);
    return src
      .matches(/(?<![\w.])([A-Za-z_]\w*(?:\s*\(\s*\))?)\s*\.\s*(stop|suspend|resume)\s*\(\s*\)/g)
      .filter((m) => threads.has(m[1]!.replace(/\s*\(\s*\)$/, "")) || /currentThread\s*\(\s*\)$/.test(m[1]!))
      .map((m) =>
        src.finding(
          rule,
          m.index,
          `Thread.${m[2]}() is unsafe and deprecated; stop threads cooperatively (interrupt or a volatile flag)`,
        ),
      );
  },
);

/** Variables holding Thread objects: declared as Thread or a class that extends Thread. */
function threadVariables(src: Source): Set<string> {
  const classes = new Set(["Thread"]);
  for (const m of src.matches(/\bclass\s+(\w+)\s+extends\s+(\w+)/g))
    if (classes.has(m[2]!)) classes.add(m[1]!);
  for (const m of src.matches(/\bclass\s+(\w+)\s+extends\s+(\w+)/g))
    if (classes.has(m[2]!)) classes.add(m[1]!);
  const vars = new Set<string>();
  for (const a of flowOf(src).assignments) {
    const t = a.type.replace(/^(?:final\s+|static\s+)*/, "");
    const rhs = src.masked.slice(a.rhsStart, a.rhsEnd);
    if (classes.has(t) || [...classes].some((c) => new RegExp(`^\\s*new\\s+${c}\\s*\\(`).test(rhs)))
      vars.add(a.name);
  }
  for (const m of src.matches(/\b(\w+)\s+(\w+)\s*[;=)]/g)) if (classes.has(m[1]!)) vars.add(m[2]!);
  return vars;
}

const runInsteadOfStart = defineRule(
  {
    id: "java/thread-run",
    cwe: "CWE-572",
    language: "java",
    title: "Thread.run() called instead of start()",
    severity: "medium",
  },
  (src, rule) => {
    const threads = threadVariables(src);
    return src
      .matches(/(?<![\w.])(?:([A-Za-z_]\w*)|new\s+\w+\s*\([^;]*\))\s*\.\s*run\s*\(\s*\)/g)
      .filter((m) => (m[1] ? threads.has(m[1]) : /^new\s+Thread\b/.test(m[0])))
      .filter((m) => {
        // Inside the thread's own run() (super.run) or a Runnable wrapper: fine.
        const fn = flowOf(src).functionAt(m.index);
        return !fn || fn.name !== "run";
      })
      .map((m) => src.finding(rule, m.index, "run() executes on the calling thread; call start()"));
  },
);

const interruptSwallowed = defineRule(
  {
    id: "java/interrupted-exception-swallowed",
    cwe: "CWE-391",
    language: "java",
    title: "InterruptedException caught without restoring the interrupt",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/\bcatch\s*\(\s*(?:final\s+)?([\w.|\s]+?)\s+\w+\s*\)\s*\{/g)) {
      const types = m[1]!;
      const open = m.index + m[0].length - 1;
      const body = src.masked.slice(open, matchBracket(src, open));
      let catchesInterrupt = /\bInterruptedException\b/.test(types);
      if (!catchesInterrupt && /^(?:Exception|Throwable)$/.test(types.trim())) {
        // catch (Exception e) around a blocking call that throws InterruptedException.
        const tryOpen = src.masked.lastIndexOf("try", m.index);
        const tryBody = src.masked.slice(tryOpen, m.index);
        catchesInterrupt =
          /\b(?:Thread\s*\.\s*sleep|\.\s*join|\.\s*await|\.\s*awaitTermination|\.\s*take|TimeUnit\s*\.\s*\w+\s*\.\s*sleep)\s*\(/.test(
            tryBody,
          ) && !/\bcatch\s*\(\s*InterruptedException/.test(tryBody);
      }
      if (!catchesInterrupt) continue;
      if (/\binterrupt\s*\(\s*\)|\b(?:throw|return|break)\b|System\s*\.\s*exit/.test(body)) continue;
      // Swallowing matters where the thread goes on: inside a loop, the interrupt can no longer stop it.
      if (
        !flowOf(src).conditions.some(
          (c) => (c.kind === "while" || c.kind === "for") && c.bodyStart < m.index && m.index < c.bodyEnd,
        ) &&
        !/\bdo\s*\{[\s\S]*$/.test(src.masked.slice(0, m.index))
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "the interrupt is swallowed; call Thread.currentThread().interrupt() or rethrow",
        ),
      );
    }
    return out;
  },
);

const unboundedLoop = defineRule(
  {
    id: "java/unbounded-resource-use",
    cwe: "CWE-400",
    language: "java",
    title: "Loop without an exit that keeps allocating (memory, threads, tasks)",
    severity: "medium",
  },
  (src, rule) => unboundedAllocation(src, rule),
);

function unboundedAllocation(src: Source, rule: Omit<Rule, "check">): Finding[] {
  const out: Finding[] = [];
  const m = src.masked;
  for (const mm of src.matches(
    /\bwhile\s*\(\s*true\s*\)\s*\{|\bfor\s*\(\s*;\s*;\s*\)\s*\{|\bfor\s*\([^;]*;[^;]*(?:Integer|Long)\s*\.\s*MAX_VALUE[^;]*;[^)]*\)\s*\{/g,
  )) {
    const open = mm.index + mm[0].length - 1;
    const close = matchBracket(src, open);
    const body = m.slice(open, close);
    const allocates =
      /\.\s*(?:append|add|addAll|put|offer|push|submit|execute)\s*\(|\bnew\s+(?:Thread|byte|int|long|char|Object|String|StringBuilder|ArrayList|HashMap)\b|\.\s*start\s*\(\s*\)|\+=/.test(
        body,
      );
    const leaves = /\b(?:break|return|throw)\b|System\s*\.\s*exit/.test(body);
    // Back-pressure: a loop that blocks on a client, a result or a sleep is throttled, not runaway.
    const throttled = /\.\s*(?:accept|take|get|readLine|receive|await|join)\s*\(|\bsleep\s*\(/.test(
      body.replace(/->\s*\{[\s\S]*$/, ""),
    );
    const bounded = /\.\s*(?:length|size)\s*\(\s*\)\s*[<>]=?|\bisInterrupted\s*\(|\binterrupted\s*\(/.test(
      body,
    );
    if (allocates && !leaves && !bounded && !throttled)
      out.push(src.finding(rule, mm.index, "the loop never ends and allocates on every pass; bound it"));
  }
  return out;
}

const threadLocalLeak = defineRule(
  {
    id: "java/threadlocal-leak",
    cwe: "CWE-401",
    language: "java",
    title: "ThreadLocal set but never removed",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/\bThreadLocal\s*<[^>]*>\s*([A-Za-z_]\w*)\s*=/g)) {
      const name = m[1]!;
      if (src.has(new RegExp(`${identRe(name).source}\\s*\\.\\s*remove\\s*\\(`))) continue;
      // As Sonar's S5164: a value set() on a pooled thread stays reachable until remove().
      if (!src.has(new RegExp(`${identRe(name).source}\\s*\\.\\s*set\\s*\\(`))) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `ThreadLocal '${name}' is never remove()d; pooled threads keep its value alive`,
        ),
      );
    }
    return out;
  },
);

const trustAll = defineRule(
  {
    id: "java/trust-all-certificates",
    cwe: "CWE-295",
    language: "java",
    title: "TLS certificate or hostname verification disabled",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/\bvoid\s+checkServerTrusted\s*\([^)]*\)[^{]*\{/g)) {
      const open = m.index + m[0].length - 1;
      if (!/\bthrow\b|\.\s*check\w*\s*\(/.test(src.masked.slice(open, matchBracket(src, open))))
        out.push(src.finding(rule, m.index, "checkServerTrusted accepts every certificate"));
    }
    for (const m of src.matches(
      /\bboolean\s+verify\s*\([^)]*SSLSession[^)]*\)\s*\{\s*return\s+true\s*;|\(\s*\w+\s*,\s*\w+\s*\)\s*->\s*true\b|ALLOW_ALL_HOSTNAME_VERIFIER|NoopHostnameVerifier/g,
    ))
      out.push(src.finding(rule, m.index, "hostname verification always succeeds"));
    return out;
  },
);

const uncheckedCast = defineRule(
  {
    id: "java/unchecked-cast",
    cwe: "CWE-704",
    language: "java",
    title: "Downcast of an Object without an instanceof check",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const flow = flowOf(src);
    for (const m of src.matches(
      /\(\s*([A-Z]\w*(?:<[^>]*>)?(?:\[\s*\])?)\s*\)\s*([A-Za-z_]\w*)\b(?!\s*[.(])/g,
    )) {
      const v = m[2]!;
      if (/^(?:Object|Serializable)$/.test(m[1]!)) continue;
      // The value's static type is Object: declared so, or read from an untyped collection/readObject.
      const decls = flow.assignmentsTo(v).filter((a) => a.decl);
      if (decls.length === 0) continue;
      const d = decls[decls.length - 1]!;
      const isObject = /^(?:final\s+)?Object$/.test(d.type);
      if (!isObject) continue;
      const fn = flow.functionAt(m.index);
      const before = src.masked.slice(fn ? fn.bodyStart : 0, m.index);
      if (
        new RegExp(
          `${identRe(v).source}\\s+instanceof\\b|${identRe(v).source}\\s*\\.\\s*getClass\\s*\\(|\\bcatch\\s*\\(\\s*ClassCastException`,
        ).test(before + src.masked.slice(m.index, fn ? fn.bodyEnd : undefined))
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `'${v}' is an Object cast to ${m[1]} without instanceof; a different type throws ClassCastException`,
        ),
      );
    }
    return out;
  },
);

const uncheckedNumberInput = defineRule(
  {
    id: "java/unchecked-numeric-input",
    cwe: "CWE-20",
    language: "java",
    title: "Scanner.nextInt & co. without handling malformed input",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const scanners = readers(src).number;
    for (const m of src.matches(
      /\.\s*(next(?:Int|Long|Short|Byte|Double|Float))\s*\(\s*\)|\b(Integer\s*\.\s*parseInt|Long\s*\.\s*parseLong|Double\s*\.\s*parseDouble)\s*\(/g,
    )) {
      if (
        m[1] &&
        !(
          scanners?.test(src.masked.slice(Math.max(0, m.index - 60), m.index + m[0].length)) ||
          NUMBER_SOURCES.test(src.masked.slice(Math.max(0, m.index - 80), m.index + m[0].length))
        )
      )
        continue;
      // Guarded by hasNextInt(), or inside a try whose catch handles the mismatch.
      const fn = flowOf(src).functionAt(m.index);
      const scope = src.masked.slice(fn ? fn.bodyStart : 0, fn ? fn.bodyEnd : src.masked.length);
      if (/\.\s*hasNext(?:Int|Long|Short|Byte|Double|Float)\s*\(/.test(scope)) continue;
      let handled = false;
      for (const t of src.matches(/\btry\s*(?:\([^)]*\)\s*)?\{/g)) {
        const open = t.index + t[0].length - 1;
        const close = matchBracket(src, open);
        if (open < m.index && m.index < close) {
          const catches = src.masked.slice(close, close + 400);
          if (
            /\bcatch\s*\([^)]*\b(?:InputMismatchException|NumberFormatException|NoSuchElementException|IllegalArgumentException|RuntimeException|Exception|Throwable)\b/.test(
              catches,
            )
          )
            handled = true;
        }
      }
      // The argument of parseInt must be input for it to matter.
      if (m[2]) {
        const arg = src.callArgs(m.index + m[0].length - 1)[0];
        if (!arg || !taintOf(src, EXTERNAL).range(arg.start, arg.end)) continue;
      }
      if (!handled)
        out.push(
          src.finding(
            rule,
            m.index,
            `${m[1] ?? m[2]} throws on malformed input; check hasNextInt() or catch the exception`,
          ),
        );
    }
    return out;
  },
);

const divideByZero = divideByZeroRule("java", ENTRY);

const uninitialisedField = defineRule(
  {
    id: "java/uninitialized-field-dereference",
    cwe: "CWE-476",
    language: "java",
    title: "Field that is never assigned (always null) dereferenced",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // Reference-typed fields without an initialiser.
    for (const f of src.matches(
      /^\s*(?:(?:private|protected|public|static|final|transient|volatile)\s+)*([A-Z][\w.]*(?:<[^>]*>)?(?:\[\s*\])?)\s+([a-z_]\w*)\s*;/gm,
    )) {
      const [, type, name] = f;
      if (flowOf(src).functionAt(f.index)) continue;
      const id = identRe(name!).source;
      // Assigned anywhere (this.x = ..., x = ..., setters) or injected (annotations on the line before).
      // Anywhere in the file: a constructor or method above the declaration assigns it as well.
      const rest = m.slice(0, f.index) + " ".repeat(f[0].length) + m.slice(f.index + f[0].length);
      if (
        new RegExp(`(?:\\bthis\\s*\\.\\s*)?${id}\\s*=(?!=)|(?:this|\\w+)\\s*\\.\\s*${name}\\s*=(?!=)`).test(
          rest,
        )
      )
        continue;
      if (/@\w+\s*$/.test(m.slice(Math.max(0, f.index - 60), f.index + f[0].indexOf(type!)))) continue;
      // Dereferenced directly, or through its getter.
      const getter = new RegExp(
        `\\b(\\w+)\\s*\\(\\s*\\)\\s*\\{\\s*return\\s+(?:this\\s*\\.\\s*)?${name}\\s*;\\s*\\}`,
      ).exec(m);
      const uses = [
        ...src.matches(new RegExp(`(?:\\bthis\\s*\\.\\s*|(?<![\\w.]))${name}\\s*\\.\\s*[a-z]\\w*`, "g")),
        ...(getter
          ? src.matches(new RegExp(`\\.\\s*${getter[1]}\\s*\\(\\s*\\)\\s*\\.\\s*[a-z]\\w*`, "g"))
          : []),
      ];
      for (const u of uses) {
        const fn = flowOf(src).functionAt(u.index);
        // A parameter or local of the same name shadows the field (unless reached as this.name).
        const shadowed =
          fn &&
          !/^this\b/.test(u[0]) &&
          (fn.params.some((p) => p.name === name) ||
            flowOf(src)
              .assignmentsTo(name!)
              .some((a) => a.decl && fn.bodyStart < a.index && a.index < u.index));
        if (shadowed) continue;
        const before = m.slice(fn ? fn.bodyStart : 0, u.index);
        if (
          new RegExp(
            `${name}\\s*(?:!=|==)\\s*null|${getter ? getter[1] : "(?!x)x"}\\s*\\(\\s*\\)\\s*(?:!=|==)\\s*null`,
          ).test(before)
        )
          continue;
        out.push(src.finding(rule, u.index, `field '${name}' is never assigned, so it is null here`));
        break;
      }
    }
    return out;
  },
);

const plaintextPassword = defineRule(
  {
    id: "java/plaintext-password",
    cwe: "CWE-256",
    language: "java",
    title: "Password kept and compared in plain text",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const hashing =
      /\b(?:MessageDigest|BCrypt|SCrypt|Argon2|PBKDF2|SecretKeyFactory|PasswordEncoder|DigestUtils|hash\w*|encode)\b/i;
    for (const m of src.matches(
      // from the start of a dotted name only (a match ends at ")", so no match begins inside a name): tried from
      // every character of a long a.b.c... the name backtracked through the rest, time quadratic in its length
      /(?<![\w.])([\w.]+(?:\s*\([^()]*\))?)\s*\.\s*equals\s*\(\s*([\w.]+(?:\s*\([^()]*\))?)\s*\)/g,
    )) {
      const [a, b] = [m[1]!, m[2]!];
      const secret = (x: string) =>
        isSensitiveName(
          x
            .replace(/\s*\([^()]*\)$/, "")
            .split(".")
            .pop()!
            .replace(/^get/, ""),
        );
      const stored = (x: string) => /\.\s*get\s*\(|\.\s*getPassword\s*\(|\.\s*password\b/.test(x);
      if (!((secret(b) && stored(a)) || (secret(a) && stored(b)))) continue;
      const fn = flowOf(src).functionAt(m.index);
      if (hashing.test(src.masked.slice(fn ? fn.bodyStart : 0, fn ? fn.bodyEnd : undefined))) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "passwords are stored and compared in plain text; store a salted hash (PBKDF2/bcrypt/Argon2)",
        ),
      );
    }
    return out;
  },
);

export const javaRules: Rule[] = [
  uncheckedCast,
  uncheckedNumberInput,
  divideByZero,
  uninitialisedField,
  plaintextPassword,
  sqlInjection,
  commandInjection,
  deserialization,
  weakHash,
  weakCipher,
  hardcodedKey,
  staticIv,
  insecureRandom,
  hardcodedCredential,
  pathTraversal,
  printStackTrace,
  emptyCatch,
  xxe,
  xss,
  openRedirect,
  ssrf,
  reflection,
  formatString,
  sensitiveLog,
  resourceLeak,
  nullDereference,
  arrayBounds,
  threadMisuse,
  runInsteadOfStart,
  interruptSwallowed,
  unboundedLoop,
  threadLocalLeak,
  trustAll,
];
