/**
 * goodvibe as a library: `import { loadModel, identify, clusterNeurons, attachGoodVibe, trainSft, ... } from "goodvibe"`.
 * The CLI (src/cli) is a thin shell over these.
 */
export * from "./errors.js";
export * from "./tensor/index.js";
export { loadModelConfig, parseModelConfig, type ModelConfig, type Family } from "./io/config.js";
export { readSafetensors, openModelWeights, writeSafetensors, writeModelWeights } from "./io/safetensors.js";
export { loadTokenizer, type HfTokenizer } from "./io/tokenizer.js";
export { exportGguf } from "./io/export-gguf.js";
export * from "./models/index.js";
export { readPairs, splitPairs, pairsToLabelledSamples, type SecurityPair } from "./data/pairs.js";
export {
  judgeMessages,
  sftMessages,
  buildSftExample,
  vibePrompt,
  judgeInstruction,
  validateJudgeTask,
  DEFAULT_JUDGE_TASK,
  PAPER_JUDGE_INSTRUCTION,
  type JudgeTask,
} from "./data/prompts.js";
export { identify } from "./method/goodvibe/identify.js";
export { identifyShard, mergeIdentifyShards } from "./method/goodvibe/identify-shard.js";
export {
  readNeuronMap,
  writeNeuronMap,
  summarizeNeuronMap,
  type NeuronMap,
} from "./method/goodvibe/neuron-map.js";
export {
  clusterNeurons,
  readClusterMap,
  writeClusterMap,
  selectionsOf,
  type ClusterMap,
} from "./method/goodvibe/clustering.js";
export { kmeans, silhouetteScore, chooseClusters } from "./method/goodvibe/kmeans.js";
export { ClusterRowAdapter, type RowSelection } from "./method/goodvibe/adapter.js";
export { LoraAdapter } from "./method/lora/layer.js";
export { attachGoodVibe } from "./method/goodvibe/model.js";
export { attachFull } from "./method/full.js";
export type { AttachedMethod } from "./method/attached.js";
export { attachLora } from "./method/lora/model.js";
export { trainSft, type TrainResult } from "./method/train.js";
export { DEFAULT_TRAIN, type TrainConfig } from "./method/train-config.js";
export { foldIntoCheckpoint } from "./method/fold.js";
export { writeGoodVibeDelta, readGoodVibeDelta } from "./method/goodvibe/delta.js";
export { writePeftAdapter, readPeftAdapter } from "./method/lora/peft.js";
export { runHarden } from "./recipes/harden.js";
export {
  defaultHardenConfig,
  resolveHardenConfig,
  hardenSchema,
  type HardenConfig,
} from "./config/harden.js";
export { evaluateModel, type ModelEvaluation } from "./recipes/evaluate.js";
export { judgeCode, listRules } from "./eval/judge/rules/index.js";
export { LlmJudge, reliabilitySamples, reliabilityOfScores } from "./eval/judge/llm.js";
export { measureJudgeReliability } from "./recipes/judge.js";
export { trainJudge } from "./recipes/train-judge.js";
export { securePreference } from "./eval/preference.js";
export { evaluateSafety } from "./eval/safety.js";
export { BuiltinBackend } from "./eval/generate/builtin.js";
export { HttpBackend } from "./eval/generate/http.js";
export { openLlamaCppBackend } from "./eval/generate/llamacpp.js";
export { renderReport } from "./report/index.js";
