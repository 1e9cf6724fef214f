// The addon's compile flags follow the libtorch found (native/find-libtorch.mjs): the C++ standard its headers
// demand and the libstdc++ ABI its libraries were built with. Checked on made libtorch folders (a header with
// PyTorch's C++20 guard, libc10 with and without C++11-ABI names) and on the libtorch this machine builds against.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { scratchDir } from "../scratch.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
interface Found {
  includes: string[];
  libDir: string;
}
const finder = (await import(pathToFileURL(path.join(ROOT, "native/find-libtorch.mjs")).href)) as {
  cxxStandard(f: Found): string;
  cxx11Abi(f: Found): number;
  cxxFlags(f: Found): string[];
  locateLibtorch(env?: NodeJS.ProcessEnv): { found?: Found; error?: string };
};

function madeLibtorch(aten: string, c10: string): Found {
  const root = scratchDir("gv-libtorch-");
  fs.mkdirSync(path.join(root, "include/ATen"), { recursive: true });
  fs.mkdirSync(path.join(root, "lib"));
  fs.writeFileSync(path.join(root, "include/ATen/ATen.h"), aten);
  fs.writeFileSync(path.join(root, "lib/libc10.so"), c10);
  return { includes: [path.join(root, "include")], libDir: path.join(root, "lib") };
}

// the guards as PyTorch's headers spell them: 2.x before the C++20 move, and after it
const GUARD_17 =
  "#if !defined(_MSC_VER) && __cplusplus < 201703L\n#error C++17 or later compatible compiler is required to use ATen.\n#endif\n";
const GUARD_20 =
  "#if !defined(_MSC_VER) && __cplusplus < 202002L\n#error C++20 or later compatible compiler is required to use ATen.\n#endif\n";
const ABI_NEW =
  "\0_ZN3c106detail14torchCheckFailEPKcS2_jRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE\0";
const ABI_OLD = "\0_ZN3c106detail14torchCheckFailEPKcS2_jRKSs\0";

test("headers that refuse anything before C++20 get -std=c++20; older ones C++17", () => {
  assert.equal(finder.cxxStandard(madeLibtorch(GUARD_20, ABI_NEW)), "c++20");
  assert.equal(finder.cxxStandard(madeLibtorch(GUARD_17, ABI_NEW)), "c++17");
  assert.equal(finder.cxxStandard(madeLibtorch("// no guard\n", ABI_NEW)), "c++17");
});

test("libc10's exported names say the libstdc++ ABI", () => {
  assert.equal(finder.cxx11Abi(madeLibtorch(GUARD_17, ABI_NEW)), 1);
  assert.equal(finder.cxx11Abi(madeLibtorch(GUARD_17, ABI_OLD)), 0);
  assert.deepEqual(finder.cxxFlags(madeLibtorch(GUARD_20, ABI_OLD)), [
    "-std=c++20",
    "-D_GLIBCXX_USE_CXX11_ABI=0",
  ]);
});

test("the flags for the libtorch this machine builds against match its headers and its ABI", (t) => {
  const { found } = finder.locateLibtorch();
  if (!found) return t.skip("no libtorch here");
  const aten = found.includes.map((i) => path.join(i, "ATen/ATen.h")).find((f) => fs.existsSync(f));
  assert.ok(aten, "ATen/ATen.h among the include folders");
  const wants20 = /__cplusplus\s*<\s*202002L/.test(fs.readFileSync(aten, "latin1"));
  const [std, abi] = finder.cxxFlags(found);
  assert.equal(std, wants20 ? "-std=c++20" : "-std=c++17");
  // an independent reading of the ABI: std::string in libc10's dynamic symbol table, by nm
  let symbols = "";
  try {
    symbols = execFileSync("nm", ["-D", "--defined-only", path.join(found.libDir, "libc10.so")], {
      maxBuffer: 64 << 20,
    }).toString();
  } catch {
    return t.skip("no nm");
  }
  assert.equal(abi, `-D_GLIBCXX_USE_CXX11_ABI=${symbols.includes("__cxx11") ? 1 : 0}`);
});
