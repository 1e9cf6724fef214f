/**
 * The held-out code loss, four held-out pairs by hand: each pair's score is the mean of its secure and insecure
 * answer's loss (unitsPerItem 2 against a figure whose n counts the 8 answers).
 * base (chosen, rejected): (1.0, 1.4), (2.0, 2.2), (0.5, 0.9), (1.5, 1.9) -> 1.2, 2.1, 0.7, 1.7 (value 1.425)
 * model:                    (0.9, 1.3), (1.7, 1.9), (0.6, 0.8), (1.3, 1.7) -> 1.1, 1.8, 0.7, 1.5 (value 1.275)
 * d = −0.1, −0.3, 0, −0.2: mean −0.15, Σ(d − m)² = 0.0025 + 0.0225 + 0.0225 + 0.0025 = 0.05, sd² = 0.05/3,
 * se = √(0.05/3)/2 = 0.0645497: −0.15 ± Z95·0.0645497 = ± 0.126515 -> [−0.276515, −0.023485].
 * Unpaired from the answers' se (the figure's): Σ(x − 1.425)² = 2.475 over the base's 8 answers, Σ(x − 1.275)²
 * = 1.575 over the model's: se_b² = 2.475/7/8, se_m² = 1.575/7/8, sum 4.05/56: ± Z95·0.268926 = ± 0.527086,
 * 4.2 times as wide.
 */
export const LOSS_BASE: [number, number][] = [
  [1.0, 1.4],
  [2.0, 2.2],
  [0.5, 0.9],
  [1.5, 1.9],
];
export const LOSS_MODEL: [number, number][] = [
  [0.9, 1.3],
  [1.7, 1.9],
  [0.6, 0.8],
  [1.3, 1.7],
];
