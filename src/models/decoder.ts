/**
 * The decoder every family shares: embeddings → N decoder layers → final norm → lm_head.
 * Families differ only in how a layer is wired (llama.ts: pre-norm; gemma3.ts: sandwich norms) and in
 * config flags (biases, q/k norms, activation, scales), so this file holds the whole forward pass.
 */
import type { ModelConfig } from "../io/config.js";
import { InputError } from "../errors.js";
import {
  Tensor,
  addLookupGrad,
  backward,
  fusedOps,
  noGrad,
  rngState,
  setRngState,
  withGrad,
  tidy,
  keep,
  type DType,
  type Device,
} from "../tensor/index.js";
import {
  Attention,
  KVCache,
  MLP,
  RMSNorm,
  additiveMask,
  ropeAttentionScaling,
  ropeInvFreq,
  ropeTables,
  type AttentionInputs,
} from "./layers.js";
import { Linear } from "./linear.js";
import { FrozenDxPlan } from "./frozen-dx.js";

/**
 * One residual block of a layer: what it adds to the stream, x ← x + block(x). `gradOnly`: the result's values will
 * not be read, only its gradient (Linear.forward: a frozen last product is skipped).
 */
export type ResidualBlock = (x: Tensor, inp: AttentionInputs, gradOnly: boolean) => Tensor;

export interface DecoderLayer {
  readonly index: number;
  readonly attn: Attention;
  readonly mlp: MLP;
  readonly norms: RMSNorm[];
  /**
   * The layer as residual blocks whose outputs reach only their residual sums, forward being exactly x ← x + block(x)
   * for each in order (pre-norm layers: attention, then the MLP). Gradient checkpointing keeps each block's input and
   * recomputes the blocks one at a time with `gradOnly` (a residual sum's backward reads no values), which skips
   * o_proj's and down_proj's products. Absent where a norm reads those outputs (Gemma 3's sandwich norms): such a
   * layer is recomputed whole from its input.
   */
  readonly blocks?: readonly ResidualBlock[];
  forward(x: Tensor, inp: AttentionInputs): Tensor;
}

/** Where a model's tensors come from: HF name → tensor in the compute dtype. */
export type TensorSource = (name: string, required?: boolean) => Tensor | null;

export interface ForwardOptions {
  /** [B, past + T] with 1 for real tokens, 0 for padding (left padding). */
  attentionMask?: Tensor;
  /** [B, T]; default: arange, or cumsum(mask) - 1 with pads at 1 (as transformers' generate). */
  positionIds?: Tensor;
  cache?: KVCache;
}

export class DecoderModel {
  readonly layers: DecoderLayer[] = [];
  readonly embed: Tensor;
  readonly norm: RMSNorm;
  readonly lmHead: Tensor;
  /** lm_head as a linear layer ("lm_head"): the slot a GoodVibe update on its rows plugs into (identify.lmHead) */
  readonly head: Linear;
  /** which frozen products' dX read a transposed weight copy, within the memory budget (frozen-dx.ts) */
  readonly frozenDx: FrozenDxPlan;
  private readonly invFreqGlobal: Tensor;
  private readonly invFreqLocal: Tensor | null;

  constructor(
    readonly cfg: ModelConfig,
    readonly dtype: DType,
    readonly device: Device,
    source: TensorSource,
    buildLayer: (cfg: ModelConfig, index: number, src: TensorSource) => DecoderLayer,
  ) {
    this.embed = source("model.embed_tokens.weight")!;
    for (let i = 0; i < cfg.numLayers; i++) this.layers.push(buildLayer(cfg, i, source));
    this.norm = new RMSNorm("model.norm", source("model.norm.weight")!, cfg.rmsNormEps, cfg.normOnePlus);
    this.lmHead = cfg.tieWordEmbeddings ? this.embed : source("lm_head.weight")!;
    this.head = new Linear("lm_head", this.lmHead, null);
    this.frozenDx = new FrozenDxPlan(
      [...new Set([...this.linears(), this.head].map((l) => l.dxSlot))],
      device,
    );
    this.invFreqGlobal = keep(ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling).onDevice(device));
    this.invFreqLocal =
      cfg.ropeLocalTheta !== null && cfg.layerTypes.includes("sliding_attention")
        ? keep(ropeInvFreq(cfg.headDim, cfg.ropeLocalTheta, { type: "default" }).onDevice(device))
        : null;
  }

  /** Every linear layer in Hugging Face module order (per layer: q, k, v, o, gate, up, down). */
  linears(): Linear[] {
    return this.layers.flatMap((l) => [
      l.attn.q,
      l.attn.k,
      l.attn.v,
      l.attn.o,
      l.mlp.gate,
      l.mlp.up,
      l.mlp.down,
    ]);
  }

  /** A linear layer by HF name: one of linears(), or "lm_head". */
  linear(name: string): Linear {
    if (name === "lm_head") return this.head;
    const found = this.linears().find((l) => l.name === name);
    if (!found) throw new InputError(`no linear layer named ${name} in this ${this.cfg.family} model`);
    return found;
  }

  /** All parameters by HF name (a tied lm_head is not listed separately). */
  parameters(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    out.set("model.embed_tokens.weight", this.embed);
    for (const l of this.layers) {
      for (const lin of [l.attn.q, l.attn.k, l.attn.v, l.attn.o, l.mlp.gate, l.mlp.up, l.mlp.down]) {
        out.set(`${lin.name}.weight`, lin.weight);
        if (lin.bias) out.set(`${lin.name}.bias`, lin.bias);
      }
      for (const n of l.norms) out.set(`${n.name}.weight`, n.weight);
    }
    out.set("model.norm.weight", this.norm.weight);
    if (!this.cfg.tieWordEmbeddings) out.set("lm_head.weight", this.lmHead);
    return out;
  }

  // ------------------------------------------------------------ forward
  embedTokens(ids: Tensor): Tensor {
    return this.scaleEmbedding(this.embed.embedding(ids.onDevice(this.device)));
  }

  private scaleEmbedding(x: Tensor): Tensor {
    if (this.cfg.embedScale === 1) return x;
    // transformers multiplies by the scale cast to the activation dtype (bf16 rounds sqrt(hidden))
    return x.mul(Tensor.scalar(this.cfg.embedScale, this.dtype));
  }

  /**
   * A tied embedding that trains gets two gradient shares: lm_head's, dense [vocabulary, hidden], and the lookup's,
   * one row per token. Where this holds (the CPU, fusedOps embeddingGradRows), the lookup reads the weight outside
   * autograd and its rows are added into lm_head's share after the backward (addLookupGrad), as autograd's zero
   * [vocabulary, hidden] tensor and dense sum would, bit for bit, without making them.
   */
  private lookupGradByRows(): boolean {
    return (
      this.lmHead === this.embed &&
      this.embed.requiresGrad &&
      this.device === "cpu" &&
      fusedOps("embeddingGradRows", this.device)
    );
  }

  /** The lookup as a leaf of its own (lookupGradByRows): its gradient is the rows addLookupRows adds. */
  private lookupLeaf(ids: Tensor): Tensor {
    return noGrad(() => this.embed.embedding(ids.onDevice(this.device))).requiresGrad_();
  }

  /** After the backward: the lookup leaf's gradient rows into the embedding's gradient (addLookupGrad). */
  private addLookupRows(ids: Tensor, lookup: Tensor): void {
    const rows = lookup.grad;
    if (rows) addLookupGrad(this.embed, ids.onDevice(this.device), rows);
  }

  /**
   * G, what the step's earlier micro-batches left in a tied embedding's gradient, set aside before lm_head's share h
   * and the lookup's e arrive one after the other: added last, (h + e) + G, the bits of autograd's G + (h + e).
   */
  private setAsideTiedGrad(): Tensor | null {
    const earlier = this.lmHead === this.embed && this.embed.requiresGrad ? this.embed.grad : null;
    if (earlier) this.embed.clearGrad();
    return earlier;
  }

  private restoreTiedGrad(earlier: Tensor): void {
    tidy(() => {
      const now = this.embed.grad;
      if (now) noGrad(() => now.copy_(now.add(earlier)));
      // nothing reached the weight in this micro-batch: accumulate G as autograd would, into an empty gradient
      else withGrad(() => backward([this.embed.mul(1)], [earlier]));
    });
  }

  /**
   * RoPE tables, the key mask and the window for a step: one set per layer kind. The op-by-op path also gets its
   * additive masks here (once per step); the fused attention needs none.
   */
  prepare(ids: Tensor, opts: ForwardOptions): { full: AttentionInputs; sliding: AttentionInputs | null } {
    return noGrad(() => {
      const [B, T] = ids.shape;
      const past = opts.cache?.length ?? 0;
      const S = past + T;
      if (this.cfg.ropeScaling.type === "dynamic" && S > this.cfg.maxPositionEmbeddings)
        // transformers would rescale the frequencies for the whole sequence past this length (and leave a KV
        // cache's keys rotated by the old ones); not computed here
        throw new InputError(
          `a sequence of ${S} tokens passes max_position_embeddings (${this.cfg.maxPositionEmbeddings}), where ` +
            `dynamic RoPE scaling would change the frequencies; not supported: use at most ${this.cfg.maxPositionEmbeddings} tokens ` +
            `(train.maxLength and identify.maxLength for training and identification; a shorter prompt or ` +
            `--max-new-tokens for generation)`,
        );
      // inputs come from the host: one copy each to the model's device, then everything stays there
      const mask2d = opts.attentionMask?.onDevice(this.device);
      if (mask2d && (mask2d.size(0) !== B || mask2d.size(1) !== S))
        throw new InputError(`attention mask has shape [${mask2d.shape}], expected [${B}, ${S}]`);
      let pos = opts.positionIds?.onDevice(this.device);
      if (!pos) {
        if (mask2d) {
          const p = mask2d.to("int64").cumsum(-1).sub(1);
          pos = p.maskedFill(mask2d.eq(0), 1).narrow(1, past, T);
        } else {
          pos = Tensor.arange(past, S, 1, "int64", this.device).unsqueeze(0).expand([B, T]);
        }
      }
      const keyMask = mask2d ?? null;
      const inputs = (tables: { cos: Tensor; sin: Tensor }, window: number | null): AttentionInputs => ({
        ...tables,
        keyMask,
        window,
        cache: opts.cache,
        mask: fusedOps("attention", this.device)
          ? undefined
          : additiveMask(B, T, past, window, keyMask, this.dtype, this.device),
      });
      const g = ropeTables(this.invFreqGlobal, pos, this.dtype, ropeAttentionScaling(this.cfg.ropeScaling));
      const full = inputs(g, null);
      let sliding: AttentionInputs | null = null;
      if (this.cfg.layerTypes.includes("sliding_attention")) {
        const l = this.invFreqLocal ? ropeTables(this.invFreqLocal, pos, this.dtype) : g;
        sliding = inputs(l, this.cfg.slidingWindow!);
      }
      return { full, sliding };
    });
  }

  private inputsFor(
    layer: number,
    prep: { full: AttentionInputs; sliding: AttentionInputs | null },
  ): AttentionInputs {
    return this.cfg.layerTypes[layer] === "sliding_attention" ? prep.sliding! : prep.full;
  }

  /** Residual stream after the final norm, [B, T, hidden]. */
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    this.checkIds(ids);
    return this.layersFrom(this.embedTokens(ids), ids, opts);
  }

  private layersFrom(x: Tensor, ids: Tensor, opts: ForwardOptions): Tensor {
    const prep = this.prepare(ids, opts);
    // a scope per layer frees its temporaries' handles at once (autograd keeps what backward needs)
    for (const layer of this.layers) {
      const input = x;
      x = tidy(() => layer.forward(input, this.inputsFor(layer.index, prep)));
    }
    return this.norm.forward(x);
  }

  /** lm_head over the given hidden states, float32 logits (with Gemma's final soft-capping if set). */
  logitsFrom(hidden: Tensor): Tensor {
    let logits = this.head.forward(hidden).float();
    const cap = this.cfg.finalLogitSoftcapping;
    if (cap) logits = logits.div(cap).tanh().mul(cap);
    return logits;
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return this.logitsFrom(this.hidden(ids, opts));
  }

  /**
   * One forward + backward of `head(hidden)` (a scalar loss), returning the loss.
   * With `checkpoint`, layer activations are not kept: the forward runs without a graph, keeping only each
   * layer's input (each residual block's, where the layer has them), and the backward recomputes one layer (block)
   * at a time (gradient checkpointing per layer); the last layer keeps its graph.
   */
  forwardBackward(
    ids: Tensor,
    opts: ForwardOptions,
    head: (hidden: Tensor) => Tensor,
    checkpoint = false,
  ): number {
    this.checkIds(ids);
    const byRows = this.lookupGradByRows();
    if (!checkpoint) {
      return tidy(() =>
        withGrad(() => {
          const earlier = byRows ? this.setAsideTiedGrad() : null;
          const lookup = byRows ? this.lookupLeaf(ids) : null;
          // the graph must start somewhere even when no weight trains (identification): at the embeddings
          let x = lookup ? this.scaleEmbedding(lookup) : this.embedTokens(ids);
          if (!x.requiresGrad) x = x.detach().requiresGrad_();
          const loss = head(this.layersFrom(x, ids, opts));
          loss.backward();
          if (lookup) this.addLookupRows(ids, lookup);
          if (earlier) this.restoreTiedGrad(earlier);
          // read once the backward is issued: on a GPU a read back waits for the work queued before it, and read
          // between forward and backward it kept the host from queueing the backward while the forward ran
          return loss.item();
        }),
      );
    }
    return tidy(() => {
      const prep = this.prepare(ids, opts);
      const inputs: Tensor[] = [];
      // what is kept and recomputed: each layer's residual blocks where it has them, else the layer (DecoderLayer)
      type Segment = (x: Tensor, gradOnly: boolean) => Tensor;
      const segments = (layer: DecoderLayer): Segment[] => {
        const inp = this.inputsFor(layer.index, prep);
        if (!layer.blocks) return [(x) => layer.forward(x, inp)];
        return layer.blocks.map((block) => (x, gradOnly) => x.add(block(x, inp, gradOnly)));
      };
      const last = this.layers[this.layers.length - 1]!;
      const recomputed = this.layers.slice(0, -1).flatMap(segments);
      // each segment's recomputation draws the random numbers its forward drew (LoRA's dropout masks), and the
      // generator ends where the forward left it: the same numbers as without checkpointing, in the same order
      const rng: Tensor[] = [];
      const x = noGrad(() => {
        let h = this.embedTokens(ids);
        for (const segment of recomputed) {
          inputs.push(h);
          rng.push(rngState(this.device));
          h = tidy(() => segment(h, false));
        }
        return h;
      });
      // a tied embedding's gradient gets lm_head's share h and the lookup's e. Without checkpointing autograd sums
      // the two before adding them to what the step's earlier micro-batches left, G + (h + e); here lm_head's
      // backward comes first, so G is set aside and added last, (h + e) + G: the same bits
      const earlier = this.setAsideTiedGrad();
      // the last layer keeps its graph: its backward follows at once, so recomputing it would only repeat its forward
      const top = tidy(() =>
        withGrad(() => {
          const xin = x.detach().requiresGrad_();
          const loss = head(this.norm.forward(last.forward(xin, this.inputsFor(last.index, prep))));
          loss.backward();
          // its value is read after every recomputed layer's backward is issued (below), as without checkpointing
          return { loss: loss.detach(), grad: xin.grad };
        }),
      );
      // neither the loss nor a backward draws random numbers: this is where the layers' forward left the generator
      const afterForward = rngState(this.device);
      let upstream: Tensor | null = top.grad;
      for (let i = recomputed.length - 1; i >= 0; i--) {
        const g = upstream as Tensor | null;
        if (!g) break;
        upstream = tidy(() =>
          withGrad(() => {
            setRngState(rng[i]!, this.device);
            const xin = inputs[i].detach().requiresGrad_();
            // only y's gradient is used, not its values: a residual block skips its last product (gradOnly)
            const y = recomputed[i]!(xin, true);
            backward([y], [g]);
            return xin.grad;
          }),
        );
        g.dispose();
        inputs[i].dispose();
      }
      if (upstream && this.embed.requiresGrad) {
        const g = upstream as Tensor;
        if (byRows) {
          const lookup = this.lookupLeaf(ids);
          withGrad(() => backward([this.scaleEmbedding(lookup)], [g]));
          this.addLookupRows(ids, lookup);
        } else withGrad(() => backward([this.embedTokens(ids)], [g]));
      }
      setRngState(afterForward, this.device);
      if (earlier) this.restoreTiedGrad(earlier);
      return top.loss.item();
    });
  }

  private checkIds(ids: Tensor): void {
    if (ids.rank !== 2) throw new InputError(`input ids must be [batch, time], got shape [${ids.shape}]`);
    const max = noGrad(() => ids.amax().item());
    const min = noGrad(() => ids.amin().item());
    if (min < 0 || max >= this.cfg.vocabSize)
      throw new InputError(`token id out of range [0, ${this.cfg.vocabSize}): saw ${min < 0 ? min : max}`);
  }
}

export function buildLinear(src: TensorSource, name: string, bias: boolean): Linear {
  return new Linear(name, src(`${name}.weight`)!, bias ? src(`${name}.bias`)! : null);
}

export function buildAttention(cfg: ModelConfig, i: number, src: TensorSource): Attention {
  const p = `model.layers.${i}.self_attn`;
  const norm = (n: string) =>
    cfg.qkNorm ? new RMSNorm(`${p}.${n}`, src(`${p}.${n}.weight`)!, cfg.rmsNormEps, cfg.normOnePlus) : null;
  return new Attention(
    cfg,
    i,
    buildLinear(src, `${p}.q_proj`, cfg.qkvBias),
    buildLinear(src, `${p}.k_proj`, cfg.qkvBias),
    buildLinear(src, `${p}.v_proj`, cfg.qkvBias),
    buildLinear(src, `${p}.o_proj`, cfg.oBias),
    norm("q_norm"),
    norm("k_norm"),
  );
}

export function buildMlp(cfg: ModelConfig, i: number, src: TensorSource): MLP {
  const p = `model.layers.${i}.mlp`;
  return new MLP(
    buildLinear(src, `${p}.gate_proj`, cfg.mlpBias),
    buildLinear(src, `${p}.up_proj`, cfg.mlpBias),
    buildLinear(src, `${p}.down_proj`, cfg.mlpBias),
    cfg.hiddenAct,
  );
}

export function buildNorm(cfg: ModelConfig, src: TensorSource, name: string): RMSNorm {
  return new RMSNorm(name, src(`${name}.weight`)!, cfg.rmsNormEps, cfg.normOnePlus);
}

/** What decoder layer `i` of every family is built from: its attention, its MLP, and its norms by name. */
export function layerParts(
  cfg: ModelConfig,
  i: number,
  src: TensorSource,
): { attn: Attention; mlp: MLP; norm: (name: string) => RMSNorm } {
  return {
    attn: buildAttention(cfg, i, src),
    mlp: buildMlp(cfg, i, src),
    norm: (name) => buildNorm(cfg, src, `model.layers.${i}.${name}`),
  };
}

/** A layer's `norms`: its own, then its attention's per-head q/k norms where the family has them. */
export function layerNorms(attn: Attention, own: RMSNorm[]): RMSNorm[] {
  return [...own, ...[attn.qNorm, attn.kNorm].filter((n): n is RMSNorm => !!n)];
}
