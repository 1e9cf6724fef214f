/**
 * lm_head as an identification target (identify.lmHead; §4.1 hooks "all linear layers", and Table 6's 57.1 M for
 * CodeLlama-7B without clustering counts 50 rows of lm_head: README, "Clusters per module").
 *
 * The judge loss reads only the two label tokens' logits at the last position, so under Eq. 8 lm_head's output
 * gradient is zero everywhere else: per sample, row v's importance is |∂L/∂z_v| at the last position divided by
 * the sample's length for the two label tokens, and 0 for every other row. The top-k of lm_head are therefore the
 * two label rows followed by ties at zero (lowest token ids first), which is what a backward hook on a full-vocabulary
 * lm_head would also give. The activation variant is the mean |logit| of every vocabulary row over the sample's
 * tokens, computed in chunks of positions so that a 150k vocabulary never needs [T, V] at once.
 */
import type { DecoderModel } from "../../models/decoder.js";
import { InputError } from "../../errors.js";
import { Tensor, noGrad, tidy } from "../../tensor/index.js";

export const LM_HEAD = "lm_head";

/** Refuse lm_head as a target where its rows cannot be trained on their own. */
export function checkLmHeadTarget(model: DecoderModel, what = "identify.lmHead"): void {
  if (model.cfg.tieWordEmbeddings)
    throw new InputError(
      `${what}: lm_head is tied to the input embeddings in this model (tie_word_embeddings): training its rows ` +
        `would change the embeddings of the same tokens, so it cannot be a target here; leave ${what} off`,
    );
}

/**
 * Per-sample importance of lm_head's rows from the gradient of the loss with respect to the label tokens' raw
 * logits at the last position ([B, 2], in the order of labelTokenIds): [B × V] float32, row-major.
 */
export function lmHeadGradientImportance(
  rawGrad: Tensor,
  labelTokenIds: readonly [number, number],
  vocabSize: number,
  lengths: readonly number[],
): Float32Array {
  const g = rawGrad.toFloat32Array();
  const B = lengths.length;
  const out = new Float32Array(B * vocabSize);
  for (let b = 0; b < B; b++)
    for (let j = 0; j < 2; j++)
      out[b * vocabSize + labelTokenIds[j]!]! += Math.abs(g[b * 2 + j]!) / lengths[b]!;
  return out;
}

/** Per-sample mean |logit| of every vocabulary row over the sample's real tokens: [B × V] float32. */
export function lmHeadActivationImportance(
  model: DecoderModel,
  hidden: Tensor,
  mask: Tensor,
  lengths: Tensor,
  chunk = 64,
): Float32Array {
  return noGrad(() =>
    tidy(() => {
      const T = hidden.size(1);
      let acc: Tensor | null = null;
      for (let t0 = 0; t0 < T; t0 += chunk) {
        const n = Math.min(chunk, T - t0);
        // [B, n, V] at a time, summed over its positions at once: the chunk's logits are freed by the scope
        const part = tidy(() =>
          model.head
            .forward(hidden.narrow(1, t0, n))
            .float()
            .abs()
            .mul(mask.narrow(1, t0, n).unsqueeze(-1))
            .sum(1),
        );
        acc = acc === null ? part : acc.add(part);
      }
      return acc!.div(lengths).toFloat32Array();
    }),
  );
}
