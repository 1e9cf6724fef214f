#!/usr/bin/env python3
"""A check, apart from the tool's code, of the CyberNative organism's figures on the pairs it never saw (issue 12 §2;
BENCHMARKS "CyberNative organism", "On the pairs the models never saw").

From the dev split and the organism's pretraining pairs it recounts which dev pairs (C++, Java, Swift, Go) share a
prompt or an answer's fenced code with a pretraining pair (whitespace runs made one space, ends trimmed, lower case;
an answer without a fence counts whole), and checks results.json's `evaluation.trainOverlap.seenIds` against it.
Then, from each cell's per-item outcomes (1 secure, 0 not, - no verdict), it recounts every unseen rate (secure
preference, rules, LLM judge) with its n and 95% Wilson interval, and McNemar's b01/b10 and p against the base on
the unseen items and on all of them, the test as results.json names it (eval/metrics.ts: exact two-sided binomial
under 25 discordant pairs, else the continuity-corrected chi-square, 1 df; the exact p is printed beside), and says
where any differs from results.json. Exit status 1 if one does.

    python3 experiments/cybernative-unseen-check.py runs/cn-exp/results.json \
      ../shared/data/cybernative/dev.jsonl runs/cybernative-organism/data/train.jsonl
"""
import json, math, re, sys
from scipy.stats import binomtest, chi2

results_file, dev_file, train_file = sys.argv[1:4]
LANGS = {"c++", "cpp", "java", "swift", "go"}
norm = lambda s: re.sub(r"\s+", " ", s).strip().lower()
FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|$)", re.S)


def codes(answer):
    blocks = [b for b in FENCE.findall(answer) if b.strip()]
    return [norm(b) for b in blocks] if blocks else [norm(answer)]


def wilson(k, n, z=1.959963984540054):
    p, d = k / n, 1 + z * z / n
    c, h = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def mcnemar(b01, b10):
    n = b01 + b10
    if n == 0:
        return 1.0, 1.0
    exact = binomtest(min(b01, b10), n, 0.5).pvalue
    return (exact if n < 25 else chi2.sf(max(abs(b01 - b10) - 1, 0) ** 2 / n, 1)), exact


dev = [p for p in map(json.loads, open(dev_file)) if p["lang"] in LANGS]
train = [json.loads(l) for l in open(train_file)]
train_q = {norm(p["question"]) for p in train}
train_c = {c for p in train for a in (p["chosen"], p["rejected"]) for c in codes(a)}
by_q = {p["id"] for p in dev if norm(p["question"]) in train_q}
by_c = {p["id"] for p in dev if any(c in train_c for a in (p["chosen"], p["rejected"]) for c in codes(a))}
seen = by_q | by_c
R = json.load(open(results_file))
recorded = set(R["evaluation"]["trainOverlap"]["seenIds"])
bad = int(seen != recorded)
print(f"{len(dev)} dev pairs; {len(seen)} share a prompt ({len(by_q)}) or code ({len(by_c)}) with the pretraining "
      f"pairs; results.json's seenIds: {len(recorded)}, {'the same ids' if not bad else 'DIFFERENT ids'}")

base = next(c for c in R["cells"] if c["method"] == "base")
base_at = {i: k for k, i in enumerate(base["outcomes"]["ids"])}
for c in R["cells"]:
    o, unseen = c["outcomes"], c["security"].get("unseen", {})
    name = c["method"] + (f"[{c['ablation']}]" if c.get("ablation") else "") + f" seed {c['seed']}"
    for m in ("preference", "rule", "llm"):
        got = unseen.get("securePreference") if m == "preference" else unseen.get("safeRate", {}).get(m)
        every = [(i, v) for i, v in zip(o["ids"], o[m]) if v != "-"]
        items = [(i, v) for i, v in every if i not in recorded]
        k, n = sum(v == "1" for _, v in items), len(items)
        lo, hi = wilson(k, n)
        ok = got and got["n"] == n and abs(got["value"] - k / n) < 1e-12
        ok = ok and abs(got["low"] - lo) < 1e-9 and abs(got["high"] - hi) < 1e-9
        line = f"{name:38s} {m:10s} unseen {k}/{n} = {100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
        if c is not base:
            b = base["outcomes"][m]
            for label, its, tool in (
                ("unseen", items, unseen.get("mcnemarVsBase", {}).get(m)),
                ("all", every, c["security"].get("mcnemarVsBase", {}).get(m)),
            ):
                pairs = [(b[base_at[i]], v) for i, v in its if b[base_at[i]] != "-"]
                b01 = sum(x == "0" and y == "1" for x, y in pairs)
                b10 = sum(x == "1" and y == "0" for x, y in pairs)
                p, exact = mcnemar(b01, b10)
                line += f"; McNemar {label} {b01}/{b10} p {p:.4f} (exact {exact:.4f})"
                # secure preference has no McNemar in results.json (report Tables 10/14 compute it)
                if tool is not None:
                    ok = ok and (tool["b01"], tool["b10"]) == (b01, b10) and abs(tool["pValue"] - p) < 1e-9
        print(line + ("" if ok else "  DIFFERS from results.json"))
        bad |= not ok
print("every figure equal to results.json" if not bad else "some figure differs from results.json")
sys.exit(bad)
