export * from "./tensor.js";
export * from "./optim.js";
export * from "./build.js";
