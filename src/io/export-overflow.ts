/**
 * Values beyond float16's range that an f16 export wrote as ±inf (float16's largest finite value is 65504; from
 * 65520 on a value rounds to inf), by tensor. The references write them so too: llama.cpp's convert_hf_to_gguf.py
 * casts with numpy's astype(float16), which only prints numpy's "RuntimeWarning: overflow encountered in cast"
 * (naming no tensor), and torch's .to(float16) under transformers' save_pretrained says nothing. The export writes
 * them as they do, but says which tensor, how many values and the largest, so that a model that then computes
 * inf/NaN is not a mystery, and how to keep them (bfloat16 or float32).
 */
import { bf16BitsToF32 } from "./gguf.js";
import type { StDtype } from "./safetensors.js";

export interface F16Overflow {
  tensor: string;
  /** values finite in the source written as ±inf */
  count: number;
  /** the largest |x| among them */
  maxAbs: number;
}

/**
 * Counts, tensor by tensor, as an export writes its parts. `found` is what it found, in the order written: a live
 * list, which an export plan's result holds and which is complete once the file is written.
 */
export class F16OverflowCounter {
  private readonly byTensor = new Map<string, F16Overflow>();
  readonly found: F16Overflow[] = [];

  /**
   * `out`: float16 bits just made for `tensor`; `input(i)`: the value out[i] came from. One pass over `out`; the
   * source is looked at only where an inf was written.
   */
  count(tensor: string, out: Uint16Array, input: (i: number) => number): void {
    for (let i = 0; i < out.length; i++) if ((out[i]! & 0x7fff) === 0x7c00) this.add(tensor, input(i));
  }

  /** `x`, a source value of `tensor`, was written as ±inf (an inf in the source stays one: not counted). */
  add(tensor: string, x: number): void {
    if (Number.isFinite(x)) this.addCounted(tensor, 1, Math.abs(x));
  }

  /** `count` finite source values of `tensor` (the largest |x| `maxAbs`) were written as ±inf, counted elsewhere. */
  addCounted(tensor: string, count: number, maxAbs: number): void {
    if (count === 0) return;
    let e = this.byTensor.get(tensor);
    if (!e) {
      e = { tensor, count: 0, maxAbs: 0 };
      this.byTensor.set(tensor, e);
      this.found.push(e);
    }
    e.count += count;
    e.maxAbs = Math.max(e.maxAbs, maxAbs);
  }
}

/** The warning for `o`; `remedy` says how to keep such values ("export with --outtype bf16 or f32 to keep them"). */
export function f16OverflowWarning(o: F16Overflow, remedy: string): string {
  return (
    `${o.tensor}: ${o.count} value${o.count === 1 ? "" : "s"} beyond float16's range (|x| > 65504; the largest ` +
    `${o.maxAbs.toPrecision(6)}) written as ±inf, where the model will compute inf/NaN: ${remedy}`
  );
}

/** Value i of `bytes`, a safetensors tensor's data in `dtype` (a float dtype), read where it lies. */
export function floatAt(bytes: Uint8Array, dtype: StDtype, i: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "F32":
      return view.getFloat32(4 * i, true);
    case "F64":
      return view.getFloat64(8 * i, true);
    case "BF16":
      return bf16BitsToF32(view.getUint16(2 * i, true));
    default:
      return NaN; // float16 (cannot overflow float16) or not a float: never counted
  }
}

/** `bytes` (float16 data) as its 16-bit values, copied only when not 2-byte aligned. */
export function f16Bits(bytes: Uint8Array): Uint16Array {
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  return new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 1);
}
