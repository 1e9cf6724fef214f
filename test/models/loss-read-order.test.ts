/**
 * forwardBackward reads the loss's value (a device-to-host read: on a GPU it waits for all the work queued before it)
 * only once the whole backward is issued, with or without gradient checkpointing: read between the forward and the
 * backward, it kept the host from queueing the backward while the device still ran the forward. Order of events
 * recorded on the model's own methods; the value returned is the loss's either way.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../../src/models/index.js";
import type { ResidualBlock } from "../../src/models/decoder.js";
import { Tensor, noGrad } from "../../src/tensor/index.js";
import { makeTinyChatModel } from "../evalcore/make-model.js";

const made = makeTinyChatModel({ seed: 3, layers: 3 });

for (const checkpoint of [false, true])
  test(`the loss is read after the backward is issued (${checkpoint ? "gradient checkpointing: after every recomputed layer" : "one graph"})`, () => {
    const model = loadModel(made.dir);
    const events: string[] = [];
    const item = Tensor.prototype.item;
    const backward = Tensor.prototype.backward;
    Tensor.prototype.item = function (this: Tensor) {
      events.push("read");
      return item.call(this);
    };
    Tensor.prototype.backward = function (this: Tensor, ...a: Parameters<Tensor["backward"]>) {
      events.push("backward");
      return backward.apply(this, a);
    };
    for (const layer of model.layers) {
      const forward = layer.forward.bind(layer);
      layer.forward = (...a: Parameters<typeof layer.forward>) => {
        events.push(`layer ${layer.index}`);
        return forward(...a);
      };
      // checkpointing runs a layer's residual blocks one by one (each recomputed in the backward)
      const blocks = layer.blocks as ResidualBlock[] | undefined;
      if (blocks)
        blocks.forEach((block, b) => {
          blocks[b] = (...a: Parameters<typeof block>) => {
            events.push(`layer ${layer.index}`);
            return block(...a);
          };
        });
    }
    const ids = Tensor.fromArray([1, 5, 9, 4, 7, 2], [1, 6], "int64");
    let value: number;
    try {
      events.length = 0;
      value = model.forwardBackward(ids, {}, (h) => model.logitsFrom(h).mean(), checkpoint);
    } finally {
      Tensor.prototype.item = item;
      Tensor.prototype.backward = backward;
    }
    // the ids' range check reads two values before anything runs; the loss is the one read after
    const reads = events.flatMap((e, i) => (e === "read" ? [i] : []));
    const lastLayer0 = events.lastIndexOf("layer 0");
    const firstBackward = events.indexOf("backward");
    assert.ok(firstBackward > 0, events.join(", "));
    const lossRead = reads.filter((i) => i > events.indexOf("layer 0"));
    assert.equal(lossRead.length, 1, events.join(", "));
    assert.ok(lossRead[0]! > firstBackward, events.join(", "));
    // with checkpointing the layers below the last are recomputed in the backward, last to first: layer 0's
    // recomputation is the last thing issued before the read
    if (checkpoint) assert.ok(lossRead[0]! > lastLayer0 && lastLayer0 > firstBackward, events.join(", "));
    assert.equal(lossRead[0], events.length - 1, events.join(", "));
    // the value is the loss's: the same forward again without a graph
    const again = noGrad(() => model.logitsFrom(model.hidden(ids)).mean().item());
    assert.equal(value, again);
  });
