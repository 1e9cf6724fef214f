/**
 * A model's shapes from its config alone (no weights): every linear layer by Hugging Face name, and the parameter
 * count by part. Cost estimates (`experiment plan`, the paper's Table 2 arithmetic) use it where no checkpoint is
 * loaded; a loaded DecoderModel has the same `cfg` + `linears()` surface, so FLOP counting takes either.
 */
import type { ModelConfig } from "../io/config.js";

export interface LinearShape {
  name: string;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}

/** What shape-based cost code needs of a model (a loaded DecoderModel has it too). */
export interface ShapeSource {
  readonly cfg: Pick<
    ModelConfig,
    "family" | "vocabSize" | "hiddenSize" | "numLayers" | "numHeads" | "headDim" | "tieWordEmbeddings"
  >;
  linears(): readonly { name: string; inFeatures: number; outFeatures: number }[];
}

export interface ParamCount {
  /** input embedding (vocab × hidden) */
  embedding: number;
  /** the decoder layers: linear weights and biases, norms */
  layers: number;
  /** the 7 projections' weights (and biases) alone */
  linears: number;
  /** final norm */
  finalNorm: number;
  /** lm_head: 0 when tied to the embedding (it is the same tensor) */
  lmHead: number;
  total: number;
}

export class ModelShape implements ShapeSource {
  constructor(readonly cfg: ModelConfig) {}

  /** The 7 projections of every layer in HF module order (q, k, v, o, gate, up, down), as DecoderModel.linears(). */
  linears(): LinearShape[] {
    const c = this.cfg;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const out: LinearShape[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const a = `model.layers.${i}.self_attn`;
      const m = `model.layers.${i}.mlp`;
      out.push(
        { name: `${a}.q_proj`, inFeatures: c.hiddenSize, outFeatures: q, bias: c.qkvBias },
        { name: `${a}.k_proj`, inFeatures: c.hiddenSize, outFeatures: kv, bias: c.qkvBias },
        { name: `${a}.v_proj`, inFeatures: c.hiddenSize, outFeatures: kv, bias: c.qkvBias },
        { name: `${a}.o_proj`, inFeatures: q, outFeatures: c.hiddenSize, bias: c.oBias },
        {
          name: `${m}.gate_proj`,
          inFeatures: c.hiddenSize,
          outFeatures: c.intermediateSize,
          bias: c.mlpBias,
        },
        { name: `${m}.up_proj`, inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, bias: c.mlpBias },
        {
          name: `${m}.down_proj`,
          inFeatures: c.intermediateSize,
          outFeatures: c.hiddenSize,
          bias: c.mlpBias,
        },
      );
    }
    return out;
  }

  /** lm_head as a linear layer ([vocab, hidden]); tied models share the embedding's tensor. */
  lmHead(): LinearShape {
    return { name: "lm_head", inFeatures: this.cfg.hiddenSize, outFeatures: this.cfg.vocabSize, bias: false };
  }

  /** Parameters by part, as DecoderModel.parameters() holds them (a tied lm_head is not counted twice). */
  params(): ParamCount {
    const c = this.cfg;
    const embedding = c.vocabSize * c.hiddenSize;
    let linears = 0;
    for (const l of this.linears()) linears += l.inFeatures * l.outFeatures + (l.bias ? l.outFeatures : 0);
    const normsPerLayer = (c.sandwichNorms ? 4 : 2) * c.hiddenSize + (c.qkNorm ? 2 * c.headDim : 0);
    const layers = linears + c.numLayers * normsPerLayer;
    const finalNorm = c.hiddenSize;
    const lmHead = c.tieWordEmbeddings ? 0 : c.vocabSize * c.hiddenSize;
    return { embedding, layers, linears, finalNorm, lmHead, total: embedding + layers + finalNorm + lmHead };
  }
}
