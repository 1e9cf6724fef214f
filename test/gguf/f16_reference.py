# The f32 -> f16 reference for test/gguf/convert-exact.test.ts: numpy's astype(float16) of the boundary patterns.
import hashlib, numpy as np
h = np.arange(0x7c00, dtype=np.uint16)
v = h.view(np.float16).astype(np.float64)
nxt = np.append(v[1:], 65520.0)
B = v.astype(np.float32).view(np.uint32).astype(np.int64)
M = ((v + nxt) / 2).astype(np.float32).view(np.uint32).astype(np.int64)
cand = np.stack([B - 1, B, B + 1, M - 1, M, M + 1], axis=1).reshape(-1)
cand = cand[(cand >= 0) & (cand < 0x7F800000)]
extras = np.array([0x7F800000, 0x7F7FFFFF, 1, 0x007FFFFF, 0x00800000, 0x33000000, 0x33000001, 0x32FFFFFF,
                   0x477FE000, 0x477FF000, 0x47800000], dtype=np.int64)
allb = np.concatenate([cand, extras])
pats = np.stack([allb, allb | 0x80000000], axis=1).reshape(-1).astype(np.uint32)
with np.errstate(over="ignore"):
    f16 = pats.view(np.float32).astype(np.float16).view(np.uint16)
print(len(pats), hashlib.sha256(pats.astype("<u4").tobytes()).hexdigest(), hashlib.sha256(f16.astype("<u2").tobytes()).hexdigest())
