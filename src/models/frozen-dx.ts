/**
 * Which frozen products compute dX from a transposed copy of their weight (frozenDx; tensor.ts frozenLinear), within
 * an explicit memory budget (issue 13 §1; BENCHMARKS §5, "frozenDx by default within a memory budget").
 *
 * A copy of Wᵀ gives the backward dX = dY·W the layout oneDNN's bf16 matmul runs fastest here (the same values bit
 * for bit) at the price of a second copy of the weight. So a model's plan ranks its products by what a copy buys
 * per byte and takes them in that order while their copies' total stays within the budget; the rest keep libtorch's
 * own backward (the same values). Ranked first: the decoder layers' products, largest weight first (gate/up, down,
 * then q/k/v, o), since each sees every token of a batch; last, lm_head, whose products see only the positions a
 * loss is taken at (an SFT example's answer tokens; one row per prompt in the identification benchmark).
 * A product makes its copy only where it can pay: at least FROZEN_DX_MIN_ROWS rows (a product with a few rows is a
 * matrix-vector product bound by reading W once, in either layout) on a weight of at least FROZEN_DX_MIN_WEIGHT
 * elements (a small weight sits in the caches in either layout: the model organism's, hidden 128, measured no
 * faster from a copy; BENCHMARKS §5); smaller weights are not planned at all.
 *
 * The setting (tensor.ts fusedOps("frozenDx")):
 * - default, on the CPU: the plan above, within GOODVIBE_FROZEN_DX_BUDGET, by default FROZEN_DX_DEFAULT_SHARE of
 *   the memory available when the plan is made (MemAvailable); off on other devices (not measured there);
 * - forced on (GOODVIBE_FUSED=+frozenDx or 1, setFusedOp("frozenDx", true)): every frozen bf16 product, small ones
 *   included, within GOODVIBE_FROZEN_DX_BUDGET when it is set and without a limit otherwise;
 * - forced off (GOODVIBE_FUSED=-frozenDx or 0): none.
 *
 * The copy's kind follows how the products are computed (frozenCopyKind). Where CPU bf16 products are computed in
 * float32 (tensor.ts f32Products: libtorch's own accumulate in bf16 there, AVX2 CPUs), a bf16 copy of Wᵀ buys nothing
 * (dX is a float32 product of dY and W upcast, which OpenBLAS packs in either layout); what costs there is the upcast
 * of W on every call, up to a third of a product's time. So the copy held is W in float32 (twice the bf16 bytes),
 * read by the forward and by dX, with or without a backward and whatever the rows (measured faster from 1 to 256
 * rows on every decoder weight of Qwen2.5-0.5B's shape); the same plan, budget, ranking and size rule
 * (FROZEN_DX_MIN_WEIGHT) decide which weights get one, the bytes counted in float32, except lm_head, which gets none:
 * its product with a few rows is bound by reading W, and read as float32 (twice the bytes) it took 1.02-1.32x the
 * time of W upcast a block at a time, in cache (BENCHMARKS "Float32 weight copies on AVX2 CPUs"). The values are the
 * per-call upcast's bit for bit (test/models/f32-copies.test.ts); a weight
 * updated in place (AdamW included) gets a fresh copy at its next product (native/src/frozen_linear.cc keys each copy
 * on the weight's storage, view and version).
 *
 * Lifetime. The copies are large (1.33 GiB at Qwen2.5-0.5B in float32; several GiB at 7B within the budget) and useful
 * only while their weights' products run, so they go as soon as none can: a model's when the stage that ran its last
 * product is over (FrozenDxPlan.release: harden after training, before the fold reads the checkpoint from disk; an
 * evaluation when it ends; a judge's training before its checkpoint is written), and any weight's the moment its
 * last handle is freed (a model dropped without a release, once collected: native/src/frozen_linear.cc). A plan's
 * budget is a share of the memory available when it is made, so stale copies are purged before it is measured.
 */
import { InputError } from "../errors.js";
import {
  f32Products,
  frozenLinearCache,
  fusedOpExplicit,
  frozenLinearRelease,
  fusedOps,
  releaseIdleMemory,
  itemSize,
  type Tensor,
} from "../tensor/index.js";
import { availableMemoryBytes, formatBytes } from "../util/memory.js";

/** The environment variable that sets the budget: bytes (0, 1500000000, 512MiB, 2GiB, 8GB) or a share (25%). */
export const FROZEN_DX_BUDGET_ENV = "GOODVIBE_FROZEN_DX_BUDGET";
/** The default budget: this share of the memory available when a model's plan is made. */
export const FROZEN_DX_DEFAULT_SHARE = 0.25;
/** Rows (tokens) a product needs before its copy is made (default setting). */
export const FROZEN_DX_MIN_ROWS = 16;
/** Elements (out × in) a product's weight needs before its copy is made (default setting): 1 MiB in bf16. */
export const FROZEN_DX_MIN_WEIGHT = 2 ** 19;

export type MemoryBudget = { bytes: number } | { share: number };

const UNIT_BYTES: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
};

/**
 * A memory budget as written: a byte count with an optional unit (0, 1500000000, 512MiB, 2GiB, 1.5 GB; K/M/G/T and
 * KiB… are binary, KB/MB/GB/TB decimal) or a share of the available memory (25%, in (0, 100]). Anything else is
 * refused, naming `what` (the variable or setting it came from).
 */
export function parseMemoryBudget(text: string, what: string): MemoryBudget {
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (pct) {
    const share = Number(pct[1]) / 100;
    if (share > 0 && share <= 1) return { share };
  } else {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(t);
    const unit = m ? UNIT_BYTES[m[2].toLowerCase()] : undefined;
    if (m && unit !== undefined) return { bytes: Math.floor(Number(m[1]) * unit) };
  }
  throw new InputError(
    `${what}=${text}: not a memory budget; give bytes (0, 1500000000, 512MiB, 2GiB, 8GB) or a share of the ` +
      `available memory (25%, more than 0 and at most 100)`,
  );
}

/** The budget set in the environment, or why it was refused (thrown when a plan needs it). */
const envBudget: MemoryBudget | InputError | null = (() => {
  const v = process.env[FROZEN_DX_BUDGET_ENV];
  if (v === undefined || v.trim() === "") return null;
  try {
    return parseMemoryBudget(v, FROZEN_DX_BUDGET_ENV);
  } catch (e) {
    return e as InputError;
  }
})();
let setBudget: { text: string; budget: MemoryBudget } | null = null;

/**
 * Sets the budget for plans made from now on in this process, as GOODVIBE_FROZEN_DX_BUDGET would (its text), or
 * returns to the environment's (null). A malformed budget is refused here. Returns the previous setting.
 */
export function setFrozenDxBudget(text: string | null): string | null {
  const prev = setBudget?.text ?? null;
  setBudget = text === null ? null : { text, budget: parseMemoryBudget(text, "frozenDx budget") };
  return prev;
}

/** The budget given explicitly (setFrozenDxBudget, else the environment), with how to name it; null when none. */
function explicitBudget(): { budget: MemoryBudget; named: string } | null {
  if (setBudget) return { budget: setBudget.budget, named: `frozenDx budget ${setBudget.text}` };
  if (envBudget instanceof InputError) throw envBudget;
  if (envBudget)
    return { budget: envBudget, named: `${FROZEN_DX_BUDGET_ENV}=${process.env[FROZEN_DX_BUDGET_ENV]}` };
  return null;
}

/** Bytes and how the budget was set, for a plan on `device` in `mode`. */
function resolveBudget(mode: "auto" | "forced", device: string): { bytes: number; text: string } {
  const given = explicitBudget();
  if (!given && mode === "forced")
    return { bytes: Infinity, text: `no limit (frozenDx forced on, ${FROZEN_DX_BUDGET_ENV} unset)` };
  const budget = given?.budget ?? { share: FROZEN_DX_DEFAULT_SHARE };
  const named = given?.named ?? `default, ${FROZEN_DX_BUDGET_ENV} unset`;
  if ("bytes" in budget) return { bytes: budget.bytes, text: `${formatBytes(budget.bytes)} (${named})` };
  if (device !== "cpu")
    throw new InputError(
      `${named}: a share of the available memory is known only on the CPU (the addon cannot read ${device}'s free ` +
        `memory); give bytes instead (e.g. 8GiB)`,
    );
  const avail = availableMemoryBytes();
  const bytes = Math.floor(budget.share * avail);
  return {
    bytes,
    text: `${formatBytes(bytes)} = ${+(budget.share * 100).toFixed(2)}% of ${formatBytes(avail)} available (${named})`,
  };
}

/**
 * One weight whose products may read a transposed copy: a linear's, or a group's concatenated weight (its linears
 * share the slot: a linear of the group running its own product copies only its own rows of it).
 */
export class DxSlot {
  /** the plan of the model the slot belongs to (null for a linear outside a model: no budget known) */
  plan: FrozenDxPlan | null = null;
  constructor(
    readonly name: string,
    /** lm_head: its products see only the positions a loss is taken at */
    readonly head: boolean,
    private readonly weightOf: () => Tensor | null,
  ) {}
  get weight(): Tensor | null {
    return this.weightOf();
  }
}

export type FrozenDxMode = "off" | "auto" | "forced";

/** The frozenDx setting on `device`: off, the budgeted default (auto), or forced on. */
export function frozenDxMode(device: string): FrozenDxMode {
  if (!fusedOps("frozenDx", device)) return "off";
  return fusedOpExplicit("frozenDx") ? "forced" : "auto";
}

/**
 * The copy a frozen weight's products read on `device`: W in float32 where CPU bf16 products are computed in float32
 * (forward and dX), else Wᵀ in the weight's dtype (dX only).
 */
export type FrozenCopyKind = "float32" | "transposed";
export function frozenCopyKind(device: string): FrozenCopyKind {
  return device === "cpu" && f32Products() ? "float32" : "transposed";
}

/** What a plan chose: the slots whose products may make a copy, their copies' bytes, and the budget. */
export interface FrozenDxChoice {
  mode: "auto" | "forced";
  kind: FrozenCopyKind;
  budgetBytes: number;
  budgetText: string;
  chosen: DxSlot[];
  chosenBytes: number;
  /** slots left on libtorch's own backward because the budget was spent */
  left: DxSlot[];
  leftBytes: number;
  /** slots not planned for their small weights (default setting) */
  small: DxSlot[];
  /** slots that get no copy of this kind whatever the budget (float32: lm_head, measured no faster from one) */
  excluded: DxSlot[];
}

/** Whether a slot's products can gain from a copy of `kind` (float32: not lm_head's; see the header). */
function copyPays(slot: DxSlot, kind: FrozenCopyKind): boolean {
  return kind === "transposed" || !slot.head;
}

/**
 * Bytes of a slot's copy of `kind` (its weight's in bf16, or in float32), or null where no copy can be made (not
 * bf16, or training).
 */
function copyBytes(slot: DxSlot, kind: FrozenCopyKind = "transposed"): number | null {
  const w = slot.weight;
  if (!w || w.dtype !== "bfloat16" || w.requiresGrad || w.shape.length !== 2) return null;
  return w.size(0) * w.size(1) * (kind === "float32" ? 4 : itemSize(w.dtype));
}

/**
 * Slots in the order their copies are taken: decoder products before lm_head, larger weights first, then model
 * order (a stable sort).
 */
export function rankSlots(slots: DxSlot[]): DxSlot[] {
  const size = new Map(slots.map((s) => [s, copyBytes(s) ?? 0]));
  return [...slots].sort((a, b) => Number(a.head) - Number(b.head) || size.get(b)! - size.get(a)!);
}

/** Slots taken in rank order while each one's copy of `kind` still fits in what is left of the budget. */
export function chooseWithinBudget(
  ranked: DxSlot[],
  budgetBytes: number,
  kind: FrozenCopyKind = "transposed",
): { chosen: DxSlot[]; chosenBytes: number; left: DxSlot[]; leftBytes: number } {
  const chosen: DxSlot[] = [];
  const left: DxSlot[] = [];
  let chosenBytes = 0;
  let leftBytes = 0;
  for (const s of ranked) {
    const bytes = copyBytes(s, kind);
    if (bytes === null) continue;
    if (chosenBytes + bytes <= budgetBytes) {
      chosen.push(s);
      chosenBytes += bytes;
    } else {
      left.push(s);
      leftBytes += bytes;
    }
  }
  return { chosen, chosenBytes, left, leftBytes };
}

/** A model's frozenDx plan, made when its first product needs it (or describe() is called), once per setting. */
export class FrozenDxPlan {
  private readonly made = new Map<string, { choice: FrozenDxChoice; allowed: Set<DxSlot> }>();

  constructor(
    readonly slots: DxSlot[],
    readonly device: string,
  ) {
    for (const s of slots) s.plan = this;
  }

  /** The choice under the current setting (null when frozenDx is off). */
  choice(): FrozenDxChoice | null {
    const mode = frozenDxMode(this.device);
    return mode === "off" ? null : this.make(mode).choice;
  }

  private make(mode: "auto" | "forced") {
    const kind = frozenCopyKind(this.device);
    const key = `${mode} ${kind} ${setBudget?.text ?? ""}`;
    let plan = this.made.get(key);
    if (!plan) {
      // copies of freed weights (a model before this one) are memory about to be returned: returned before the
      // available memory the budget is a share of is read
      frozenLinearRelease([]);
      const budget = resolveBudget(mode, this.device);
      const excluded = this.slots.filter((s) => !copyPays(s, kind) && copyBytes(s) !== null);
      const slots = this.slots.filter((s) => copyPays(s, kind));
      const big = (s: DxSlot) => mode === "forced" || (s.weight?.numel ?? 0) >= FROZEN_DX_MIN_WEIGHT;
      const c = chooseWithinBudget(rankSlots(slots.filter(big)), budget.bytes, kind);
      const small = slots.filter((s) => !big(s) && copyBytes(s) !== null);
      plan = {
        choice: { mode, kind, budgetBytes: budget.bytes, budgetText: budget.text, ...c, small, excluded },
        allowed: new Set(c.chosen),
      };
      this.made.set(key, plan);
    }
    return plan;
  }

  /**
   * Whether a product of `rows` rows on `slot`'s weight (or its rows [out, in]) reads the copy: a transposed copy
   * for its dX (default setting: FROZEN_DX_MIN_ROWS rows or more), a float32 copy for its forward and dX whatever the
   * rows (the per-call upcast it saves does not shrink with them).
   */
  allows(slot: DxSlot, mode: "auto" | "forced", rows: number, out: number, inFeatures: number): boolean {
    const plan = this.make(mode);
    if (!plan.allowed.has(slot)) return false;
    if (mode === "forced") return true;
    return (
      (plan.choice.kind === "float32" || rows >= FROZEN_DX_MIN_ROWS) &&
      out * inFeatures >= FROZEN_DX_MIN_WEIGHT
    );
  }

  /** One line for a run's log: the setting, how many copies the plan allows and their bytes, the budget. */
  describe(): string {
    const mode = frozenDxMode(this.device);
    const f32 = frozenCopyKind(this.device) === "float32";
    if (mode === "off")
      return f32
        ? "frozenDx off: bf16 products are computed in float32 here, W upcast on every call (GOODVIBE_FUSED)"
        : this.device === "cpu" || fusedOpExplicit("frozenDx")
          ? "frozenDx off (dX by libtorch's linear backward; GOODVIBE_FUSED)"
          : `frozenDx off on ${this.device} (not measured there; GOODVIBE_FUSED=+frozenDx turns it on)`;
    const c = this.make(mode).choice;
    const all = c.chosen.length + c.left.length + c.small.length + c.excluded.length;
    // only frozen bf16 weights are candidates: a float32 model (dtype: float32) has none, so say that rather than
    // "0 of 0" beside a line about bf16 products
    if (all === 0)
      return "frozenDx: no frozen bf16 weights (float32 compute or all weights train): no weight copies";
    const rule = f32
      ? mode === "auto"
        ? "; each made at the weight's first product (bf16 products are computed in float32 here)"
        : "; forced on: each made at the weight's first product (bf16 products are computed in float32 here)"
      : mode === "auto"
        ? `; each made at the weight's first backward of at least ${FROZEN_DX_MIN_ROWS} rows`
        : "; forced on: each made at the weight's first backward";
    const left =
      (c.left.length
        ? `; ${c.left.length} left to ${f32 ? "the per-call upcast" : "libtorch's backward"} ` +
          `(${formatBytes(c.leftBytes)}: over the budget)`
        : "") +
      (c.small.length
        ? `; ${c.small.length} not planned (weights under ${FROZEN_DX_MIN_WEIGHT} elements)`
        : "") +
      (c.excluded.length
        ? `; ${c.excluded.map((s) => s.name).join(", ")} upcast per call (no faster from a float32 copy)`
        : "");
    return (
      `frozenDx: ${f32 ? "float32" : "transposed"} weight copies allowed for ${c.chosen.length} of ${all} frozen ` +
      `products' weights (${formatBytes(c.chosenBytes)} in all) within the budget ${c.budgetText}${rule}${left}`
    );
  }

  /**
   * Drops the weight copies of this model's products (and any stale copy) once the caller runs none of its products
   * any more, and hands back the allocator's idle blocks (tensor.ts releaseIdleMemory): what was dropped, and a line
   * for a run's log. A later product makes its copy again.
   */
  release(): { count: number; bytes: number; idleBytes: number; text: string | null } {
    const weights = this.slots.map((s) => s.weight).filter((w): w is Tensor => w !== null && !w.disposed);
    const r = frozenLinearRelease(weights);
    // with the products over, so is the allocator's reason to keep freed blocks for them (the copies' own included)
    const idleBytes = releaseIdleMemory();
    const idle = idleBytes > 0 ? `; ${formatBytes(idleBytes)} of idle memory blocks returned` : "";
    // nothing released (a float32 model, or no weight large enough to plan): no line, not "0 copies released"
    return {
      ...r,
      idleBytes,
      text:
        r.count > 0 ? `frozenDx: ${r.count} weight copies released (${formatBytes(r.bytes)})${idle}` : null,
    };
  }

  /**
   * One line for a run's log after a stage: the weight copies the addon holds (this process's, all models); null when
   * it holds none (describe() has said why: none planned, or float32 compute).
   */
  describeHeld(): string | null {
    const held = frozenLinearCache();
    if (held.count === 0) return null;
    const kind = frozenCopyKind(this.device) === "float32" ? "float32" : "transposed";
    return `frozenDx: ${held.count} ${kind} weight copies held (${formatBytes(held.bytes)})`;
  }
}
