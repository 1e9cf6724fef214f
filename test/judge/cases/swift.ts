import { code, type Case } from "./case.js";

export const swiftCases: Case[] = [
  {
    rule: "swift/force-unwrap",
    bad: [
      code`
        import Foundation
        func fetch(_ url: URL) {
            URLSession.shared.dataTask(with: url) { data, response, error in
                let text = String(decoding: data!, as: UTF8.self) // <- force-unwrap
                print(text)
            }.resume()
        }
      `,
      code`
        import Foundation
        func load(from path: String, completion: @escaping (Data?, Error?) -> Void) {
            completion(FileManager.default.contents(atPath: path), nil)
        }
        load(from: "/tmp/x") { data, error in
            print(data!.count) // <- force-unwrap
        }
      `,
      code`
        import Foundation
        func decode(_ bytes: [UInt8]) -> String {
            return String(bytes: bytes, encoding: .utf8)! // <- force-unwrap
        }
      `,
      code`
        import Foundation
        func f(_ s: String?) -> Int {
          let url = URL(string: "https://example.com")
          return s!.count + (url?.port ?? 0) // <- force-unwrap
        }
      `,
      code`
        import Foundation
        func get(_ url: URL, done: @escaping (Data?) -> Void) {
            URLSession.shared.dataTask(with: url) { data, _, _ in
                if let data = data { done(data) }
            }.resume()
        }
        get(URL(fileURLWithPath: "/tmp/a")) { data in
            print(data!.count) // <- force-unwrap
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func fetch(_ url: URL) {
            URLSession.shared.dataTask(with: url) { data, response, error in
                guard let data = data else { return }
                print(String(decoding: data, as: UTF8.self))
            }.resume()
        }
        func decode(_ bytes: [UInt8]) -> String {
            return String(bytes: bytes, encoding: .utf8) ?? ""
        }
      `,
      code`
        import UIKit
        class V: UIViewController {
          @IBOutlet weak var label: UILabel!
          func f(_ s: String?) -> Int {
            guard let s = s else { return 0 }
            if let n = Int(s), n != 3, !s.isEmpty { return n }
            print("done!")
            return s.count
          }
        }
      `,
    ],
  },
  {
    rule: "swift/try-force",
    bad: [
      code`
        import Foundation
        func load(_ u: URL) -> Data {
          return try! Data(contentsOf: u) // <- try-force
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func load(_ u: URL) -> Data? {
          do { return try Data(contentsOf: u) } catch { return nil }
        }
      `,
    ],
  },
  {
    rule: "swift/index-out-of-range",
    bad: [
      code`
        import Foundation
        func join(_ a: String, _ b: String) -> String {
            var out = a
            for i in 0..<b.count {
                out.append(b[b.index(out.endIndex, offsetBy: i)]) // <- index-out-of-range
            }
            return out
        }
      `,
      code`
        import Foundation
        func keep(_ text: String) -> [UInt8] {
            var slots = [UInt8](repeating: 0, count: 64)
            let bytes = Array(text.utf8)
            var i = 0
            while i < bytes.count { // <- index-out-of-range
                slots[i] = bytes[i]
                i += 1
            }
            return slots
        }
      `,
      code`
        import Foundation
        func keep(_ text: String) -> [Character] {
            var slots = Array<Character>(repeating: " ", count: 16)
            var at = 0
            for ch in text { // <- index-out-of-range
                slots[at] = ch
                at += 1
            }
            return slots
        }
      `,
      code`
        import Foundation
        func keep(_ values: [Int]) -> [Int] {
            var slots = [Int](repeating: 0, count: 8)
            for i in values.indices { // <- index-out-of-range
                slots[i] = values[i]
            }
            for i in stride(from: 0, to: values.count, by: 1) {
                slots[i] = values[i]
            }
            for i in 0...values.count - 1 {
                slots[i] = values[i]
            }
            return slots
        }
      `,
      code`
        import Foundation
        let argv = CommandLine.arguments
        let target = argv[1] // <- index-out-of-range
        print("Deploying \(target)")
      `,
      code`
        func slice(_ text: String, from start: Int, to end: Int) -> String {
            let chars = Array(text)
            var out = ""
            var i = start
            while i < end {
                out.append(chars[i]) // <- index-out-of-range
                i += 1
            }
            return out
        }
      `,
      code`
        class Storage {
            var values = [Int](repeating: 0, count: 10)
        }
        class Holder {
            var storage: Storage? = Storage()
            func set(_ value: Int, at index: Int) {
                storage?.values[index] = value // <- index-out-of-range
            }
        }
      `,
      code`
        func fill(_ n: Int) -> [Int] {
            var buffer = [Int](repeating: 0, count: 10)
            for i in 0..<n { // <- index-out-of-range
                buffer[i] = i
            }
            return buffer
        }
      `,
      code`
        func f() {
          let p = UnsafeMutablePointer<Int8>.allocate(capacity: 10)
          p[20] = 1 // <- index-out-of-range
        }
      `,
      code`
        class Store {
          var data = [Int]()
          func get(at index: Int) -> Int {
            return data[index] // <- index-out-of-range
          }
        }
      `,
      code`
        func middle(_ input: String) -> Substring {
          let start = input.index(input.startIndex, offsetBy: 5) // <- index-out-of-range
          return input[start...]
        }
      `,
      code`
        func copy(_ input: String) -> [UInt8] {
          var buffer = [UInt8](repeating: 0, count: 16)
          let bytes = Array(input.utf8)
          for i in 0..<bytes.count { // <- index-out-of-range
            buffer[i] = bytes[i]
          }
          return buffer
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func head(_ text: String) -> [Character] {
            var out: [Character] = Array(repeating: " ", count: 10)
            let n = min(text.count, 10)
            for i in 0..<n {
                out[i] = text[text.index(text.startIndex, offsetBy: i)]
            }
            return out
        }
      `,
      code`
        import Foundation
        func keep(_ text: String) -> [Character] {
            var slots = Array<Character>(repeating: " ", count: 16)
            var at = 0
            for ch in text {
                if at >= slots.count { break }
                slots[at] = ch
                at += 1
            }
            var i = 0
            let bytes = Array(text.utf8)
            guard bytes.count <= slots.count else { return slots }
            while i < bytes.count {
                slots[i] = Character(UnicodeScalar(bytes[i]))
                i += 1
            }
            return slots
        }
      `,
      code`
        import Foundation
        let argv = CommandLine.arguments
        guard argv.count > 1 else { exit(1) }
        let target = argv[1]
        print("Deploying \(target)")
      `,
      code`
        func slice(_ text: String, from start: Int, to end: Int) -> String {
            let chars = Array(text)
            var out = ""
            var i = max(start, 0)
            while i < min(end, chars.count) {
                out.append(chars[i])
                i += 1
            }
            return out
        }
      `,
      code`
        class Storage {
            var values = [Int](repeating: 0, count: 10)
        }
        class Holder {
            var storage: Storage? = Storage()
            func set(_ value: Int, at index: Int) {
                guard let s = storage, index >= 0 && index < s.values.count else { return }
                storage?.values[index] = value
            }
        }
        func fill(_ n: Int) -> [Int] {
            var buffer = [Int](repeating: 0, count: 10)
            for i in 0..<min(n, buffer.count) {
                buffer[i] = i
            }
            return buffer
        }
      `,
      code`
        func f() {
          var a = [Int8](repeating: 0, count: 10)
          if a.indices.contains(20) { a[20] = 1 }
        }
        class Store {
          var data = [Int]()
          func get(at index: Int) -> Int? {
            guard index >= 0 && index < data.count else { return nil }
            return data[index]
          }
        }
        func middle(_ input: String) -> Substring? {
          guard let start = input.index(input.startIndex, offsetBy: 5, limitedBy: input.endIndex) else { return nil }
          return input[start...]
        }
        func copy(_ input: String) -> [UInt8] {
          var buffer = [UInt8](repeating: 0, count: 16)
          let bytes = Array(input.utf8)
          for i in 0..<min(bytes.count, buffer.count) {
            buffer[i] = bytes[i]
          }
          return buffer
        }
      `,
    ],
  },
  {
    rule: "swift/format-string",
    bad: [
      code`
        import Foundation
        func log(_ userInput: String) {
          let s = String(format: userInput) // <- format-string
          print(s)
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func log(_ userInput: String) {
          let s = String(format: "%@", userInput)
          print(s)
        }
      `,
    ],
  },
  {
    rule: "swift/unsafe-deserialization",
    bad: [
      code`
        import Foundation
        func load(_ d: Data) -> Any? {
          return NSKeyedUnarchiver.unarchiveObject(with: d) // <- unsafe-deserialization
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func load(_ d: Data) -> NSString? {
          return try? NSKeyedUnarchiver.unarchivedObject(ofClass: NSString.self, from: d)
        }
      `,
    ],
  },
  {
    rule: "swift/weak-crypto",
    bad: [
      code`
        import CryptoKit
        func h(_ d: Data) -> String {
          let digest = Insecure.MD5.hash(data: d) // <- weak-crypto
          return digest.description
        }
      `,
    ],
    good: [
      code`
        import CryptoKit
        func h(_ d: Data) -> String {
          let digest = SHA256.hash(data: d)
          return digest.description
        }
      `,
    ],
  },
  {
    rule: "swift/hardcoded-credential",
    bad: [
      code`
        import Foundation
        struct Config {
          let apiKey = "sk_live_51Habc" // <- hardcoded-credential
        }
      `,
      code`
        func login(user: String, password: String) -> Bool {
          let expected = "Adm1n-2024"
          return password == expected // <- hardcoded-credential
        }
      `,
      code`
        import Foundation
        func authorize(_ request: inout URLRequest) {
          let value = "Bearer ghp_16C7e42F292c6912E7710c838347Ae178B4a"
          request.setValue(value, forHTTPHeaderField: "Authorization") // <- hardcoded-credential
        }
      `,
      code`
        import Foundation
        func credential() -> URLCredential {
          let p = "Svc!2024x"
          return URLCredential(user: "svc", password: p, persistence: .forSession) // <- hardcoded-credential
        }
      `,
      code`
        import Foundation
        func authorize(_ request: inout URLRequest) {
            let k = "sk_live_51HabcDEFghi"
            request.setValue("Bearer \(k)", forHTTPHeaderField: "Authorization") // <- hardcoded-credential
        }
      `,
      code`
        import Foundation
        let stripe = "sk_live_51HabcDEFghi"
        func authorize(_ request: inout URLRequest) {
            request.setValue(String(format: "Bearer %@", stripe), forHTTPHeaderField: "Authorization") // <- hardcoded-credential
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func authorize(_ request: inout URLRequest, keychain: Keychain) {
            let k = keychain.get("api-token") ?? ""
            request.setValue("Bearer \(k)", forHTTPHeaderField: "Authorization")
            let env = ProcessInfo.processInfo.environment["API_TOKEN"] ?? ""
            request.setValue(String(format: "Bearer %@", env), forHTTPHeaderField: "Authorization")
            let version = "2.1"
            request.setValue("app/\(version)", forHTTPHeaderField: "User-Agent")
        }
      `,
      code`
        import Foundation
        struct Config {
          let apiKey = ProcessInfo.processInfo.environment["API_KEY"] ?? ""
        }
      `,
      code`
        import Foundation
        func login(user: String, password: String) -> Bool {
          let expected = ProcessInfo.processInfo.environment["ADMIN_PASSWORD"] ?? ""
          return !expected.isEmpty && password == expected
        }
      `,
      code`
        import Foundation
        func authorize(_ request: inout URLRequest, token: String) {
          request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
          let json = "application/json"
          request.setValue(json, forHTTPHeaderField: "Content-Type")
        }
      `,
      code`
        func dispatch(command: String) -> Int {
          let quit = "quit"
          if command == quit { return 0 }
          return 1
        }
      `,
      code`
        import Foundation
        func loadFromKeychain() throws -> String { return "" }
        func credential() throws -> URLCredential {
          var p = "Svc!2024x"
          p = try loadFromKeychain()
          return URLCredential(user: "svc", password: p, persistence: .forSession)
        }
      `,
      code`
        import Foundation
        func credential() -> URLCredential {
          let p = "<your-password>"
          return URLCredential(user: "svc", password: p, persistence: .forSession)
        }
      `,
    ],
  },
  {
    rule: "swift/command-injection",
    bad: [
      code`
        import Foundation
        func calculate(_ expression: String) {
            let result = eval(expression) // <- command-injection
            print(result)
        }
      `,
      code`
        import Foundation
        func run(_ input: String) {
          let task = Process()
          task.launchPath = "/bin/sh"
          task.arguments = ["-c", "ls \(input)"] // <- command-injection
          task.launch()
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func calculate(_ a: String, _ b: String) -> Int? {
            guard let x = Int(a), let y = Int(b) else { return nil }
            let evaluated = x + y
            return evaluated
        }
      `,
      code`
        import Foundation
        func run(_ input: String) {
          let task = Process()
          task.executableURL = URL(fileURLWithPath: "/bin/ls")
          task.arguments = ["-l", input]
          try? task.run()
        }
      `,
    ],
  },
  {
    rule: "swift/sql-injection",
    bad: [
      code`
        import SQLite3
        func q(_ db: OpaquePointer?, _ name: String) {
          let sql = "SELECT * FROM users WHERE name = '\(name)'" // <- sql-injection
          sqlite3_exec(db, sql, nil, nil, nil)
        }
      `,
    ],
    good: [
      code`
        import SQLite3
        func q(_ db: OpaquePointer?, _ name: String) {
          var st: OpaquePointer?
          sqlite3_prepare_v2(db, "SELECT * FROM users WHERE name = ?", -1, &st, nil)
          sqlite3_bind_text(st, 1, name, -1, nil)
        }
      `,
    ],
  },

  {
    rule: "swift/unchecked-optional",
    bad: [
      code`
        class User {
          var name: String = ""
        }
        func greet(user: User?) -> String {
          return "Hello, \(user.name)" // <- unchecked-optional
        }
      `,
    ],
    good: [
      code`
        class User {
          var name: String = ""
        }
        func greet(user: User?) -> String {
          guard let user = user else { return "Hello" }
          return "Hello, \(user.name)"
        }
        func greet2(user: User?) -> String {
          return "Hello, \(user?.name ?? "stranger")"
        }
      `,
    ],
  },
  {
    rule: "swift/unsafe-copy-overflow",
    bad: [
      code`
        import Foundation
        func validate(_ input: String) -> String {
            let fixed = UnsafeMutablePointer<Int8>.allocate(capacity: 10)
            defer { fixed.deallocate() }
            input.withCString { cStr in
                fixed.initialize(from: cStr, count: 20) // <- unsafe-copy-overflow
            }
            return String(cString: fixed)
        }
      `,
      code`
        import Foundation
        func store(_ data: Data) -> UnsafeMutableBufferPointer<UInt8> {
            let size = 1024
            let out = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: size)
            _ = data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int in
                out.baseAddress!.initialize(from: raw.bindMemory(to: UInt8.self).baseAddress!, count: data.count) // <- unsafe-copy-overflow
                return 0
            }
            return out
        }
      `,
      code`
        func fill(_ destination: UnsafeMutablePointer<UInt8>, from data: [UInt8]) {
          destination.initialize(from: data, count: data.count) // <- unsafe-copy-overflow
        }
      `,
      code`
        func write(_ buffer: UnsafeMutablePointer<Int8>, _ input: String) {
          let bytes = Array(input.utf8CString)
          buffer.advanced(by: 4).assign(from: bytes, count: 4) // <- unsafe-copy-overflow
        }
      `,
      code`
        final class Slot {
            private let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
            func put(_ text: String) {
                let bytes = Array(text.utf8)
                storage.initialize(from: bytes) // <- unsafe-copy-overflow
            }
            deinit { storage.deallocate() }
        }
      `,
      code`
        import Foundation
        func keep(_ raw: UnsafeMutableRawPointer, _ values: [Int32]) {
            raw.withMemoryRebound(to: Int32.self, capacity: 4) { words in
                words.initialize(from: values) // <- unsafe-copy-overflow
            }
        }
      `,
      code`
        func put(_ target: UnsafeMutablePointer<Int>, _ values: [Int]) {
            target.initialize(from: values) // <- unsafe-copy-overflow
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func zeroed(_ data: Data) -> UnsafeMutableBufferPointer<UInt8> {
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: data.count)
            buffer.initialize(repeating: 0)
            let raw = UnsafeMutablePointer<UInt8>.allocate(capacity: data.count)
            raw.initialize(to: 0, count: data.count)
            raw.deallocate()
            return buffer
        }
      `,
      code`
        import Foundation
        func store(_ data: Data) -> UnsafeMutableBufferPointer<UInt8>? {
            let size = 1024
            let out = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: size)
            if data.count > size {
                return nil
            }
            _ = data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int in
                out.baseAddress!.initialize(from: raw.bindMemory(to: UInt8.self).baseAddress!, count: data.count)
                return 0
            }
            let small = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
            small.initialize(repeating: 0, count: 16)
            small.deallocate()
            return out
        }
      `,
      code`
        func fill(_ destination: UnsafeMutableBufferPointer<UInt8>, from data: [UInt8]) {
          let count = min(data.count, destination.count)
          destination.baseAddress?.initialize(from: data, count: count)
        }
        func copy(_ data: Data, into buffer: inout [UInt8]) {
          data.copyBytes(to: &buffer, count: buffer.count)
        }
      `,
      code`
        func pinned(_ values: [Int]) -> UnsafeMutablePointer<Int> {
            let p = UnsafeMutablePointer<Int>.allocate(capacity: values.count)
            p.initialize(from: values)
            return p
        }
        func boxed(_ values: [Int]) -> UnsafeMutableBufferPointer<Int> {
            let b = UnsafeMutableBufferPointer<Int>.allocate(capacity: 8)
            _ = b.initialize(from: values)
            return b
        }
        func checked(_ target: UnsafeMutablePointer<Int>, capacity: Int, _ values: [Int]) {
            guard values.count <= capacity else { return }
            target.initialize(from: values)
        }
      `,
    ],
  },
  {
    rule: "swift/use-after-free",
    bad: [
      code`
        func address(of values: [Int]) -> UnsafePointer<Int> {
            return values.withUnsafeBufferPointer { $0.baseAddress! } // <- use-after-free
        }
      `,
      code`
        func compute() -> Int {
          let p = UnsafeMutablePointer<Int>.allocate(capacity: 1)
          p.initialize(to: 42)
          p.deallocate()
          return p.pointee // <- use-after-free
        }
      `,
      code`
        func leak() -> UnsafeMutablePointer<Int> {
          var value = 10
          return withUnsafeMutablePointer(to: &value) { $0 } // <- use-after-free
        }
      `,
    ],
    good: [
      code`
        func compute() -> Int {
          let p = UnsafeMutablePointer<Int>.allocate(capacity: 1)
          defer { p.deallocate() }
          p.initialize(to: 42)
          return p.pointee
        }
        func read() -> Int {
          var value = 10
          return withUnsafeMutablePointer(to: &value) { $0.pointee + 1 }
        }
      `,
    ],
  },
  {
    rule: "swift/unsafe-bitcast",
    bad: [
      code`
        class A { var x = 1 }
        class B { var y = "" }
        func convert(_ a: A) -> B {
          return unsafeBitCast(a, to: B.self) // <- unsafe-bitcast
        }
      `,
    ],
    good: [
      code`
        import SQLite3
        class A { var x = 1 }
        class B: A {}
        func convert(_ a: A) -> B? {
          let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
          return a as? B
        }
      `,
    ],
  },
  {
    rule: "swift/weak-random",
    bad: [
      code`
        import Foundation
        func makeToken() -> String {
          srandom(UInt32(time(nil))) // <- weak-random
          return String(random())
        }
      `,
    ],
    good: [
      code`
        import Foundation
        import Security
        func makeToken() -> String? {
          var bytes = [UInt8](repeating: 0, count: 16)
          guard SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes) == errSecSuccess else { return nil }
          return bytes.map { String(format: "%02x", $0) }.joined()
        }
      `,
    ],
  },
  {
    rule: "swift/retain-cycle",
    bad: [
      code`
        import Foundation
        class Session {
            var onExpire: (() -> Void)?
            var token = ""
            func start() {
                onExpire = { // <- retain-cycle
                    print(self.token)
                }
            }
        }
      `,
      code`
        class Node { // <- retain-cycle
            var value = 0
            var next: Node?
            var prev: Node?
        }
        let first = Node()
        let second = Node()
        first.next = second
        second.prev = first
      `,
      code`
        import Foundation
        class Ticker {
          var count = 0
          var timer: Timer?
          func start() {
            timer = Timer.scheduledTimer(withTimeInterval: 1, repeats: true) { _ in // <- retain-cycle
              self.count += 1
            }
          }
        }
      `,
      code`
        class Parent {
          var child: Child?
        }
        class Child { // <- retain-cycle
          var parent: Parent?
        }
      `,
    ],
    good: [
      code`
        import Foundation
        class Session {
            var onExpire: (() -> Void)?
            var token = ""
            func start() {
                onExpire = { [weak self] in
                    print(self?.token ?? "")
                }
            }
        }
        class Node {
            var value = 0
            var next: Node?
            weak var prev: Node?
        }
        let first = Node()
        let second = Node()
        first.next = second
        second.prev = first
      `,
      code`
        import Foundation
        class Ticker {
          var count = 0
          var timer: Timer?
          weak var delegate: AnyObject?
          func start() {
            timer = Timer.scheduledTimer(withTimeInterval: 1, repeats: true) { [weak self] _ in
              self?.count += 1
            }
          }
        }
        class Parent {
          var child: Child?
        }
        class Child {
          weak var parent: Parent?
        }
      `,
    ],
  },
  {
    rule: "swift/timer-not-invalidated",
    bad: [
      code`
        import Foundation
        final class Poller {
          private var hits = 0
          func begin() {
            Timer.scheduledTimer(withTimeInterval: 30, repeats: true) { [weak self] _ in // <- timer-not-invalidated
              self?.hits += 1
            }
          }
        }
      `,
      code`
        import Foundation
        class Heartbeat: NSObject {
          var ping: Timer?
          func start() {
            let interval: TimeInterval = 5
            ping = Timer.scheduledTimer( // <- timer-not-invalidated
              timeInterval: interval, target: self, selector: #selector(beat), userInfo: nil, repeats: true)
          }
          @objc func beat() { print("beat") }
        }
      `,
      code`
        import Foundation
        let refresh = Timer(timeInterval: 60, repeats: true) { _ in // <- timer-not-invalidated
          print("refresh")
        }
        RunLoop.main.add(refresh, forMode: .common)
      `,
    ],
    good: [
      code`
        import Foundation
        final class Poller {
          private var hits = 0
          private var timer: Timer?
          func begin() {
            timer = Timer.scheduledTimer(withTimeInterval: 30, repeats: true) { [weak self] _ in
              self?.hits += 1
            }
          }
          deinit { timer?.invalidate() }
        }
      `,
      code`
        import Foundation
        var remaining = 3
        Timer.scheduledTimer(withTimeInterval: 1, repeats: true) { t in
          remaining -= 1
          if remaining == 0 { t.invalidate() }
        }
      `,
      code`
        import Foundation
        Timer.scheduledTimer(withTimeInterval: 2, repeats: false) { _ in print("once") }
        let unscheduled = Timer(timeInterval: 1, repeats: true) { _ in print("never runs") }
      `,
    ],
  },
  {
    rule: "swift/quadratic-string-index",
    bad: [
      code`
        func reversedWords(_ text: String) -> [Character] {
          var out: [Character] = []
          for k in 0..<text.count {
            out.insert(text[text.index(text.startIndex, offsetBy: k)], at: 0) // <- quadratic-string-index
          }
          return out
        }
      `,
      code`
        let line = readLine() ?? ""
        let n = line.count
        var digits = 0
        for pos in 0...n - 1 {
          let ch = line[line.index(line.startIndex, offsetBy: pos)] // <- quadratic-string-index
          if ch.isNumber { digits += 1 }
        }
        print(digits)
      `,
    ],
    good: [
      code`
        func reversedWords(_ text: String) -> [Character] {
          var out: [Character] = []
          for ch in text { out.insert(ch, at: 0) }
          var idx = text.startIndex
          while idx < text.endIndex { print(text[idx]); idx = text.index(after: idx) }
          return out
        }
      `,
      code`
        let line = readLine() ?? ""
        var head: [Character] = []
        for pos in 0..<min(line.count, 16) {
          head.append(line[line.index(line.startIndex, offsetBy: pos)])
        }
        let bytes: [UInt8] = [1, 2, 3]
        for k in 0..<bytes.count { print(bytes[bytes.index(bytes.startIndex, offsetBy: k)]) }
        let banner = "ready"
        for k in 0..<banner.count { print(banner[banner.index(banner.startIndex, offsetBy: k)]) }
        print(head)
      `,
    ],
  },
  {
    rule: "swift/race-condition",
    bad: [
      code`
        import Foundation
        var cache = [String: String]()
        let workers = DispatchQueue.global(qos: .utility)
        for i in 0..<100 {
            workers.async { // <- race-condition
                cache["k\(i)"] = "v"
            }
        }
      `,
      code`
        import Foundation
        class BankAccount {
            var balance: Int = 0
            func deposit(_ amount: Int) {
                let current = balance
                balance = current + amount
            }
        }
        let account = BankAccount()
        DispatchQueue.concurrentPerform(iterations: 100) { _ in account.deposit(1) } // <- race-condition
        print(account.balance)
      `,
      code`
        import Foundation
        class Account {
          var balance = 0
          func depositMany() {
            DispatchQueue.concurrentPerform(iterations: 100) { _ in // <- race-condition
              self.balance += 1
            }
          }
        }
      `,
    ],
    good: [
      code`
        import Foundation
        var cache = [String: String]()
        let serial = DispatchQueue(label: "cache")
        for i in 0..<100 {
            serial.async {
                cache["k\(i)"] = "v"
            }
        }
      `,
      code`
        import Foundation
        class BankAccount {
            private let lock = NSLock()
            var balance: Int = 0
            func deposit(_ amount: Int) {
                lock.lock()
                let current = balance
                balance = current + amount
                lock.unlock()
            }
        }
        let account = BankAccount()
        DispatchQueue.concurrentPerform(iterations: 100) { _ in account.deposit(1) }
        print(account.balance)
      `,
      code`
        import Foundation
        class Account {
          var balance = 0
          let lock = NSLock()
          func depositMany() {
            DispatchQueue.concurrentPerform(iterations: 100) { _ in
              lock.lock()
              self.balance += 1
              lock.unlock()
            }
          }
        }
      `,
    ],
  },
  {
    rule: "swift/cleartext-transmission",
    bad: [
      code`
        import Foundation
        func login(user: String, password: String) {
          guard let url = URL(string: "http://api.example.com/login") else { return } // <- cleartext-transmission
          var request = URLRequest(url: url)
          request.httpMethod = "POST"
          request.httpBody = try? JSONEncoder().encode(["user": user, "password": password])
          URLSession.shared.dataTask(with: request).resume()
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func login(user: String, password: String) {
          guard let url = URL(string: "https://api.example.com/login") else { return }
          var request = URLRequest(url: url)
          request.httpMethod = "POST"
          request.httpBody = try? JSONEncoder().encode(["user": user, "password": password])
          URLSession.shared.dataTask(with: request).resume()
        }
      `,
    ],
  },
  {
    rule: "swift/trust-any-certificate",
    bad: [
      code`
        import Foundation
        final class Delegate: NSObject, URLSessionDelegate {
          func urlSession(_ session: URLSession, didReceive challenge: URLAuthenticationChallenge, // <- trust-any-certificate
                          completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
            completionHandler(.useCredential, URLCredential(trust: challenge.protectionSpace.serverTrust!))
          }
        }
      `,
    ],
    good: [
      code`
        import Foundation
        final class Delegate: NSObject, URLSessionDelegate {
          func urlSession(_ session: URLSession, didReceive challenge: URLAuthenticationChallenge,
                          completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
            completionHandler(.performDefaultHandling, nil)
          }
        }
      `,
    ],
  },
  {
    rule: "swift/path-traversal",
    bad: [
      code`
        import Foundation
        func load(name: String) -> Data? {
          let path = "/var/app/files/" + name
          return FileManager.default.contents(atPath: path) // <- path-traversal
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func load(name: String) -> Data? {
          let base = URL(fileURLWithPath: "/var/app/files").standardizedFileURL
          let target = base.appendingPathComponent(name).standardizedFileURL
          guard target.path.hasPrefix(base.path + "/") else { return nil }
          return FileManager.default.contents(atPath: target.path)
        }
      `,
    ],
  },
  {
    rule: "swift/integer-overflow",
    bad: [
      code`
        func storeAge(_ text: String) -> UInt8 {
            let years = Int(text) ?? 0
            return UInt8(years) // <- integer-overflow
        }
      `,
      code`
        func next() -> Int {
          var counter = Int.max
          counter += 1 // <- integer-overflow
          return counter
        }
      `,
    ],
    good: [
      code`
        func storeAge(_ text: String) -> UInt8? {
            let years = Int(text) ?? 0
            guard years >= 0 && years <= 150 else { return nil }
            return UInt8(years)
        }
        func level(_ raw: Int) -> UInt8 {
            return UInt8(clamping: raw)
        }
      `,
      code`
        func next() -> Int {
          let counter = Int.max
          let (value, overflow) = counter.addingReportingOverflow(1)
          return overflow ? counter : value
        }
      `,
    ],
  },
  {
    rule: "swift/cleartext-storage",
    bad: [
      code`
        import Foundation
        let defaults = UserDefaults.standard
        func remember(password: String) {
            defaults.set(password, forKey: "pw") // <- cleartext-storage
        }
      `,
      code`
        import Foundation
        func remember(password: String) {
          UserDefaults.standard.set(password, forKey: "password") // <- cleartext-storage
        }
      `,
    ],
    good: [
      code`
        import Foundation
        let defaults = UserDefaults.standard
        func remember(theme: String) {
            defaults.set(theme, forKey: "theme")
        }
      `,
      code`
        import Foundation
        import Security
        func remember(password: String) {
          let item: [String: Any] = [kSecClass as String: kSecClassGenericPassword, kSecValueData as String: Data(password.utf8)]
          SecItemAdd(item as CFDictionary, nil)
          UserDefaults.standard.set(true, forKey: "hasLoggedIn")
        }
      `,
    ],
  },
  {
    rule: "swift/divide-by-zero",
    bad: [
      code`
        func average(total: Int, count: Int) -> Int {
          return total / count // <- divide-by-zero
        }
      `,
    ],
    good: [
      code`
        func average(total: Int, count: Int) -> Int {
          guard count != 0 else { return 0 }
          return total / count
        }
      `,
    ],
  },
  {
    rule: "swift/unbounded-allocation",
    bad: [
      code`
        let size = Int(readLine() ?? "") ?? 0
        let buffer = [UInt8](repeating: 0, count: size) // <- unbounded-allocation
      `,
    ],
    good: [
      code`
        let size = Int(readLine() ?? "") ?? 0
        if size > 0 && size <= 4096 {
          let buffer = [UInt8](repeating: 0, count: size)
          print(buffer.count)
        }
      `,
    ],
  },
  {
    rule: "swift/unbounded-growth",
    bad: [
      code`
        class Log {
          private var lines: [String] = []
          func add(_ line: String) {
            lines.append(line) // <- unbounded-growth
          }
        }
      `,
    ],
    good: [
      code`
        class Log {
          private var lines: [String] = []
          private let maxLines = 1000
          func add(_ line: String) {
            if lines.count >= maxLines { lines.removeFirst() }
            lines.append(line)
          }
        }
      `,
    ],
  },
  {
    rule: "swift/out-of-bounds-read",
    bad: [
      code`
        import Foundation
        func messageLength(_ packet: Data) -> UInt32 {
            return packet.withUnsafeBytes { raw in
                raw.load(fromByteOffset: 4, as: UInt32.self) // <- out-of-bounds-read
            }
        }
      `,
      code`
        import Foundation
        func processData(_ data: Data) {
            var buffer = [UInt8](repeating: 0, count: 1024)
            data.copyBytes(to: &buffer, count: buffer.count) // <- out-of-bounds-read
            print(buffer[0])
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func messageLength(_ packet: Data) -> UInt32? {
            guard packet.count >= 8 else { return nil }
            return packet.withUnsafeBytes { raw in
                raw.load(fromByteOffset: 4, as: UInt32.self)
            }
        }
      `,
      code`
        import Foundation
        func processData(_ data: Data) {
            var buffer = [UInt8](repeating: 0, count: min(data.count, 1024))
            data.copyBytes(to: &buffer, count: buffer.count)
            var header = [UInt8](repeating: 0, count: 16)
            guard data.count >= header.count else { return }
            data.copyBytes(to: &header, count: header.count)
            print(buffer.count, header[0])
        }
      `,
    ],
  },
  {
    rule: "swift/webview-injection",
    bad: [
      code`
        import WebKit
        func greet(_ web: WKWebView, _ name: String) {
            web.loadHTMLString("<h1>Hello \(name)</h1>", baseURL: nil) // <- webview-injection
        }
      `,
      code`
        import WebKit
        func rename(_ web: WKWebView, _ title: String) {
            let script = "document.title = '" + title + "'"
            web.evaluateJavaScript(script, completionHandler: nil) // <- webview-injection
        }
      `,
    ],
    good: [
      code`
        import WebKit
        func greet(_ web: WKWebView, _ name: String) {
            web.loadHTMLString("<h1>Hello</h1>", baseURL: nil)
            web.evaluateJavaScript("render()", completionHandler: nil)
            let label = UILabel()
            label.text = name
        }
      `,
    ],
  },
  {
    rule: "swift/predicate-injection",
    bad: [
      code`
        import Foundation
        func people(named name: String, in list: [NSDictionary]) -> [NSDictionary] {
            let match = NSPredicate(format: "name == '\(name)'") // <- predicate-injection
            return list.filter { match.evaluate(with: $0) }
        }
      `,
    ],
    good: [
      code`
        import Foundation
        func people(named name: String, in list: [NSDictionary]) -> [NSDictionary] {
            let match = NSPredicate(format: "name == %@", name)
            return list.filter { match.evaluate(with: $0) }
        }
      `,
    ],
  },
  {
    rule: "swift/hardcoded-key",
    bad: [
      code`
        import CryptoKit
        import Foundation
        func seal(_ data: Data) throws -> Data? {
          let keyString = "0123456789abcdef0123456789abcdef"
          let key = SymmetricKey(data: keyString.data(using: .utf8)!) // <- hardcoded-key
          return try AES.GCM.seal(data, using: key).combined
        }
      `,
      code`
        import CommonCrypto
        import Foundation
        func encrypt(_ input: [UInt8], iv: [UInt8], out: inout [UInt8]) -> Int32 {
          let k: [UInt8] = [0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c]
          var moved = 0
          return CCCrypt(CCOperation(kCCEncrypt), CCAlgorithm(kCCAlgorithmAES), CCOptions(kCCOptionPKCS7Padding), k, k.count, iv, input, input.count, &out, out.count, &moved) // <- hardcoded-key
        }
      `,
      code`
        import CryptoKit
        import Foundation
        func tag(_ data: Data) -> Data {
          let mac = HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: Data("s3cret-mac".utf8))) // <- hardcoded-key
          return Data(mac)
        }
      `,
    ],
    good: [
      code`
        import CryptoKit
        import Foundation
        func seal(_ data: Data) throws -> Data? {
          let key = SymmetricKey(size: .bits256)
          return try AES.GCM.seal(data, using: key).combined
        }
      `,
      code`
        import CryptoKit
        import Foundation
        func seal(_ data: Data, keyData: Data) throws -> Data? {
          let key = SymmetricKey(data: keyData)
          return try AES.GCM.seal(data, using: key).combined
        }
      `,
      code`
        import CryptoKit
        import Foundation
        func readKeychainKey() throws -> Data { return Data() }
        func seal(_ data: Data) throws -> Data? {
          var material = Data("dev-key".utf8)
          material = try readKeychainKey()
          return try AES.GCM.seal(data, using: SymmetricKey(data: material)).combined
        }
      `,
    ],
  },
  {
    rule: "swift/static-iv",
    bad: [
      code`
        import CommonCrypto
        import Foundation
        func encrypt(_ input: [UInt8], key: [UInt8]) -> [UInt8] {
            let iv: [UInt8] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]
            var out = [UInt8](repeating: 0, count: input.count + 16)
            var moved = 0
            CCCrypt(CCOperation(kCCEncrypt), CCAlgorithm(kCCAlgorithmAES), CCOptions(kCCOptionPKCS7Padding), key, key.count, iv, input, input.count, &out, out.count, &moved) // <- static-iv
            return Array(out.prefix(moved))
        }
      `,
      code`
        import CryptoSwift
        func encrypt(_ input: [UInt8], key: [UInt8]) throws -> [UInt8] {
            let aes = try AES(key: key, blockMode: CBC(iv: Array("abcdefghijklmnop".utf8)), padding: .pkcs7) // <- static-iv
            return try aes.encrypt(input)
        }
      `,
    ],
    good: [
      code`
        import CommonCrypto
        import Foundation
        import Security
        func encrypt(_ input: [UInt8], key: [UInt8]) -> [UInt8] {
            var iv = [UInt8](repeating: 0, count: 16)
            _ = SecRandomCopyBytes(kSecRandomDefault, iv.count, &iv)
            var out = [UInt8](repeating: 0, count: input.count + 16)
            var moved = 0
            CCCrypt(CCOperation(kCCEncrypt), CCAlgorithm(kCCAlgorithmAES), CCOptions(kCCOptionPKCS7Padding), key, key.count, iv, input, input.count, &out, out.count, &moved)
            return iv + Array(out.prefix(moved))
        }
      `,
    ],
  },
];
