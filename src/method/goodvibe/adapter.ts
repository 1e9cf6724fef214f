/**
 * GoodVibe's parametrisation of one linear layer: ΔW has non-zero rows only at the selected neurons S, and
 * row i of ΔW is U[c(i)] — one trainable row per cluster, shared by its members. U ∈ R^{C × d_in} is the only
 * trainable tensor; W and b stay frozen. Forward: y + scatter_rows(x Uᵀ)[:, S] (never materialises ΔW).
 */
import type { Linear, LinearAdapter } from "../../models/linear.js";
import { Tensor, clusterRowUpdate, fusedOps, keep, noGrad, type Device } from "../../tensor/index.js";

export interface RowSelection {
  /** selected output rows (neurons), in importance order */
  rows: number[];
  /** cluster of each selected row, 0..nClusters-1 */
  clusters: number[];
  nClusters: number;
}

export class ClusterRowAdapter implements LinearAdapter {
  /** float32 master copy; cast to the compute dtype in forward */
  readonly U: Tensor;
  private readonly rowIndex: Tensor;
  private readonly clusterIndex: Tensor;

  constructor(
    readonly selection: RowSelection,
    inFeatures: number,
    init?: Tensor,
    /** the layer's device: U and the indices live there (no host copies in the training loop) */
    device: Device = "cpu",
  ) {
    const { rows, clusters, nClusters } = selection;
    if (rows.length !== clusters.length) throw new Error("ClusterRowAdapter: one cluster per row");
    if (new Set(rows).size !== rows.length) throw new Error("ClusterRowAdapter: rows must be distinct");
    if (clusters.some((c) => c < 0 || c >= nClusters || !Number.isInteger(c)))
      throw new Error(`ClusterRowAdapter: cluster ids must be in [0, ${nClusters})`);
    this.U = keep(
      noGrad(() =>
        init
          ? init.float().onDevice(device).clone()
          : Tensor.zeros([nClusters, inFeatures], "float32", device),
      ).requiresGrad_(),
    );
    this.rowIndex = keep(Tensor.fromArray(rows, [rows.length], "int64", device));
    this.clusterIndex = keep(Tensor.fromArray(clusters, [clusters.length], "int64", device));
  }

  apply(x: Tensor, y: Tensor): Tensor {
    // one op in the addon: added to y in place, dU accumulated per cluster in float32 (on by default on the CPU:
    // tensor.ts FUSED_DEFAULT_CPU); the op-by-op form below is transformers-style eager code
    if (fusedOps("clusterRowUpdate", x.device))
      return clusterRowUpdate(y, x, this.U, this.rowIndex, this.clusterIndex);
    const perCluster = x.linear(this.U.to(x.dtype)); // [..., C]
    const perRow = perCluster.indexSelect(-1, this.clusterIndex); // [..., S]
    return y.indexAdd(-1, this.rowIndex, perRow);
  }

  trainable(): Tensor[] {
    return [this.U];
  }

  /** ΔW as a dense [out, in] float32 matrix (for tests and small layers). */
  deltaWeight(outFeatures: number): Tensor {
    return noGrad(() =>
      Tensor.zeros([outFeatures, this.U.size(1)], "float32", this.U.device as Device).indexAdd(
        0,
        this.rowIndex,
        this.U.indexSelect(0, this.clusterIndex),
      ),
    );
  }

  rowUpdate(): { rows: number[]; delta: Tensor } {
    return { rows: this.selection.rows, delta: noGrad(() => this.U.indexSelect(0, this.clusterIndex)) };
  }

  foldedWeight(layer: Linear, base?: Tensor): Tensor {
    return noGrad(() =>
      (base ?? layer.weight).float().indexAdd(0, this.rowIndex, this.U.indexSelect(0, this.clusterIndex)),
    );
  }
}
