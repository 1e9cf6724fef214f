/**
 * The text of one generated row as its tokens arrive, for a server that ends a row at its stop string (instead of
 * generating to max_tokens and cutting after) and streams the text.
 *
 * Decoding is incremental as vLLM's detokenizer does it (detokenizer_utils.py detokenize_incrementally): the new
 * text is decode(ids[prefix:]) less decode(ids[prefix:read]), so a tokenizer whose decoder depends on the tokens
 * around (SentencePiece's leading space, byte-level BPE) gives the same characters as decoding the whole row; a
 * token that ends inside a character (a byte-level BPE splits an emoji into byte tokens) adds nothing until the
 * character is whole, so no half character (U+FFFD) is ever sent.
 */
export class RowText {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  /** The characters decoded so far (whole characters only). */
  text = "";
  /** Where the first stop string found begins in `text`; null while none. */
  stopAt: number | null = null;
  private readonly longestStop: number;

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: readonly string[] = [],
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
    const from = this.text.length;
    this.text += now.slice(before.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return this.findStop(from);
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
   * The text that can be sent now: before the stop string once one is found; otherwise all but its longest end
   * that begins a stop string (held back until it can no longer become one).
   */
  ready(): string {
    if (this.stopAt !== null) return this.text.slice(0, this.stopAt);
    const t = this.text;
    for (let k = Math.min(this.longestStop - 1, t.length); k > 0; k--) {
      const tail = t.slice(t.length - k);
      if (this.stops.some((s) => s.startsWith(tail))) return t.slice(0, t.length - k);
    }
    return t;
  }
}
