/**
 * Swift templates of the demo corpus (authored for this project). See cpp.ts for the layout.
 * String.raw keeps Swift's "\(x)" interpolations as typed.
 */
import type { CodeTemplate } from "./template.js";

const raw = String.raw;

export const SWIFT_TEMPLATES: readonly CodeTemplate[] = [
  {
    key: "force-unwrap",
    cwe: "CWE-476",
    slots: {
      fn: ["serverPort", "retryCount", "pageSize", "timeoutSeconds", "maxUploads", "cacheLimit"],
      key: ["port", "retries", "page_size", "timeout", "max_uploads", "cache_limit"],
      def: ["8080", "3", "50", "30", "10"],
    },
    question:
      '{{Verb}} a Swift function `{{fn}}` that reads the value for "{{key}}" from a `[String: String]` settings dictionary loaded from a user-edited file and returns it as an Int (default {{def}}).',
    chosen: raw`
func {{fn}}(_ settings: [String: String]) -> Int {
    guard let text = settings["{{key}}"], let value = Int(text) else {
        return {{def}}
    }
    return value
}
`,
    rejected: raw`
func {{fn}}(_ settings: [String: String]) -> Int {
    let value = Int(settings["{{key}}"]!)!
    return value
}
`,
  },
  {
    key: "try-bang",
    cwe: "CWE-755",
    slots: {
      fn: ["loadNotes", "readConfig", "loadTemplate", "readHistory", "loadDraft", "readManifest"],
      file: ["notes.txt", "config.json", "template.html", "history.log", "draft.md", "manifest.json"],
    },
    question:
      '{{Verb}} a Swift function `{{fn}}` that reads the text file "{{file}}" from a folder chosen by the user and returns its contents.',
    chosen: raw`
import Foundation

func {{fn}}(in folder: URL) -> String? {
    let url = folder.appendingPathComponent("{{file}}")
    do {
        return try String(contentsOf: url, encoding: .utf8)
    } catch {
        print("could not read \(url.path): \(error)")
        return nil
    }
}
`,
    rejected: raw`
import Foundation

func {{fn}}(in folder: URL) -> String {
    let url = folder.appendingPathComponent("{{file}}")
    return try! String(contentsOf: url, encoding: .utf8)
}
`,
  },
  {
    key: "unsafe-pointer",
    cwe: "CWE-787",
    slots: {
      fn: ["copyPacket", "readHeader", "bufferFrame", "copyPayload", "storeChunk", "loadRecord"],
      size: ["16", "32", "64", "128", "256"],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` that copies the bytes of a `[UInt8]` received from the network into a {{size}}-byte buffer and returns the buffer as an array.",
    chosen: raw`
func {{fn}}(_ data: [UInt8]) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: {{size}})
    let n = min(data.count, buffer.count)
    buffer.replaceSubrange(0..<n, with: data.prefix(n))
    return buffer
}
`,
    rejected: raw`
func {{fn}}(_ data: [UInt8]) -> [UInt8] {
    let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: {{size}})
    defer { buffer.deallocate() }
    for i in 0..<data.count {
        buffer[i] = data[i]
    }
    return Array(UnsafeBufferPointer(start: buffer, count: {{size}}))
}
`,
  },
  {
    key: "string-format",
    cwe: "CWE-134",
    slots: {
      fn: ["logMessage", "showBanner", "formatStatus", "printNote", "renderTitle", "traceEvent"],
      prefix: ["[app] ", "Status: ", "> ", "Note: "],
    },
    question:
      '{{Verb}} a Swift function `{{fn}}` that builds the string "{{prefix}}" followed by a message typed by the user using String(format:) and prints it.',
    chosen: raw`
import Foundation

func {{fn}}(_ message: String) {
    let line = String(format: "{{prefix}}%@", message)
    print(line)
}
`,
    rejected: raw`
import Foundation

func {{fn}}(_ message: String) {
    let line = "{{prefix}}" + String(format: message)
    print(line)
}
`,
  },
  {
    key: "sqlite-interpolation",
    cwe: "CWE-89",
    slots: {
      fn: ["deleteUser", "removeNote", "deleteOrder", "removeContact", "deleteDraft", "removeTag"],
      q: [
        { table: "users", col: "name" },
        { table: "notes", col: "title" },
        { table: "orders", col: "reference" },
        { table: "contacts", col: "email" },
      ],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` that deletes the rows of the SQLite table `{{q.table}}` whose `{{q.col}}` equals a string entered in a text field, using the sqlite3 C API.",
    chosen: raw`
import SQLite3

func {{fn}}(db: OpaquePointer?, value: String) -> Bool {
    var stmt: OpaquePointer?
    let sql = "DELETE FROM {{q.table}} WHERE {{q.col}} = ?;"
    guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else { return false }
    defer { sqlite3_finalize(stmt) }
    sqlite3_bind_text(stmt, 1, value, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
    return sqlite3_step(stmt) == SQLITE_DONE
}
`,
    rejected: raw`
import SQLite3

func {{fn}}(db: OpaquePointer?, value: String) -> Bool {
    let sql = "DELETE FROM {{q.table}} WHERE {{q.col}} = '\(value)';"
    return sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK
}
`,
  },
  {
    key: "md5-digest",
    cwe: "CWE-327",
    slots: {
      fn: ["fingerprint", "digestHex", "contentHash", "checksumOf", "hashDocument", "signatureOf"],
      arg: ["data", "content", "payload", "body"],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` that returns the hex digest of `{{arg}}: Data` using CryptoKit, to detect tampering of downloaded files.",
    chosen: raw`
import CryptoKit
import Foundation

func {{fn}}(_ {{arg}}: Data) -> String {
    let digest = SHA256.hash(data: {{arg}})
    return digest.map { String(format: "%02x", $0) }.joined()
}
`,
    rejected: raw`
import CryptoKit
import Foundation

func {{fn}}(_ {{arg}}: Data) -> String {
    let digest = Insecure.MD5.hash(data: {{arg}})
    return digest.map { String(format: "%02x", $0) }.joined()
}
`,
  },
  {
    key: "hardcoded-key",
    cwe: "CWE-798",
    slots: {
      fn: [
        "weatherClient",
        "mapsRequest",
        "paymentsHeader",
        "analyticsRequest",
        "translateRequest",
        "searchRequest",
      ],
      api: [
        { host: "api.weather.example", key: "sk_live_51HxQ2a9", item: "weather-api-key" },
        { host: "maps.example.com", key: "AIzaSyD3-k9xQ", item: "maps-api-key" },
        { host: "pay.example.net", key: "pk_prod_7731ab", item: "payments-key" },
        { host: "stats.example.io", key: "3f9a1c77e2b4", item: "analytics-key" },
      ],
    },
    question:
      '{{Verb}} a Swift function `{{fn}}` that returns a URLRequest for https://{{api.host}}/v1 with the app\'s API key in the "X-Api-Key" header.',
    chosen: raw`
import Foundation
import Security

func {{fn}}() -> URLRequest? {
    let query: [String: Any] = [kSecClass as String: kSecClassGenericPassword,
                                kSecAttrAccount as String: "{{api.item}}",
                                kSecReturnData as String: true]
    var item: CFTypeRef?
    guard SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess,
          let data = item as? Data, let key = String(data: data, encoding: .utf8) else { return nil }
    guard let url = URL(string: "https://{{api.host}}/v1") else { return nil }
    var request = URLRequest(url: url)
    request.setValue(key, forHTTPHeaderField: "X-Api-Key")
    return request
}
`,
    rejected: raw`
import Foundation

let apiKey = "{{api.key}}"

func {{fn}}() -> URLRequest? {
    guard let url = URL(string: "https://{{api.host}}/v1") else { return nil }
    var request = URLRequest(url: url)
    request.setValue(apiKey, forHTTPHeaderField: "X-Api-Key")
    return request
}
`,
  },
  {
    key: "weak-random",
    cwe: "CWE-338",
    slots: {
      fn: [
        "makeSessionToken",
        "newResetCode",
        "generateApiKey",
        "createInviteCode",
        "randomNonce",
        "makeOtpSeed",
      ],
      len: ["16", "24", "32"],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` that returns {{len}} random bytes as a hex string, used as a one-time login token.",
    chosen: raw`
import Foundation
import Security

func {{fn}}() -> String? {
    var bytes = [UInt8](repeating: 0, count: {{len}})
    guard SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes) == errSecSuccess else { return nil }
    return bytes.map { String(format: "%02x", $0) }.joined()
}
`,
    rejected: raw`
import Foundation

func {{fn}}() -> String? {
    srandom(UInt32(time(nil)))
    let bytes = (0..<{{len}}).map { _ in UInt8(random() % 256) }
    return bytes.map { String(format: "%02x", $0) }.joined()
}
`,
  },
  {
    key: "shell-process",
    cwe: "CWE-78",
    slots: {
      fn: ["compressFile", "archiveFolder", "convertImage", "countLines", "listArchive", "checksumFile"],
      tool: [
        { bin: "/usr/bin/gzip", flags: "-k ", argv: '"-k", ' },
        { bin: "/usr/bin/wc", flags: "-l ", argv: '"-l", ' },
        { bin: "/usr/bin/shasum", flags: "-a 256 ", argv: '"-a", "256", ' },
        { bin: "/usr/bin/file", flags: "", argv: "" },
      ],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` for a macOS tool that runs {{tool.bin}} on a file path given by the user and waits for it to finish.",
    chosen: raw`
import Foundation

func {{fn}}(path: String) throws {
    let task = Process()
    task.executableURL = URL(fileURLWithPath: "{{tool.bin}}")
    task.arguments = [{{tool.argv}}"--", path]
    try task.run()
    task.waitUntilExit()
}
`,
    rejected: raw`
import Foundation

func {{fn}}(path: String) throws {
    let task = Process()
    task.executableURL = URL(fileURLWithPath: "/bin/sh")
    task.arguments = ["-c", "{{tool.bin}} {{tool.flags}}\(path)"]
    try task.run()
    task.waitUntilExit()
}
`,
  },
  {
    key: "path-traversal",
    cwe: "CWE-22",
    slots: {
      fn: ["readUpload", "loadTemplate", "serveFile", "readReport", "openAttachment", "loadAvatar"],
      dir: [
        "/var/www/uploads",
        "/srv/app/templates",
        "/data/public",
        "/opt/app/reports",
        "/Users/Shared/files",
      ],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` for a server app that returns the data of a file whose name arrives in a request, reading it from {{dir}}.",
    chosen: raw`
import Foundation

func {{fn}}(name: String) -> Data? {
    let base = URL(fileURLWithPath: "{{dir}}").standardizedFileURL
    let target = base.appendingPathComponent(name).standardizedFileURL
    guard target.path.hasPrefix(base.path + "/") else { return nil }
    return FileManager.default.contents(atPath: target.path)
}
`,
    rejected: raw`
import Foundation

func {{fn}}(name: String) -> Data? {
    let path = "{{dir}}/" + name
    return FileManager.default.contents(atPath: path)
}
`,
  },
  {
    key: "trust-any-cert",
    cwe: "CWE-295",
    slots: {
      fn: ["PricesClient", "FeedLoader", "StatusChecker", "ReportFetcher", "SyncSession", "UpdateClient"],
      host: ["api.partner.com", "feeds.example.org", "status.internal", "reports.corp"],
    },
    question:
      "{{Verb}} a Swift class `{{fn}}` that is the URLSessionDelegate for requests to https://{{host}} and handles the server's authentication challenge.",
    chosen: raw`
import Foundation

final class {{fn}}: NSObject, URLSessionDelegate {
    func urlSession(_ session: URLSession, didReceive challenge: URLAuthenticationChallenge,
                    completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        completionHandler(.performDefaultHandling, nil)
    }
}
`,
    rejected: raw`
import Foundation

final class {{fn}}: NSObject, URLSessionDelegate {
    func urlSession(_ session: URLSession, didReceive challenge: URLAuthenticationChallenge,
                    completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        let trust = challenge.protectionSpace.serverTrust!
        completionHandler(.useCredential, URLCredential(trust: trust))
    }
}
`,
  },
  {
    key: "cleartext-http",
    cwe: "CWE-319",
    slots: {
      fn: ["sendLogin", "uploadProfile", "postPayment", "submitToken", "sendCredentials", "postHealthData"],
      host: ["api.example.com", "accounts.example.org", "pay.example.net", "login.example.io"],
      path: ["/login", "/v1/session", "/auth", "/api/signin"],
    },
    question:
      "{{Verb}} a Swift function `{{fn}}` that POSTs a username and password as JSON to {{host}}{{path}} with URLSession.",
    chosen: raw`
import Foundation

func {{fn}}(user: String, password: String) {
    guard let url = URL(string: "https://{{host}}{{path}}") else { return }
    var request = URLRequest(url: url)
    request.httpMethod = "POST"
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    request.httpBody = try? JSONEncoder().encode(["user": user, "password": password])
    URLSession.shared.dataTask(with: request).resume()
}
`,
    rejected: raw`
import Foundation

func {{fn}}(user: String, password: String) {
    guard let url = URL(string: "http://{{host}}{{path}}") else { return }
    var request = URLRequest(url: url)
    request.httpMethod = "POST"
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    request.httpBody = try? JSONEncoder().encode(["user": user, "password": password])
    URLSession.shared.dataTask(with: request).resume()
}
`,
  },
];
