/**
 * What identifies a file's contents without reading them, for what is remembered within the process about files
 * (io/hash.ts's model hashes, io/tokenizer-json.ts's answerTokensKey, io/chat-template.ts's folderChatTemplate): a
 * file rewritten moves its mtime and ctime, a replaced one has another inode.
 */
import * as fs from "node:fs";

/** Size, mtime, ctime, inode, device (of the file a link names); throws where there is no such file. */
export function fileIdentity(file: string): string {
  const st = fs.statSync(file, { bigint: true });
  return `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}:${st.dev}`;
}

/** What a memo of what `files` say is kept under: each path with its identity, "-" for one that is not there. */
export function filesVersion(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        return `${f}\0${fileIdentity(f)}`;
      } catch {
        return `${f}\0-`;
      }
    })
    .join("\n");
}
