import { code, type Case } from "./case.js";

export const javaCases: Case[] = [
  {
    rule: "java/sql-injection",
    bad: [
      code`
        import java.sql.*;
        class A {
          ResultSet q(Connection c, String user) throws SQLException {
            Statement st = c.createStatement();
            return st.executeQuery("SELECT * FROM users WHERE name = '" + user + "'"); // <- sql-injection
          }
        }
      `,
    ],
    good: [
      code`
        import java.sql.*;
        class A {
          ResultSet q(Connection c, String user) throws SQLException {
            PreparedStatement ps = c.prepareStatement("SELECT * FROM users WHERE name = ?");
            ps.setString(1, user);
            return ps.executeQuery();
          }
        }
      `,
    ],
  },
  {
    rule: "java/command-injection",
    bad: [
      code`
        class A {
          void run(String dir) throws Exception {
            Runtime.getRuntime().exec("ls " + dir); // <- command-injection
          }
        }
      `,
    ],
    good: [
      code`
        class A {
          void run(String dir) throws Exception {
            new ProcessBuilder("ls", "-l", dir).start();
            Runtime.getRuntime().exec("date");
          }
        }
      `,
    ],
  },
  {
    rule: "java/unsafe-deserialization",
    bad: [
      code`
        import java.io.*;
        class A {
          Object load(InputStream in) throws Exception {
            ObjectInputStream ois = new ObjectInputStream(in); // <- unsafe-deserialization
            return ois.readObject();
          }
        }
      `,
      code`
        import java.io.*;
        class Job implements Serializable {
          private String command;
          private void readObject(ObjectInputStream in) throws Exception { // <- unsafe-deserialization
            in.defaultReadObject();
            Runtime.getRuntime().exec(command);
          }
        }
      `,
    ],
    good: [
      code`
        import java.io.*;
        class A {
          Object load(InputStream in) throws Exception {
            ObjectInputStream ois = new ObjectInputStream(in);
            ois.setObjectInputFilter(ObjectInputFilter.Config.createFilter("com.example.*;!*"));
            return ois.readObject();
          }
        }
      `,
    ],
  },
  {
    rule: "java/weak-hash",
    bad: [
      code`
        import java.security.*;
        class A {
          byte[] h(byte[] d) throws Exception {
            return MessageDigest.getInstance("MD5").digest(d); // <- weak-hash
          }
        }
      `,
    ],
    good: [
      code`
        import java.security.*;
        class A {
          byte[] h(byte[] d) throws Exception {
            return MessageDigest.getInstance("SHA-256").digest(d);
          }
        }
      `,
    ],
  },
  {
    rule: "java/weak-cipher",
    bad: [
      code`
        import javax.crypto.*;
        class A {
          Cipher c() throws Exception {
            return Cipher.getInstance("AES"); // <- weak-cipher
          }
        }
      `,
    ],
    good: [
      code`
        import javax.crypto.*;
        class A {
          Cipher c() throws Exception {
            return Cipher.getInstance("AES/GCM/NoPadding");
          }
        }
      `,
    ],
  },
  {
    rule: "java/insecure-random",
    bad: [
      code`
        import java.util.Random;
        class A {
          String token() {
            Random r = new Random(); // <- insecure-random
            return Long.toHexString(r.nextLong());
          }
        }
      `,
    ],
    good: [
      code`
        import java.security.SecureRandom;
        class A {
          String token() {
            SecureRandom r = new SecureRandom();
            return Long.toHexString(r.nextLong());
          }
        }
      `,
    ],
  },
  {
    rule: "java/hardcoded-credential",
    bad: [
      code`
        import java.sql.*;
        class A {
          Connection c() throws SQLException {
            return DriverManager.getConnection("jdbc:mysql://localhost/db", "root", "s3cretPass"); // <- hardcoded-credential
          }
        }
      `,
      code`
        class Auth {
          boolean login(String user, String password) {
            String expected = "Adm1nP@ss";
            return password.equals(expected); // <- hardcoded-credential
          }
        }
      `,
      code`
        import java.net.*;
        class Client {
          private static final String GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
          void call(HttpURLConnection conn) {
            conn.setRequestProperty("Authorization", "token " + GITHUB); // <- hardcoded-credential
          }
        }
      `,
      code`
        import java.sql.*;
        class Repo {
          Connection open(String url) throws SQLException {
            String p = "Pr0d-Db!";
            return DriverManager.getConnection(url, "app", p); // <- hardcoded-credential
          }
        }
      `,
      code`
        class Session {
          boolean valid(Request r) {
            return "t0k-9f8e7d6c".equals(r.getToken()); // <- hardcoded-credential
          }
        }
      `,
      code`
        class Admin {
          private static final String ADMIN_PW = "Adm1n!2024";
          boolean check(String pw) {
            return pw.equals(ADMIN_PW); // <- hardcoded-credential
          }
        }
      `,
      code`
        import java.net.*;
        class Client {
          private static final String GH = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
          void call(HttpURLConnection conn) {
            conn.setRequestProperty("Authorization", String.format("token %s", GH)); // <- hardcoded-credential
          }
        }
      `,
      code`
        import java.net.*;
        import java.util.Base64;
        class Client {
          void call(HttpURLConnection conn) {
            String login = "svc" + ":" + "Pr0d-Db!";
            String basic = Base64.getEncoder().encodeToString(login.getBytes());
            conn.setRequestProperty("Authorization", "Basic " + basic); // <- hardcoded-credential
          }
        }
      `,
    ],
    good: [
      code`
        import java.net.*;
        import java.util.Base64;
        class Client {
          void call(HttpURLConnection conn, String user) {
            String login = user + ":" + System.getenv("SVC_PASSWORD");
            String basic = Base64.getEncoder().encodeToString(login.getBytes());
            conn.setRequestProperty("Authorization", "Basic " + basic);
            conn.setRequestProperty("Authorization", String.format("Bearer %s", System.getenv("API_TOKEN")));
          }
        }
      `,
      code`
        import java.util.StringTokenizer;
        class Constraints {
          boolean keySize(String rule) {
            StringTokenizer tokens = new StringTokenizer(rule);
            if (!"keySize".equals(tokens.nextToken())) return false;
            return tokens.hasMoreTokens();
          }
        }
      `,
      code`
        class LoginModule {
          private static final String PASSWORD_KEY = "javax.security.auth.login.password";
          private static final String CREDENTIALS = "jmx.remote.credentials";
          String password(java.util.Map<String, ?> shared) {
            return (String) shared.get(PASSWORD_KEY);
          }
        }
      `,
      code`
        class Provider {
          void register(java.util.Map<String, String> m) {
            String P11SecretKeyFactory = "sun.security.pkcs11.P11SecretKeyFactory";
            m.put("SecretKeyFactory.AES", P11SecretKeyFactory);
          }
        }
      `,
      code`
        class Options {
          int parse(String token) {
            if (token.equals("-verbose")) return 1;
            else if (token.equals("-quiet")) return 2;
            return 0;
          }
        }
      `,
      code`
        class Tls {
          void check(TlsSpec spec) {
            if (!"RAW".equals(spec.getMasterSecret().getFormat())) throw new IllegalArgumentException();
          }
        }
      `,
      code`
        class Schema {
          static final String NMTOKEN = "NMTOKEN";
          static final String ATTVAL_NMTOKEN = "NMTOKEN";
          static final String USER_PWD = "userPassword";
          static final String USERNAME_TOKEN = "{USERNAME}";
          final String metaValue_PW = "Palau";
        }
      `,
      code`
        import java.sql.*;
        class A {
          Connection c() throws SQLException {
            return DriverManager.getConnection("jdbc:mysql://localhost/db", "root", System.getenv("DB_PASSWORD"));
          }
        }
      `,
      code`
        class Auth {
          boolean login(String user, String password) {
            String expected = System.getenv("ADMIN_PASSWORD");
            return expected != null && password.equals(expected);
          }
        }
      `,
      code`
        import java.net.*;
        class Client {
          void call(HttpURLConnection conn) {
            String t = System.getenv("API_TOKEN");
            conn.setRequestProperty("Authorization", "Bearer " + t);
            String type = "application/json";
            conn.setRequestProperty("Content-Type", type);
          }
        }
      `,
      code`
        class Shell {
          int run(String command) {
            String quit = "quit";
            if (command.equals(quit)) return 0;
            return 1;
          }
        }
      `,
      code`
        import java.sql.*;
        import java.util.Properties;
        class Repo {
          Connection open(String url, Properties props) throws SQLException {
            String p = "Pr0d-Db!";
            p = props.getProperty("db.password");
            return DriverManager.getConnection(url, "app", p);
          }
        }
      `,
      code`
        import java.sql.*;
        class Repo {
          Connection open(String url) throws SQLException {
            String p = "";
            return DriverManager.getConnection(url, "guest", p);
          }
        }
      `,
    ],
  },
  {
    rule: "java/path-traversal",
    bad: [
      code`
        import java.io.*;
        class A {
          String read(String name) throws IOException {
            File f = new File("/var/data/" + name); // <- path-traversal
            return f.getName();
          }
        }
      `,
    ],
    good: [
      code`
        import java.io.*;
        class A {
          String read(String name) throws IOException {
            File base = new File("/var/data");
            File f = new File(base, name);
            if (!f.getCanonicalPath().startsWith(base.getCanonicalPath() + File.separator)) throw new IOException("bad path");
            return f.getName();
          }
        }
      `,
    ],
  },
  {
    rule: "java/stack-trace-exposure",
    bad: [
      code`
        class A {
          void f() {
            try { g(); }
            catch (Exception e) { e.printStackTrace(); } // <- stack-trace-exposure
          }
          void g() throws Exception {}
        }
      `,
    ],
    good: [
      code`
        import java.util.logging.*;
        class A {
          static final Logger LOG = Logger.getLogger("A");
          void f() {
            try { g(); }
            catch (Exception e) { LOG.warning("g failed"); }
          }
          void g() throws Exception {}
        }
      `,
    ],
  },
  {
    rule: "java/empty-catch",
    bad: [
      code`
        class A {
          void f() {
            try { g(); }
            catch (Exception e) { // <- empty-catch
              // ignore
            }
          }
          void g() throws Exception {}
        }
      `,
    ],
    good: [
      code`
        class A {
          void f() {
            try { g(); }
            catch (Exception e) { throw new RuntimeException(e); }
          }
          void g() throws Exception {}
        }
      `,
    ],
  },
  {
    rule: "java/xxe",
    bad: [
      code`
        import javax.xml.parsers.*;
        class A {
          DocumentBuilder b() throws Exception {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance(); // <- xxe
            return f.newDocumentBuilder();
          }
        }
      `,
    ],
    good: [
      code`
        import javax.xml.parsers.*;
        class A {
          DocumentBuilder b() throws Exception {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
            return f.newDocumentBuilder();
          }
        }
      `,
    ],
  },

  {
    rule: "java/xss",
    bad: [
      code`
        import java.io.*;
        import javax.servlet.http.*;
        public class Search extends HttpServlet {
          protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
            String q = request.getParameter("q");
            PrintWriter out = response.getWriter();
            out.println("<p>Results for " + q + "</p>"); // <- xss
          }
        }
      `,
    ],
    good: [
      code`
        import java.io.*;
        import javax.servlet.http.*;
        import org.owasp.encoder.Encode;
        public class Search extends HttpServlet {
          protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
            String q = request.getParameter("q");
            PrintWriter out = response.getWriter();
            out.println("<p>Results for " + Encode.forHtml(q) + "</p>");
          }
        }
      `,
    ],
  },
  {
    rule: "java/open-redirect",
    bad: [
      code`
        import javax.servlet.http.*;
        public class Go extends HttpServlet {
          protected void doGet(HttpServletRequest request, HttpServletResponse response) throws java.io.IOException {
            String next = request.getParameter("next");
            response.sendRedirect(next); // <- open-redirect
          }
        }
      `,
    ],
    good: [
      code`
        import javax.servlet.http.*;
        import java.util.Set;
        public class Go extends HttpServlet {
          private static final Set<String> ALLOWED = Set.of("/home", "/account");
          protected void doGet(HttpServletRequest request, HttpServletResponse response) throws java.io.IOException {
            String next = request.getParameter("next");
            if (!ALLOWED.contains(next)) next = "/home";
            response.sendRedirect(next);
          }
        }
      `,
    ],
  },
  {
    rule: "java/ssrf",
    bad: [
      code`
        import java.net.*;
        import java.util.Scanner;
        class Fetch {
          public static void main(String[] args) throws Exception {
            String target = new Scanner(System.in).nextLine();
            URL url = new URL(target); // <- ssrf
            url.openStream().close();
          }
        }
      `,
    ],
    good: [
      code`
        import java.net.*;
        import java.util.Scanner;
        class Fetch {
          public static void main(String[] args) throws Exception {
            String path = new Scanner(System.in).nextLine();
            if (!path.matches("[a-z0-9/]+")) return;
            URL url = new URL("https://api.example.com/" + path);
            url.openStream().close();
          }
        }
      `,
    ],
  },
  {
    rule: "java/unsafe-reflection",
    bad: [
      code`
        class Loader {
          public static void main(String[] args) throws Exception {
            Class<?> c = Class.forName(args[0]); // <- unsafe-reflection
            c.getDeclaredConstructor().newInstance();
          }
        }
      `,
    ],
    good: [
      code`
        import java.util.Map;
        class Loader {
          static final Map<String, Class<?>> PLUGINS = Map.of("csv", String.class);
          public static void main(String[] args) throws Exception {
            Class<?> c = Class.forName("java.lang.StringBuilder");
            Class<?> p = PLUGINS.get(args[0]);
          }
        }
      `,
    ],
  },
  {
    rule: "java/format-string",
    bad: [
      code`
        import java.util.Scanner;

        class Echo {
            public static void main(String[] args) {
                Scanner in = new Scanner(System.in);
                String pattern = in.nextLine();
                System.out.println(String.format(pattern)); // <- format-string
            }
        }
      `,
      code`
        import java.util.Scanner;
        class Greet {
          public static void main(String[] args) {
            String name = new Scanner(System.in).nextLine();
            System.out.printf(name); // <- format-string
          }
        }
      `,
    ],
    good: [
      code`
        import java.text.MessageFormat;

        class ServerMessage {
            private final MessageFormat messageFormat = new MessageFormat("Server {0} listens on port {1}");

            String render(Object[] fields) {
                return messageFormat.format(fields);
            }
        }
      `,
      code`
        import java.util.Scanner;
        class Greet {
          private static final String FORMAT = "Hello, %s%n";
          public static void main(String[] args) {
            String name = new Scanner(System.in).nextLine();
            System.out.printf("Hello, %s%n", name);
            System.out.printf(FORMAT, name);
          }
        }
      `,
    ],
  },
  {
    rule: "java/sensitive-data-exposure",
    bad: [
      code`
        import java.util.Scanner;
        class Login {
          public static void main(String[] args) {
            Scanner in = new Scanner(System.in);
            String username = in.nextLine();
            String password = in.nextLine();
            System.out.println("User " + username + " logged in with " + password); // <- sensitive-data-exposure
          }
        }
      `,
    ],
    good: [
      code`
        import java.util.Scanner;
        class Login {
          public static void main(String[] args) {
            Scanner in = new Scanner(System.in);
            String username = in.nextLine();
            String password = in.nextLine();
            System.out.println("User " + username + " logged in; password length " + password.length());
            System.out.println("Password: " + mask(password));
          }
          static String mask(String s) { return "*".repeat(s.length()); }
        }
      `,
    ],
  },
  {
    rule: "java/resource-leak",
    bad: [
      code`
        import java.io.*;
        class Read {
          static String first(String name) throws IOException {
            FileReader reader = new FileReader(name); // <- resource-leak
            BufferedReader in = new BufferedReader(reader);
            String line = in.readLine();
            in.close();
            return line;
          }
        }
      `,
    ],
    good: [
      code`
        import java.io.*;
        class Read {
          static String first(String name) throws IOException {
            try (BufferedReader in = new BufferedReader(new FileReader(name))) {
              return in.readLine();
            }
          }
          static void write(String name) throws IOException {
            FileWriter w = new FileWriter(name);
            try {
              w.write("x");
            } finally {
              w.close();
            }
          }
        }
      `,
    ],
  },
  {
    rule: "java/null-dereference",
    bad: [
      code`
        class RingQueue {
            Object[] items;

            int size() {
                Object[] items = null;
                return items.length; // <- null-dereference
            }
        }
      `,
      code`
        class Main {
          public static void main(String[] args) {
            String str = null;
            System.out.println(str.length()); // <- null-dereference
          }
        }
      `,
      code`
        import java.util.*;
        class Main {
          static User find(String name) {
            return null;
          }
          public static void main(String[] args) {
            User u = find("bob");
            System.out.println(u.getName()); // <- null-dereference
          }
        }
        class User { String getName() { return "x"; } }
      `,
      code`
        import java.util.*;
        class Main {
          public static void main(String[] args) {
            Map<String, String> m = new HashMap<>();
            System.out.println(m.get("key").length()); // <- null-dereference
          }
        }
      `,
    ],
    good: [
      code`
        class RingQueue {
            final Object[] items = new Object[16];
            int takeIndex;

            Object take() {
                final Object[] items = this.items;
                Object x = items[takeIndex];
                items[takeIndex] = null;
                if (++takeIndex == items.length) takeIndex = 0;
                return x;
            }
        }
      `,
      code`
        import java.util.*;
        class Main {
          static User find(String name) {
            return null;
          }
          public static void main(String[] args) {
            String str = null;
            if (str != null) System.out.println(str.length());
            User u = find("bob");
            if (u != null) System.out.println(u.getName());
            Map<String, String> m = new HashMap<>();
            if (m.containsKey("key")) System.out.println(m.get("key").length());
            str = "set";
            System.out.println(str.length());
          }
        }
        class User { String getName() { return "x"; } }
      `,
    ],
  },
  {
    rule: "java/uninitialized-field-dereference",
    bad: [
      code`
        import java.util.Set;

        class Registry {
            int count() {
                return services.size(); // <- uninitialized-field-dereference
            }

            private Set<String> services;
        }
      `,
      code`
        class Service {
          private Helper helper;
          public void run() {
            helper.work(); // <- uninitialized-field-dereference
          }
        }
        class Helper { void work() {} }
      `,
    ],
    good: [
      code`
        import java.util.HashSet;
        import java.util.Set;

        class Registry {
            Registry() {
                services = new HashSet<>();
            }

            int count() {
                return services.size();
            }

            boolean empty(Set<String> names) {
                return names.isEmpty();
            }

            static boolean check(Set<String> owners) {
                return owners.isEmpty();
            }

            private Set<String> services;
            private Set<String> owners;
        }
      `,
      code`
        class Service {
          private Helper helper;
          public Service(Helper h) { this.helper = h; }
          public void run() {
            helper.work();
          }
        }
        class Helper { void work() {} }
      `,
    ],
  },
  {
    rule: "java/array-index-out-of-bounds",
    bad: [
      code`
        class Keys {
          int[] p = new int[18];
          void schedule(int[] data) {
            for (int i = 0; i < 18; i += 2) { // <- array-index-out-of-bounds
              p[i] = data[0];
              p[i + 2] = data[1];
            }
          }
        }
      `,
      code`
        class Buffers {
            static int[] make(int size) {
                return new int[size];
            }

            static int at(int[] values, int i) {
                return values[i]; // <- array-index-out-of-bounds
            }
        }
      `,
      code`
        class Main {
          public static void main(String[] args) {
            int[] array = new int[10];
            for (int i = 0; i <= 10; i++) { // <- array-index-out-of-bounds
              array[i] = i;
            }
          }
        }
      `,
      code`
        import java.util.Scanner;
        class Main {
          public static void main(String[] args) {
            String input = new Scanner(System.in).nextLine();
            char[] chars = new char[10];
            for (int i = 0; i < input.length(); i++) { // <- array-index-out-of-bounds
              chars[i] = input.charAt(i);
            }
          }
        }
      `,
    ],
    good: [
      code`
        class Blowfish {
          int[] p = new int[18];
          void schedule(int[] data) {
            for (int i = 0; i < 18; i += 2) {
              p[i] = data[0];
              p[i + 1] = data[1];
            }
            for (int i = 0; i < 18; i = i + 4) {
              p[i + 1] = 0;
            }
          }
        }
      `,
      code`
        class Buffers {
            static int[] make(int size) {
                return new int[size];
            }
        }
      `,
      code`
        import java.util.Scanner;
        class Main {
          public static void main(String[] args) {
            int[] array = new int[10];
            for (int i = 0; i < array.length; i++) array[i] = i;
            String input = new Scanner(System.in).nextLine();
            char[] chars = new char[input.length()];
            for (int i = 0; i < input.length(); i++) chars[i] = input.charAt(i);
          }
        }
      `,
    ],
  },
  {
    rule: "java/thread-stop",
    bad: [
      code`
        class Worker extends Thread {
          public void run() { while (true) { } }
        }
        class Main {
          public static void main(String[] args) throws Exception {
            Worker w = new Worker();
            w.start();
            Thread.sleep(100);
            w.stop(); // <- thread-stop
          }
        }
      `,
    ],
    good: [
      code`
        class Worker extends Thread {
          public void run() { while (!isInterrupted()) { } }
        }
        class Main {
          public static void main(String[] args) throws Exception {
            Worker w = new Worker();
            w.start();
            Thread.sleep(100);
            w.interrupt();
          }
        }
      `,
    ],
  },
  {
    rule: "java/thread-run",
    bad: [
      code`
        class Main {
          public static void main(String[] args) {
            Thread t = new Thread(() -> System.out.println("work"));
            t.run(); // <- thread-run
          }
        }
      `,
    ],
    good: [
      code`
        class Main {
          public static void main(String[] args) {
            Thread t = new Thread(() -> System.out.println("work"));
            t.start();
            Runnable r = () -> System.out.println("inline");
            r.run();
          }
        }
      `,
    ],
  },
  {
    rule: "java/interrupted-exception-swallowed",
    bad: [
      code`
        class Poller implements Runnable {
          private volatile boolean running = true;
          public void run() {
            while (running) {
              try {
                Thread.sleep(1000);
              } catch (InterruptedException e) { // <- interrupted-exception-swallowed
                e.printStackTrace();
              }
            }
          }
        }
      `,
    ],
    good: [
      code`
        class Poller implements Runnable {
          private volatile boolean running = true;
          public void run() {
            while (running) {
              try {
                Thread.sleep(1000);
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
              }
            }
          }
        }
      `,
    ],
  },
  {
    rule: "java/unbounded-resource-use",
    bad: [
      code`
        class Main {
          public static void main(String[] args) {
            StringBuilder sb = new StringBuilder();
            while (true) { // <- unbounded-resource-use
              sb.append("a");
            }
          }
        }
      `,
    ],
    good: [
      code`
        import java.net.*;
        class Main {
          public static void main(String[] args) throws Exception {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < 1000; i++) sb.append("a");
            ServerSocket server = new ServerSocket(8080);
            while (true) {
              Socket s = server.accept();
              new Thread(() -> handle(s)).start();
            }
          }
          static void handle(Socket s) {}
        }
      `,
    ],
  },
  {
    rule: "java/threadlocal-leak",
    bad: [
      code`
        class Context {
          private static final ThreadLocal<String> user = new ThreadLocal<>(); // <- threadlocal-leak
          static void handle(String name) {
            user.set(name);
            System.out.println(user.get());
          }
        }
      `,
    ],
    good: [
      code`
        class Context {
          private static final ThreadLocal<String> user = new ThreadLocal<>();
          static void handle(String name) {
            user.set(name);
            try {
              System.out.println(user.get());
            } finally {
              user.remove();
            }
          }
        }
      `,
    ],
  },
  {
    rule: "java/trust-all-certificates",
    bad: [
      code`
        import javax.net.ssl.*;
        import java.security.cert.X509Certificate;
        class TrustAll implements X509TrustManager {
          public void checkClientTrusted(X509Certificate[] c, String a) {}
          public void checkServerTrusted(X509Certificate[] c, String a) {} // <- trust-all-certificates
          public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        }
      `,
    ],
    good: [
      code`
        import javax.net.ssl.*;
        import java.security.cert.*;
        class Pinned implements X509TrustManager {
          private final X509TrustManager delegate;
          Pinned(X509TrustManager d) { delegate = d; }
          public void checkClientTrusted(X509Certificate[] c, String a) throws CertificateException { delegate.checkClientTrusted(c, a); }
          public void checkServerTrusted(X509Certificate[] c, String a) throws CertificateException { delegate.checkServerTrusted(c, a); }
          public X509Certificate[] getAcceptedIssuers() { return delegate.getAcceptedIssuers(); }
        }
      `,
    ],
  },
  {
    rule: "java/hardcoded-key",
    bad: [
      code`
        import javax.crypto.spec.SecretKeySpec;
        class Crypto {
          static SecretKeySpec key() {
            return new SecretKeySpec("0123456789abcdef".getBytes(), "AES"); // <- hardcoded-key
          }
        }
      `,
      code`
        import javax.crypto.spec.SecretKeySpec;
        import java.nio.charset.StandardCharsets;
        class Signer {
          SecretKeySpec key() {
            String material = "k3yMaterial!2024";
            byte[] kb = material.getBytes(StandardCharsets.UTF_8);
            return new SecretKeySpec(kb, "HmacSHA256"); // <- hardcoded-key
          }
        }
      `,
      code`
        import com.auth0.jwt.algorithms.Algorithm;
        class Tokens {
          static final String SIGNING = "jwt-s1gning-2024";
          Algorithm alg() {
            return Algorithm.HMAC256(SIGNING); // <- hardcoded-key
          }
        }
      `,
      code`
        import javax.crypto.spec.SecretKeySpec;
        class Crypto {
          static final byte[] RAW = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0x2e, 0x52, 0x26, 0x0b, 0x77, 0x15, 0x08, 0x09, 0x4f, 0x4f, 0x3c};
          SecretKeySpec key() {
            return new SecretKeySpec(RAW, "AES"); // <- hardcoded-key
          }
        }
      `,
      code`
        import javax.crypto.spec.SecretKeySpec;
        import java.util.Base64;
        class Crypto {
          SecretKeySpec key() {
            byte[] kb = Base64.getDecoder().decode("q83vEjRWeJq83vEjRWeJqw==");
            return new SecretKeySpec(kb, "AES"); // <- hardcoded-key
          }
        }
      `,
    ],
    good: [
      code`
        import javax.crypto.*;
        import javax.crypto.spec.SecretKeySpec;
        class Crypto {
          static SecretKeySpec key(byte[] material) throws Exception {
            SecretKey generated = KeyGenerator.getInstance("AES").generateKey();
            return new SecretKeySpec(material, "AES");
          }
        }
      `,
      code`
        import javax.crypto.spec.SecretKeySpec;
        import java.util.Base64;
        class Crypto {
          SecretKeySpec key() {
            byte[] kb = Base64.getDecoder().decode(System.getenv("APP_KEY"));
            return new SecretKeySpec(kb, "AES");
          }
        }
      `,
      code`
        import javax.crypto.spec.SecretKeySpec;
        class Crypto {
          SecretKeySpec key() {
            String k = "dev-only-key-123";
            k = System.getenv("APP_KEY");
            return new SecretKeySpec(k.getBytes(), "AES");
          }
        }
      `,
    ],
  },
  {
    rule: "java/static-iv",
    bad: [
      code`
        import javax.crypto.*;
        import javax.crypto.spec.*;
        class Crypto {
          byte[] encrypt(SecretKey key, byte[] data) throws Exception {
            Cipher c = Cipher.getInstance("AES/CBC/PKCS5Padding");
            c.init(Cipher.ENCRYPT_MODE, key, new IvParameterSpec("0123456789abcdef".getBytes())); // <- static-iv
            return c.doFinal(data);
          }
        }
      `,
      code`
        import javax.crypto.*;
        import javax.crypto.spec.*;
        class Crypto {
          byte[] encrypt(SecretKey key, byte[] data) throws Exception {
            byte[] iv = new byte[16];
            Cipher c = Cipher.getInstance("AES/CBC/PKCS5Padding");
            c.init(Cipher.ENCRYPT_MODE, key, new IvParameterSpec(iv)); // <- static-iv
            return c.doFinal(data);
          }
        }
      `,
      code`
        import javax.crypto.*;
        import javax.crypto.spec.*;
        class Crypto {
          static final byte[] NONCE = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
          byte[] seal(SecretKey key, byte[] data) throws Exception {
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(128, NONCE)); // <- static-iv
            return c.doFinal(data);
          }
        }
      `,
    ],
    good: [
      code`
        import java.security.spec.AlgorithmParameterSpec;
        import javax.crypto.*;
        import javax.crypto.spec.*;
        class RecordCipher {
          RecordCipher(Cipher cipher, Key key, AlgorithmParameterSpec params, int ivSize) throws Exception {
            if (params == null) {
              params = new IvParameterSpec(new byte[ivSize]);
            }
            cipher.init(Cipher.ENCRYPT_MODE, key, params);
          }
        }
      `,
      code`
        import java.security.SecureRandom;
        import javax.crypto.*;
        import javax.crypto.spec.*;
        class Crypto {
          byte[] encrypt(SecretKey key, byte[] data) throws Exception {
            byte[] iv = new byte[16];
            new SecureRandom().nextBytes(iv);
            Cipher c = Cipher.getInstance("AES/CBC/PKCS5Padding");
            c.init(Cipher.ENCRYPT_MODE, key, new IvParameterSpec(iv));
            return c.doFinal(data);
          }
          byte[] decrypt(SecretKey key, byte[] iv, byte[] data) throws Exception {
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
            c.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, iv));
            return c.doFinal(data);
          }
        }
      `,
    ],
  },
  {
    rule: "java/unchecked-cast",
    bad: [
      code`
        import java.util.*;
        class Main {
          public static void main(String[] args) {
            List<Object> items = new ArrayList<>();
            items.add("a");
            items.add(1);
            for (Object obj : items) {
              String s = (String) obj; // <- unchecked-cast
              System.out.println(s);
            }
          }
        }
      `,
    ],
    good: [
      code`
        import java.util.*;
        class Main {
          public static void main(String[] args) {
            List<Object> items = new ArrayList<>();
            for (Object obj : items) {
              if (obj instanceof String) {
                String s = (String) obj;
                System.out.println(s);
              }
            }
          }
        }
      `,
    ],
  },
  {
    rule: "java/unchecked-numeric-input",
    bad: [
      code`
        import java.util.Scanner;
        class Age {
          public static void main(String[] args) {
            Scanner scanner = new Scanner(System.in);
            int age = scanner.nextInt(); // <- unchecked-numeric-input
            System.out.println(age);
          }
        }
      `,
    ],
    good: [
      code`
        import java.util.*;
        class Age {
          public static void main(String[] args) {
            Scanner scanner = new Scanner(System.in);
            try {
              int age = scanner.nextInt();
              System.out.println(age);
            } catch (InputMismatchException e) {
              System.out.println("not a number");
            }
            java.util.Random r = new java.security.SecureRandom();
            int n = r.nextInt();
          }
        }
      `,
    ],
  },
  {
    rule: "java/divide-by-zero",
    bad: [
      code`
        class Calc {
          static int divide(int a, int b) {
            return a / b; // <- divide-by-zero
          }
        }
      `,
    ],
    good: [
      code`
        class Calc {
          static int divide(int a, int b) {
            if (b == 0) throw new IllegalArgumentException("b must not be zero");
            return a / b;
          }
          static double half(double x) { return x / 2; }
        }
      `,
    ],
  },
  {
    rule: "java/plaintext-password",
    bad: [
      code`
        import java.util.*;
        class Auth {
          private final Map<String, String> users = new HashMap<>();
          boolean login(String user, String password) {
            return users.get(user).equals(password); // <- plaintext-password
          }
        }
      `,
    ],
    good: [
      code`
        import java.util.*;
        import java.security.MessageDigest;
        class Auth {
          private final Map<String, byte[]> users = new HashMap<>();
          boolean login(String user, String password) throws Exception {
            byte[] hash = MessageDigest.getInstance("SHA-256").digest(password.getBytes());
            return MessageDigest.isEqual(users.get(user), hash);
          }
        }
      `,
    ],
  },
];
