/**
 * Device placement and dtype policy (src/tensor/tensor.ts): what a user asks for is checked before any work
 * starts, CUDA asked for where libtorch has none is an error that says why, and a model's compute dtype follows
 * its device. On a machine without CUDA (CI) the error branches run; with a GPU the placement branches do.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { InputError, ResourceError } from "../../src/errors.js";
import { loadModel } from "../../src/models/index.js";
import { native } from "../../src/tensor/native.js";
import {
  Tensor,
  cudaAvailable,
  defaultComputeDtype,
  noGrad,
  readBackFloat32,
  resolveDevice,
} from "../../src/tensor/index.js";

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/fixtures");

test("device names: cpu by default, auto follows libtorch, anything else is refused by name", () => {
  assert.equal(resolveDevice(), "cpu");
  assert.equal(resolveDevice("cpu"), "cpu");
  assert.equal(resolveDevice("auto"), cudaAvailable() ? "cuda" : "cpu");
  for (const bad of ["gpu", "CUDA", "cuda:", "cuda:x", "mps", "cpu:0"])
    assert.throws(
      () => resolveDevice(bad),
      (e: Error) => e instanceof InputError && e.message.includes(`'${bad}'`),
    );
});

test("compute dtype: the checkpoint's on the CPU, bfloat16 on a GPU", () => {
  assert.equal(defaultComputeDtype("cpu", "float32"), "float32");
  assert.equal(defaultComputeDtype("cpu", "bfloat16"), "bfloat16");
  assert.equal(defaultComputeDtype("cuda", "float32"), "bfloat16");
  assert.equal(defaultComputeDtype("cuda:1", "float16"), "bfloat16");
});

test(
  "CUDA asked for and absent: a ResourceError that says why, from the policy, the loader and the addon",
  { skip: cudaAvailable() && "CUDA is available here" },
  () => {
    for (const dev of ["cuda", "cuda:0", "cuda:3"]) {
      assert.throws(
        () => resolveDevice(dev),
        (e: Error) =>
          e instanceof ResourceError &&
          e.message.includes(`'${dev}'`) &&
          /CUDA is not available/.test(e.message) &&
          // no CLI flag exists for the device: the advice is the library's own argument
          !/--device/.test(e.message) &&
          /ask for device 'cpu'/.test(e.message),
      );
    }
    // the loader checks before it reads or allocates anything; GOODVIBE_DEVICE is how a command asks
    assert.throws(() => loadModel(path.join(FIX, "qwen2"), { device: "cuda" }), ResourceError);
    process.env.GOODVIBE_DEVICE = "cuda";
    try {
      // asked for by the variable (every command): the advice names the variable
      assert.throws(
        () => loadModel(path.join(FIX, "qwen2")),
        (e: Error) =>
          e instanceof ResourceError && /GOODVIBE_DEVICE=cpu/.test(e.message) && !/--device/.test(e.message),
      );
      // asked for beats the environment
      assert.equal(loadModel(path.join(FIX, "qwen2"), { device: "cpu" }).device, "cpu");
    } finally {
      delete process.env.GOODVIBE_DEVICE;
    }
    // a tensor moved there by hand: the addon's error, as a JS exception (not an abort)
    assert.throws(() => Tensor.zeros([2]).toDevice("cuda"), /CUDA/);
  },
);

test(
  "on a GPU: the model, its inputs and its outputs live on the device; it computes in bfloat16, its logits in float32",
  { skip: !cudaAvailable() && "no CUDA here" },
  () => {
    const model = loadModel(path.join(FIX, "qwen2"), { device: "cuda" });
    assert.equal(model.dtype, "bfloat16");
    const ids = Tensor.fromArray([1, 2, 3, 4], [1, 4], "int64"); // on the host: the model copies it once
    const hidden = noGrad(() => model.hidden(ids));
    assert.match(hidden.device, /^cuda/);
    assert.equal(hidden.dtype, "bfloat16");
    // the logits are float32 by design (logitsFrom: the softmax and the losses read them in float32)
    const logits = noGrad(() => model.forward(ids));
    assert.match(logits.device, /^cuda/);
    assert.equal(logits.dtype, "float32");
    assert.throws(() => resolveDevice(`cuda:${64}`), ResourceError);
    // device memory is not the process's: V8 is told about host tensors only (its collector ran about once per layer
    // when every GPU activation was reported, and each op of a GPU step paid for it)
    // (the host tensor made first: a temporary it copies from stays reported until collected; on the H200 the
    // ledger moved by exactly that temporary's 4 MiB when the test made it inline, 0 for the GPU copy)
    const onHost = Tensor.zeros([1024, 1024]);
    const [before] = native.externalReports();
    const onGpu = onHost.toDevice("cuda");
    assert.equal(native.externalReports()[0] - before, 0);
    onGpu.dispose();
    onHost.dispose();
    assert.equal(native.externalReports()[0] - before, -4 * 1024 * 1024);
  },
);

test("readBackFloat32: one transfer for many tensors gives each tensor's values, in order and shape-free", () => {
  const ts = [
    Tensor.randn([3, 5]),
    Tensor.randn([7]).to("bfloat16"),
    Tensor.fromArray([1, 2, 3, 4], [2, 2], "int64"),
    Tensor.randn([2, 3, 4]).transpose(0, 2), // not contiguous
  ];
  for (const staged of [false, true]) {
    const got = readBackFloat32(ts, staged);
    assert.equal(got.length, ts.length);
    got.forEach((g, i) => assert.deepEqual([...g], [...ts[i].contiguous().toFloat32Array()], `tensor ${i}`));
  }
  assert.deepEqual(readBackFloat32([]), []);
});
