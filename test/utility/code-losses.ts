/**
 * The held-out real-code loss of --code, four documents by hand: each document's summed NLL S_i over its t_i
 * scored tokens; the figure is the token-weighted ΣS/Σt, and each document's score its linearised share of it,
 * x_i = R + (S_i − R·t_i)/t̄ (eval/utility/code-loss.ts).
 * tokens t = 1, 2, 3, 2 (Σt = 8, t̄ = 2)
 * base  S = 2, 3, 3, 4     -> R = 12/8 = 1.5;   x = 1.5 + (0.5, 0, −1.5, 1)/2 = 1.75, 1.5, 0.75, 2.0
 *   Σ(x − R)² = 0.0625 + 0 + 0.5625 + 0.25 = 0.875, se = √(0.875/3)/2 = 0.270031
 *   (the old se, of the per-file means 2, 1.5, 1, 2 (mean 1.625, not the figure): √(0.6875/3)/2 = 0.239357)
 * model S = 1.5, 3, 3, 3.5 -> R = 11/8 = 1.375; x = 1.375 + (0.125, 0.25, −1.125, 0.75)/2
 *   = 1.4375, 1.5, 0.8125, 1.75; Σ(x − R)² = 0.00390625 + 0.015625 + 0.31640625 + 0.140625 = 0.4765625,
 *   se = √(0.4765625/3)/2 = 0.199283
 * Paired: d = x_m − x_b = −0.3125, 0, 0.0625, −0.25, mean −0.125 = Δ; as the ratio's delta method has it,
 * d − Δ = (Y − Δ·t)/t̄ with Y = S_m − S_b = −0.5, 0, 0, −0.5: −0.1875, 0.125, 0.1875, −0.125, Σ² = 0.1015625,
 * se = √(0.1015625/3)/2 = 0.0919975: −0.125 ± Z95·0.0919975 = ± 0.180312 -> [−0.305312, 0.055312].
 * Unpaired: ± Z95·√(0.875/12 + 0.4765625/12) = ± 0.657772 (3.6 times as wide).
 */
export const CODE_TOKENS = [1, 2, 3, 2];
export const CODE_SUMS_BASE = [2, 3, 3, 4];
export const CODE_SUMS_MODEL = [1.5, 3, 3, 3.5];
export const CODE_DOCS = CODE_TOKENS.map((_, i) => ({
  id: `doc${i}`,
  lang: i % 2 ? "c" : "python",
  code: `source file ${i}`,
}));
