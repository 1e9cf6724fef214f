#!/usr/bin/env python3
"""The Hugging Face round trip, the ecosystem's half (issue 13 §2). Reads DIR/manifest.json written by
bench/hf-roundtrip.ts (our checkpoints, adapters and float32 logits on fixed ids) and, for each case:

  checkpoint             transformers' AutoModelForCausalLM.from_pretrained(folder, dtype=..., attn_implementation=
                         "eager"): no missing or unexpected weights, logits equal ours within the tolerance (the
                         multimodal gemma3mm by its class, Gemma3ForConditionalGeneration: the vision tower too)
  base + PEFT adapter    peft's PeftModel.from_pretrained(base, adapter): every lora_A / lora_B tensor of the file
                         loaded as written (none missing, none left over), logits with the adapter equal ours with the
                         same adapter attached; after merge_and_unload() equal ours again
  the other way          each family's base saved by transformers (save_pretrained: its own config.json, e.g.
                         transformers 5's rope_parameters) with transformers' float32 logits, listed in
                         DIR/hf-saved.json for `node dist/bench/hf-roundtrip.js --check DIR/hf-saved.json`, which
                         loads them with our loader and compares (the reference engine lists the bases as they are)

  python3 bench/hf_roundtrip.py DIR [--device cuda] [--json out.json]
  python3 bench/hf_roundtrip.py DIR --engine reference     # without transformers/peft (rehearsal): the Qwen2 cases
                         through bench/torch_reference.py's plain-PyTorch Qwen2, adapters merged by PEFT's formula
                         W + (alpha/r)·B·A; the other families are reported as not run

Tolerances (max |ours - theirs| over every logit, both sides computing from the same bf16 weights):
  float32  2e-4 + 1e-5·max|logit|: float32 rounding of a few hundred-term dot products over 2-4 layers is ~1e-6
           relative; a weight read wrongly (a transposed, missing, untied or mis-scaled tensor, a wrong norm offset,
           rope or window) moves logits by O(0.1-1), and each checkpoint's logits must differ from its base's by
           more than the tolerance (differsFrom), so the comparison can fail
  bfloat16 2^-5·max|logit| (about four bf16 steps at the largest logit): both sides round every op's output to bf16,
           in orders that may differ
Exit status: 0 all cases ran and passed; 1 a comparison failed; 2 transformers or peft could not be imported or
called (each failure is printed with the step it happened in).
"""
import argparse
import json
import os
import re
import sys
import time
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def tolerance(dtype, scale):
    return 2e-4 + 1e-5 * scale if dtype == "float32" else 2.0**-5 * scale


def read_ours(case):
    a = np.fromfile(case["logits"], dtype="<f4")
    return torch.from_numpy(a.reshape(case["shape"]).copy())


# ------------------------------------------------------------------ transformers + peft


class Step(Exception):
    """A failure in one named step (import, load, forward, merge), reported as such."""


def step(name, fn):
    try:
        return fn()
    except Step:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported with its step
        raise Step(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}") from e


class HF:
    def __init__(self, device):
        self.device = device
        self.transformers = step("import transformers", lambda: __import__("transformers"))
        self.peft = step("import peft", lambda: __import__("peft"))
        self.versions = {"torch": torch.__version__, "transformers": self.transformers.__version__,
                         "peft": self.peft.__version__}

    def load(self, folder, dtype):
        tf = self.transformers
        kw = dict(attn_implementation="eager", output_loading_info=True)

        # a multimodal checkpoint (Gemma3ForConditionalGeneration) by its own class, as a user of Gemma-3-4b-it
        # loads it: which class AutoModelForCausalLM maps model_type "gemma3" to changed across versions
        with open(os.path.join(folder, "config.json")) as f:
            arch = (json.load(f).get("architectures") or [""])[0]
        cls = getattr(tf, arch) if arch.endswith("ForConditionalGeneration") else tf.AutoModelForCausalLM

        def go():
            try:
                return cls.from_pretrained(folder, dtype=getattr(torch, dtype), **kw)
            except TypeError as e:  # a transformers before 4.56 knows only torch_dtype
                if "dtype" not in str(e):
                    raise
                return cls.from_pretrained(folder, torch_dtype=getattr(torch, dtype), **kw)

        model, info = step(f"{cls.__name__}.from_pretrained({folder})", go)
        bad = {k: list(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise Step(f"from_pretrained({folder}): {bad}")
        return model.to(self.device).eval()

    def logits(self, model, ids):
        with torch.no_grad():
            return step("forward", lambda: model(input_ids=ids.to(self.device)).logits.float().cpu())

    def with_adapter(self, model, adapter):
        from safetensors.torch import load_file

        peft_model = step(f"PeftModel.from_pretrained({adapter})",
                          lambda: self.peft.PeftModel.from_pretrained(model, adapter, is_trainable=False))
        peft_model.eval()
        # every tensor of the file is in the model as written (peft only warns about missing keys); a multimodal
        # adapter's language_model.model.* keys under the names transformers >= 4.52 gives those modules, by the
        # model's own _checkpoint_conversion_mapping, as peft renames them when loading (huggingface/peft#2574)
        conversion = getattr(model, "_checkpoint_conversion_mapping", None) or {}

        def renamed(key):
            head = "base_model.model."
            for pattern, replacement in conversion.items():
                new, n = re.subn(pattern, replacement, key[len(head):])
                if n:
                    return head + new
            return key

        want = {renamed(k): v for k, v in load_file(os.path.join(adapter, "adapter_model.safetensors")).items()}
        have = step("get_peft_model_state_dict", lambda: self.peft.get_peft_model_state_dict(peft_model))
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        if missing or extra:
            raise Step(f"{adapter}: tensors not loaded {missing[:4]}, tensors not in the file {extra[:4]}")
        worst = max(float((have[k].float().cpu() - want[k].float()).abs().max()) for k in want)
        if worst != 0.0:
            raise Step(f"{adapter}: a loaded LoRA tensor differs from the file by {worst}")
        return peft_model

    def save(self, model, folder):
        step(f"save_pretrained({folder})", lambda: model.save_pretrained(folder))  # safetensors: the default in 4.35+ and the only format in 5

    def merged(self, peft_model):
        return step("merge_and_unload", lambda: peft_model.merge_and_unload())


# ------------------------------------------------------------------ the rehearsal engine (no transformers/peft)


class Reference:
    """bench/torch_reference.py's Qwen2 (plain PyTorch, Hugging Face's numerics); PEFT's merge formula by hand."""

    def __init__(self, device):
        sys.path.insert(0, HERE)
        import torch_reference

        self.ref = torch_reference
        self.device = device
        self.versions = {"torch": torch.__version__, "engine": "bench/torch_reference.py Qwen2"}

    def supports(self, case):
        return case["family"] == "qwen2"

    def state(self, folder, dtype):
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):  # the shards the index names (a run folder may hold other safetensors files)
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        sd = {}
        for f in files:
            sd.update(self.ref.load_safetensors(os.path.join(folder, f)))
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        return {k: v.to(getattr(torch, dtype)) for k, v in sd.items()}, cfg

    def merge(self, sd, adapter):
        with open(os.path.join(adapter, "adapter_config.json")) as f:
            c = json.load(f)
        lora = self.ref.load_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
        sd = dict(sd)
        for k, a in lora.items():
            if ".lora_A." not in k:
                continue
            mod = k[len("base_model.model."):].replace(".lora_A.weight", "")
            b = lora[k.replace(".lora_A.", ".lora_B.")]
            short = mod.split(".")[-1]
            r = c.get("rank_pattern", {}).get(mod, c.get("rank_pattern", {}).get(short, c["r"]))
            alpha = c.get("alpha_pattern", {}).get(mod, c.get("alpha_pattern", {}).get(short, c["lora_alpha"]))
            scale = alpha / (r**0.5 if c.get("use_rslora") else r)
            w = sd[mod + ".weight"]
            sd[mod + ".weight"] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
        return sd

    def logits(self, sd, cfg, ids):
        model = self.ref.Qwen2(sd, cfg).to(self.device)
        with torch.no_grad():
            h = model(ids.to(self.device))
            return (h @ model.embed.t()).float().cpu()


def save_for_ours(engine, model, case, theirs):
    """The base as transformers saves it (the reference engine: the base folder itself), with the Python side's
    float32 logits, for our loader to read back (hf-roundtrip.js --check)."""
    folder = case["model"]
    if engine is not None:
        folder = os.path.join(os.path.dirname(case["model"]), "hf-saved")
        engine.save(model.to(torch.bfloat16), folder)  # the checkpoint's dtype, as a user would save it
    path = os.path.join(os.path.dirname(case["model"]), "hf-saved.theirs.f32")
    theirs.contiguous().numpy().astype("<f4").tofile(path)
    return {"name": case["family"] + "/hf-saved/float32", "family": case["family"], "model": folder, "dtype": "float32",
            "ids": case["ids"], "logits": path, "shape": case["shape"]}


# ------------------------------------------------------------------ the comparison


def compare(name, ours, theirs, dtype, results, _cases=None):
    scale = float(ours.abs().max())
    tol = tolerance(dtype, scale)
    diff = float((ours - theirs).abs().max())
    agree = float((ours.argmax(-1) == theirs.argmax(-1)).float().mean())
    ok = diff <= tol and bool(torch.isfinite(theirs).all())
    r = {"case": name, "dtype": dtype, "maxAbsDiff": diff, "tolerance": tol, "maxAbsLogit": scale,
         "argmaxAgreement": agree, "pass": ok}
    results.append(r)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max|Δ| {diff:.3e} (tolerance {tol:.3e}, max|logit| {scale:.2f}), "
          f"argmax agreement {agree:.4f}", flush=True)
    return ok


def sharpness(case, by_name, tol_of):
    """The case's logits differ from the named one's by more than the tolerance: the comparison can fail."""
    other = by_name.get(case.get("differsFrom") or "")
    if other is None:
        return None
    d = float((read_ours(case) - read_ours(other)).abs().max())
    return d, d > tol_of


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--engine", default="hf", choices=["hf", "reference"])
    ap.add_argument("--json")
    args = ap.parse_args()
    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    cases = manifest["cases"]
    by_name = {c["name"]: c for c in cases}
    device = torch.device(args.device)
    t0 = time.time()
    out = {"bench": "hf-roundtrip", "engine": args.engine, "device": args.device, "results": [], "notRun": [],
           "sharpness": []}
    try:
        engine = HF(device) if args.engine == "hf" else Reference(device)
    except Step as e:
        print(f"FAIL {e}", flush=True)
        out["error"] = str(e)
        dump(args.json, out)
        return 2
    out["versions"] = engine.versions
    print(f"engine {args.engine}: {engine.versions}", flush=True)
    failed = errored = 0
    saved = []
    for case in cases:
        name, dtype = case["name"], case["dtype"]
        ids = torch.tensor(case["ids"], dtype=torch.int64).reshape(case["shape"][:2])
        ours = read_ours(case)
        s = sharpness(case, by_name, tolerance(dtype, float(ours.abs().max())))
        if s is not None:
            out["sharpness"].append({"case": name, "differsFrom": case["differsFrom"], "maxAbsDiff": s[0], "sharp": s[1]})
            if not s[1]:
                print(f"FAIL {name}: differs from {case['differsFrom']} by only {s[0]:.3e} (the check is not sharp)")
                failed += 1
        try:
            if args.engine == "reference":
                if not engine.supports(case):
                    out["notRun"].append(name)
                    continue
                sd, cfg = engine.state(case["model"], dtype)
                if case.get("adapter"):
                    sd = engine.merge(sd, case["adapter"])
                    name = name + " (merged by formula)"
                theirs = engine.logits(sd, cfg, ids)
                if case["name"].endswith("/base/float32"):
                    saved.append(save_for_ours(None, None, case, theirs))
                ok = compare(name, ours, theirs, dtype, out["results"], by_name)
                failed += not ok
                continue
            model = engine.load(case["model"], dtype)
            if case.get("adapter"):
                pm = engine.with_adapter(model, case["adapter"])
                failed += not compare(name + " (peft, unmerged)", ours, engine.logits(pm, ids), dtype, out["results"], by_name)
                merged = engine.merged(pm)
                failed += not compare(name + " (peft, merge_and_unload)", ours, engine.logits(merged, ids), dtype,
                                      out["results"], by_name)
            else:
                theirs = engine.logits(model, ids)
                failed += not compare(name, ours, theirs, dtype, out["results"], by_name)
                if case["name"].endswith("/base/float32"):
                    saved.append(save_for_ours(engine, model, case, theirs))
        except Exception as e:  # noqa: BLE001 - a failed case is reported and the others still run
            errored += 1
            print(f"FAIL {name}: {e}", flush=True)
            out["results"].append({"case": name, "error": str(e), "pass": False})
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    with open(os.path.join(args.dir, "hf-saved.json"), "w") as f:
        json.dump({"engine": args.engine, "cases": saved}, f, indent=2)
    if out["notRun"]:
        print(f"not run by this engine: {', '.join(out['notRun'])}")
    n = len(out["results"])
    print(f"{n - failed - errored}/{n} comparisons passed, {errored} errors, {time.time() - t0:.1f} s", flush=True)
    out["failed"], out["errors"] = failed, errored
    dump(args.json, out)
    return 2 if errored else (1 if failed else 0)


def dump(path, obj):
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
