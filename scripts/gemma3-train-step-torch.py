#!/usr/bin/env python3
"""Re-run the gemma3 fixture's GoodVibe training steps in whichever PyTorch is installed, and say how far each
step lands from test/fixtures/gemma3/train_step.json.gz (generated with PyTorch 1.13, see the fixture README).

Why: on libtorch 2.6 the addon's gemma3 no_cluster U after step 2 differs from the fixture by more than the test's
tolerance (BENCHMARKS.md "CUDA"). Running the fixture's own recipe in PyTorch 1.13 and 2.6 tells whether the
reference moves with the version (then the test's tolerance must allow it) or our addon does something else.

The model is a restatement of transformers' Gemma3 text model (eager attention) from the fixture README's table:
(1+w) RMSNorms computed in float32, q/k norms over head_dim, embedding scaled by sqrt(hidden), attention scale
query_pre_attn_scalar^-0.5, sliding layers (window 6) with the local RoPE base, global layers with linear RoPE
scaling, gelu(approximate="tanh") gate, tied lm_head; the loss is HF's causal-LM loss. GoodVibe: W_eff = W + dW,
dW[rows[i]] = U[clusters[i]], U trained with torch.optim.AdamW(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, wd=0).

  python3 scripts/gemma3-train-step-torch.py [fixture dir] [--variant cluster|no_cluster] [--json out.json]
  python3 scripts/gemma3-train-step-torch.py --compare a.json b.json [fixture dir]
"""
import gzip
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32", name
        lo, hi = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[lo:hi], dtype=np.float32).copy().reshape(h["shape"]))
    return out


def rms_norm(x, w, eps):
    # Gemma3RMSNorm: computed in float32, scaled by (1 + w)
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (out * (1.0 + w.float())).type_as(x)


def rope_cos_sin(dim, base, factor, T):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    inv_freq = inv_freq / factor
    pos = torch.arange(T)[None, :].float()
    freqs = (inv_freq[None, :, None].float() @ pos[:, None, :]).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def forward(cfg, sd, linear, ids):
    B, T = ids.shape
    H, nh, nkv, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    emb = sd["model.embed_tokens.weight"]
    x = F.embedding(ids, emb) * torch.tensor(H**0.5, dtype=emb.dtype)
    glob = rope_cos_sin(hd, cfg["rope_theta"], cfg["rope_scaling"]["factor"], T)
    local = rope_cos_sin(hd, cfg["rope_local_base_freq"], 1.0, T)
    q_idx = torch.arange(T)[:, None]
    kv_idx = torch.arange(T)[None, :]
    causal = kv_idx <= q_idx
    sliding = causal & (kv_idx > q_idx - cfg["sliding_window"])
    neg = torch.finfo(torch.float32).min
    for i, kind in enumerate(cfg["layer_types"]):
        p = f"model.layers.{i}"
        cos, sin = (local if kind == "sliding_attention" else glob)
        cos, sin = cos[:, None], sin[:, None]
        allowed = sliding if kind == "sliding_attention" else causal
        mask = torch.zeros(T, T).masked_fill(~allowed, neg)
        h = rms_norm(x, sd[f"{p}.input_layernorm.weight"], eps)
        q = linear(f"{p}.self_attn.q_proj", h).view(B, T, nh, hd).transpose(1, 2)
        k = linear(f"{p}.self_attn.k_proj", h).view(B, T, nkv, hd).transpose(1, 2)
        v = linear(f"{p}.self_attn.v_proj", h).view(B, T, nkv, hd).transpose(1, 2)
        q = rms_norm(q, sd[f"{p}.self_attn.q_norm.weight"], eps)
        k = rms_norm(k, sd[f"{p}.self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        w = torch.matmul(q, k.transpose(2, 3)) * cfg["query_pre_attn_scalar"] ** -0.5 + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        a = torch.matmul(w, v).transpose(1, 2).reshape(B, T, nh * hd)
        a = linear(f"{p}.self_attn.o_proj", a)
        x = x + rms_norm(a, sd[f"{p}.post_attention_layernorm.weight"], eps)
        h = rms_norm(x, sd[f"{p}.pre_feedforward_layernorm.weight"], eps)
        m = F.gelu(linear(f"{p}.mlp.gate_proj", h), approximate="tanh") * linear(f"{p}.mlp.up_proj", h)
        m = linear(f"{p}.mlp.down_proj", m)
        x = x + rms_norm(m, sd[f"{p}.post_feedforward_layernorm.weight"], eps)
    x = rms_norm(x, sd["model.norm.weight"], eps)
    return x @ emb.T


def causal_lm_loss(logits, labels):
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def flat(x):
    return np.asarray(x, dtype=np.float64).reshape(-1)


def report(a, b, fixture, name_a, name_b):
    """Per step: loss, max |grad_U| and |U| differences of run a against run b, overall and over the elements whose
    fixture gradient was never at float32 noise level (< 1e-7) up to that step (what the test checks); and the
    noise-level elements' gradients in both runs."""
    mods = list(fixture[0]["grad_U"].keys())
    for s in range(3):
        gd, ud, wc = (0.0, None), (0.0, None), (0.0, None)
        noise = []
        for m in mods:
            ga, gb = flat(a[s]["grad_U"][m]), flat(b[s]["grad_U"][m])
            d = np.abs(ga - gb)
            if d.max() > gd[0]:
                gd = (float(d.max()), f"{m}[{int(d.argmax())}]")
            d = np.abs(flat(a[s]["U_after"][m]) - flat(b[s]["U_after"][m]))
            if d.max() > ud[0]:
                ud = (float(d.max()), f"{m}[{int(d.argmax())}]")
            noisy = np.zeros_like(d, dtype=bool)
            for t in range(s + 1):
                noisy |= np.abs(flat(fixture[t]["grad_U"][m])) < 1e-7
            fg = flat(fixture[s]["grad_U"][m])
            for j in np.nonzero(np.abs(fg) < 1e-7)[0]:
                noise.append(f"{m}[{j}] {ga[j]:.2e} vs {gb[j]:.2e}")
            d[noisy] = 0
            if d.max() > wc[0]:
                j = int(d.argmax())
                hist = ", ".join(f"{flat(fixture[t]['grad_U'][m])[j]:.2e}" for t in range(s + 1))
                wc = (float(d.max()), f"{m}[{j}] (fixture grads {hist})")
        print(
            f"{name_a} vs {name_b}, step {s + 1}: loss {a[s]['loss']:.7f} vs {b[s]['loss']:.7f}; "
            f"max |grad_U diff| {gd[0]:.2e} at {gd[1]}; max |U diff| {ud[0]:.2e} at {ud[1]}; "
            f"well-conditioned max |U diff| {wc[0]:.2e} at {wc[1]}"
        )
        if noise:
            print(f"  noise-level gradients (fixture < 1e-7), {name_a} vs {name_b}: " + "; ".join(noise))


def main():
    args = sys.argv[1:]
    if args and args[0] == "--compare":
        # --compare a.json b.json [fixture dir]: two saved runs (this script's --json, or the addon's
        # scripts/gemma3-train-step-addon.mjs) against each other and each against the fixture
        fix = args[3] if len(args) > 3 else "test/fixtures/gemma3"
        ra, rb = json.load(open(args[1])), json.load(open(args[2]))
        ref = json.load(gzip.open(f"{fix}/train_step.json.gz", "rt"))[ra["variant"]]["steps"]
        report(ra["steps"], rb["steps"], ref, ra["torch"], rb["torch"])
        report(ra["steps"], ref, ref, ra["torch"], "fixture")
        report(rb["steps"], ref, ref, rb["torch"], "fixture")
        return
    variant = "no_cluster"
    out_json = None
    if "--variant" in args:
        i = args.index("--variant")
        variant = args[i + 1]
        del args[i : i + 2]
    if "--json" in args:
        i = args.index("--json")
        out_json = args[i + 1]
        del args[i : i + 2]
    fix = args[0] if args else "test/fixtures/gemma3"
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = json.load(open(f"{fix}/config.json"))
    ts = json.load(gzip.open(f"{fix}/train_step.json.gz", "rt"))
    sd = load_safetensors(f"{fix}/model.safetensors")
    ref = ts[variant]
    sel = ref["selection"]
    U = {m: torch.zeros(s["n_clusters"], sd[f"{m}.weight"].shape[1], requires_grad=True) for m, s in sel.items()}
    rows = {m: torch.tensor(s["rows"]) for m, s in sel.items()}
    clus = {m: torch.tensor(s["clusters"]) for m, s in sel.items()}

    def linear(name, x):
        W = sd[f"{name}.weight"]
        if name in U:
            W = W + torch.zeros_like(W).index_copy(0, rows[name], U[name][clus[name]])
        return F.linear(x, W)

    ids = torch.tensor(ts["sft_batch"]["input_ids"])
    labels = torch.tensor(ts["sft_batch"]["labels"])
    opt = torch.optim.AdamW(list(U.values()), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    print(f"torch {torch.__version__}, gemma3 {variant}")
    steps = []
    for s in range(3):
        opt.zero_grad()
        loss = causal_lm_loss(forward(cfg, sd, linear, ids), labels)
        loss.backward()
        grads = {m: u.grad.detach().clone() for m, u in U.items()}
        opt.step()
        steps.append(
            {
                "loss": loss.item(),
                "grad_U": {m: grads[m].tolist() for m in U},
                "U_after": {m: U[m].detach().tolist() for m in U},
            }
        )
    report(steps, ref["steps"], ref["steps"], f"torch {torch.__version__}", "fixture")
    if out_json:
        json.dump({"torch": torch.__version__, "variant": variant, "steps": steps}, open(out_json, "w"))


if __name__ == "__main__":
    main()
