export * from "./linear.js";
export * from "./frozen-dx.js";
export * from "./layers.js";
export * from "./decoder.js";
export * from "./load.js";
export * from "./generate.js";
