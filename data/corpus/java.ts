/**
 * Java templates of the demo corpus (authored for this project). See cpp.ts for the layout.
 */
import type { CodeTemplate } from "./template.js";

const raw = String.raw;

export const JAVA_TEMPLATES: readonly CodeTemplate[] = [
  {
    key: "sql-statement",
    cwe: "CWE-89",
    slots: {
      fn: ["findUserId", "lookupAccount", "countOrders", "findProduct", "loadCustomer", "searchBooks"],
      q: [
        { table: "users", col: "username", arg: "name" },
        { table: "accounts", col: "email", arg: "email" },
        { table: "orders", col: "customer", arg: "customer" },
        { table: "products", col: "sku", arg: "sku" },
        { table: "books", col: "title", arg: "title" },
      ],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that takes a JDBC Connection and a `{{q.arg}}` from a search box and returns the id of the first row of `{{q.table}}` whose `{{q.col}}` matches, or -1.",
    chosen: raw`
import java.sql.*;

public static int {{fn}}(Connection conn, String {{q.arg}}) throws SQLException {
    String sql = "SELECT id FROM {{q.table}} WHERE {{q.col}} = ?";
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
        ps.setString(1, {{q.arg}});
        try (ResultSet rs = ps.executeQuery()) {
            return rs.next() ? rs.getInt("id") : -1;
        }
    }
}
`,
    rejected: raw`
import java.sql.*;

public static int {{fn}}(Connection conn, String {{q.arg}}) throws SQLException {
    Statement st = conn.createStatement();
    String sql = "SELECT id FROM {{q.table}} WHERE {{q.col}} = '" + {{q.arg}} + "'";
    ResultSet rs = st.executeQuery(sql);
    return rs.next() ? rs.getInt("id") : -1;
}
`,
  },
  {
    key: "runtime-exec",
    cwe: "CWE-78",
    slots: {
      fn: ["pingHost", "checkHost", "probeServer", "traceHost", "lookupHost", "testReachable"],
      tool: [
        { bin: "ping", flags: "-c 1 ", argv: '"-c", "1", ' },
        { bin: "ping", flags: "-c 4 ", argv: '"-c", "4", ' },
        { bin: "nslookup", flags: "", argv: "" },
        { bin: "traceroute", flags: "-m 10 ", argv: '"-m", "10", ' },
      ],
      arg: ["host", "target", "address"],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that runs `{{tool.bin}}` on a host name `{{arg}}` supplied by the user and returns the process exit code.",
    chosen: raw`
import java.io.IOException;

public static int {{fn}}(String {{arg}}) throws IOException, InterruptedException {
    if ({{arg}}.isEmpty() || {{arg}}.startsWith("-")) return -1;
    ProcessBuilder pb = new ProcessBuilder("{{tool.bin}}", {{tool.argv}}{{arg}});
    pb.inheritIO();
    return pb.start().waitFor();
}
`,
    rejected: raw`
import java.io.IOException;

public static int {{fn}}(String {{arg}}) throws IOException, InterruptedException {
    String[] cmd = {"/bin/sh", "-c", "{{tool.bin}} {{tool.flags}}" + {{arg}}};
    Process p = Runtime.getRuntime().exec(cmd);
    return p.waitFor();
}
`,
  },
  {
    key: "object-input-stream",
    cwe: "CWE-502",
    slots: {
      fn: ["loadSettings", "readProfile", "restoreCart", "parseMessage", "loadPreferences", "readOrder"],
      type: ["Settings", "Profile", "Cart", "Message", "Preferences", "Order"],
      src: ["a request body", "a cookie value", "an uploaded file", "a message queue"],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that turns the bytes received from {{src}} back into a `{{type}}` object.",
    chosen: raw`
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;

private static final ObjectMapper MAPPER = new ObjectMapper();

public static {{type}} {{fn}}(byte[] data) throws IOException {
    return MAPPER.readValue(data, {{type}}.class);
}
`,
    rejected: raw`
import java.io.*;

public static {{type}} {{fn}}(byte[] data) throws IOException, ClassNotFoundException {
    try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(data))) {
        return ({{type}}) in.readObject();
    }
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
      "{{Verb}} a Java method `{{fn}}` that returns the hex digest of the bytes `{{arg}}`, used to detect tampering of stored documents.",
    chosen: raw`
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

public static String {{fn}}(byte[] {{arg}}) throws NoSuchAlgorithmException {
    MessageDigest md = MessageDigest.getInstance("SHA-256");
    return HexFormat.of().formatHex(md.digest({{arg}}));
}
`,
    rejected: raw`
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

public static String {{fn}}(byte[] {{arg}}) throws NoSuchAlgorithmException {
    MessageDigest md = MessageDigest.getInstance("MD5");
    return HexFormat.of().formatHex(md.digest({{arg}}));
}
`,
  },
  {
    key: "random-token",
    cwe: "CWE-338",
    slots: {
      fn: ["newSessionId", "resetToken", "generateApiKey", "inviteCode", "makeNonce", "csrfToken"],
      len: ["16", "24", "32"],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that returns {{len}} random bytes encoded with Base64's URL alphabet, handed to users as a password-reset token.",
    chosen: raw`
import java.security.SecureRandom;
import java.util.Base64;

private static final SecureRandom RNG = new SecureRandom();

public static String {{fn}}() {
    byte[] bytes = new byte[{{len}}];
    RNG.nextBytes(bytes);
    return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
}
`,
    rejected: raw`
import java.util.Base64;
import java.util.Random;

private static final Random RNG = new Random();

public static String {{fn}}() {
    byte[] bytes = new byte[{{len}}];
    RNG.nextBytes(bytes);
    return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
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
      "{{Verb}} a Java method `{{fn}}` that returns the bytes of a file whose name comes from a request parameter, reading it from the folder {{dir}}.",
    chosen: raw`
import java.io.IOException;
import java.nio.file.*;

private static final Path BASE = Paths.get("{{dir}}").toAbsolutePath().normalize();

public static byte[] {{fn}}(String name) throws IOException {
    Path target = BASE.resolve(name).normalize();
    if (!target.startsWith(BASE)) throw new IOException("invalid file name");
    return Files.readAllBytes(target);
}
`,
    rejected: raw`
import java.io.IOException;
import java.nio.file.*;

public static byte[] {{fn}}(String name) throws IOException {
    Path target = Paths.get("{{dir}}/" + name);
    return Files.readAllBytes(target);
}
`,
  },
  {
    key: "xml-parser",
    cwe: "CWE-611",
    slots: {
      fn: ["parseInvoice", "readFeed", "loadConfigXml", "parseOrderXml", "importCatalog", "readSitemap"],
      tag: ["invoice", "item", "entry", "order", "product", "url"],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that parses an XML document uploaded by a customer and returns the number of `<{{tag}}>` elements.",
    chosen: raw`
import java.io.InputStream;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Document;

public static int {{fn}}(InputStream xml) throws Exception {
    DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
    f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
    f.setXIncludeAware(false);
    f.setExpandEntityReferences(false);
    Document doc = f.newDocumentBuilder().parse(xml);
    return doc.getElementsByTagName("{{tag}}").getLength();
}
`,
    rejected: raw`
import java.io.InputStream;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Document;

public static int {{fn}}(InputStream xml) throws Exception {
    DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
    Document doc = f.newDocumentBuilder().parse(xml);
    return doc.getElementsByTagName("{{tag}}").getLength();
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
        { url: "jdbc:postgresql://db.internal/app", user: "admin", pw: "admin123", env: "DB" },
        { url: "jdbc:mysql://10.0.0.12/reports", user: "reporter", pw: "Summer2024!", env: "REPORT_DB" },
        { url: "jdbc:postgresql://pg.local/shop", user: "app", pw: "s3cr3tpass", env: "APP_DB" },
        { url: "jdbc:mysql://mysql.corp/crm", user: "root", pw: "toor", env: "MYSQL" },
      ],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that opens a JDBC connection to {{db.url}} as user {{db.user}}.",
    chosen: raw`
import java.sql.*;

public static Connection {{fn}}() throws SQLException {
    String user = System.getenv("{{db.env}}_USER");
    String password = System.getenv("{{db.env}}_PASSWORD");
    if (user == null || password == null) throw new IllegalStateException("credentials not set");
    return DriverManager.getConnection("{{db.url}}", user, password);
}
`,
    rejected: raw`
import java.sql.*;

public static Connection {{fn}}() throws SQLException {
    String user = "{{db.user}}";
    String password = "{{db.pw}}";
    return DriverManager.getConnection("{{db.url}}", user, password);
}
`,
  },
  {
    key: "servlet-html",
    cwe: "CWE-79",
    slots: {
      fn: ["greet", "showProfile", "echoSearch", "welcomePage", "showComment", "renderName"],
      p: [
        { param: "name", text: "Hello, " },
        { param: "q", text: "Results for " },
        { param: "user", text: "Welcome back, " },
        { param: "comment", text: "You wrote: " },
      ],
    },
    question:
      '{{Verb}} a Java servlet helper `{{fn}}` that reads the request parameter `{{p.param}}` and writes an HTML page with a heading "{{p.text}}" followed by it.',
    chosen: raw`
import java.io.IOException;
import javax.servlet.http.*;
import org.apache.commons.text.StringEscapeUtils;

public static void {{fn}}(HttpServletRequest req, HttpServletResponse resp) throws IOException {
    String value = StringEscapeUtils.escapeHtml4(req.getParameter("{{p.param}}"));
    resp.setContentType("text/html;charset=UTF-8");
    resp.getWriter().println("<h1>{{p.text}}" + value + "</h1>");
}
`,
    rejected: raw`
import java.io.IOException;
import javax.servlet.http.*;

public static void {{fn}}(HttpServletRequest req, HttpServletResponse resp) throws IOException {
    String value = req.getParameter("{{p.param}}");
    resp.setContentType("text/html");
    resp.getWriter().println("<h1>{{p.text}}" + value + "</h1>");
}
`,
  },
  {
    key: "open-redirect",
    cwe: "CWE-601",
    slots: {
      fn: ["afterLogin", "continueTo", "goBack", "finishSignup", "returnToPage", "redirectNext"],
      param: ["next", "returnUrl", "redirect", "continue"],
      home: ["/", "/home", "/dashboard", "/account"],
    },
    question:
      "{{Verb}} a Java servlet helper `{{fn}}` that sends the browser to the page given in the request parameter `{{param}}`, or to {{home}} when it is missing.",
    chosen: raw`
import java.io.IOException;
import javax.servlet.http.*;

public static void {{fn}}(HttpServletRequest req, HttpServletResponse resp) throws IOException {
    String target = req.getParameter("{{param}}");
    boolean local = target != null && target.startsWith("/") && !target.startsWith("//") && !target.contains("\\");
    resp.sendRedirect(local ? target : "{{home}}");
}
`,
    rejected: raw`
import java.io.IOException;
import javax.servlet.http.*;

public static void {{fn}}(HttpServletRequest req, HttpServletResponse resp) throws IOException {
    String target = req.getParameter("{{param}}");
    resp.sendRedirect(target != null ? target : "{{home}}");
}
`,
  },
  {
    key: "log-password",
    cwe: "CWE-532",
    slots: {
      fn: ["login", "signIn", "authenticate", "checkLogin", "doLogin", "verifyUser"],
      logger: ["LOG", "logger", "AUDIT", "log"],
      svc: ["authService", "users", "accounts", "directory"],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that logs each login attempt with java.util.logging and then returns `{{svc}}.check(username, password)`.",
    chosen: raw`
import java.util.logging.Logger;

private static final Logger {{logger}} = Logger.getLogger("auth");

public boolean {{fn}}(String username, char[] password) {
    {{logger}}.info("login attempt for user " + username);
    boolean ok = {{svc}}.check(username, password);
    java.util.Arrays.fill(password, '\0');
    return ok;
}
`,
    rejected: raw`
import java.util.logging.Logger;

private static final Logger {{logger}} = Logger.getLogger("auth");

public boolean {{fn}}(String username, String password) {
    {{logger}}.info("login attempt: user=" + username + " password=" + password);
    return {{svc}}.check(username, password);
}
`,
  },
  {
    key: "trust-all-certs",
    cwe: "CWE-295",
    slots: {
      fn: ["fetchPrices", "downloadFeed", "getStatus", "fetchReport", "pullUpdates", "readRemote"],
      url: [
        "https://api.partner.com/prices",
        "https://feeds.example.org/news",
        "https://status.internal/health",
        "https://reports.corp/daily",
      ],
    },
    question:
      "{{Verb}} a Java method `{{fn}}` that downloads the text at {{url}} over HTTPS with HttpsURLConnection and returns it.",
    chosen: raw`
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

public static String {{fn}}() throws Exception {
    HttpsURLConnection conn = (HttpsURLConnection) new URL("{{url}}").openConnection();
    return new String(conn.getInputStream().readAllBytes());
}
`,
    rejected: raw`
import java.net.URL;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

public static String {{fn}}() throws Exception {
    TrustManager[] all = { new X509TrustManager() {
        public void checkClientTrusted(X509Certificate[] c, String a) {}
        public void checkServerTrusted(X509Certificate[] c, String a) {}
        public X509Certificate[] getAcceptedIssuers() { return null; }
    } };
    SSLContext ctx = SSLContext.getInstance("TLS");
    ctx.init(null, all, null);
    HttpsURLConnection conn = (HttpsURLConnection) new URL("{{url}}").openConnection();
    conn.setSSLSocketFactory(ctx.getSocketFactory());
    return new String(conn.getInputStream().readAllBytes());
}
`,
  },
];
