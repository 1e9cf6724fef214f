/**
 * The text of one generated row as its tokens arrive, for a server that ends a row at its stop string (instead of
 * generating to max_tokens and cutting after) and streams the text.
 *
 * Decoding is incremental as vLLM's detokenizer does it (detokenizer_utils.py detokenize_incrementally): the new
 * text is decode(ids[prefix:]) less decode(ids[prefix:read]), so a tokenizer whose decoder depends on the tokens
 * around (SentencePiece's leading space, byte-level BPE) gives the same characters as decoding the whole row; a
 * token that ends inside a character (a byte-level BPE splits an emoji into byte tokens) adds nothing until the
 * character is whole, so no half character (U+FFFD) is ever sent.
 *
 * A tokenizer that cleans up tokenization spaces (transformers' clean_up_tokenization: " ." -> ".", " 's" -> "'s",
 * ...; Llama 3's does) decodes a row into text that is not the concatenation of its pieces: there `decodeWhole`, its
 * own decoding, gives the text, the whole row decoded again at each whole character, and the characters the clean-up
 * may still change (a space among the last three) are held back from ready().
 */
import type { HfTokenizer } from "../../io/tokenizer.js";

export class RowText {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  /** The pieces' text so far (whole characters only, no clean-up). */
  private raw = "";
  /** The row's text so far, as the tokenizer decodes it (whole characters only). */
  text = "";
  /** Where the first stop string found begins in `text`; null while none. */
  stopAt: number | null = null;
  private readonly longestStop: number;

  /**
   * `decode`: the pieces' text (no clean-up); `decodeWhole`: the tokenizer's own decoding where it differs from
   * the pieces' (clean-up of tokenization spaces), else left out.
   */
  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: readonly string[] = [],
    private readonly decodeWhole?: (ids: number[]) => string,
  ) {
    this.longestStop = Math.max(0, ...stops.map((s) => s.length));
  }

  /** Add the row's next token; true when its text now holds a stop string (the row is over). */
  push(id: number): boolean {
    this.ids.push(id);
    // (a tokenizer may refuse to decode no tokens)
    const before =
      this.readOffset > this.prefixOffset
        ? this.decode(this.ids.slice(this.prefixOffset, this.readOffset))
        : "";
    const now = this.decode(this.ids.slice(this.prefixOffset));
    if (now.length <= before.length || now.endsWith("\uFFFD")) return false; // a character still incomplete
    this.raw += now.slice(before.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    const from = this.text.length;
    this.text = this.decodeWhole ? this.decodeWhole(this.ids) : this.raw;
    // the clean-up may change characters before the new ones: look again from the start then
    return this.findStop(this.decodeWhole ? 0 : from);
  }

  /** Look for the stop strings in what `text` gained from `from` on (and the characters a stop could span). */
  private findStop(from: number): boolean {
    if (this.stopAt !== null) return true;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, from - s.length + 1));
      if (i >= 0 && (this.stopAt === null || i < this.stopAt)) this.stopAt = i;
    }
    return this.stopAt !== null;
  }

  /**
   * The text that can be sent now: before the stop string once one is found; otherwise, with a clean-up, all but
   * its end from a space among the last three characters (" n'" may yet become "n't"), and of the rest all but its
   * longest end that begins a stop string (held back until it can no longer become one).
   */
  ready(): string {
    if (this.stopAt !== null) return this.text.slice(0, this.stopAt);
    let t = this.text;
    if (this.decodeWhole) {
      const space = t.lastIndexOf(" ");
      if (space >= 0 && space >= t.length - 3) t = t.slice(0, space);
    }
    for (let k = Math.min(this.longestStop - 1, t.length); k > 0; k--) {
      const tail = t.slice(t.length - k);
      if (this.stops.some((s) => s.startsWith(tail))) return t.slice(0, t.length - k);
    }
    return t;
  }
}

/**
 * A RowText decoding as `tok` decodes an answer (special tokens skipped, its clean-up of spaces, if any, applied to
 * the whole row).
 */
export function rowTextOf(
  tok: Pick<HfTokenizer, "decode" | "cleanUpTokenizationSpaces">,
  stops: readonly string[] = [],
): RowText {
  const pieces = (ids: number[]) =>
    tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false });
  const whole = tok.cleanUpTokenizationSpaces
    ? (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true })
    : undefined;
  return new RowText(pieces, stops, whole);
}
