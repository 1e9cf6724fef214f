/**
 * Out-of-bounds indexing shared by all four languages (CWE-129 / CWE-787 / CWE-125): arrays whose
 * length the snippet fixes (a literal size, a constant, an initialiser list), loops whose bound runs
 * past that length (`i <= n`, `i < n + k`, `0...n`), constant indexes past the end, and indexes that
 * come from input or a caller without a bounds check.
 */
import type { SafetyLanguage } from "../../../data/languages.js";
import {
  expressionEnd,
  flowOf,
  guardedBy,
  identRe,
  matchBracket,
  taintOf,
  type Taint,
  type TaintConfig,
} from "./flow.js";
import { defineRule, type Source } from "./source.js";
import type { Rule } from "./types.js";

/** Integer value of a constant expression: literals, named constants, sums/products of them. */
export function constValue(src: Source, expr: string, depth = 0): number | null {
  const e = expr
    .trim()
    .replace(/^\((.*)\)$/s, "$1")
    .trim();
  if (/^\d+[uUlL]*$/.test(e)) return parseInt(e, 10);
  if (/^0x[0-9a-f]+$/i.test(e)) return parseInt(e, 16);
  if (depth > 4) return null;
  const bin = /^(.+?)\s*([+\-*])\s*(\d+)$/.exec(e) ?? /^(\d+)\s*([+\-*])\s*(.+)$/.exec(e);
  if (bin) {
    const a = constValue(src, bin[1]!, depth + 1);
    const b = constValue(src, bin[3]!, depth + 1);
    if (a === null || b === null) return null;
    return bin[2] === "+" ? a + b : bin[2] === "-" ? a - b : a * b;
  }
  if (/^[A-Za-z_]\w*$/.test(e)) {
    const define = new RegExp(`#\\s*define\\s+${e}\\s+\\(?\\s*(\\d+)\\s*\\)?\\s*$`, "m").exec(src.masked);
    if (define) return parseInt(define[1]!, 10);
    const goConst = new RegExp(`\\bconst\\s+${e}\\s*(?:\\w+\\s*)?=\\s*(\\d+)\\b`).exec(src.masked);
    if (goConst) return parseInt(goConst[1]!, 10);
    const defs = flowOf(src)
      .assignmentsTo(e)
      .filter((a) => a.rhsEnd > a.rhsStart);
    if (defs.length === 1 && defs[0]!.decl) {
      const rhs = src.masked.slice(defs[0]!.rhsStart, defs[0]!.rhsEnd);
      if (/^\s*\d+[uUlL]*\s*$/.test(rhs)) return parseInt(rhs.trim(), 10);
    }
  }
  return null;
}

export interface SizedArray {
  name: string;
  size: number;
  /** Where it is declared. */
  at: number;
}

/** Count the top-level elements of an initialiser list whose "{" or "[" is at `open`. */
function countElements(src: Source, open: number): number {
  const close = matchBracket(src, open);
  const inner = src.masked.slice(open + 1, close).trim();
  if (!inner) return 0;
  let depth = 0;
  let n = 1;
  for (const ch of inner) {
    if ("([{".includes(ch)) depth++;
    else if (")]}".includes(ch)) depth--;
    else if (ch === "," && depth === 0) n++;
  }
  if (/,\s*$/.test(inner)) n--;
  return n;
}

/** One declaration of an array: its size when the snippet fixes it, where it starts and where its name is. */
interface ArrayDecl {
  name: string;
  size: number | null;
  at: number;
  nameAt: number;
}

const declCache = new WeakMap<Source, { decls: ArrayDecl[]; sized: Map<string, SizedArray> }>();

/** Where `name` stands inside a match (the declared name, not a type that contains it). */
function nameIn(mm: RegExpMatchArray, name: string): number {
  const k = new RegExp(`(?<![\\w$])${name.replace(/\$/g, "\\$")}(?![\\w$])`).exec(mm[0]);
  return mm.index! + (k ? k.index : 0);
}

/** Arrays (and fixed-length slices/vectors) whose length the snippet states, by name. */
export function sizedArrays(src: Source): Map<string, SizedArray> {
  return arrayDeclarations(src).sized;
}

/**
 * The array an index at `at` refers to: the last declaration of `name` before it in a function that
 * encloses it (a local or a parameter), else one declared outside every function (a global, a member, a
 * field) when those agree on the size. A name declared only in other functions is another variable.
 */
export function arrayAt(src: Source, name: string, at: number): SizedArray | undefined {
  const decls = arrayDeclarations(src).decls.filter((d) => d.name === name);
  if (!decls.length) return undefined;
  const fns = flowOf(src).functions;
  const owner = (i: number) =>
    fns.filter((f) => f.start <= i && i < f.bodyEnd).sort((a, b) => b.start - a.start)[0];
  const local = decls.filter((d) => {
    const f = owner(d.at);
    return f !== undefined && d.at < at && f.start <= at && at < f.bodyEnd;
  });
  const pick = local.length ? [local[local.length - 1]!] : decls.filter((d) => owner(d.at) === undefined);
  if (!pick.length || new Set(pick.map((d) => d.size)).size !== 1) return undefined;
  const size = pick[0]!.size;
  return size !== null && size > 0 ? { name, size, at: pick[0]!.at } : undefined;
}

/** Every array declaration the snippet states (sized or not), in source order, and the sized ones by name. */
export function arrayDeclarations(src: Source): { decls: ArrayDecl[]; sized: Map<string, SizedArray> } {
  const cached = declCache.get(src);
  if (cached) return cached;
  const decls: ArrayDecl[] = [];
  const out = new Map<string, SizedArray>();
  const m = src.masked;
  const add = (name: string, size: number | null, at: number, nameAt = at) => {
    decls.push({ name, size, at, nameAt });
    // A name declared twice with different sizes (two functions) is ambiguous: drop it.
    if (size === null || size <= 0) return;
    const prev = out.get(name);
    if (prev && prev.size !== size) {
      out.set(name, { name, size: -1, at });
      return;
    }
    out.set(name, { name, size, at });
  };
  const v = (e: string) => constValue(src, e);
  // `array.count` / `len(a)` of an array literal declared earlier.
  const countOf = (e: string): number | null => {
    const c = /^\s*([A-Za-z_]\w*)\s*\.\s*(?:count|length|size\s*\(\s*\))\s*$/.exec(e);
    return c ? (out.get(c[1]!)?.size ?? null) : null;
  };
  switch (src.lang) {
    case "cpp":
      // `T name[N]` (not `new T[n]`, `return a[5]`, `delete p[i]`: a keyword is no type).
      for (const mm of m.matchAll(
        /\b(?!(?:new|return|delete|throw|case|else|goto|sizeof|typedef|co_return|co_yield)\b)[A-Za-z_][\w:]*\s*\*?\s+([A-Za-z_]\w*)\s*\[\s*([^\]]+?)\s*\]\s*(?=[;=,)])/dg,
      ))
        add(mm[1]!, v(mm[2]!), mm.index, mm.indices![1]![0]);
      // A static member defined out of its class: `const T* Cache<char>::names[14];`. Only the last boundary
      // before it is tried (as in flow.ts FUNCTION_RE: time quadratic in a run of blank lines otherwise).
      for (const mm of m.matchAll(
        /(?:^|[;{}\n])(?![^\S\n]*\n)\s*(?:template\s*<[^;{}]*?>\s*)?(?:(?:const|static|constexpr|inline)\s+)*(?!(?:new|return|delete|throw|case|else|goto|sizeof|co_return|co_yield)\b)[A-Za-z_][\w:]*(?:\s*<[^;{}()]*?>)?(?:\s+const)?[\s*&]+(?:[A-Za-z_]\w*(?:\s*<[^;{}()]*?>)?\s*::\s*)+([A-Za-z_]\w*)\s*\[\s*([^\]]+?)\s*\]\s*(?=;|=\s*\{)/dg,
      ))
        add(mm[1]!, v(mm[2]!), mm.indices![1]![0], mm.indices![1]![0]);
      for (const mm of m.matchAll(/\b[A-Za-z_][\w:]*\s+([A-Za-z_]\w*)\s*\[\s*\]\s*=\s*\{/g))
        add(mm[1]!, countElements(src, mm.index + mm[0].length - 1), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(/\bstd::array\s*<[^,>]+,\s*([^>]+)>\s*([A-Za-z_]\w*)/g))
        add(mm[2]!, v(mm[1]!), mm.index, nameIn(mm, mm[2]!));
      for (const mm of m.matchAll(/\b(?:std::)?vector\s*<[^>]+>\s*([A-Za-z_]\w*)\s*\(\s*([^,)]+)\s*[,)]/g))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(/\b([A-Za-z_]\w*)\s*=\s*new\s+[\w:]+\s*\[\s*([^\]]+)\]/g))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(
        /\bchar\s*\*\s*([A-Za-z_]\w*)\s*=\s*(?:\(\s*char\s*\*\s*\)\s*)?(?:std::)?malloc\s*\(\s*([^)]+)\)/g,
      ))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      break;
    case "java":
      for (const mm of m.matchAll(/\b([A-Za-z_]\w*)\s*(?:\[\s*\])?\s*=\s*new\s+[\w.]+\s*\[\s*([^\]]+)\]/g))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(/\b([A-Za-z_]\w*)\s*(?:\[\s*\])?\s*=\s*(?:new\s+[\w.]+\s*\[\s*\]\s*)?\{/g))
        add(mm[1]!, countElements(src, mm.index + mm[0].length - 1), mm.index, nameIn(mm, mm[1]!));
      break;
    case "go":
      for (const mm of m.matchAll(/\bvar\s+([A-Za-z_]\w*)\s+\[\s*([^\]]+)\]/g))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      // Struct fields of array type (`data [1024]byte`), indexed as `x.data[i]`.
      for (const st of m.matchAll(/\bstruct\s*\{/g)) {
        const open = st.index + st[0].length - 1;
        const body = m.slice(open, matchBracket(src, open));
        for (const f of body.matchAll(
          /^(?![^\S\n]*\n)\s*([A-Za-z_]\w*)\s+\[\s*([^\]\s][^\]]*)\]\s*[\w.*]+\s*$/gm,
        ))
          add(f[1]!, v(f[2]!), open + f.index! + f[0].search(/\S/)); // the field, not the blank lines before it
      }
      for (const mm of m.matchAll(/\b([A-Za-z_]\w*)\s*:?=\s*\[\s*([^\]\s.][^\]]*)\]\s*\w+\s*\{/g))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(/\b([A-Za-z_]\w*)\s*:?=\s*\[\s*(?:\.\.\.)?\s*\]\s*[\w.*]+\s*\{/g))
        add(mm[1]!, countElements(src, mm.index + mm[0].length - 1), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(/\b([A-Za-z_]\w*)\s*:?=\s*make\s*\(\s*\[\]\s*[\w.*]+\s*,\s*([^,)]+)/g))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      // A nil slice (`var s []int`) filled by one append of listed values, outside any loop: that many.
      for (const mm of m.matchAll(/\bvar\s+([A-Za-z_]\w*)\s+\[\]\s*[\w.*]+\s*$/gm)) {
        const id = mm[1]!.replace(/\$/g, "\\$");
        const appends = [...m.matchAll(new RegExp(`\\b${id}\\s*=\\s*append\\s*\\(\\s*${id}\\s*,`, "g"))];
        const writes = [...m.matchAll(new RegExp(`(?<![\\w.])${id}\\s*(?::=|=(?!=))`, "g"))];
        if (appends.length !== 1 || writes.length !== 1) continue;
        const at = appends[0]!.index!;
        if (flowOf(src).conditions.some((c) => c.kind === "for" && c.bodyStart < at && at < c.bodyEnd))
          continue;
        const args = src.callArgs(m.indexOf("(", at));
        if (args.some((a) => /\.\.\.\s*$/.test(a.masked))) continue;
        add(mm[1]!, args.length - 1, mm.index, nameIn(mm, mm[1]!));
      }
      break;
    case "swift":
      // Literal arrays first: `allocate(capacity: values.count)` below reads their length.
      for (const mm of m.matchAll(
        /\b(?:let|var)\s+([A-Za-z_]\w*)\s*(?::\s*\[[\w.]+\]\s*)?=\s*\[(?!\s*\])/g,
      )) {
        const open = mm.index + mm[0].length - 1;
        // `[Int](...)` is a type, handled below; a literal is `[a, b, c]` followed by a line end.
        const close = matchBracket(src, open);
        if (!/^\s*(?:\n|$|;|\/\/)/.test(m.slice(close + 1, close + 5))) continue;
        add(mm[1]!, countElements(src, open), mm.index, nameIn(mm, mm[1]!));
      }
      for (const mm of m.matchAll(
        /\b(?:let|var)?\s*([A-Za-z_]\w*)\s*(?::[^=\n]+)?=\s*Unsafe(?:Mutable)?(?:Buffer)?Pointer\s*<[^>]+>\s*\.\s*allocate\s*\(\s*capacity\s*:\s*([^)]+)\)/g,
      ))
        add(mm[1]!, v(mm[2]!) ?? countOf(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      for (const mm of m.matchAll(
        /\b(?:let|var)\s+([A-Za-z_]\w*)\s*(?::[^=]+)?=\s*(?:\[[\w.]+\]|Array(?:<[\w.]+>)?)\s*\(\s*repeating\s*:[^,]+,\s*count\s*:\s*([^)]+)\)/g,
      ))
        add(mm[1]!, v(mm[2]!), mm.index, nameIn(mm, mm[1]!));
      break;
  }
  for (const [k, a] of out) if (a.size < 0) out.delete(k);
  decls.sort((a, b) => a.at - b.at);
  const result = { decls, sized: out };
  declCache.set(src, result);
  return result;
}

/** Length expressions of an array in each language: `a.length`, `len(a)`, `sizeof(a)`, `a.count`, `a.size()`. */
function lengthOf(src: Source, expr: string, arrays: Map<string, SizedArray>): number | null {
  const e = expr.trim();
  const mm =
    /^([A-Za-z_]\w*)\s*\.\s*(?:length|count|size\s*\(\s*\))$/.exec(e) ??
    /^len\s*\(\s*([A-Za-z_]\w*)\s*\)$/.exec(e) ??
    /^sizeof\s*\(?\s*([A-Za-z_]\w*)\s*\)?(?:\s*\/\s*sizeof\s*\(?\s*\*?\s*\1\s*(?:\[\s*0\s*\])?\s*\)?)?$/.exec(
      e,
    );
  if (mm) return arrays.get(mm[1]!)?.size ?? null;
  return constValue(src, e);
}

/**
 * Go: `name` holds the byte count of one read into a buffer the snippet sizes (`n, err := r.Read(buf)`,
 * `io.ReadFull(r, buf)`, `io.ReadAtLeast(r, buf, k)`), its only assignment in the function around `at`: the
 * count can be anything up to len(buf), as the input decides (io.Reader: 0 <= n <= len(p)).
 */
function readCount(src: Source, expr: string, at: number): { size: number; buffer: string } | null {
  const name = expr.trim();
  if (!/^[A-Za-z_]\w*$/.test(name)) return null;
  const flow = flowOf(src);
  const fn = flow.functionAt(at);
  const defs = flow.assignmentsTo(name).filter((a) => flow.functionAt(a.index) === fn);
  if (defs.length !== 1 || defs[0]!.index > at) return null;
  const rhs = src.masked.slice(defs[0]!.rhsStart, defs[0]!.rhsEnd);
  const r =
    /^\s*[A-Za-z_][\w.]*\s*\.\s*Read\s*\(\s*([A-Za-z_]\w*)\s*\)\s*$/.exec(rhs) ??
    /^\s*io\s*\.\s*(?:ReadFull|ReadAtLeast)\s*\(\s*[^,()]+,\s*([A-Za-z_]\w*)\s*[,)]/.exec(rhs);
  // The count must be the first target (`n, err := ...`): `err, n` does not occur, but `_, n` would be wrong.
  const targets = src.masked.slice(Math.max(0, defs[0]!.index - 1), defs[0]!.rhsStart);
  if (!r || !new RegExp(`^\\W?${identRe(name).source}\\s*,`).test(targets)) return null;
  const size = arrayAt(src, r[1]!, defs[0]!.index)?.size;
  return size === undefined ? null : { size, buffer: r[1]! };
}

export interface BoundsFinding {
  at: number;
  message: string;
}

/**
 * Loops over an index whose last value is past the end of a sized array indexed with it, and
 * constant indexes past the end.
 */
export function outOfBounds(src: Source): BoundsFinding[] {
  const m = src.masked;
  const arrays = sizedArrays(src);
  const out: BoundsFinding[] = [];

  const loops: {
    index: string;
    last: number | "len";
    lastOf?: string;
    body: [number, number];
    at: number;
    /** The bound is not fixed but can reach `last` (a byte count read into a buffer of that size). */
    upTo?: string;
  }[] = [];
  if (src.lang === "swift") {
    for (const mm of m.matchAll(
      /\bfor\s+([A-Za-z_]\w*)\s+in\s+\(?\s*[\w.]+\s*(\.\.\.|\.\.<)\s*([^{]+?)\)?\s*\{/g,
    )) {
      const hiExpr = mm[3]!.trim();
      const open = mm.index + mm[0].length - 1;
      const body: [number, number] = [open, matchBracket(src, open)];
      const countOf = /^([A-Za-z_]\w*)\s*\.\s*count$/.exec(hiExpr);
      const hi = lengthOf(src, hiExpr, arrays);
      if (mm[2] === "..." && countOf)
        loops.push({ index: mm[1]!, last: "len", lastOf: countOf[1], body, at: mm.index });
      else if (hi !== null)
        loops.push({ index: mm[1]!, last: mm[2] === "..." ? hi : hi - 1, body, at: mm.index });
    }
  } else {
    const re =
      src.lang === "go"
        ? /\bfor\s+([A-Za-z_]\w*)\s*:?=\s*([^;{]+);\s*\1\s*(<=?)\s*([^;{]+?)\s*;([^{]*)\{/g
        : /\bfor\s*\(\s*(?:[\w:]+\s+)?([A-Za-z_]\w*)\s*=\s*([^;]+);\s*\1\s*(<=?)\s*([^;]+?)\s*;([^)]*)\)/g;
    for (const match of m.matchAll(re)) {
      // [whole, index, op, bound] as before; the start and the step decide the last value reached.
      const mm = [match[0], match[1], match[3], match[4]] as const;
      const start = constValue(src, match[2]!);
      const step = new RegExp(
        `^\\s*${match[1]}\\s*(?:\\+=\\s*(\\d+)|=\\s*${match[1]}\\s*\\+\\s*(\\d+))\\s*$`,
      ).exec(match[5]!);
      const k = step ? parseInt((step[1] ?? step[2])!, 10) : 1;
      const lastOf = (limit: number) =>
        k > 1 && start !== null && limit >= start ? start + Math.floor((limit - start) / k) * k : limit;
      const hiExpr = mm[3]!.trim();
      let bodyStart = match.index + mm[0].length;
      if (src.lang === "go") bodyStart--;
      else while (/\s/.test(m[bodyStart] ?? "")) bodyStart++;
      const bodyEnd = m[bodyStart] === "{" ? matchBracket(src, bodyStart) : expressionEnd(src, bodyStart);
      const lenOf =
        /^([A-Za-z_]\w*)\s*\.\s*(?:length|size\s*\(\s*\)|count)$/.exec(hiExpr) ??
        /^len\s*\(\s*([A-Za-z_]\w*)\s*\)$/.exec(hiExpr) ??
        /^sizeof\s*\(?\s*([A-Za-z_]\w*)\s*\)?$/.exec(hiExpr);
      if (mm[2] === "<=" && lenOf && !/sizeof/.test(hiExpr)) {
        loops.push({
          index: mm[1]!,
          last: "len",
          lastOf: lenOf[1],
          body: [bodyStart, bodyEnd],
          at: match.index,
        });
        continue;
      }
      const read = src.lang === "go" ? readCount(src, hiExpr, match.index) : null;
      const hi = lengthOf(src, hiExpr, arrays) ?? read?.size ?? null;
      if (hi !== null)
        loops.push({
          index: mm[1]!,
          last: lastOf(mm[2] === "<=" ? hi : hi - 1),
          body: [bodyStart, bodyEnd],
          at: match.index,
          ...(read && { upTo: `${hiExpr.trim()}, the bytes read into ${read.buffer}` }),
        });
    }
  }
  // Loops one past a size the snippet allocates with (`capacity: n`, `count: n`, `new T[n]`, `make([]T, n)`,
  // `malloc(n)`): `0...n`, `0..<n + 1`, `i <= n` index one element too far.
  const allocSizes = new Set(
    [
      ...m.matchAll(
        /\b(?:capacity|count)\s*:\s*([A-Za-z_]\w*)\s*\)|\bnew\s+[\w:]+\s*\[\s*([A-Za-z_]\w*)\s*\]|\bmake\s*\(\s*\[\][\w.*]+\s*,\s*([A-Za-z_]\w*)\s*[,)]|\b(?:malloc|calloc)\s*\(\s*([A-Za-z_]\w*)\b/g,
      ),
    ].map((x) => (x[1] ?? x[2] ?? x[3] ?? x[4])!),
  );
  const pastAlloc =
    src.lang === "swift"
      ? /\bfor\s+([A-Za-z_]\w*)\s+in\s+0\s*(?:\.\.\.\s*([A-Za-z_]\w*)|\.\.<\s*([A-Za-z_]\w*)\s*\+\s*[1-9])\s*\{/g
      : src.lang === "go"
        ? /\bfor\s+([A-Za-z_]\w*)\s*:?=\s*0\s*;\s*\1\s*(?:<=\s*([A-Za-z_]\w*)|<\s*([A-Za-z_]\w*)\s*\+\s*[1-9])\s*;[^{]*\{/g
        : /\bfor\s*\(\s*(?:[\w:]+\s+)?([A-Za-z_]\w*)\s*=\s*0\s*;\s*\1\s*(?:<=\s*([A-Za-z_]\w*)|<\s*([A-Za-z_]\w*)\s*\+\s*[1-9])\s*;[^)]*\)\s*\{/g;
  for (const mm of m.matchAll(pastAlloc)) {
    const n = (mm[2] ?? mm[3])!;
    if (!allocSizes.has(n)) continue;
    const open = mm.index + mm[0].length - 1;
    const body = m.slice(open, matchBracket(src, open));
    if (new RegExp(`(?<![\\w.])[A-Za-z_]\\w*\\s*\\[\\s*${mm[1]}\\s*\\]`).test(body))
      out.push({
        at: mm.index,
        message: `loop index ${mm[1]} reaches ${n}, one past the ${n} elements allocated`,
      });
  }
  for (const loop of loops) {
    const body = m.slice(loop.body[0], loop.body[1] + 1);
    // `a[i]`, or a field `x.a[i]` (sized by its struct declaration).
    for (const ix of body.matchAll(
      new RegExp(
        `(?<![\\w.])(?:[A-Za-z_]\\w*\\s*\\.\\s*)?([A-Za-z_]\\w*)\\s*\\[\\s*${loop.index}\\s*(?:([+\\-])\\s*(\\d+)\\s*)?\\]`,
        "g",
      ),
    )) {
      const arr = ix[1]!;
      const offset = ix[2] ? (ix[2] === "+" ? 1 : -1) * parseInt(ix[3]!, 10) : 0;
      if (loop.last === "len") {
        // i <= len(a) indexing a (or an array of the same length) reads one past the end.
        if (offset >= 0 && (arr === loop.lastOf || arrayAt(src, arr, loop.at) !== undefined)) {
          out.push({
            at: loop.at,
            message: `loop runs ${loop.index} up to the length of ${loop.lastOf} inclusive and indexes ${arr}[${loop.index}] one past the end`,
          });
          break;
        }
        continue;
      }
      const size = arrayAt(src, arr, loop.at)?.size;
      if (size === undefined) continue;
      // Checked inside the loop against the array's own length (`if i < len(buf) { buf[i] = ... }`).
      const a = identRe(arr).source;
      const i = identRe(loop.index).source;
      if (
        offset === 0 &&
        guardedBy(
          src,
          loop.body[0] + ix.index!,
          new RegExp(
            `${i}\\s*<\\s*(?:len\\s*\\(\\s*${a}\\s*\\)|${a}\\s*\\.\\s*(?:length|count|size\\s*\\(\\s*\\))(?![\\w(]))|(?:len\\s*\\(\\s*${a}\\s*\\)|${a}\\s*\\.\\s*(?:length|count|size\\s*\\(\\s*\\)))\\s*>\\s*${i}`,
          ),
        )
      )
        continue;
      if (loop.last + offset >= size) {
        out.push({
          at: loop.at,
          message: loop.upTo
            ? `loop index ${loop.index} can reach ${loop.last + offset} (${loop.upTo}) but ${arr} has ${size} elements`
            : `loop index ${loop.index} reaches ${loop.last + offset} but ${arr} has ${size} elements`,
        });
        break;
      }
    }
  }
  // Constant indexes past the end (writes and reads), literal or held in a constant; each index against the
  // declaration in its scope (arrayAt), never a declaration itself (`T name[N];` in a second function).
  const decls = arrayDeclarations(src).decls;
  const declared = new Set(decls.map((d) => d.nameAt));
  // `&a[N]` with N the length: the address one past the end, which C and C++ allow (an end iterator).
  const endAddress = (at: number, k: number, size: number) =>
    k === size && /(?:^|[(,={]|\breturn)\s*&\s*$/.test(m.slice(Math.max(0, at - 40), at));
  for (const name of new Set(decls.map((d) => d.name))) {
    for (const ix of m.matchAll(new RegExp(`(?<![\\w.])${name}\\s*\\[\\s*([A-Za-z_]\\w*)\\s*\\]`, "g"))) {
      if (/^(?:i|j|k)$/.test(ix[1]!)) continue;
      if (declared.has(ix.index)) continue;
      const a = arrayAt(src, name, ix.index);
      if (!a) continue;
      const decl = m.slice(Math.max(0, ix.index - 40), ix.index);
      if (
        /\b(?:new\s+[\w.:]+|[A-Za-z_][\w:]*\s*\*?)\s*$/.test(decl) &&
        /\b(?:char|int|var|byte|long|short|float|double|bool|auto|unsigned|size_t|uint8_t|wchar_t|new\s+[\w.:]+|[A-Z]\w*|std::\w+)\s*\*?\s*$/.test(
          decl,
        )
      )
        continue;
      const k = constValue(src, ix[1]!);
      if (
        k !== null &&
        guardedBy(
          src,
          ix.index,
          new RegExp(`${identRe(ix[1]!).source}\\s*[<>]|[<>]=?\\s*${identRe(ix[1]!).source}`),
        )
      )
        continue;
      if (k !== null && k >= a.size && ix.index > a.at && !endAddress(ix.index, k, a.size))
        out.push({
          at: ix.index,
          message: `index ${ix[1]} (= ${k}) is past the end of ${name} (${a.size} elements)`,
        });
    }
    for (const ix of m.matchAll(new RegExp(`(?<![\\w.])${name}\\s*\\[\\s*(\\d+)\\s*\\]`, "g"))) {
      if (declared.has(ix.index)) continue;
      const a = arrayAt(src, name, ix.index);
      if (!a || ix.index <= a.at + name.length + 2) continue;
      // Not the declaration itself (`char buf[10]`, `new int[10]`).
      const before = m.slice(Math.max(0, ix.index - 30), ix.index);
      if (
        /\b(?:new\s+[\w.]+|char|int|var|byte|long|short|float|double|bool|auto|unsigned|size_t|uint8_t|wchar_t)\s*$/.test(
          before,
        )
      )
        continue;
      // Go declares arrays as `name [N]T` (a struct field, `var name [N]T`, a parameter): a type, not an index.
      if (
        src.lang === "go" &&
        /^(?:\s*\*)*\s*[A-Za-z_]/.test(m.slice(ix.index + ix[0].length, ix.index + ix[0].length + 40)) &&
        /(?:^|\n|\bvar\s+|[(,{;])\s*$/.test(m.slice(Math.max(0, ix.index - 40), ix.index))
      )
        continue;
      // Another declaration of an array of that name (`uint32_t x[4];` in a second function, `mpi::request
      // reqs[2];` in each branch): a type name, not an expression, stands right before it.
      if (
        src.lang === "cpp" &&
        /(?:^|[;{}(,])\s*(?:(?:const|static|volatile|constexpr)\s+)*(?!(?:return|case|delete|throw|else|do|goto)\b)[A-Za-z_][\w:]*(?:<[^<>;]*>)?(?:\s*[*&])*\s+[*&]?\s*$/.test(
          m.slice(Math.max(0, ix.index - 120), ix.index),
        )
      )
        continue;
      const k = parseInt(ix[1]!, 10);
      if (
        guardedBy(
          src,
          ix.index,
          new RegExp(`${name}\\s*\\.\\s*(?:indices|count|size|length)|len\\s*\\(\\s*${name}\\b`),
        )
      )
        continue;
      if (k >= a.size && !endAddress(ix.index, k, a.size))
        out.push({ at: ix.index, message: `index ${k} is past the end of ${name} (${a.size} elements)` });
    }
  }
  return out;
}

/**
 * Indexes that come from input (or a caller) and reach an array access without a bounds check
 * before it. `taint` decides what counts as untrusted; `check` is the language's bounds-test shape.
 */
/**
 * What bounds an index into `array`: its own length in each language (`a.count`, `len(a)`, `a.length`,
 * `a.size()`, `sizeof(a)`), a constant, min/max, or a size, count, capacity or limit variable.
 */
function sizeBound(array: string): RegExp {
  const a = array.replace(/\$/g, "\\$");
  return new RegExp(
    `\\b${a}\\s*[?!]?\\s*\\.\\s*(?:count|indices|endIndex|length|size\\s*\\()|\\b(?:len|cap)\\s*\\(\\s*${a}\\b|\\bsizeof\\b|\\.\\s*(?:count|capacity|length)\\b|[<>]=?\\s*\\d+\\b|\\b\\d+\\s*[<>]|\\b(?:min|max)\\s*\\(|\\w*(?:[Ss]ize|[Cc]ount|[Cc]apacity|[Ll]ength|[Mm]ax|[Ll]imit|LEN|SIZE|MAX)\\w*`,
  );
}

/**
 * Indexes from input or a caller used without a bounds check. A check counts only when it compares the
 * index with something that bounds the indexed array (sizeBound): `while i < end` with `end` another
 * caller value does not bound `a[i]`.
 */
export function uncheckedIndexes(src: Source, taint: Taint): BoundsFinding[] {
  const out: BoundsFinding[] = [];
  const m = src.masked;
  // `a[i]`, `a.field[i]`, and through optional chaining `p?.pointee[i]`.
  for (const mm of m.matchAll(
    /(?<![\w.])([A-Za-z_]\w*)(?:\s*[?!]?\s*\.\s*\w+)?\s*\[\s*([A-Za-z_]\w*)\s*\]/g,
  )) {
    const idx = mm[2]!;
    if (taint.of(idx, mm.index) !== "number") continue;
    // `new int[n]` / `new char[n]` creates an array of n elements (unbounded-allocation's concern), no index.
    if (/\bnew\s+$/.test(m.slice(Math.max(0, mm.index - 20), mm.index))) continue;
    // A map/dictionary lookup by key is not an index.
    const decl = flowOf(src)
      .assignmentsTo(mm[1]!)
      .find((a) => a.decl);
    const declText = decl ? m.slice(decl.index, decl.rhsEnd) + decl.type : "";
    if (/map|Map|dict|Dictionary|\[\s*\w+\s*:\s*\w+\s*\]|unordered_map/.test(declText)) continue;
    const bound = sizeBound(mm[1]!);
    if (taint.guarded([idx], mm.index, bound)) continue;
    // A check anywhere before in the same function (e.g. `if idx >= len(a) { return }` two lines up).
    const fn = flowOf(src).functionAt(mm.index);
    const scope = m.slice(fn ? fn.bodyStart : 0, mm.index);
    const compared = new RegExp(
      `${identRe(idx).source}\\s*(?<![<>])(?:<=?|>=?)(?![<>])|(?<![<>])(?:<=?|>=?)(?![<>])\\s*${identRe(idx).source}`,
    );
    if (scope.split("\n").some((line) => compared.test(line) && bound.test(line))) continue;
    out.push({ at: mm.index, message: `${mm[1]}[${idx}] uses '${idx}' from input without a bounds check` });
  }
  return out;
}

/**
 * Loops that copy another value's elements into a fixed-size array, bounded by the other value's
 * length (`i < input.length()`, `i < len(src)`, `i < strlen(s)`, `0..<input.count`) with no check that
 * it fits: the array overflows when the input is longer.
 */
/**
 * Loops whose bound comes from input or a caller (`for i := 0; i <= n; i++ { buf[i] = ... }`, `0..<n`)
 * and index an array of fixed size with the loop index, with no check of the bound against that size.
 */
export function inputBoundedLoops(src: Source, taint: Taint): BoundsFinding[] {
  const out: BoundsFinding[] = [];
  const m = src.masked;
  const arrays = sizedArrays(src);
  const re =
    src.lang === "swift"
      ? /\bfor\s+([A-Za-z_]\w*)\s+in\s+\(?\s*0\s*(?:\.\.\.|\.\.<)\s*([A-Za-z_]\w*)\s*\)?\s*\{/g
      : src.lang === "go"
        ? /\bfor\s+([A-Za-z_]\w*)\s*:?=\s*0\s*;\s*\1\s*<=?\s*([A-Za-z_]\w*)\s*;[^{]*\{/g
        : /\bfor\s*\(\s*(?:[\w:]+\s+)?([A-Za-z_]\w*)\s*=\s*0\s*;\s*\1\s*<=?\s*([A-Za-z_]\w*)\s*;[^)]*\)\s*\{/g;
  for (const mm of m.matchAll(re)) {
    const [, index, bound] = mm as unknown as [string, string, string];
    if (taint.of(bound, mm.index) !== "number") continue;
    const open = mm.index + mm[0].length - 1;
    const body = m.slice(open, matchBracket(src, open));
    const ix = new RegExp(`(?<![\\w.])([A-Za-z_]\\w*)\\s*\\[\\s*${index}\\s*\\]`).exec(body);
    const size = ix ? arrays.get(ix[1]!)?.size : undefined;
    if (!ix || size === undefined) continue;
    const fn = flowOf(src).functionAt(mm.index);
    const before = m.slice(fn ? fn.bodyStart : 0, mm.index);
    const id = identRe(bound).source;
    if (
      new RegExp(
        `${id}\\s*(?<![<>])(?:>=?|<=?)(?![<>])|(?<![<>])(?:>=?|<=?)(?![<>])\\s*${id}|\\bmin\\s*\\(`,
      ).test(before)
    )
      continue;
    out.push({
      at: mm.index,
      message: `loop bound '${bound}' comes from input and is never checked against the ${size} elements of ${ix[1]}`,
    });
  }
  return out;
}

export function copyPastEnd(src: Source): BoundsFinding[] {
  const m = src.masked;
  const arrays = sizedArrays(src);
  const out: BoundsFinding[] = [];
  if (arrays.size === 0) return out;
  const loops: { index: string; other: string; body: [number, number]; at: number }[] = [];
  const lengthExpr =
    /^(?:([A-Za-z_]\w*)\s*\.\s*(?:length\s*(?:\(\s*\))?|size\s*\(\s*\)|count|utf8\s*\.\s*count)|len\s*\(\s*([A-Za-z_]\w*)\s*\)|(?:std::)?strlen\s*\(\s*([A-Za-z_]\w*)\s*\))$/;
  const pushBraced = (mm: RegExpMatchArray, index: string, other: string) => {
    const open = mm.index! + mm[0].length - 1;
    loops.push({ index, other, body: [open, matchBracket(src, open)], at: mm.index! });
  };
  if (src.lang === "swift") {
    // for i in 0..<n, for i in 0...n - 1, for i in stride(from: 0, to: n, by: 1), while i < n: n a length.
    for (const mm of m.matchAll(
      /\bfor\s+([A-Za-z_]\w*)\s+in\s+(?:0\s*\.\.<\s*([^{]+?)|0\s*\.\.\.\s*\(?\s*([^{]+?)\s*-\s*1\s*\)?|stride\s*\(\s*from\s*:\s*0\s*,\s*to\s*:\s*([^,{]+?)\s*,\s*by\s*:\s*1\s*\))\s*\{|\bwhile\s+([A-Za-z_]\w*)\s*<\s*([^{]+?)\s*\{/g,
    )) {
      const e = lengthExpr.exec((mm[2] ?? mm[3] ?? mm[4] ?? mm[6])!.trim());
      if (e) pushBraced(mm, (mm[1] ?? mm[5])!, (e[1] ?? e[2] ?? e[3])!);
    }
    // for i in other.indices
    for (const mm of m.matchAll(/\bfor\s+([A-Za-z_]\w*)\s+in\s+([A-Za-z_]\w*)\s*\.\s*indices\s*\{/g))
      pushBraced(mm, mm[1]!, mm[2]!);
  } else {
    const re =
      src.lang === "go"
        ? /\bfor\s+([A-Za-z_]\w*)\s*:?=\s*0\s*;\s*\1\s*<=?\s*([^;{]+?)\s*;[^{]*\{/g
        : /\bfor\s*\(\s*(?:[\w:]+\s+)?([A-Za-z_]\w*)\s*=\s*0\s*;\s*\1\s*<=?\s*([^;]+?)\s*;[^)]*\)/g;
    for (const mm of m.matchAll(re)) {
      const e = lengthExpr.exec(mm[2]!.trim());
      if (!e) continue;
      let bodyStart = mm.index + mm[0].length;
      if (src.lang === "go") bodyStart--;
      else while (/\s/.test(m[bodyStart] ?? "")) bodyStart++;
      const bodyEnd = m[bodyStart] === "{" ? matchBracket(src, bodyStart) : expressionEnd(src, bodyStart);
      loops.push({ index: mm[1]!, other: (e[1] ?? e[2] ?? e[3])!, body: [bodyStart, bodyEnd], at: mm.index });
    }
  }
  // Go's while form: `for i < len(other) {`.
  if (src.lang === "go")
    for (const mm of m.matchAll(/\bfor\s+([A-Za-z_]\w*)\s*<\s*([^;{]+?)\s*\{/g)) {
      const e = lengthExpr.exec(mm[2]!.trim());
      if (e) pushBraced(mm, mm[1]!, (e[1] ?? e[2] ?? e[3])!);
    }
  // A counter stepped once per element: `for ch in other { a[pos] = ch; pos += 1 }`, `for _, b := range other
  // { a[n] = b; n++ }`.
  const elementRe =
    src.lang === "swift"
      ? /\bfor\s+[A-Za-z_]\w*\s+in\s+([A-Za-z_]\w*)(?:\s*\.\s*(?:utf8|utf16|unicodeScalars))?\s*\{/g
      : src.lang === "go"
        ? /\bfor\s+_\s*,\s*\w+\s*:=\s*range\s+([A-Za-z_]\w*)\s*\{/g
        : null;
  if (elementRe)
    for (const mm of m.matchAll(elementRe)) {
      const open = mm.index + mm[0].length - 1;
      const body = m.slice(open, matchBracket(src, open));
      const step = /(?<![\w.])([A-Za-z_]\w*)\s*(?:\+=\s*1\b|\+\+)/.exec(body);
      if (step) pushBraced(mm, step[1]!, mm[1]!);
    }
  // for (i, x) in other.enumerated() { a[i] = x }   /   for i, x := range other { a[i] = x }
  const enumRe =
    src.lang === "swift"
      ? /\bfor\s*\(\s*([A-Za-z_]\w*)\s*,\s*\w+\s*\)\s+in\s+([A-Za-z_]\w*)(?:\s*\.\s*\w+)*\s*\.\s*enumerated\s*\(\s*\)\s*\{/g
      : src.lang === "go"
        ? /\bfor\s+([A-Za-z_]\w*)\s*(?:,\s*\w+\s*)?:=\s*range\s+([A-Za-z_]\w*)\s*\{/g
        : null;
  if (enumRe)
    for (const mm of m.matchAll(enumRe)) {
      const open = mm.index + mm[0].length - 1;
      loops.push({ index: mm[1]!, other: mm[2]!, body: [open, matchBracket(src, open)], at: mm.index });
    }
  for (const loop of loops) {
    const body = m.slice(loop.body[0], loop.body[1] + 1);
    // Guarded inside the loop (`if i < len(buf)`, `if index < buffer.count`).
    if (
      new RegExp(
        `\\b${loop.index}\\s*<=?\\s*(?:len\\s*\\(|[\\w.]+\\s*\\.\\s*(?:count|length|size)|\\d)|\\bbreak\\b`,
      ).test(body)
    )
      continue;
    const w = new RegExp(`(?<![\\w.])([A-Za-z_]\\w*)\\s*\\[\\s*${loop.index}\\s*\\]\\s*=(?!=)`).exec(body);
    if (!w || w[1] === loop.other || !arrays.has(w[1]!)) continue;
    const arr = arrays.get(w[1]!)!;
    // A length check on the source before the loop (`if (input.length() > 10) return;`, min(...)).
    const fn = flowOf(src).functionAt(loop.at);
    const before = m.slice(fn ? fn.bodyStart : 0, loop.at);
    // The source or what it was made from (`let chars = Array(input)`: a check on input counts).
    const origins = [loop.other];
    for (const a of flowOf(src).assignmentsTo(loop.other))
      for (const r of m.slice(a.rhsStart, a.rhsEnd).match(/[A-Za-z_]\w*/g) ?? [])
        if (r.length > 1) origins.push(r);
    const id = `(?:${origins.map((o) => identRe(o).source).join("|")})`;
    if (
      new RegExp(
        `(?:${id}\\s*\\.\\s*(?:length|size|count|utf8\\s*\\.\\s*count)|len\\s*\\(\\s*${id}|strlen\\s*\\(\\s*${id})[^;{]*[<>]|[<>][^;{]*(?:${id}\\s*\\.\\s*(?:length|size|count)|len\\s*\\(\\s*${id}|strlen\\s*\\(\\s*${id})|\\bmin\\s*\\(`,
      ).test(before)
    )
      continue;
    out.push({
      at: loop.at,
      message: `copies ${loop.other}'s length into ${arr.name}[${arr.size}] without checking that it fits`,
    });
  }
  return out;
}

/** Integer division or remainder by a variable that may be zero and is not checked first. */
export function divisions(src: Source, taint: Taint): BoundsFinding[] {
  const out: BoundsFinding[] = [];
  const flow = flowOf(src);
  for (const m of src.matches(/[\w)\]]\s*(\/|%)(?![=/*])\s*([A-Za-z_]\w*)\b(?!\s*[.(\[])/g)) {
    const v = m[2]!;
    // C++ and Java divide in floating point when the left operand is a floating literal or a cast to a
    // floating type (`1.0 / n`, `(float)sum / n`, `double(a) / n`): infinity, no trap. And `format("%d") % i`
    // is Boost.Format's operator%, not a remainder. (Go's `1.0 / n` stays an integer division.)
    if (src.lang === "cpp" || src.lang === "java") {
      const left = src.masked.slice(Math.max(0, m.index - 60), m.index + 1);
      if (
        m[1] === "/" &&
        /(?:(?<![\w.])\d+\.\d*(?:[eE][-+]?\d+)?[fFdD]?|\(\s*(?:float|double)\s*\)\s*[\w.]+|\b(?:float|double)\s*\([^()]*\)|static_cast\s*<\s*(?:float|double)\s*>\s*\([^()]*\))\s*$/.test(
          left,
        )
      )
        continue;
      if (m[1] === "%" && /\bformat\s*\([^()]*\)\s*$/.test(left)) continue;
    }
    const defs = flow.assignmentsTo(v);
    const fn = flow.functionAt(m.index);
    // Definitions of this function's `v` (another function's `v` is another variable).
    const here = defs.filter((a) => flow.functionAt(a.index) === fn);
    const literal = (a: (typeof defs)[number]) => src.masked.slice(a.rhsStart, a.rhsEnd).trim();
    const zeroLiteral = here.some((a) => literal(a) === "0");
    if (taint.of(v, m.index) !== "number" && !zeroLiteral) continue;
    if (defs.some((a) => /\b(?:float|double|Float|Double|CGFloat|float32|float64)\b/.test(a.type))) continue;
    // The value set just before, on the path to the division, is a non-zero constant (`y = -4; r = x / y`).
    const reaching = here.filter((a) => a.index < m.index && a.rhsEnd > a.rhsStart).pop();
    if (
      reaching &&
      /^[+-]?\s*(?:0[xX][\da-fA-F_]+|\d[\d_]*)$/.test(literal(reaching)) &&
      !/^[+-]?\s*0+$/.test(literal(reaching)) &&
      !flow.conditions.some(
        (c) =>
          c.bodyStart < reaching.index &&
          reaching.index < c.elseEnd &&
          !(c.bodyStart < m.index && m.index < c.elseEnd),
      )
    )
      continue;
    const before = src.masked.slice(fn ? fn.bodyStart : 0, m.index);
    const id = identRe(v).source;
    if (
      new RegExp(
        `${id}\\s*(?:==|!=|>|<=|>=|<)\\s*0\\b|\\b0\\s*(?:==|!=|<|>=)\\s*${id}|${id}\\s*(?:>|>=)\\s*1\\b`,
      ).test(before)
    )
      continue;
    // An `if` that compares it with a positive constant: leaves when below it (`if n < 2 { return err }`), or
    // encloses the division when at or above it (`if n >= 2 { ... x / n }`). A loop's `i < 10` is neither.
    const below = new RegExp(`${id}\\s*<=?\\s*[1-9]\\d*\\b(?!\\s*\\.)|\\b[1-9]\\d*\\s*>=?\\s*${id}`);
    const atLeast = new RegExp(`${id}\\s*>=?\\s*[1-9]\\d*\\b(?!\\s*\\.)|\\b[1-9]\\d*\\s*<=?\\s*${id}`);
    if (
      flow.conditions.some((c) => {
        if (c.kind !== "if" || c.start > m.index || (fn && c.start < fn.bodyStart)) return false;
        const cond = src.masked.slice(c.start, c.end);
        return (
          (c.exits && c.bodyEnd < m.index && !/&&/.test(cond) && below.test(cond)) ||
          (c.bodyStart <= m.index && m.index <= c.bodyEnd && !/\|\|/.test(cond) && atLeast.test(cond))
        );
      })
    )
      continue;
    if (
      /\bcatch\s*\(\s*(?:ArithmeticException|Exception|Throwable|RuntimeException)\b/.test(
        src.masked.slice(m.index, (fn?.bodyEnd ?? src.masked.length) + 1),
      )
    ) {
      // Inside a try whose catch handles the division error.
      const t = [...before.matchAll(/\btry\s*\{/g)].pop();
      if (t) continue;
    }
    out.push({ at: m.index, message: `division by '${v}', which can be zero, without a check` });
  }
  return out;
}

/**
 * Allocations whose size comes from input or a caller with no upper bound checked first
 * (CWE-789): `make([]T, n)`, `new T[n]`, `malloc(n)`, `[T](repeating:, count: n)`, `new byte[n]`.
 */
export function unboundedAllocations(src: Source, taint: Taint): BoundsFinding[] {
  const out: BoundsFinding[] = [];
  const re: Record<string, RegExp> = {
    go: /\bmake\s*\(\s*\[\][\w.*]+\s*,\s*([A-Za-z_]\w*)\s*[,)]|\bmake\s*\(\s*\[\][\w.*]+\s*,\s*([^,()\n]*[^\w\s,()][^,()\n]*)[,)]/g,
    cpp: /\bnew\s+[\w:]+\s*\[\s*([A-Za-z_]\w*)\s*\]|\b(?:malloc|alloca)\s*\(\s*([A-Za-z_]\w*)\s*(?:\*[^)]*)?\)|\b(?:calloc)\s*\(\s*([A-Za-z_]\w*)\s*,/g,
    java: /\bnew\s+[\w.]+\s*\[\s*([A-Za-z_]\w*)\s*\]/g,
    swift: /\bcount\s*:\s*([A-Za-z_]\w*)\s*\)|\ballocate\s*\(\s*capacity\s*:\s*([A-Za-z_]\w*)\s*\)/g,
  };
  for (const m of src.masked.matchAll(re[src.lang]!)) {
    const n = (m[1] ?? m[2] ?? m[3])!.trim();
    if (/^[A-Za-z_]\w*$/.test(n)) {
      if (taint.of(n, m.index) !== "number") continue;
    } else {
      // A size expression (`r.ContentLength + 10`): an input number read in it.
      const start = m.index + m[0].lastIndexOf(n);
      if (!taint.range(start, start + n.length, ["number"])) continue;
    }
    const fn = flowOf(src).functionAt(m.index);
    const before = src.masked.slice(fn ? fn.bodyStart : 0, m.index);
    // An upper bound checked first (`n > max`, `n <= limit`, min(n, ...)) on the size or a term of it.
    const terms = n.match(/[A-Za-z_][\w.]*/g) ?? [];
    const checked = terms.some((t) => {
      const id = t.includes(".") ? `(?<![\\w.])${t.replace(/\./g, "\\s*\\.\\s*")}\\b` : identRe(t).source;
      return new RegExp(
        `${id}\\s*(?<![<>])(?:>=?|<=?)(?![<>])\\s*[\\w.]+|[\\w.)]+\\s*(?<![<>])(?:>=?|<=?)(?![<>])\\s*${id}|\\bmin\\s*\\(`,
      ).test(before);
    });
    if (checked) continue;
    out.push({ at: m.index, message: `allocation sized by '${n}' from input with no upper bound` });
  }
  return out;
}

/**
 * Slices and substrings whose end comes from input, a caller or a constant without checking the
 * value's length first: `s[:n]`, `input[:max]`, `str.substr(0, n)` (CWE-129 / CWE-125).
 */
export function uncheckedSlices(src: Source, taint: Taint): BoundsFinding[] {
  const out: BoundsFinding[] = [];
  const m = src.masked;
  const arrays = sizedArrays(src);
  for (const mm of m.matchAll(/(?<![\w.])([A-Za-z_]\w*)\s*\[\s*([\w]*)\s*:\s*([A-Za-z_]\w*|\d+)\s*\]/g)) {
    const [, name, , hi] = mm;
    const fn = flowOf(src).functionAt(mm.index);
    const before = m.slice(fn ? fn.bodyStart : 0, mm.index);
    const id = identRe(name!).source;
    // The value's length was looked at: len(s) compared, or the bound derived from len(s).
    if (new RegExp(`\\blen\\s*\\(\\s*${id}\\s*\\)`).test(before + hi)) continue;
    if (/^\d+$/.test(hi!)) {
      const size = arrays.get(name!)?.size;
      if (size !== undefined && parseInt(hi!, 10) > size)
        out.push({ at: mm.index, message: `slice end ${hi} is past the end of ${name} (${size} elements)` });
      continue;
    }
    if (
      new RegExp(`${identRe(hi!).source}\\s*(?:>|>=|<|<=)|(?:>|>=|<|<=)\\s*${identRe(hi!).source}`).test(
        before,
      )
    )
      continue;
    const nameTaint = taint.of(name!, mm.index);
    const hiTaint = taint.of(hi!, mm.index);
    // Input sliced by a fixed length, or any value sliced by an untrusted length.
    const hiConst = constValue(src, hi!) !== null;
    if (hiTaint === "number" || (nameTaint === "text" && hiConst))
      out.push({
        at: mm.index,
        message: `${name}[:${hi}] panics when ${name} is shorter than ${hi}; check len(${name}) first`,
      });
  }
  return out;
}

/** `<language>/divide-by-zero` (CWE-369): one definition for every language; `entry` is its taint with callers' parameters. */
export function divideByZeroRule(language: SafetyLanguage, entry: TaintConfig): Rule {
  return defineRule(
    {
      id: `${language}/divide-by-zero`,
      cwe: "CWE-369",
      language,
      title: "Integer division by a value from input or a caller without a zero check",
      severity: "medium",
    },
    (src, rule) => divisions(src, taintOf(src, entry)).map((f) => src.finding(rule, f.at, f.message)),
  );
}

/** `<language>/unbounded-allocation` (CWE-789): one definition for every language; `external` is its input taint. */
export function unboundedAllocationRule(language: SafetyLanguage, external: TaintConfig): Rule {
  return defineRule(
    {
      id: `${language}/unbounded-allocation`,
      cwe: "CWE-789",
      language,
      title: "Memory allocated with a size from input and no upper bound",
      severity: "medium",
    },
    (src, rule) =>
      unboundedAllocations(src, taintOf(src, external)).map((f) => src.finding(rule, f.at, f.message)),
  );
}
