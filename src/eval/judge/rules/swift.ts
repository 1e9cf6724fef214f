/** Rules for Swift. */
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
import { flowOf, identRe, matchBracket, taintOf, type TaintConfig } from "./flow.js";
import {
  constValue,
  copyPastEnd,
  divideByZeroRule,
  inputBoundedLoops,
  outOfBounds,
  sizedArrays,
  unboundedAllocationRule,
  uncheckedIndexes,
} from "./bounds.js";
import type { Finding, Rule } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Untrusted input

const SOURCES =
  /\breadLine\s*\(|\bCommandLine\s*\.\s*arguments\b|\bProcessInfo\s*\.\s*processInfo\s*\.\s*(?:arguments|environment)\b|\bgetenv\s*\(|\.\s*text\b(?!\s*=)|\bqueryItems\b|\bURLComponents\b|\bString\s*\(\s*contentsOf\s*:|\bData\s*\(\s*contentsOf\s*:|\bFileHandle\s*\.\s*standardInput\b|\bUserDefaults\b[^\n]*\.\s*(?:string|object|value)\s*\(/;
const TO_NUMBER = /\b(?:Int|Int32|Int64|UInt|UInt8|UInt32|Double|Float)\s*\(|\.\s*count\b/;
const SANITIZERS =
  /\.\s*addingPercentEncoding\s*\(|\.\s*lastPathComponent\b|\.\s*replacingOccurrences\s*\(\s*of\s*:\s*"(?:%|'|;|\.\.)/;
const PROPAGATORS =
  /^(?:String|Substring|Array|Data|URL|NSString|U?Int(?:8|16|32|64)?|Double|Float|\w+\s*\.\s*(?:trimmingCharacters|replacingOccurrences|lowercased|uppercased|components|joined|appending\w*|prefix|suffix|dropFirst|dropLast|split|map|filter|reduce|data|utf8CString|cString|appendingPathComponent|appendingPathExtension|first|last|description))$/;

const EXTERNAL: TaintConfig = {
  sources: SOURCES,
  toNumber: TO_NUMBER,
  sanitizers: SANITIZERS,
  propagators: PROPAGATORS,
};

/** Also the String/Data/Int parameters of the snippet's functions (callers unknown). */
const ENTRY: TaintConfig = {
  ...EXTERNAL,
  paramSources: (_fn, p) =>
    /^(?:inout\s+)?(?:String|Substring|Data|\[UInt8\]|\[Int8\]|\[Character\]|String\?)$/.test(p.type)
      ? "text"
      : /^(?:Int|UInt|Int32|Int64|UInt32|UInt8|Int8)$/.test(p.type)
        ? "number"
        : null,
};

const VALIDATION =
  /\.\s*(?:contains|hasPrefix|hasSuffix|range\s*\(\s*of|isEmpty|allSatisfy|rangeOfCharacter|isValid\w*|matches)\b|==|!=|\bvalid|\ballow|\bwhitelist|\bswitch\b|\bNSPredicate\b|\bNSRegularExpression\b|[<>]=?/i;

function validators(src: Source): RegExp {
  const names = inSnippetValidators(
    src,
    /\.\s*(?:contains|hasPrefix|range\s*\(\s*of|rangeOfCharacter|allSatisfy)\b|NSRegularExpression|NSPredicate|CharacterSet/,
  );
  return new RegExp(`${VALIDATION.source}|\\b(?:${namesRe(names)})\\s*\\(`, "i");
}

// ---------------------------------------------------------------------------------------------
// Optionals

/** Names the snippet declares optional (`T?`, `T!`), including parameters and properties. */
function optionalNames(src: Source): Set<string> {
  const out = new Set<string>();
  const flow = flowOf(src);
  for (const a of flow.assignments) if (/[?!]\s*$/.test(a.type)) out.add(a.name);
  for (const f of flow.functions) for (const p of f.params) if (/[?!]\s*$/.test(p.type)) out.add(p.name);
  // Functions of the snippet returning an optional, and values assigned from optionals or failable calls.
  const optionalFns = new Set(
    flow.functions
      .filter((f) =>
        /->\s*[\w.<>[\]]+\?\s*(?:throws\s*)?\{?\s*$/.test(src.masked.slice(f.start, f.bodyStart + 1)),
      )
      .map((f) => f.name),
  );
  // Closure parameters that are optional by the callee's signature: URLSession's completion handlers
  // (data, response, error) and the snippet's own functions taking `@escaping (T?, U?) -> Void`.
  const closureParams = (open: number) => {
    const head = /^\{\s*(?:\[[^\]]*\]\s*)?\(?\s*([\w\s,:?!<>[\].]*?)\)?\s*(?:->\s*[\w?]+\s*)?in\b/.exec(
      src.masked.slice(open, open + 200),
    );
    return head ? head[1]!.split(",").map((p) => p.trim().split(/\s*:\s*/)[0]!) : [];
  };
  for (const t of src.matches(/\.\s*(?:dataTask|uploadTask|downloadTask)\s*\(/g)) {
    const close = matchBracket(src, src.masked.indexOf("(", t.index));
    const open = /^\s*\{/.exec(src.masked.slice(close + 1)) ? src.masked.indexOf("{", close) : -1;
    if (open >= 0) for (const p of closureParams(open)) if (/^[A-Za-z_]\w*$/.test(p)) out.add(p);
  }
  for (const f of flow.functions) {
    const sig = src.masked.slice(f.start, f.bodyStart);
    const fnType = /@escaping\s*\(([^()]*)\)\s*->\s*Void\s*\)?\s*(?:->[^{]*)?\{?\s*$/.exec(sig);
    if (!fnType) continue;
    const optionalAt = fnType[1]!.split(",").map((t) => /[?!]\s*$/.test(t.trim()));
    if (!optionalAt.some(Boolean)) continue;
    for (const call of src.matches(new RegExp(`(?<![\\w.])${identRe(f.name).source}\\s*\\(`, "g"))) {
      if (
        call.index === f.start ||
        (src.masked.slice(f.start, f.bodyStart).includes(call[0]) && call.index < f.bodyStart)
      )
        continue;
      const close = matchBracket(src, call.index + call[0].length - 1);
      const open = /^\s*\{/.test(src.masked.slice(close + 1)) ? src.masked.indexOf("{", close) : -1;
      if (open < 0) continue;
      closureParams(open).forEach((p, k) => {
        if (optionalAt[k] && /^[A-Za-z_]\w*$/.test(p)) out.add(p);
      });
    }
  }
  for (let changed = true, k = 0; changed && k < 4; k++) {
    changed = false;
    for (const a of flow.assignments) {
      if (out.has(a.name) || a.op !== "=" || !a.decl) continue;
      const rhs = src.masked.slice(a.rhsStart, a.rhsEnd).trim();
      // `if let x = ...` / `guard let x = ...` bind a non-optional.
      if (/\b(?:if|guard|while)\s+(?:let|var)\s*$/.test(src.masked.slice(Math.max(0, a.index - 20), a.index)))
        continue;
      if (/,\s*$/.test(src.masked.slice(Math.max(0, a.index - 12), a.index).replace(/(?:let|var)\s*$/, "")))
        continue;
      const call = /^(?:[\w.]+\s*\.\s*)?([A-Za-z_]\w*)\s*\(/.exec(rhs);
      if (
        (/^[A-Za-z_]\w*$/.test(rhs) && out.has(rhs)) ||
        (call && optionalFns.has(call[1]!)) ||
        (FAILABLE.test(rhs) && !/\?\?/.test(rhs))
      ) {
        out.add(a.name);
        changed = true;
      }
    }
  }
  return out;
}

/** Optionals whose value the snippet unwrapped or checked before `at` (if let, guard let, != nil, ?? , ?.). */
function checkedBefore(src: Source, name: string, at: number): boolean {
  const flow = flowOf(src);
  const fn = flow.functionAt(at);
  // In top-level code, only what follows the last function body before `at`: a check inside another
  // function does not check this variable.
  const from = fn
    ? fn.bodyStart
    : Math.max(0, ...flow.functions.filter((f) => f.bodyEnd < at).map((f) => f.bodyEnd));
  const before = src.masked.slice(from, at);
  const id = identRe(name).source;
  return new RegExp(
    `\\b(?:if|guard|while)\\s+(?:let|var)\\s+${id}\\b|\\b(?:let|var)\\s+\\w+\\s*=\\s*(?:self\\s*\\.\\s*)?${id}\\s*(?:,|\\{|else)|(?:self\\s*\\.\\s*)?${id}\\s*(?:!=|==)\\s*nil|\\bif\\s+let\\s+${id}\\s*(?:,|\\{)|\\bguard\\s+let\\s+${id}\\b`,
  ).test(before);
}

const FAILABLE =
  /\b(?:readLine\s*\(\s*\)|Int\d*\s*\([^()]*\)|UInt\d*\s*\([^()]*\)|Double\s*\([^()]*\)|Float\s*\([^()]*\)|URL\s*\(\s*string\s*:\s*(?!")[^()]*\)|String\s*\(\s*(?:data|bytes|validatingUTF8|utf8String)\s*:[^()]*\)|String\s*\(\s*cString\s*:[^()]*,\s*encoding\s*:[^()]*\)|String\s*\(\s*contentsOf\w*\s*:[^()]*\)|Data\s*\(\s*base64Encoded\s*:[^()]*\)|\.\s*contents\s*\(\s*atPath\s*:[^()]*\)|\.\s*(?:first|last|randomElement|popLast|min|max)\s*(?:\(\s*\))?|\.\s*firstIndex\s*\([^()]*\)|\.\s*index\s*\([^()]*\)|\.\s*text|\.\s*string\s*\(\s*forKey\s*:[^()]*\)|\.\s*object\s*\(\s*forKey\s*:[^()]*\)|\w+\s*\[[^\]]+\])\s*$/;

const forceUnwrap = defineRule(
  {
    id: "swift/force-unwrap",
    cwe: "CWE-476",
    language: "swift",
    title: "Force unwrap (!) of an optional that can be nil (input, failable conversion, optional property)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const optionals = optionalNames(src);
    for (const m of src.matches(/(?<=[\w)\]])!(?!=)/g)) {
      const before = src.masked.slice(Math.max(0, m.index - 160), m.index + 1);
      // Implicitly unwrapped declarations (`var label: UILabel!`, `-> String!`: a capitalised type, unlike an
      // argument value such as `decoding: data!`) and `try!` are not unwraps here.
      if (/(?::|->)\s*[A-Z][\w.]*(?:<[^<>]*>)?!$/.test(before) || /\btry!$/.test(before)) continue;
      const expr = before.slice(0, -1);
      const name = /(?:\bself\s*\.\s*)?([A-Za-z_]\w*)$/.exec(expr);
      let why: string | null = null;
      if (name && /[\w]$/.test(expr) && optionals.has(name[1]!)) {
        if (!checkedBefore(src, name[1]!, m.index)) why = `'${name[1]}' is optional`;
      } else if (FAILABLE.test(expr)) {
        // URL(string: "literal")! and "text".data(using: .utf8)! cannot fail.
        why = "the value comes from input or a failable conversion";
      }
      if (why)
        out.push(
          src.finding(
            rule,
            m.index,
            `force unwrap crashes when it is nil (${why}); use if let / guard let / ??`,
          ),
        );
    }
    for (const m of src.matches(/\bas!\s*/g))
      out.push(src.finding(rule, m.index, "forced cast crashes when the type does not match; use as?"));
    return out;
  },
);

const optionalDereference = defineRule(
  {
    id: "swift/unchecked-optional",
    cwe: "CWE-476",
    language: "swift",
    title: "Optional parameter or variable used without unwrapping",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const flow = flowOf(src);
    for (const f of flow.functions) {
      for (const p of f.params) {
        if (!/^[A-Z][\w.]*[?!]$/.test(p.type.trim())) continue;
        const body = src.masked.slice(f.bodyStart, f.bodyEnd);
        const id = identRe(p.name).source;
        const use = new RegExp(
          `${id}\\s*\\.\\s*[A-Za-z_]\\w*|${id}\\s*[+\\-*/](?!=)\\s*[\\w(]|[\\w)]\\s*[+\\-*/]\\s*${id}(?!\\s*(?:\\?\\?|\\?\\.|!))`,
        ).exec(body);
        if (!use) continue;
        if (checkedBefore(src, p.name, f.bodyStart + use.index)) continue;
        out.push(
          src.finding(
            rule,
            f.bodyStart + use.index,
            `'${p.name}' is optional and is used without unwrapping`,
          ),
        );
      }
    }
    return out;
  },
);

const tryForce = defineRule(
  {
    id: "swift/try-force",
    cwe: "CWE-248",
    language: "swift",
    title: "try! aborts on any thrown error",
    severity: "medium",
  },
  (src, rule) =>
    src
      .matches(/\btry!/g)
      // try! on a regex or literal-only pattern compiled at start-up is a programmer error, not input handling.
      .filter(
        (m) =>
          !/^\s*NSRegularExpression\s*\(\s*pattern\s*:\s*"/.test(src.masked.slice(m.index + 4, m.index + 60)),
      )
      .map((m) => src.finding(rule, m.index, "try! crashes on a thrown error; use do/catch or try?")),
);

// ---------------------------------------------------------------------------------------------
// Memory

/**
 * `p.initialize(from: xs)` on a typed pointer (UnsafeMutablePointer, a withMemoryRebound closure's pointer, a
 * buffer's baseAddress) writes every element of `xs` with no count: past the allocation when `xs` is longer.
 * Not reported when the allocation is sized by `xs` itself or the source's length is checked first.
 */
function uncountedPointerInit(src: Source, at: number, from: string): string | null {
  const m = src.masked;
  const head = m.slice(Math.max(0, at - 80), at);
  const recv = /([A-Za-z_]\w*)\s*[?!]?\s*$/.exec(head)?.[1];
  if (!recv) return null;
  const id = identRe(recv).source;
  const aliases = src
    .matches(/\btypealias\s+([A-Za-z_]\w*)\s*=\s*UnsafeMutablePointer\b/g)
    .map((a) => identRe(a[1]!).source);
  const pointerType = ["UnsafeMutablePointer\\b", ...aliases].join("|");
  let capacity: string | null = null;
  if (recv === "baseAddress") {
    // A buffer's base address: the buffer's own count bounds it.
    capacity = "";
  } else {
    const typeRe = new RegExp(`^\\s*(?:inout\\s+)?(?:${pointerType})`);
    const decl =
      new RegExp(`\\b(?:var|let)\\s+${id}\\s*:\\s*(?:${pointerType})`).test(m) ||
      flowOf(src).functions.some((f) => f.params.some((p) => p.name === recv && typeRe.test(p.type)));
    const alloc = new RegExp(
      `\\b${id}\\s*=\\s*(?:${pointerType})(?:\\s*<[^<>]*>)?\\s*(?:\\.\\s*allocate\\s*\\(\\s*capacity\\s*:\\s*([^)]*)\\)|\\()`,
    ).exec(m);
    const rebound = new RegExp(
      `withMemoryRebound\\s*\\([^{]*?capacity\\s*:\\s*([^{]*?)\\)\\s*\\{\\s*\\(?\\s*${id}\\s*(?::[^)]*)?\\)?\\s*in\\b`,
    ).exec(m);
    if (!decl && !alloc && !rebound) return null;
    capacity = (alloc?.[1] ?? rebound?.[1] ?? "").trim();
  }
  // The source: an array/collection name (`xs`, `xs.utf8`, `$0`), not a single value.
  const source = /^(\$\d|[A-Za-z_]\w*)(?:\s*\.\s*(?:utf8|utf16|unicodeScalars|baseAddress\s*!?))?\s*!?$/.exec(
    from.trim(),
  );
  if (!source) return null;
  const sid = source[1]!.replace("$", "\\$");
  if (capacity && new RegExp(`^${sid}\\s*\\.\\s*count$`).test(capacity)) return null;
  const fn = flowOf(src).functionAt(at);
  const before = m.slice(fn ? fn.bodyStart : 0, at);
  if (
    new RegExp(`\\b(?:guard|if|precondition|assert)\\b[^{\\n]*${sid}\\s*\\.\\s*count\\s*[<>=]`).test(before)
  )
    return null;
  return `initialize(from: ${from.trim()}) writes every element of the source into '${recv}' with no count; a longer source overflows the allocation`;
}

const unsafeCopy = defineRule(
  {
    id: "swift/unsafe-copy-overflow",
    cwe: "CWE-787",
    language: "swift",
    title: "Unsafe memory copy sized by the source instead of the destination",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    for (const mm of src.matches(
      /\.\s*(initialize|update|assign|copyMemory|copyBytes|move|moveInitialize|moveUpdate)\s*\(\s*(?:from|to)\s*:|\b(memcpy|memmove|strncpy)\s*\(/g,
    )) {
      const args = src.callArgs(src.masked.indexOf("(", mm.index + 1));
      const countArg = mm[2] ? args[2] : args.find((a) => /^(?:count|byteCount)\s*:/.test(a.masked));
      if (!countArg) {
        if (mm[1] === "initialize" && args.length === 1) {
          const why = uncountedPointerInit(src, mm.index, args[0]!.masked.replace(/^from\s*:\s*/, ""));
          if (why) out.push(src.finding(rule, mm.index, why));
        }
        continue;
      }
      const count = countArg.masked.replace(/^(?:count|byteCount)\s*:\s*/, "").trim();
      // Sized by the destination: `copyBytes(to: &buffer, count: buffer.count)`.
      const dest = (mm[2] ? args[0] : args.find((a) => /^to\s*:/.test(a.masked)))?.masked
        .replace(/^to\s*:\s*&?/, "")
        .trim();
      const receiver = /([A-Za-z_]\w*)\s*(?:\.\s*baseAddress\s*[?!]?)?\s*$/.exec(
        m.slice(Math.max(0, mm.index - 60), mm.index),
      )?.[1];
      const destName = dest && /^\w+/.exec(dest)?.[0];
      // The receiver was allocated with exactly this count: `let b = ....allocate(capacity: n)`, `b.initialize(to: 0, count: n)`.
      const allocatedFor = (name: string | undefined) =>
        !!name &&
        new RegExp(
          `\\b${identRe(name).source}\\s*(?::[^=\\n]*)?=\\s*Unsafe\\w*\\s*(?:<[^<>]*>)?\\s*\\.\\s*allocate\\s*\\(\\s*capacity\\s*:\\s*([^)]*)\\)`,
        )
          .exec(m)?.[1]
          ?.trim() === count;
      if (allocatedFor(receiver) || allocatedFor(destName)) continue;
      if (
        [destName, mm[1] === "copyBytes" ? undefined : receiver].some(
          (d) => d && new RegExp(`^${d}\\s*\\.\\s*(?:count|capacity)$`).test(count),
        )
      )
        continue;
      if (/\bmin\s*\(/.test(count)) continue;
      // A constant count: past the end only when the destination's size is known and smaller.
      const constCount = constValue(src, count);
      if (constCount !== null) {
        const target = destName ?? (mm[1] === "copyBytes" ? undefined : receiver);
        const size = target ? sizedArrays(src).get(target)?.size : undefined;
        if (size !== undefined && constCount > size)
          out.push(
            src.finding(
              rule,
              mm.index,
              `copies ${constCount} elements into '${target}', which holds ${size}`,
            ),
          );
        continue;
      }
      // A count derived from the destination (or checked against it first) is bounded.
      const fn = flowOf(src).functionAt(mm.index);
      const before = m.slice(fn ? fn.bodyStart : 0, mm.index);
      const countVar = /^[A-Za-z_]\w*$/.test(count) ? count : null;
      if (countVar && new RegExp(`\\b${countVar}\\s*=\\s*min\\s*\\(`).test(before)) continue;
      // A comparison (spaced `<`/`>`, not a generic `<UInt8>` or `->`) against a size in a condition.
      const guardedCount =
        /\b(?:guard|if|while|precondition|assert)\b[^{\n]*(?:(?:\.count|size|capacity|length)[^{\n]*\s[<>]=?\s|\s[<>]=?\s[^{\n]*(?:\.count|size|capacity|length))/i.test(
          before,
        );
      if (guardedCount) continue;
      const fromSource =
        /\+\s*\d+|\.count\b|\bstrlen\s*\(|\butf8\b|size|length/i.test(count) || countVar !== null;
      if (!fromSource) continue;
      out.push(
        src.finding(
          rule,
          mm.index,
          `copies '${count}' bytes without checking that they fit the destination; use min(source, destination capacity)`,
        ),
      );
    }
    // Writes at an offset from a raw pointer with no check against the allocation's size.
    for (const mm of src.matches(
      /\.\s*advanced\s*\(\s*by\s*:\s*([^)]+)\)\s*\.\s*(assign|initialize|storeBytes|update|copyMemory)\s*\(|\.\s*advanced\s*\(\s*by\s*:\s*([^)]+)\)\s*\.\s*pointee\s*=/g,
    )) {
      const fn = flowOf(src).functionAt(mm.index);
      const before = m.slice(fn ? fn.bodyStart : 0, mm.index);
      if (/\b(?:guard|if)\b[^{\n]*[<>]=?/.test(before)) continue;
      out.push(
        src.finding(
          rule,
          mm.index,
          `writes at offset '${(mm[1] ?? mm[3])!.trim()}' from the pointer without checking it stays inside the allocation`,
        ),
      );
    }
    for (const mm of src.matches(/(?<![\w.])(strcpy|strcat|gets|sprintf)\s*\(/g))
      out.push(src.finding(rule, mm.index, `${mm[1]} does not bound the write to the destination`));
    return out;
  },
);

const overRead = defineRule(
  {
    id: "swift/out-of-bounds-read",
    cwe: "CWE-125",
    language: "swift",
    title: "Copy out of caller data sized by the destination, not by the data",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    // `data.copyBytes(to: &buffer, count: buffer.count)` reads `buffer.count` bytes of `data`, which traps
    // (or reads past the end through a pointer) when the data is shorter than the buffer.
    for (const mm of src.matches(
      /(?<![\w.])([A-Za-z_]\w*)\s*\.\s*copyBytes\s*\(\s*to\s*:\s*&?\s*([A-Za-z_]\w*)[^,()]*,\s*count\s*:\s*([^()]+?)\s*\)/g,
    )) {
      const [, source, dest, count] = mm as unknown as [string, string, string, string];
      if (source === dest || taint.of(source, mm.index) === null) continue;
      const id = identRe(source).source;
      if (new RegExp(`${id}\\s*\\.\\s*count\\b|\\bmin\\s*\\(`).test(count)) continue;
      const fn = flowOf(src).functionAt(mm.index);
      const before = src.masked.slice(fn ? fn.bodyStart : 0, mm.index);
      // The destination sized from the source (`count: min(data.count, 1024)`), or the source's length checked.
      const destDecl = flowOf(src)
        .assignmentsTo(dest)
        .find((a) => a.index < mm.index);
      if (
        destDecl &&
        new RegExp(`${id}\\s*\\.\\s*count\\b`).test(src.masked.slice(destDecl.rhsStart, destDecl.rhsEnd))
      )
        continue;
      if (new RegExp(`${id}\\s*\\.\\s*(?:count|isEmpty)\\b`).test(before)) continue;
      out.push(
        src.finding(
          rule,
          mm.index,
          `copies '${count.trim()}' bytes out of '${source}' without checking that '${source}' holds that many`,
        ),
      );
    }
    // `data.withUnsafeBytes { $0.load(fromByteOffset: 4, as: UInt32.self) }` reads past the end of a short
    // caller buffer: load does no bounds check in release builds.
    for (const w of src.matches(/(?<![\w.])([A-Za-z_]\w*)\s*\.\s*withUnsafeBytes\s*\{/g)) {
      const source = w[1]!;
      if (taint.of(source, w.index) === null) continue;
      const open = w.index + w[0].length - 1;
      const body = src.masked.slice(open, matchBracket(src, open));
      const load = /\.\s*load\s*\(\s*(?:fromByteOffset\s*:\s*([^,()]+),\s*)?as\s*:/.exec(body);
      if (!load) continue;
      const fn = flowOf(src).functionAt(w.index);
      const before = src.masked.slice(fn ? fn.bodyStart : 0, w.index);
      const id = identRe(source).source;
      if (new RegExp(`${id}\\s*\\.\\s*(?:count|isEmpty)\\b`).test(before + body)) continue;
      out.push(
        src.finding(
          rule,
          open + load.index,
          `loads from '${source}'${load[1] ? ` at offset ${load[1].trim()}` : ""} without checking that '${source}' is that long`,
        ),
      );
    }
    return out;
  },
);

const useAfterFree = defineRule(
  {
    id: "swift/use-after-free",
    cwe: "CWE-416",
    language: "swift",
    title: "Pointer used after deallocate(), or escaping its withUnsafe… scope",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    for (const d of src.matches(/(?<![\w.])([A-Za-z_]\w*)\s*(?:\?|!)?\s*\.\s*deallocate\s*\(/g)) {
      const name = d[1]!;
      // `defer { p.deallocate() }` runs at scope exit.
      if (/\bdefer\s*\{[^}]*$/.test(m.slice(Math.max(0, d.index - 40), d.index))) continue;
      const fn = flowOf(src).functionAt(d.index);
      const after = m.slice(d.index + d[0].length, fn ? fn.bodyEnd : m.length);
      const id = identRe(name).source;
      const reassigned = new RegExp(`${id}\\s*=(?!=)`).exec(after);
      const use = new RegExp(
        `${id}\\s*(?:\\?|!)?\\s*(?:\\.\\s*(?:pointee|initialize|advanced|load|store)|\\[|\\+)`,
      ).exec(after);
      if (use && (!reassigned || use.index < reassigned.index))
        out.push(
          src.finding(rule, d.index + d[0].length + use.index, `'${name}' is used after deallocate()`),
        );
    }
    // The pointer handed to a withUnsafe… closure is only valid inside it.
    for (const w of src.matches(
      /\bwithUnsafe(?:Mutable)?(?:Pointer|Bytes|BufferPointer)\s*(?:\([^)]*\))?\s*\{\s*(?:\$0|(\w+)\s+in\s+(?:return\s+)?\1)\s*(?:\.baseAddress\s*!?)?\s*\}/g,
    ))
      out.push(
        src.finding(rule, w.index, "the pointer escapes its withUnsafe… closure and dangles afterwards"),
      );
    // A pointer made from a value instead of an address (`UnsafeMutablePointer(mutating: 0)`).
    for (const w of src.matches(
      /\bUnsafe(?:Mutable)?(?:Raw)?Pointer\s*(?:<[^>]*>)?\s*\(\s*mutating\s*:\s*([^)&]+)\)/g,
    ))
      if (
        (!/Pointer|baseAddress|\$0|ptr|pointer/.test(w[1]!) && !/^[A-Za-z_]\w*$/.test(w[1]!.trim())) ||
        /^\d+$|^"/.test(w[1]!.trim()) ||
        (/^[a-z]\w*$/.test(w[1]!.trim()) && !/ptr|pointer|buf/i.test(w[1]!))
      )
        out.push(
          src.finding(
            rule,
            w.index,
            "the pointer is made from a temporary value, not from allocated memory; it dangles",
          ),
        );
    for (const w of src.matches(/\bUnmanaged\s*\.\s*passUnretained\s*\(/g))
      out.push(
        src.finding(rule, w.index, "passUnretained does not keep the object alive; the pointer can dangle"),
      );
    return out;
  },
);

const typeConfusion = defineRule(
  {
    id: "swift/unsafe-bitcast",
    cwe: "CWE-843",
    language: "swift",
    title: "unsafeBitCast / unsafeDowncast / assumingMemoryBound reinterpretation",
    severity: "medium",
  },
  (src, rule) =>
    src
      .matches(/\b(unsafeBitCast|unsafeDowncast)\s*\(|\.\s*(assumingMemoryBound|bindMemory)\s*\(/g)
      // SQLITE_TRANSIENT is conventionally written as unsafeBitCast(-1, to: sqlite3_destructor_type.self).
      .filter(
        (m) =>
          !/^\s*-1\s*,\s*to\s*:\s*sqlite3_destructor_type/.test(
            src.masked.slice(m.index + m[0].length, m.index + m[0].length + 60),
          ),
      )
      .map((m) =>
        src.finding(rule, m.index, `${m[1] ?? m[2]} reinterprets memory as another type without any check`),
      ),
);

// ---------------------------------------------------------------------------------------------

const formatString = defineRule(
  {
    id: "swift/format-string",
    cwe: "CWE-134",
    language: "swift",
    title: "String(format:) / NSLog with a non-literal format",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(
      /\b(String|NSString)\s*\(\s*format\s*:|\b(NSLog|printf)\s*\(|\.\s*(appendFormat|stringWithFormat)\s*\(/g,
    )) {
      const open = src.masked.indexOf("(", m.index);
      const arg = src.callArgs(open)[0];
      if (!arg) continue;
      const fmt = m[1] ? { start: arg.start + arg.masked.indexOf(":") + 1, end: arg.end } : arg;
      if (src.isLiteral(fmt)) continue;
      const v = src.masked.slice(fmt.start, fmt.end).trim();
      const defs = flowOf(src).assignmentsTo(v);
      if (defs.length > 0 && defs.every((a) => src.isLiteral({ start: a.rhsStart, end: a.rhsEnd }))) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          'format string is not a literal; pass user text as an argument to a literal "%@" format',
        ),
      );
    }
    return out;
  },
);

const deserialization = defineRule(
  {
    id: "swift/unsafe-deserialization",
    cwe: "CWE-502",
    language: "swift",
    title: "NSKeyedUnarchiver without secure coding",
    severity: "high",
  },
  (src, rule) =>
    src
      .matches(
        /\b(unarchiveObject|unarchiveTopLevelObjectWithData)\s*\(|\brequiresSecureCoding\s*=\s*false\b|\bNSUnarchiver\b/g,
      )
      .map((m) =>
        src.finding(
          rule,
          m.index,
          "unarchiving without secure coding can instantiate arbitrary classes; use unarchivedObject(ofClass:from:)",
        ),
      ),
);

const weakCrypto = defineRule(
  {
    id: "swift/weak-crypto",
    cwe: "CWE-327",
    language: "swift",
    title: "MD5/SHA-1/DES/RC4 or ECB",
    severity: "medium",
  },
  (src, rule) =>
    src
      .matches(
        /\b(CC_MD5|CC_MD4|CC_SHA1|Insecure\s*\.\s*MD5|Insecure\s*\.\s*SHA1|kCCAlgorithmDES|kCCAlgorithm3DES|kCCAlgorithmRC4|kCCAlgorithmRC2|kCCOptionECBMode|kCCHmacAlgMD5|kCCHmacAlgSHA1)\b/g,
      )
      .map((m) =>
        src.finding(
          rule,
          m.index,
          `${m[1]!.replace(/\s/g, "")} is broken; use SHA-256 / AES-GCM (CryptoKit)`,
        ),
      ),
);

const weakRandom = defineRule(
  {
    id: "swift/weak-random",
    cwe: "CWE-338",
    language: "swift",
    title: "C library PRNG (rand, random, drand48) for secrets",
    severity: "medium",
  },
  (src, rule) => {
    if (!securityContext(src) && !/\bsrand(?:om|48)?\s*\(/.test(src.masked)) return [];
    return src
      .matches(/(?<![\w.])(rand|random|srand|srandom|drand48|lrand48|srand48)\s*\(/g)
      .map((m) =>
        src.finding(
          rule,
          m.index,
          `${m[1]}() is predictable; use SecRandomCopyBytes or SystemRandomNumberGenerator`,
        ),
      );
  },
);

/** APIs that take a password or token in one argument (HTTP headers, URL credentials). */
const CREDENTIAL_SINKS: CredentialSink[] = [
  {
    call: /\.\s*(?:setValue|addValue)\s*\(/g,
    arg: 0,
    when: { arg: "forHTTPHeaderField", value: AUTH_HEADER },
    what: "credential in an HTTP header",
  },
  { call: /\bURLCredential\s*\(\s*user\s*:/g, arg: "password", what: "password passed to URLCredential" },
];

const hardcodedCredential = defineRule(
  {
    id: "swift/hardcoded-credential",
    cwe: "CWE-798",
    language: "swift",
    title: "Hard-coded password or key",
    severity: "medium",
  },
  (src, rule) => hardcodedSecrets(src, rule, CREDENTIAL_SINKS),
);

/** APIs that take a cipher or MAC key (CryptoKit, CommonCrypto, CryptoSwift, SQLCipher). */
const KEY_SINKS: CredentialSink[] = [
  { call: /\bSymmetricKey\s*\(\s*data\s*:/g, arg: "data", what: "the SymmetricKey" },
  { call: /\bCCCrypt\s*\(/g, arg: 3, what: "the CCCrypt key" },
  { call: /\bCCCryptorCreate\w*\s*\(/g, arg: 3, what: "the CCCryptor key" },
  { call: /\bCCHmac\s*\(/g, arg: 1, what: "the HMAC key" },
  { call: /\bCCHmacInit\s*\(/g, arg: 2, what: "the HMAC key" },
  {
    call: /\b(?:AES|ChaCha20|Blowfish|HMAC|CMAC)\s*\(\s*key\s*:/g,
    arg: "key",
    what: "the cipher or MAC key",
  },
  { call: /\bsqlite3_(?:re)?key\s*\(/g, arg: 1, what: "the database key" },
];

/** Where an IV goes in (CommonCrypto, CryptoSwift block modes). */
const IV_SINKS: CredentialSink[] = [
  { call: /\bCCCrypt\s*\(/g, arg: 5, what: "the CCCrypt IV" },
  { call: /\bCCCryptorCreate\s*\(/g, arg: 5, what: "the CCCryptor IV" },
  { call: /\b(?:CBC|CTR|CFB|OFB|PCBC)\s*\(\s*iv\s*:/g, arg: "iv", what: "the IV" },
];

const staticIv = staticIvRule("swift", IV_SINKS);

const hardcodedKey = hardcodedKeyRule("swift", KEY_SINKS);

const commandInjection = defineRule(
  {
    id: "swift/command-injection",
    cwe: "CWE-78",
    language: "swift",
    title: "Process/NSTask running a shell or program from input",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    const check = validators(src);
    const usesShell =
      src.has(/(?:launchPath|executableURL)[^\n]*["/](?:sh|bash|zsh)\b/) ||
      src.has(/arguments\s*=\s*\[\s*"-c"/);
    for (const m of src.matches(/\.\s*arguments\s*=\s*\[/g)) {
      const elements = src.callArgs(m.index + m[0].length - 1);
      const bad = elements.find(
        (e) =>
          !src.isLiteral(e) &&
          (usesShell || /[I+]/.test(src.shape(e))) &&
          (taint.range(e.start, e.end) || /[I+]/.test(src.shape(e))) &&
          !taint.guarded(taint.varsIn(e.start, e.end), m.index, check),
      );
      if (bad)
        out.push(
          src.finding(
            rule,
            m.index,
            "process arguments built from input run through a shell; pass a fixed program and separate arguments",
          ),
        );
    }
    for (const m of src.matches(
      /\.\s*launchPath\s*=|\bexecutableURL\s*=\s*URL\s*\(\s*fileURLWithPath\s*:/g,
    )) {
      const lit = src.literalAt(m.index + m[0].length);
      if (!lit || lit.interpolated)
        out.push(src.finding(rule, m.index, "the program to launch comes from run-time input"));
    }
    for (const m of src.matches(/(?<![\w.])(system|popen)\s*\(/g)) {
      const arg = src.callArgs(argListStart(m))[0];
      if (arg && !src.isLiteral(arg))
        out.push(src.finding(rule, m.index, `${m[1]} runs a shell command built at run time`));
    }
    // NSExpression / JavaScriptCore evaluating input.
    for (const m of src.matches(
      /\bNSExpression\s*\(\s*format\s*:|\.\s*evaluateScript\s*\(|(?<![\w.])eval\s*\(/g,
    )) {
      const arg = src.callArgs(src.masked.indexOf("(", m.index))[0];
      const a =
        arg && /^format\s*:/.test(arg.masked)
          ? { start: arg.start + arg.masked.indexOf(":") + 1, end: arg.end }
          : arg;
      if (a && !src.isLiteral(a) && taint.range(a.start, a.end))
        out.push(src.finding(rule, m.index, "input is evaluated as an expression or script"));
    }
    return out;
  },
);

const sqlInjection = defineRule(
  {
    id: "swift/sql-injection",
    cwe: "CWE-89",
    language: "swift",
    title: "SQL built with interpolation or concatenation",
    severity: "high",
  },
  (src, rule) => sqlBuiltFromInput(src, rule),
);

const indexOutOfRange = defineRule(
  {
    id: "swift/index-out-of-range",
    cwe: "CWE-129",
    language: "swift",
    title: "Array or string index past the end, or from input without a bounds check",
    severity: "medium",
  },
  (src, rule) => {
    const out = [...outOfBounds(src), ...copyPastEnd(src)].map((f) => src.finding(rule, f.at, f.message));
    const taint = taintOf(src, ENTRY);
    for (const f of inputBoundedLoops(src, taint)) out.push(src.finding(rule, f.at, f.message));
    for (const f of uncheckedIndexes(src, taint)) out.push(src.finding(rule, f.at, f.message));
    // CommandLine.arguments[k] (or a copy of it) without a count check traps when the argument is missing.
    const argNames = [
      "CommandLine\\s*\\.\\s*arguments",
      ...src
        .matches(/\b(?:let|var)\s+([A-Za-z_]\w*)\s*=\s*CommandLine\s*\.\s*arguments\s*$/gm)
        .map((a) => identRe(a[1]!).source),
    ].join("|");
    const argsChecked = new RegExp(
      `(?:${argNames})\\s*\\.\\s*(?:count|indices|isEmpty)\\b|\\bCommandLine\\s*\\.\\s*argc\\b`,
    ).test(src.masked);
    if (!argsChecked)
      for (const m of src.matches(
        new RegExp(`(?<![\\w.])(?:${argNames})\\s*\\[\\s*([1-9]\\d*)\\s*\\]`, "g"),
      )) {
        out.push(
          src.finding(
            rule,
            m.index,
            `the program argument at index ${m[1]} traps when it is missing; check CommandLine.arguments.count first`,
          ),
        );
        break;
      }
    // String.index(_:offsetBy:) without limitedBy: traps when the string is shorter.
    for (const m of src.matches(
      /(?<![\w.])([A-Za-z_]\w*)\s*\.\s*index\s*\(\s*[^,()]+,\s*offsetBy\s*:\s*([^,()]+)\)/g,
    )) {
      const s = m[1]!;
      // An index of one string used on another (`b.index(a.endIndex, offsetBy: i)`): not valid for it at all.
      const base = /\(\s*([A-Za-z_]\w*)\s*\.\s*(?:startIndex|endIndex)\s*,/.exec(m[0]);
      if (base && base[1] !== s && base[1] !== "self") {
        out.push(
          src.finding(
            rule,
            m.index,
            `${s}.index(...) starts from an index of '${base[1]}', which is not an index of '${s}'`,
          ),
        );
        continue;
      }
      if (!taint.of(s, m.index) && !optionalNames(src).has(s)) continue;
      const fn = flowOf(src).functionAt(m.index);
      const before = src.masked.slice(fn ? fn.bodyStart : 0, m.index);
      if (
        new RegExp(
          `${identRe(s).source}\\s*\\.\\s*count\\s*[<>]=?|[<>]=?\\s*${identRe(s).source}\\s*\\.\\s*count`,
        ).test(before)
      )
        continue;
      // The offset is a loop index bounded by a value made from the string's length (`min(s.count, 10)`).
      const offset = m[2]!.trim();
      const fromStart = new RegExp(`\\(\\s*${identRe(s).source}\\s*\\.\\s*startIndex\\s*,`).test(m[0]);
      const loop =
        fromStart && /^[A-Za-z_]\w*$/.test(offset)
          ? new RegExp(
              `\\bfor\\s+${identRe(offset).source}\\s+in\\s+0\\s*\\.\\.<\\s*([A-Za-z_]\\w*)\\s*\\{`,
            ).exec(before)
          : null;
      if (
        loop &&
        flowOf(src)
          .assignmentsTo(loop[1]!)
          .some((a) =>
            new RegExp(`${identRe(s).source}\\s*\\.\\s*count\\b`).test(
              src.masked.slice(a.rhsStart, a.rhsEnd),
            ),
          )
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          `${s}.index(offsetBy:) traps when '${s}' is shorter; use index(_:offsetBy:limitedBy:)`,
        ),
      );
    }
    return out;
  },
);

const retainCycle = defineRule(
  {
    id: "swift/retain-cycle",
    cwe: "CWE-401",
    language: "swift",
    title: "Closure stored by self (or a repeating timer) capturing self strongly; strong delegate",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // Closures kept alive by the object or by the run loop.
    const stored =
      /(?:\bself\s*\.\s*\w+\s*=|\b(?:lazy\s+)?var\s+\w+\s*(?::[^=\n]*)?=|\bTimer\s*\.\s*scheduledTimer\s*\([^{]*repeats\s*:\s*true[^{]*|\.\s*setEventHandler\s*(?:\(\s*handler\s*:)?|\baddObserver\s*\(\s*forName\s*:[^{]*)\s*\{/g;
    for (const mm of src.matches(stored)) {
      const open = mm.index + mm[0].length - 1;
      const close = matchBracket(src, open);
      const body = m.slice(open, close);
      if (/^\{\s*\[\s*(?:weak|unowned)\b/.test(body)) continue;
      // Only closures inside a class (a struct or a top-level script has no cycle).
      const fn = flowOf(src).functionAt(mm.index);
      if (!fn && !/\bvar\b/.test(mm[0])) continue;
      if (!/\bself\b/.test(body.slice(1)) && !/\blazy\b/.test(mm[0])) continue;
      if (/\blazy\b/.test(mm[0]) && !/\bself\b/.test(body)) continue;
      if (!/\bclass\s+\w+/.test(m.slice(0, mm.index))) continue;
      out.push(
        src.finding(
          rule,
          mm.index,
          "the closure captures self strongly and is kept by self or the run loop; capture [weak self]",
        ),
      );
    }
    // A closure assigned, inside a method, to a closure-typed property of the class without `self.`.
    for (const c of src.matches(/\bclass\s+\w+[^{]*\{/g)) {
      const open = c.index + c[0].length - 1;
      const close = matchBracket(src, open);
      const body = m.slice(open, close);
      const closureProps = [
        ...body.matchAll(
          /^(?![^\S\n]*\n)\s*(?:(?:private|fileprivate|internal|public|open)\s+)?var\s+(\w+)\s*:\s*\(*[^=\n]*->[^=\n]*$/gm,
        ),
      ].map((p) => p[1]!);
      if (closureProps.length === 0) continue;
      for (const a of body.matchAll(new RegExp(`(?<![\\w.])(?:${namesRe(closureProps)})\\s*=\\s*\\{`, "g"))) {
        const at = open + a.index!;
        const fn = flowOf(src).functionAt(at);
        if (!fn || fn.bodyStart < open || fn.bodyEnd > close) continue;
        const cOpen = at + a[0].length - 1;
        const cBody = m.slice(cOpen, matchBracket(src, cOpen));
        if (/^\{\s*\[\s*(?:weak|unowned)\b/.test(cBody) || !/\bself\b/.test(cBody.slice(1))) continue;
        out.push(
          src.finding(
            rule,
            at,
            "the closure captures self strongly and is kept by self; capture [weak self]",
          ),
        );
      }
    }
    // Two classes holding each other strongly (A.b: B and B.a: A), or instances of one class linked both ways.
    const classes = new Map<string, { at: number; props: Map<string, string> }>();
    for (const c of src.matches(/\bclass\s+(\w+)[^{]*\{/g)) {
      const open = c.index + c[0].length - 1;
      const body = m.slice(open, matchBracket(src, open));
      const props = new Map<string, string>();
      for (const p of body.matchAll(
        /^(?![^\S\n]*\n)\s*(?:(?:private|fileprivate|internal|public|open)\s+)?(weak\s+|unowned\s+)?var\s+(\w+)\s*:\s*([A-Z]\w*)[?!]?\s*(?:=\s*nil)?\s*$/gm,
      ))
        if (!p[1]) props.set(p[2]!, p[3]!);
      classes.set(c[1]!, { at: c.index, props });
    }
    for (const [a, ca] of classes)
      for (const [prop, t] of ca.props) {
        const cb = classes.get(t);
        if (!cb) continue;
        const back = [...cb.props].find(([, u]) => u === a);
        if (t !== a && back && a < t)
          out.push(
            src.finding(
              rule,
              ca.at,
              `${a}.${prop} and ${t}.${back[0]} hold each other strongly; make one of them weak`,
            ),
          );
        // `a.next = b ... b.next = a`, or through two strong properties (`a.next = b; b.prev = a`).
        const sameType = [...ca.props].filter(([, u]) => u === a).map(([q]) => q);
        if (
          t === a &&
          new RegExp(
            `(\\w+)\\s*[?!]?\\s*\\.\\s*${prop}\\s*=\\s*(\\w+)[\\s\\S]*\\2\\s*[?!]?\\s*\\.\\s*(?:${namesRe(sameType)})\\s*=\\s*\\1\\b`,
          ).test(m)
        )
          out.push(
            src.finding(
              rule,
              ca.at,
              `two ${a} instances point to each other through the strong '${prop}'; make it weak`,
            ),
          );
      }
    // Delegates and parents held strongly (SwiftLint weak_delegate).
    for (const d of src.matches(
      /^(?![^\S\n]*\n)\s*(?:(?:private|fileprivate|internal|public)\s+)?var\s+(delegate|dataSource|parent|owner)\s*:\s*[\w.]+\??\s*$/gm,
    )) {
      if (/\bstruct\b[^{]*\{[^}]*$/.test(m.slice(0, d.index))) continue;
      out.push(
        src.finding(
          rule,
          d.index + d[0].indexOf("var"),
          `'${d[1]}' is a strong reference; declare it weak to avoid a retain cycle`,
        ),
      );
    }
    return out;
  },
);

/**
 * A repeating Timer is retained by the run loop it is scheduled on until it is invalidated: one never
 * invalidated fires for the life of the process and keeps its closure (and what that captures) or its
 * target alive, even after its owner is gone, whether or not the owner kept a reference to it.
 */
const timerNeverInvalidated = defineRule(
  {
    id: "swift/timer-not-invalidated",
    cwe: "CWE-772",
    language: "swift",
    title: "Repeating Timer scheduled on the run loop and never invalidated",
    severity: "medium",
  },
  (src, rule) => {
    // Any invalidate() in the snippet counts (in deinit, in a stop method, or the timer's own block).
    if (/\.\s*invalidate\s*\(\s*\)/.test(src.masked)) return [];
    const out: Finding[] = [];
    for (const t of src.matches(
      /\bTimer\s*\.\s*scheduledTimer\s*\(|\bTimer\s*\(\s*(?:timeInterval|fire|fireAt)\s*:/g,
    )) {
      const args = src.callArgs(src.masked.indexOf("(", t.index));
      if (!args.some((a) => /^repeats\s*:\s*true$/.test(a.masked.trim()))) continue;
      // A Timer(...) made but not scheduled runs nothing: only one added to a run loop counts.
      if (!/scheduledTimer/.test(t[0]) && !/\bRunLoop\b[^\n]*\.\s*add\s*\(/.test(src.masked)) continue;
      out.push(
        src.finding(
          rule,
          t.index,
          "the repeating timer is retained by the run loop and never invalidated: it fires forever and keeps its closure or target alive; keep it and call invalidate()",
        ),
      );
    }
    return out;
  },
);

/**
 * `s.index(s.startIndex, offsetBy: i)` walks the string from its start (String is not random access), so a
 * loop doing it for every i up to `s.count` takes time quadratic in the string's length: an input of a
 * few megabytes keeps the process busy for hours. Only loops bounded by the string's own length count
 * (a loop bounded by `min(s.count, 1024)` is not driven by the input's size).
 */
const quadraticStringIndex = defineRule(
  {
    id: "swift/quadratic-string-index",
    cwe: "CWE-407",
    language: "swift",
    title: "String indexed by offset from its start inside a loop over its length (quadratic time)",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const flow = flowOf(src);
    const taint = taintOf(src, ENTRY);
    // Input (stdin, arguments, ...) or a String parameter: its length is the caller's, not a constant's.
    const isInputString = (name: string) =>
      taint.of(name) === "text" ||
      flow.functions.some((f) =>
        f.params.some((p) => p.name === name && /^(?:String|Substring)$/.test(p.type.trim())),
      );
    for (const loop of src.matches(/\bfor\s+([A-Za-z_]\w*)\s+in\s+0\s*(?:\.\.<|\.\.\.)\s*([^{\n]+?)\s*\{/g)) {
      const [, i, bound] = loop as unknown as [string, string, string];
      let str = /^([A-Za-z_]\w*)\s*\.\s*count(?:\s*-\s*1)?$/.exec(bound.trim())?.[1];
      const boundVar = /^([A-Za-z_]\w*)(?:\s*-\s*1)?$/.exec(bound.trim())?.[1];
      if (!str && boundVar) {
        const defs = flow.assignmentsTo(boundVar).filter((a) => a.index < loop.index);
        const last = defs[defs.length - 1];
        if (last)
          str = /^([A-Za-z_]\w*)\s*\.\s*count$/.exec(
            src.masked.slice(last.rhsStart, last.rhsEnd).trim(),
          )?.[1];
      }
      if (!str || !isInputString(str)) continue;
      const open = loop.index + loop[0].length - 1;
      const body = src.masked.slice(open, matchBracket(src, open));
      const s = identRe(str).source;
      const walk = new RegExp(
        `(?<![\\w.])${s}\\s*\\.\\s*index\\s*\\(\\s*${s}\\s*\\.\\s*startIndex\\s*,\\s*offsetBy\\s*:\\s*${identRe(i).source}\\s*\\)`,
      ).exec(body);
      if (!walk) continue;
      out.push(
        src.finding(
          rule,
          open + walk.index,
          `'${str}.index(${str}.startIndex, offsetBy: ${i})' walks '${str}' from its start on every iteration of a loop over its length: quadratic time in the input's size; iterate its characters or advance one index`,
        ),
      );
    }
    return out;
  },
);

const raceCondition = defineRule(
  {
    id: "swift/race-condition",
    cwe: "CWE-362",
    language: "swift",
    title: "Shared state written from concurrent queues without synchronisation",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const m = src.masked;
    // Concurrent queues held in a variable: `let q = DispatchQueue.global()`, `DispatchQueue(label:, attributes: .concurrent)`.
    const queues = src
      .matches(
        /\b(?:let|var)\s+([A-Za-z_]\w*)\s*(?::\s*DispatchQueue\s*)?=\s*DispatchQueue\s*(?:\.\s*global\s*\(|\(\s*label\s*:[^)]*\.concurrent)/g,
      )
      .map((q) => q[1]!);
    const viaVariable =
      queues.length > 0
        ? `|(?<![\\w.])(?:${namesRe(queues)})\\s*\\.\\s*async\\s*(?:\\([^)]*\\))?\\s*\\{`
        : "";
    for (const mm of src.matches(
      new RegExp(
        /\bDispatchQueue\s*\.\s*concurrentPerform\s*\([^{]*\{|\bDispatchQueue\s*\.\s*global\s*\([^)]*\)\s*\.\s*async\s*(?:\([^)]*\))?\s*\{|\bDispatchQueue\s*\(\s*label\s*:[^)]*\.concurrent[^)]*\)\s*\.\s*async\s*\{|\bThread\s*\{|\bThread\s*\.\s*detachNewThread\s*\{/
          .source + viaVariable,
        "g",
      ),
    )) {
      const open = mm.index + mm[0].length - 1;
      const body = m.slice(open, matchBracket(src, open));
      if (
        /\.\s*(?:lock|sync|withLock|wait)\s*\(|\bbarrier\b|\bos_unfair_lock|\bOSAtomic|\bactor\b|\bNSLock\b|\.\s*sync\s*\{/.test(
          body,
        )
      )
        continue;
      const w =
        /(?<![\w.])((?:self\s*\.\s*)?[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)\s*(?:\[[^\]\n]*\]\s*)?(?:[+\-*/]?=(?!=)|\.\s*(?:append|removeAll|remove|insert|removeValue|updateValue)\s*\()/.exec(
          body.replace(/\b(?:let|var)\s+\w+\s*=[^\n]*/g, ""),
        );
      if (!w) continue;
      // A method call that mutates (deposit/withdraw) on a shared object is as racy when it has no lock itself.
      out.push(
        src.finding(
          rule,
          mm.index,
          `'${w[1]}' is modified from concurrent work items without a lock or serial queue`,
        ),
      );
    }
    // Methods that read-modify-write a stored property and are called from concurrent code.
    const concurrentCalls = src.matches(
      /\bDispatchQueue\s*\.\s*(?:concurrentPerform|global\s*\([^)]*\)\s*\.\s*async)[^{]*\{([^}]*)\}/g,
    );
    for (const c of concurrentCalls) {
      for (const call of c[1]!.matchAll(/\.\s*(\w+)\s*\(/g)) {
        const f = flowOf(src).functions.find((fn) => fn.name === call[1]);
        if (!f) continue;
        const body = m.slice(f.bodyStart, f.bodyEnd);
        if (/\.\s*(?:lock|sync)\s*\(|\.\s*sync\s*\{|\bbarrier\b/.test(body)) continue;
        // A read-modify-write: `x += n`, `x = x + n`, or `let t = x; ...; x = t + n`.
        const rmw =
          /(?:\bself\s*\.\s*)?\b\w+\s*[+\-]=/.test(body) ||
          [...body.matchAll(/(?<![\w.])(?:self\s*\.\s*)?([A-Za-z_]\w*)\s*=(?!=)([^\n]*)/g)].some((a) => {
            const name = a[1]!;
            if (/^\s*(?:let|var)\s*$/.test(body.slice(Math.max(0, a.index! - 5), a.index!))) return false;
            const id = identRe(name).source;
            if (new RegExp(`(?:^|[^\\w.])${id}\\b`).test(a[2]!)) return true;
            const copy = new RegExp(`\\blet\\s+(\\w+)\\s*=\\s*(?:self\\s*\\.\\s*)?${id}\\s*$`, "m").exec(
              body,
            );
            return !!copy && new RegExp(`\\b${copy[1]}\\b`).test(a[2]!);
          });
        if (rmw && !out.some((o) => o.line === src.lineOf(c.index)))
          out.push(
            src.finding(
              rule,
              c.index,
              `${call[1]}() updates shared state without a lock and is called concurrently`,
            ),
          );
      }
    }
    return out;
  },
);

const insecureTransport = defineRule(
  {
    id: "swift/cleartext-transmission",
    cwe: "CWE-319",
    language: "swift",
    title: "Credentials or personal data sent over plain http://",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const lit of src.strings) {
      if (!/^http:\/\/(?!localhost|127\.0\.0\.1|\[::1\])/.test(lit.value)) continue;
      // Only when the request carries something sensitive (a body or a sensitive name in the function).
      const fn = flowOf(src).functionAt(lit.start);
      const scope = src.masked.slice(fn ? fn.bodyStart : 0, fn ? fn.bodyEnd : undefined);
      const params = fn?.params.map((p) => p.name) ?? [];
      if (
        !/httpBody|httpMethod\s*=\s*"POST"|setValue\s*\(/.test(
          src.text.slice(fn ? fn.bodyStart : 0, fn ? fn.bodyEnd : undefined),
        ) &&
        !params.some(isSensitiveName)
      )
        continue;
      if (!/URLSession|URLRequest|dataTask|uploadTask/.test(scope)) continue;
      out.push(src.finding(rule, lit.start, "data is sent over unencrypted http://; use https://"));
    }
    return out;
  },
);

const trustAny = defineRule(
  {
    id: "swift/trust-any-certificate",
    cwe: "CWE-295",
    language: "swift",
    title: "Authentication challenge answered with the server's own trust, unevaluated",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const f of flowOf(src).functions) {
      const body = src.masked.slice(f.bodyStart, f.bodyEnd);
      if (!/didReceive\s+challenge|URLAuthenticationChallenge/.test(src.masked.slice(f.start, f.bodyStart)))
        continue;
      if (!/URLCredential\s*\(\s*trust\s*:/.test(body)) continue;
      if (/SecTrustEvaluate\w*\s*\(|SecTrustCopyPublicKey|pinned|\.\s*evaluate\s*\(/.test(body)) continue;
      out.push(
        src.finding(
          rule,
          f.start,
          "the server's certificate is accepted without evaluation (SecTrustEvaluateWithError)",
        ),
      );
    }
    return out;
  },
);

const pathTraversal = defineRule(
  {
    id: "swift/path-traversal",
    cwe: "CWE-22",
    language: "swift",
    title: "File path from input without standardisation and a base-folder check",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    for (const m of src.matches(
      /\.\s*(?:contents|createFile|removeItem|fileExists)\s*\(\s*atPath\s*:|\bString\s*\(\s*contentsOfFile\s*:|\bURL\s*\(\s*fileURLWithPath\s*:|\.\s*appendingPathComponent\s*\(|\bFileHandle\s*\(\s*for\w+AtPath\s*:/g,
    )) {
      const arg = src.callArgs(src.masked.indexOf("(", m.index + 1))[0];
      if (!arg) continue;
      const value = {
        start: arg.start + (/^\w+\s*:/.test(arg.masked) ? arg.masked.indexOf(":") + 1 : 0),
        end: arg.end,
      };
      if (src.isLiteral(value) || !taint.range(value.start, value.end)) continue;
      const fn = flowOf(src).functionAt(m.index);
      const scope = src.masked.slice(fn ? fn.bodyStart : 0, fn ? fn.bodyEnd : undefined);
      if (/standardized|resolvingSymlinksInPath|hasPrefix|lastPathComponent|\.\./.test(scope)) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "file path built from input; standardise it and check it stays under the base folder",
        ),
      );
    }
    return out;
  },
);

const integerOverflow = defineRule(
  {
    id: "swift/integer-overflow",
    cwe: "CWE-190",
    language: "swift",
    title: "Arithmetic on a type's maximum, or narrowing conversion that traps",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    for (const m of src.matches(/\b(?:U?Int\d*)\s*\.\s*max\s*[+*]|\+\s*(?:U?Int\d*)\s*\.\s*max\b/g))
      out.push(src.finding(rule, m.index, "arithmetic on the type's maximum overflows and traps"));
    // Values initialised at the maximum and then incremented.
    for (const a of flowOf(src).assignments) {
      if (!/^\s*(?:U?Int\d*)\s*\.\s*max\s*$/.test(src.masked.slice(a.rhsStart, a.rhsEnd))) continue;
      const after = src.masked.slice(a.rhsEnd);
      const inc = new RegExp(`${identRe(a.name).source}\\s*(?:\\+=|\\*=|\\+\\s*\\d|\\*\\s*\\d)`).exec(after);
      if (inc && !/&\+|addingReportingOverflow/.test(after.slice(0, inc.index + 20)))
        out.push(
          src.finding(
            rule,
            a.rhsEnd + inc.index,
            `'${a.name}' holds the maximum value and overflows when increased`,
          ),
        );
    }
    // A narrowing conversion of an input number (`UInt8(n)`) traps when the value does not fit; use
    // `UInt8(exactly:)`, `clamping:` or check the range first.
    const taint = taintOf(src, ENTRY);
    for (const c of src.matches(/(?<![\w.])(U?Int(?:8|16|32))\s*\(\s*([A-Za-z_]\w*)\s*\)/g)) {
      const [, type, value] = c as unknown as [string, string, string];
      if (taint.of(value, c.index) !== "number") continue;
      // A loop variable over a range is bounded by the range (checked by the index rules, not here).
      if (
        flowOf(src)
          .assignmentsTo(value)
          .some((a) => a.op === "in")
      )
        continue;
      const fn = flowOf(src).functionAt(c.index);
      const before = src.masked.slice(fn ? fn.bodyStart : 0, c.index);
      const id = identRe(value).source;
      if (
        new RegExp(
          `${id}\\s*[<>]=?|[<>]=?\\s*${id}\\b|\\b(?:min|max)\\s*\\([^)]*${id}|\\.\\s*contains\\s*\\(\\s*${id}\\s*\\)`,
        ).test(before)
      )
        continue;
      out.push(
        src.finding(
          rule,
          c.index,
          `${type}(${value}) traps when '${value}' is outside ${type}'s range; use ${type}(exactly:) or clamping:`,
        ),
      );
    }
    return out;
  },
);

const sensitiveStorage = defineRule(
  {
    id: "swift/cleartext-storage",
    cwe: "CWE-312",
    language: "swift",
    title: "Password or secret stored in UserDefaults or printed",
    severity: "medium",
  },
  (src, rule) => {
    const out: Finding[] = [];
    // UserDefaults itself, or a variable holding it (`let defaults = UserDefaults.standard`).
    const stores = src
      .matches(/\b(?:let|var)\s+([A-Za-z_]\w*)\s*(?::\s*UserDefaults\s*)?=\s*UserDefaults\b/g)
      .map((d) => d[1]!);
    const store =
      stores.length > 0
        ? `(?:UserDefaults\\b[^\\n]*|\\b(?:${namesRe(stores)})\\s*)`
        : "\\bUserDefaults\\b[^\\n]*";
    for (const m of src.matches(
      new RegExp(`${store}\\.\\s*set\\s*\\(|(?<![\\w.])(?:print|NSLog|debugPrint|os_log)\\s*\\(`, "g"),
    )) {
      const isStore = !/^(?:print|NSLog|debugPrint|os_log)/.test(m[0]);
      const args = src.callArgs(src.masked.indexOf("(", m.index + m[0].length - 2));
      const text = args.map((a) => src.text.slice(a.start, a.end)).join(",");
      const names = [
        ...text.matchAll(
          /\\\(\s*([\w.]+)\s*\)|(?<![\w."])((?:self\s*\.\s*)?[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)(?!\s*\()/g,
        ),
      ].map((v) => (v[1] ?? v[2])!.split(".").pop()!.trim());
      const literalKey = /forKey\s*:\s*"([^"]+)"/.exec(text);
      const hit =
        names.find((n) => isSensitiveName(n)) ??
        (literalKey && isStore && isSensitiveName(literalKey[1]!) ? literalKey[1] : undefined);
      if (hit)
        out.push(
          src.finding(
            rule,
            m.index,
            `'${hit}' is sensitive and is ${isStore ? "stored unencrypted in UserDefaults; use the Keychain" : "printed in clear"}`,
          ),
        );
    }
    return out;
  },
);

const unboundedGrowth = defineRule(
  {
    id: "swift/unbounded-growth",
    cwe: "CWE-770",
    language: "swift",
    title: "Stored collection grows by caller data with no size limit",
    severity: "low",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const flow = flowOf(src);
    for (const f of flow.functions) {
      if (f.params.length === 0) continue;
      const body = src.masked.slice(f.bodyStart, f.bodyEnd);
      for (const p of f.params) {
        const id = identRe(p.name).source;
        const g = new RegExp(
          `(?:self\\s*\\.\\s*)?(\\w+)\\s*(?:\\.\\s*append\\s*\\(\\s*(?:contentsOf\\s*:\\s*)?${id}|\\+=\\s*${id})`,
        ).exec(body);
        if (!g) continue;
        // A property (declared outside this function), with no limit checked here.
        if (flow.assignmentsTo(g[1]!).some((a) => a.index > f.bodyStart && a.index < f.bodyEnd)) continue;
        if (
          new RegExp(
            `${identRe(g[1]!).source}\\s*\\.\\s*count\\s*[<>]|[<>]=?\\s*(?:self\\s*\\.\\s*)?\\w*(?:max|limit|capacity|size)`,
            "i",
          ).test(body)
        )
          continue;
        out.push(
          src.finding(rule, f.bodyStart + g.index, `'${g[1]}' grows with every call and has no size limit`),
        );
      }
    }
    return out;
  },
);

const divideByZero = divideByZeroRule("swift", ENTRY);

const unboundedAllocation = unboundedAllocationRule("swift", EXTERNAL);

const webInjection = defineRule(
  {
    id: "swift/webview-injection",
    cwe: "CWE-79",
    language: "swift",
    title: "Input built into HTML loaded in a web view, or into JavaScript it evaluates",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    for (const m of src.matches(
      /\.\s*(loadHTMLString|evaluateJavaScript|stringByEvaluatingJavaScript)\s*\(/g,
    )) {
      const arg = src.callArgs(src.masked.indexOf("(", m.index))[0];
      if (!arg) continue;
      const value = {
        start: arg.start + (/^from\s*:/.test(arg.masked) ? arg.masked.indexOf(":") + 1 : 0),
        end: arg.end,
      };
      if (src.isLiteral(value) || !taint.range(value.start, value.end)) continue;
      if (
        /\b(?:escap\w*|sanitiz\w*|encodeHTML\w*|addingPercentEncoding)\s*\(/i.test(
          src.text.slice(value.start, value.end),
        )
      )
        continue;
      out.push(
        src.finding(
          rule,
          m.index,
          m[1] === "loadHTMLString"
            ? "input is built into HTML the web view renders (script injection); escape it or pass it as data"
            : "input is built into JavaScript the web view runs; pass it as a JSON-encoded argument instead",
        ),
      );
    }
    return out;
  },
);

const predicateInjection = defineRule(
  {
    id: "swift/predicate-injection",
    cwe: "CWE-943",
    language: "swift",
    title: "NSPredicate format built from input (query injection)",
    severity: "high",
  },
  (src, rule) => {
    const out: Finding[] = [];
    const taint = taintOf(src, ENTRY);
    for (const m of src.matches(/\bNSPredicate\s*\(\s*format\s*:/g)) {
      const arg = src.callArgs(src.masked.indexOf("(", m.index))[0];
      if (!arg) continue;
      const fmt = { start: arg.start + arg.masked.indexOf(":") + 1, end: arg.end };
      if (src.isLiteral(fmt) || !taint.range(fmt.start, fmt.end)) continue;
      out.push(
        src.finding(
          rule,
          m.index,
          "input is part of the predicate's format; use a literal format with %@ arguments",
        ),
      );
    }
    return out;
  },
);

export const swiftRules: Rule[] = [
  forceUnwrap,
  optionalDereference,
  tryForce,
  unsafeCopy,
  overRead,
  useAfterFree,
  typeConfusion,
  formatString,
  deserialization,
  weakCrypto,
  weakRandom,
  hardcodedCredential,
  hardcodedKey,
  staticIv,
  commandInjection,
  sqlInjection,
  indexOutOfRange,
  retainCycle,
  timerNeverInvalidated,
  quadraticStringIndex,
  raceCondition,
  insecureTransport,
  trustAny,
  pathTraversal,
  integerOverflow,
  sensitiveStorage,
  divideByZero,
  unboundedAllocation,
  unboundedGrowth,
  webInjection,
  predicateInjection,
];
