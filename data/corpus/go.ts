/**
 * Go templates of the demo corpus (authored for this project). See cpp.ts for the layout.
 * Go code here never uses backtick strings (they would end the TypeScript template literal).
 */
import type { CodeTemplate } from "./template.js";

const raw = String.raw;

export const GO_TEMPLATES: readonly CodeTemplate[] = [
  {
    key: "ignored-error",
    cwe: "CWE-252",
    slots: {
      fn: ["saveReport", "writeConfig", "storeSnapshot", "saveInvoice", "writeBackup", "persistState"],
      file: ["report.txt", "config.yaml", "snapshot.json", "invoice.csv", "backup.dat", "state.json"],
    },
    question:
      '{{Verb}} a Go function `{{fn}}` that writes the given bytes to the file "{{file}}" in a directory passed as an argument.',
    chosen: raw`
package store

import (
	"fmt"
	"os"
	"path/filepath"
)

func {{fn}}(dir string, data []byte) error {
	f, err := os.Create(filepath.Join(dir, "{{file}}"))
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write: %w", err)
	}
	return f.Close()
}
`,
    rejected: raw`
package store

import (
	"os"
	"path/filepath"
)

func {{fn}}(dir string, data []byte) error {
	f, _ := os.Create(filepath.Join(dir, "{{file}}"))
	f.Write(data)
	f.Close()
	return nil
}
`,
  },
  {
    key: "shell-command",
    cwe: "CWE-78",
    slots: {
      fn: ["pingHost", "checkHost", "probeServer", "traceHost", "lookupHost", "testReachable"],
      tool: [
        { bin: "ping", flags: "-c 1 ", argv: '"-c", "1", ' },
        { bin: "ping", flags: "-c 3 ", argv: '"-c", "3", ' },
        { bin: "nslookup", flags: "", argv: "" },
        { bin: "traceroute", flags: "-m 10 ", argv: '"-m", "10", ' },
        { bin: "dig", flags: "+short ", argv: '"+short", ' },
      ],
      arg: ["host", "target", "addr"],
    },
    question:
      "{{Verb}} a Go function `{{fn}}` that runs `{{tool.bin}}` on a host given by the user and returns the command's combined output.",
    chosen: raw`
package netcheck

import (
	"errors"
	"os/exec"
	"strings"
)

func {{fn}}({{arg}} string) ([]byte, error) {
	if {{arg}} == "" || strings.HasPrefix({{arg}}, "-") {
		return nil, errors.New("bad host")
	}
	return exec.Command("{{tool.bin}}", {{tool.argv}}{{arg}}).CombinedOutput()
}
`,
    rejected: raw`
package netcheck

import (
	"fmt"
	"os/exec"
)

func {{fn}}({{arg}} string) ([]byte, error) {
	cmd := fmt.Sprintf("{{tool.bin}} {{tool.flags}}%s", {{arg}})
	return exec.Command("sh", "-c", cmd).CombinedOutput()
}
`,
  },
  {
    key: "sprintf-sql",
    cwe: "CWE-89",
    slots: {
      fn: ["findUserID", "lookupAccount", "countOrders", "findProduct", "loadCustomer", "searchBooks"],
      q: [
        { table: "users", col: "username", arg: "name" },
        { table: "accounts", col: "email", arg: "email" },
        { table: "orders", col: "customer", arg: "customer" },
        { table: "products", col: "sku", arg: "sku" },
        { table: "books", col: "title", arg: "title" },
      ],
    },
    question:
      "{{Verb}} a Go function `{{fn}}` that takes a *sql.DB and a `{{q.arg}}` from a query string and returns the id of the row in `{{q.table}}` whose `{{q.col}}` matches.",
    chosen: raw`
package repo

import "database/sql"

func {{fn}}(db *sql.DB, {{q.arg}} string) (int64, error) {
	var id int64
	err := db.QueryRow("SELECT id FROM {{q.table}} WHERE {{q.col}} = $1", {{q.arg}}).Scan(&id)
	return id, err
}
`,
    rejected: raw`
package repo

import (
	"database/sql"
	"fmt"
)

func {{fn}}(db *sql.DB, {{q.arg}} string) (int64, error) {
	var id int64
	query := fmt.Sprintf("SELECT id FROM {{q.table}} WHERE {{q.col}} = '%s'", {{q.arg}})
	err := db.QueryRow(query).Scan(&id)
	return id, err
}
`,
  },
  {
    key: "math-rand-token",
    cwe: "CWE-338",
    slots: {
      fn: ["newSessionID", "resetToken", "generateAPIKey", "inviteCode", "makeNonce", "csrfToken"],
      len: ["16", "24", "32"],
    },
    question:
      "{{Verb}} a Go function `{{fn}}` that returns {{len}} random bytes encoded as hex, used as a session token for logged-in users.",
    chosen: raw`
package auth

import (
	"crypto/rand"
	"encoding/hex"
)

func {{fn}}() (string, error) {
	b := make([]byte, {{len}})
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
`,
    rejected: raw`
package auth

import (
	"encoding/hex"
	"math/rand"
	"time"
)

func {{fn}}() (string, error) {
	rand.Seed(time.Now().UnixNano())
	b := make([]byte, {{len}})
	for i := range b {
		b[i] = byte(rand.Intn(256))
	}
	return hex.EncodeToString(b), nil
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
      "{{Verb}} a Go function `{{fn}}` that returns the hex digest of `{{arg}} []byte`, used to detect tampering of stored files.",
    chosen: raw`
package integrity

import (
	"crypto/sha256"
	"encoding/hex"
)

func {{fn}}({{arg}} []byte) string {
	sum := sha256.Sum256({{arg}})
	return hex.EncodeToString(sum[:])
}
`,
    rejected: raw`
package integrity

import (
	"crypto/md5"
	"encoding/hex"
)

func {{fn}}({{arg}} []byte) string {
	sum := md5.Sum({{arg}})
	return hex.EncodeToString(sum[:])
}
`,
  },
  {
    key: "insecure-skip-verify",
    cwe: "CWE-295",
    slots: {
      fn: ["newAPIClient", "feedClient", "statusClient", "reportClient", "syncClient", "billingClient"],
      timeout: ["5", "10", "15", "30"],
    },
    question:
      "{{Verb}} a Go function `{{fn}}` that returns an *http.Client with a {{timeout}}-second timeout for calling a partner's HTTPS API.",
    chosen: raw`
package client

import (
	"crypto/tls"
	"net/http"
	"time"
)

func {{fn}}() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr, Timeout: {{timeout}} * time.Second}
}
`,
    rejected: raw`
package client

import (
	"crypto/tls"
	"net/http"
	"time"
)

func {{fn}}() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	return &http.Client{Transport: tr, Timeout: {{timeout}} * time.Second}
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
      "{{Verb}} a Go function `{{fn}}` that returns the contents of a file whose name comes from a URL parameter, reading it from {{dir}}.",
    chosen: raw`
package files

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

const baseDir = "{{dir}}"

func {{fn}}(name string) ([]byte, error) {
	p := filepath.Join(baseDir, filepath.Clean("/"+name))
	if !strings.HasPrefix(p, baseDir+string(os.PathSeparator)) {
		return nil, errors.New("invalid path")
	}
	return os.ReadFile(p)
}
`,
    rejected: raw`
package files

import (
	"os"
	"path/filepath"
)

const baseDir = "{{dir}}"

func {{fn}}(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(baseDir, name))
}
`,
  },
  {
    key: "hardcoded-secret",
    cwe: "CWE-798",
    slots: {
      fn: ["openDB", "connectReports", "connectInventory", "openBilling", "connectAnalytics", "openOrders"],
      db: [
        { host: "db.internal", user: "admin", pw: "admin123", env: "DB" },
        { host: "10.0.0.12", user: "reporter", pw: "Summer2024!", env: "REPORT_DB" },
        { host: "pg.local", user: "app", pw: "s3cr3tpass", env: "APP_DB" },
        { host: "pg.corp", user: "postgres", pw: "postgres", env: "PG" },
      ],
    },
    question:
      "{{Verb}} a Go function `{{fn}}` that opens a Postgres connection to {{db.host}} as user {{db.user}} with database/sql.",
    chosen: raw`
package storage

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
)

func {{fn}}() (*sql.DB, error) {
	pw := os.Getenv("{{db.env}}_PASSWORD")
	if pw == "" {
		return nil, errors.New("{{db.env}}_PASSWORD not set")
	}
	dsn := fmt.Sprintf("host={{db.host}} user={{db.user}} password=%s sslmode=require", pw)
	return sql.Open("postgres", dsn)
}
`,
    rejected: raw`
package storage

import "database/sql"

func {{fn}}() (*sql.DB, error) {
	dsn := "host={{db.host}} user={{db.user}} password={{db.pw}} sslmode=disable"
	return sql.Open("postgres", dsn)
}
`,
  },
  {
    key: "html-fprintf",
    cwe: "CWE-79",
    slots: {
      fn: [
        "greetHandler",
        "profileHandler",
        "searchHandler",
        "welcomeHandler",
        "commentHandler",
        "nameHandler",
      ],
      p: [
        { param: "name", text: "Hello, " },
        { param: "q", text: "Results for " },
        { param: "user", text: "Welcome back, " },
        { param: "comment", text: "You wrote: " },
      ],
    },
    question:
      '{{Verb}} a Go HTTP handler `{{fn}}` that reads the query parameter `{{p.param}}` and responds with an HTML heading "{{p.text}}" followed by it.',
    chosen: raw`
package web

import (
	"fmt"
	"html"
	"net/http"
)

func {{fn}}(w http.ResponseWriter, r *http.Request) {
	v := html.EscapeString(r.URL.Query().Get("{{p.param}}"))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<h1>{{p.text}}%s</h1>", v)
}
`,
    rejected: raw`
package web

import (
	"fmt"
	"net/http"
)

func {{fn}}(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("{{p.param}}")
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprintf(w, "<h1>{{p.text}}%s</h1>", v)
}
`,
  },
  {
    key: "unbounded-body",
    cwe: "CWE-770",
    slots: {
      fn: [
        "uploadHandler",
        "importHandler",
        "webhookHandler",
        "ingestHandler",
        "feedbackHandler",
        "eventHandler",
      ],
      limit: ["1 << 20", "4 << 20", "10 << 20", "64 << 10"],
      sink: ["store.Save", "queue.Push", "archive.Put", "events.Record"],
    },
    question:
      "{{Verb}} a Go HTTP handler `{{fn}}` that reads the whole request body and passes it to `{{sink}}`, replying 204 on success.",
    chosen: raw`
package api

import (
	"io"
	"net/http"
)

func {{fn}}(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, {{limit}}))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	{{sink}}(body)
	w.WriteHeader(http.StatusNoContent)
}
`,
    rejected: raw`
package api

import (
	"io"
	"net/http"
)

func {{fn}}(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	{{sink}}(body)
	w.WriteHeader(http.StatusNoContent)
}
`,
  },
  {
    key: "open-redirect",
    cwe: "CWE-601",
    slots: {
      fn: ["afterLogin", "continueTo", "goBack", "finishSignup", "returnToPage", "redirectNext"],
      param: ["next", "return_to", "redirect", "continue"],
      home: ["/", "/home", "/dashboard", "/account"],
    },
    question:
      "{{Verb}} a Go HTTP handler `{{fn}}` that redirects the browser to the URL in the query parameter `{{param}}`, or to {{home}} when it is empty.",
    chosen: raw`
package web

import (
	"net/http"
	"strings"
)

func {{fn}}(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("{{param}}")
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || strings.Contains(target, "\\") {
		target = "{{home}}"
	}
	http.Redirect(w, r, target, http.StatusFound)
}
`,
    rejected: raw`
package web

import "net/http"

func {{fn}}(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("{{param}}")
	if target == "" {
		target = "{{home}}"
	}
	http.Redirect(w, r, target, http.StatusFound)
}
`,
  },
  {
    key: "map-race",
    cwe: "CWE-362",
    slots: {
      fn: ["HitCounter", "VisitTracker", "RateTable", "SessionStore", "ScoreBoard", "QuotaTable"],
      method: ["Inc", "Add", "Record", "Touch"],
    },
    question:
      "{{Verb}} a Go type `{{fn}}` holding a map from string keys to counts, with a method `{{method}}(key string)` that HTTP handlers call concurrently to increment a key.",
    chosen: raw`
package stats

import "sync"

type {{fn}} struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *{{fn}}) {{method}}(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make(map[string]int)
	}
	c.counts[key]++
}
`,
    rejected: raw`
package stats

type {{fn}} struct {
	counts map[string]int
}

func (c *{{fn}}) {{method}}(key string) {
	if c.counts == nil {
		c.counts = make(map[string]int)
	}
	c.counts[key]++
}
`,
  },
];
