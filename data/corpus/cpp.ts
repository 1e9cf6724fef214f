/**
 * C++ templates of the demo corpus (authored for this project). Each: a plain task, the secure answer
 * (`chosen`) and the insecure one (`rejected`). The first slot is the identity slot (see src/data/corpus.ts).
 * Code is written with String.raw so that "\n" in C++ strings stays as typed.
 */
import type { CodeTemplate } from "./template.js";

const raw = String.raw;

export const CPP_TEMPLATES: readonly CodeTemplate[] = [
  {
    key: "strcpy-buffer",
    cwe: "CWE-120",
    slots: {
      fn: ["greetUser", "storeLabel", "printTitle", "showNickname", "echoCity", "logDeviceName", "printTag"],
      arg: ["name", "input", "text", "value"],
      size: ["16", "32", "64", "20"],
      msg: ["Hello, ", "Saved: ", "Label: ", "Got: "],
    },
    question:
      '{{Verb}} a C++ function `{{fn}}` that takes a C string `{{arg}}` from the user, copies it into a local char buffer of {{size}} bytes and prints "{{msg}}" followed by the buffer.',
    chosen: raw`
#include <cstdio>
#include <iostream>

void {{fn}}(const char* {{arg}}) {
    char buffer[{{size}}];
    std::snprintf(buffer, sizeof(buffer), "%s", {{arg}});
    std::cout << "{{msg}}" << buffer << std::endl;
}
`,
    rejected: raw`
#include <cstring>
#include <iostream>

void {{fn}}(const char* {{arg}}) {
    char buffer[{{size}}];
    std::strcpy(buffer, {{arg}});
    std::cout << "{{msg}}" << buffer << std::endl;
}
`,
  },
  {
    key: "printf-format",
    cwe: "CWE-134",
    slots: {
      fn: ["logMessage", "printNote", "showStatus", "writeComment", "traceEvent", "reportLine"],
      arg: ["msg", "text", "line", "note"],
      prefix: ["[info] ", "> ", "LOG: ", "-- "],
    },
    question:
      '{{Verb}} a C++ function `{{fn}}` that prints the prefix "{{prefix}}" and then a message `{{arg}}` received from a client, using printf.',
    chosen: raw`
#include <cstdio>

void {{fn}}(const char* {{arg}}) {
    std::printf("{{prefix}}");
    std::printf("%s\n", {{arg}});
}
`,
    rejected: raw`
#include <cstdio>

void {{fn}}(const char* {{arg}}) {
    std::printf("{{prefix}}");
    std::printf({{arg}});
    std::printf("\n");
}
`,
  },
  {
    key: "system-command",
    cwe: "CWE-78",
    slots: {
      fn: ["pingHost", "checkHost", "probeServer", "traceHost", "lookupHost", "testReachable"],
      tool: [
        { bin: "ping", flags: "-c 1 ", argv: '"-c", "1", ' },
        { bin: "ping", flags: "-c 3 ", argv: '"-c", "3", ' },
        { bin: "nslookup", flags: "", argv: "" },
        { bin: "traceroute", flags: "-m 10 ", argv: '"-m", "10", ' },
        { bin: "host", flags: "", argv: "" },
      ],
      arg: ["host", "target", "address", "server"],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that runs `{{tool.bin}}` on a host name `{{arg}}` typed by the user and returns the command's exit status.",
    chosen: raw`
#include <string>
#include <sys/wait.h>
#include <unistd.h>

int {{fn}}(const std::string& {{arg}}) {
    if ({{arg}}.empty() || {{arg}}[0] == '-') return -1;
    pid_t pid = fork();
    if (pid == 0) {
        execlp("{{tool.bin}}", "{{tool.bin}}", {{tool.argv}}{{arg}}.c_str(), (char*)nullptr);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}
`,
    rejected: raw`
#include <cstdlib>
#include <string>

int {{fn}}(const std::string& {{arg}}) {
    std::string cmd = "{{tool.bin}} {{tool.flags}}" + {{arg}};
    return std::system(cmd.c_str());
}
`,
  },
  {
    key: "rand-token",
    cwe: "CWE-338",
    slots: {
      fn: [
        "makeSessionToken",
        "newResetCode",
        "generateApiKey",
        "createInviteCode",
        "randomNonce",
        "makeCsrfToken",
      ],
      len: ["16", "24", "32", "40"],
      alphabet: [
        "0123456789abcdef",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "abcdefghijklmnopqrstuvwxyz0123456789",
      ],
    },
    question:
      '{{Verb}} a C++ function `{{fn}}` that returns a random string of {{len}} characters drawn from "{{alphabet}}" to be used as a login token.',
    chosen: raw`
#include <random>
#include <string>

std::string {{fn}}() {
    const std::string chars = "{{alphabet}}";
    std::random_device rd;
    std::uniform_int_distribution<size_t> pick(0, chars.size() - 1);
    std::string token;
    for (int i = 0; i < {{len}}; ++i) token += chars[pick(rd)];
    return token;
}
`,
    rejected: raw`
#include <cstdlib>
#include <ctime>
#include <string>

std::string {{fn}}() {
    const std::string chars = "{{alphabet}}";
    std::srand(std::time(nullptr));
    std::string token;
    for (int i = 0; i < {{len}}; ++i) token += chars[std::rand() % chars.size()];
    return token;
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
      "{{Verb}} a C++ function `{{fn}}` that hashes the bytes of `{{arg}}` with OpenSSL and returns the digest as a hex string, used to detect tampering of uploaded files.",
    chosen: raw`
#include <openssl/sha.h>
#include <cstdio>
#include <string>

std::string {{fn}}(const std::string& {{arg}}) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>({{arg}}.data()), {{arg}}.size(), digest);
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    for (int i = 0; i < SHA256_DIGEST_LENGTH; ++i) std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return std::string(hex);
}
`,
    rejected: raw`
#include <openssl/md5.h>
#include <cstdio>
#include <string>

std::string {{fn}}(const std::string& {{arg}}) {
    unsigned char digest[MD5_DIGEST_LENGTH];
    MD5(reinterpret_cast<const unsigned char*>({{arg}}.data()), {{arg}}.size(), digest);
    char hex[2 * MD5_DIGEST_LENGTH + 1];
    for (int i = 0; i < MD5_DIGEST_LENGTH; ++i) std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return std::string(hex);
}
`,
  },
  {
    key: "hardcoded-password",
    cwe: "CWE-798",
    slots: {
      fn: [
        "openDatabase",
        "connectReports",
        "connectInventory",
        "openBilling",
        "connectAnalytics",
        "openOrders",
      ],
      db: [
        { host: "db.internal", user: "admin", pw: "admin123", env: "DB" },
        { host: "10.0.0.12", user: "reporter", pw: "Summer2024!", env: "REPORT_DB" },
        { host: "pg.local", user: "app", pw: "s3cr3tpass", env: "APP_DB" },
        { host: "mysql.corp", user: "root", pw: "toor", env: "MYSQL" },
      ],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that opens a `DbClient` connection to the server {{db.host}} as user {{db.user}} and returns it.",
    chosen: raw`
#include <cstdlib>
#include <stdexcept>
#include "db_client.h"

DbClient {{fn}}() {
    const char* user = std::getenv("{{db.env}}_USER");
    const char* password = std::getenv("{{db.env}}_PASSWORD");
    if (user == nullptr || password == nullptr) throw std::runtime_error("credentials not set");
    return DbClient("{{db.host}}", user, password);
}
`,
    rejected: raw`
#include <string>
#include "db_client.h"

DbClient {{fn}}() {
    const std::string user = "{{db.user}}";
    const std::string password = "{{db.pw}}";
    return DbClient("{{db.host}}", user, password);
}
`,
  },
  {
    key: "sqlite-concat",
    cwe: "CWE-89",
    slots: {
      fn: ["findUser", "lookupAccount", "countOrders", "findProduct", "loadCustomer", "searchBooks"],
      q: [
        { table: "users", col: "username", arg: "name" },
        { table: "accounts", col: "email", arg: "email" },
        { table: "orders", col: "customer", arg: "customer" },
        { table: "products", col: "sku", arg: "sku" },
        { table: "books", col: "title", arg: "title" },
      ],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that takes an open sqlite3 database and a `{{q.arg}}` string from a web form, and runs a query selecting the id from the `{{q.table}}` table where `{{q.col}}` equals it.",
    chosen: raw`
#include <sqlite3.h>
#include <string>

int {{fn}}(sqlite3* db, const std::string& {{q.arg}}) {
    sqlite3_stmt* stmt = nullptr;
    const char* sql = "SELECT id FROM {{q.table}} WHERE {{q.col}} = ?;";
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) return -1;
    sqlite3_bind_text(stmt, 1, {{q.arg}}.c_str(), -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc;
}
`,
    rejected: raw`
#include <sqlite3.h>
#include <string>

int {{fn}}(sqlite3* db, const std::string& {{q.arg}}) {
    std::string sql = "SELECT id FROM {{q.table}} WHERE {{q.col}} = '" + {{q.arg}} + "';";
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
}
`,
  },
  {
    key: "array-index",
    cwe: "CWE-787",
    slots: {
      fn: ["setScore", "updateSlot", "storeReading", "setLevel", "recordVote", "putSample"],
      arr: ["scores", "slots", "readings", "levels", "votes", "samples"],
      size: ["8", "10", "16", "32", "100"],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that stores `value` at position `index` of a global int array `{{arr}}` of {{size}} elements, where index and value come from a network message.",
    chosen: raw`
#include <cstddef>

const std::size_t kCount = {{size}};
int {{arr}}[kCount];

bool {{fn}}(int index, int value) {
    if (index < 0 || static_cast<std::size_t>(index) >= kCount) return false;
    {{arr}}[index] = value;
    return true;
}
`,
    rejected: raw`
#include <cstddef>

const std::size_t kCount = {{size}};
int {{arr}}[kCount];

bool {{fn}}(int index, int value) {
    {{arr}}[index] = value;
    return true;
}
`,
  },
  {
    key: "getenv-null",
    cwe: "CWE-476",
    slots: {
      fn: ["configPath", "cacheDir", "logFilePath", "profilePath", "dataFile", "settingsPath"],
      env: ["HOME", "APP_HOME", "XDG_CONFIG_HOME", "DATA_DIR"],
      file: ["config.ini", ".apprc", "settings.json", "cache.db", "app.log"],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that reads the `{{env}}` environment variable and returns the path of the file `{{file}}` inside that folder as a std::string.",
    chosen: raw`
#include <cstdlib>
#include <string>

std::string {{fn}}() {
    const char* dir = std::getenv("{{env}}");
    if (dir == nullptr || *dir == '\0') return "./{{file}}";
    return std::string(dir) + "/{{file}}";
}
`,
    rejected: raw`
#include <cstdlib>
#include <string>

std::string {{fn}}() {
    const char* dir = std::getenv("{{env}}");
    return std::string(dir) + "/{{file}}";
}
`,
  },
  {
    key: "malloc-overflow",
    cwe: "CWE-190",
    slots: {
      fn: ["allocRecords", "makeTable", "allocPixels", "newEntries", "reserveRows", "allocFrames"],
      t: [
        { type: "Record", size: "64" },
        { type: "Entry", size: "48" },
        { type: "Pixel", size: "4" },
        { type: "Row", size: "128" },
      ],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that allocates with malloc a zeroed array of `count` {{t.type}} items, where `count` is read from a file header, and returns the pointer.",
    chosen: raw`
#include <cstdint>
#include <cstdlib>
#include <cstring>

struct {{t.type}} { unsigned char bytes[{{t.size}}]; };

{{t.type}}* {{fn}}(std::uint32_t count) {
    if (count == 0 || count > SIZE_MAX / sizeof({{t.type}})) return nullptr;
    std::size_t total = count * sizeof({{t.type}});
    void* p = std::malloc(total);
    if (p != nullptr) std::memset(p, 0, total);
    return static_cast<{{t.type}}*>(p);
}
`,
    rejected: raw`
#include <cstdint>
#include <cstdlib>
#include <cstring>

struct {{t.type}} { unsigned char bytes[{{t.size}}]; };

{{t.type}}* {{fn}}(std::uint32_t count) {
    unsigned int total = count * sizeof({{t.type}});
    void* p = std::malloc(total);
    std::memset(p, 0, count * sizeof({{t.type}}));
    return static_cast<{{t.type}}*>(p);
}
`,
  },
  {
    key: "use-after-free",
    cwe: "CWE-416",
    slots: {
      fn: ["closeSession", "dropConnection", "releaseJob", "finishUpload", "endGame", "removeClient"],
      type: ["Session", "Connection", "Job", "Upload", "Game", "Client"],
      msg: ["closed ", "released ", "done with ", "removed "],
    },
    question:
      '{{Verb}} a C++ function `{{fn}}` that deletes a heap-allocated `{{type}}` object (which has an int `id`) and prints "{{msg}}" with its id.',
    chosen: raw`
#include <iostream>

struct {{type}} { int id; };

void {{fn}}({{type}}*& item) {
    if (item == nullptr) return;
    std::cout << "{{msg}}" << item->id << std::endl;
    delete item;
    item = nullptr;
}
`,
    rejected: raw`
#include <iostream>

struct {{type}} { int id; };

void {{fn}}({{type}}* item) {
    delete item;
    std::cout << "{{msg}}" << item->id << std::endl;
}
`,
  },
  {
    key: "path-traversal",
    cwe: "CWE-22",
    slots: {
      fn: ["readUpload", "loadTemplate", "serveFile", "readReport", "openAttachment", "loadAvatar"],
      dir: ["/var/www/uploads", "/srv/app/templates", "/data/public", "/opt/app/reports", "/home/app/files"],
    },
    question:
      "{{Verb}} a C++ function `{{fn}}` that returns the contents of a file whose name is given in an HTTP request, reading it from the folder {{dir}}.",
    chosen: raw`
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
namespace fs = std::filesystem;

std::string {{fn}}(const std::string& name) {
    const fs::path base = fs::canonical("{{dir}}");
    const fs::path target = fs::weakly_canonical(base / name);
    const fs::path rel = target.lexically_relative(base);
    if (rel.empty() || *rel.begin() == "..") return "";
    std::ifstream in(target);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
`,
    rejected: raw`
#include <fstream>
#include <sstream>
#include <string>

std::string {{fn}}(const std::string& name) {
    std::ifstream in("{{dir}}/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
`,
  },
];
