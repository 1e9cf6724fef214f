/**
 * Decodes Parquet files off the main thread, one at a time, each named by a message. hyparquet can spin forever or
 * leave stray rejections on a corrupt page; in a worker the caller can time it out and terminate it without hanging
 * or crashing the process. The caller keeps a worker only after a clean read (datasets.ts): one that failed, whose
 * abandoned column reads may still reject, is terminated.
 */
import { parentPort } from "node:worker_threads";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";

process.on("unhandledRejection", (e) => {
  parentPort!.postMessage({ error: String((e as Error)?.message ?? e) });
});
parentPort!.on("message", async ({ file }: { file: string }) => {
  try {
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file) });
    parentPort!.postMessage({ rows });
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message ?? String(e) });
  }
});
