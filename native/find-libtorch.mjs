// Locates libtorch for the addon build, the way tch-rs does: $LIBTORCH, else a Python torch install, else
// Debian's libtorch-dev under /usr. Run by binding.gyp (--include, --cflags, --libs) and by scripts/build-native.mjs
// (which imports locateLibtorch); --describe prints what was found as JSON.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** How to get libtorch, for every message that says it is missing. */
export const HOW_TO_GET_LIBTORCH = [
  "Debian 12 / Ubuntu:  sudo apt-get install libtorch-dev libopenblas0-pthread",
  "any libtorch:        LIBTORCH=/path/to/libtorch (unpacked from pytorch.org, or a Python torch's folder:",
  "                     python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')",
].join("\n");

function fromRoot(root, source) {
  const inc = path.join(root, "include");
  const lib = path.join(root, "lib");
  if (!fs.existsSync(path.join(inc, "torch")) || !fs.existsSync(path.join(lib, "libtorch.so"))) return null;
  return { source, root, includes: [inc, path.join(inc, "torch/csrc/api/include")], libDir: lib };
}

function fromPython() {
  for (const py of [process.env.PYTHON, "python3", "/usr/bin/python3"].filter(Boolean)) {
    try {
      const dir = execFileSync(py, ["-c", "import torch, os; print(os.path.dirname(torch.__file__))"], {
        stdio: ["ignore", "pipe", "ignore"],
      })
        .toString()
        .trim();
      const found = dir && fromRoot(dir, `python torch (${py}: ${dir})`);
      if (found) return found;
    } catch {
      // this interpreter has no torch: try the next
    }
  }
  return null;
}

function fromDebian() {
  const multiarch = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"];
  const libDir = multiarch.find((d) => fs.existsSync(path.join(d, "libtorch.so")));
  if (!libDir || !fs.existsSync("/usr/include/torch")) return null;
  return {
    source: "Debian libtorch-dev",
    root: "/usr",
    includes: ["/usr/include", "/usr/include/torch/csrc/api/include"],
    libDir,
  };
}

/**
 * { found } with the include and library folders, or { error } saying what was looked at and how to get
 * libtorch. Never throws and never exits: the callers decide how to fail.
 */
export function locateLibtorch(env = process.env) {
  if (env.LIBTORCH) {
    const found = fromRoot(env.LIBTORCH, `LIBTORCH=${env.LIBTORCH}`);
    if (found) return { found: { ...found, hasCuda: hasCuda(found) } };
    return {
      error:
        `LIBTORCH=${env.LIBTORCH} is not a libtorch folder (it needs include/torch and lib/libtorch.so). ` +
        `Point it at an unpacked libtorch, or unset it to use a Python torch or Debian's libtorch-dev.\n` +
        HOW_TO_GET_LIBTORCH,
    };
  }
  const found = fromPython() ?? fromDebian();
  if (found) return { found: { ...found, hasCuda: hasCuda(found) } };
  return {
    error:
      "libtorch not found (looked at $LIBTORCH, a Python torch, and Debian's libtorch-dev under /usr).\n" +
      HOW_TO_GET_LIBTORCH,
  };
}

function hasCuda(found) {
  return fs.existsSync(path.join(found.libDir, "libtorch_cuda.so"));
}

/**
 * The C++ standard this libtorch's headers demand: C++20 where they refuse anything older (PyTorch's headers
 * moved to a C++20 minimum during 2026: `#error C++20 or later compatible compiler is required to use ATen`),
 * else C++17 (libtorch 1.13 to those releases; Debian's 1.13 is not tested under C++20). Read from the headers
 * rather than guessed from a version number, since the release that switched differs by header.
 */
export function cxxStandard(found) {
  for (const inc of found.includes) {
    // (torch/all.h lies under the API include folder, which found.includes names)
    for (const header of ["ATen/ATen.h", "torch/all.h", "c10/macros/Macros.h"]) {
      let text;
      try {
        text = fs.readFileSync(path.join(inc, header), "latin1");
      } catch {
        continue;
      }
      if (/__cplusplus\s*<\s*202002L/.test(text)) return "c++20";
    }
  }
  return "c++17";
}

/**
 * Whether this libtorch was built with libstdc++'s C++11 ABI (std::string as std::__cxx11::basic_string): every
 * Debian package and pip torch since 2.7 is, older pip wheels and some pytorch.org zips are not, and an addon built
 * with the other ABI fails to load with undefined std::string symbols. libc10's exported names say which.
 */
export function cxx11Abi(found) {
  try {
    return fs.readFileSync(path.join(found.libDir, "libc10.so")).includes("St7__cxx11") ? 1 : 0;
  } catch {
    return 1; // g++'s default; the load check after the build says if it was wrong
  }
}

/** The compile flags that follow from the libtorch found: its C++ standard and its libstdc++ ABI. */
export function cxxFlags(found) {
  return [`-std=${cxxStandard(found)}`, `-D_GLIBCXX_USE_CXX11_ABI=${cxx11Abi(found)}`];
}

// ---------------------------------------------------------------- command line (binding.gyp)
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { found, error } = locateLibtorch();
  if (!found) {
    console.error(error);
    process.exit(1);
  }
  const mode = process.argv[2];
  if (mode === "--include") {
    console.log(found.includes.join(" "));
  } else if (mode === "--cflags") {
    console.log(cxxFlags(found).join(" "));
  } else if (mode === "--libs") {
    const libs = [`-L${found.libDir}`, `-Wl,-rpath,${found.libDir}`, "-Wl,--no-as-needed"];
    if (found.hasCuda) libs.push("-ltorch_cuda", "-lc10_cuda");
    libs.push("-ltorch", "-ltorch_cpu", "-lc10", "-Wl,--as-needed", "-Wl,--allow-shlib-undefined");
    console.log(libs.join(" "));
  } else {
    console.log(JSON.stringify(found, null, 2));
  }
}
