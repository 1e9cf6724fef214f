import { code, type Case } from "./case.js";

export const goCases: Case[] = [
  {
    rule: "go/discarded-error",
    bad: [
      code`
        package main
        import "os/exec"
        func run() {
        	cmd := exec.Command("date")
        	out, _ := cmd.StdoutPipe() // <- discarded-error
        	_ = out
        }
      `,
      code`
        package main
        import "strconv"
        func f(s string) int {
        	n, _ := strconv.Atoi(s) // <- discarded-error
        	return n
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"crypto/x509"
        	"encoding/pem"
        )
        func parse(data []byte) (*x509.Certificate, error) {
        	block, _ := pem.Decode(data)
        	if block == nil {
        		return nil, nil
        	}
        	return x509.ParseCertificate(block.Bytes)
        }
      `,
      code`
        package main
        import "strconv"
        func f(s string, m map[string]int) int {
        	n, err := strconv.Atoi(s)
        	if err != nil {
        		return 0
        	}
        	v, _ := m[s]
        	for _, x := range []int{1} {
        		n += x
        	}
        	return n + v
        }
      `,
    ],
  },
  {
    rule: "go/unchecked-error",
    bad: [
      code`
        package main
        import "os/exec"
        func run() {
        	cmd := exec.Command("make", "all")
        	cmd.Run() // <- unchecked-error
        }
      `,
      code`
        package main
        import (
        	"io"
        	"net/http"
        	"os/exec"
        )
        func handler(w http.ResponseWriter, r *http.Request) {
        	cmd := exec.Command("date")
        	stdout, err := cmd.StdoutPipe()
        	if err != nil {
        		return
        	}
        	cmd.Start() // <- unchecked-error
        	io.Copy(w, stdout)
        }
      `,
      code`
        package main
        import "os"
        func f() {
        	os.Remove("b.txt") // <- unchecked-error
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var qty int
        	fmt.Print("how many: ")
        	fmt.Scan(&qty) // <- unchecked-error
        	fmt.Println(qty * 2)
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"bufio"
        	"fmt"
        	"os"
        )
        func main() {
        	var qty int
        	if _, err := fmt.Scan(&qty); err != nil {
        		fmt.Println("not a number")
        		return
        	}
        	sc := bufio.NewScanner(os.Stdin)
        	for sc.Scan() {
        		fmt.Println(sc.Text(), qty)
        	}
        }
      `,
      code`
        package main
        import "testing"
        func TestParse(t *testing.T) {
        	t.Run("empty", func(t *testing.T) {
        		if parse("") != nil {
        			t.Fatal("want nil")
        		}
        	})
        }
      `,
      code`
        package main
        import (
        	"os/exec"
        	"sync"
        )
        func run() error {
        	var wg sync.WaitGroup
        	cmd := exec.Command("date")
        	if err := cmd.Start(); err != nil {
        		return err
        	}
        	wg.Wait()
        	return cmd.Wait()
        }
      `,
      code`
        package main
        import "os"
        func f() error {
        	f, err := os.Open("a.txt")
        	if err != nil {
        		return err
        	}
        	defer f.Close()
        	return os.Remove("b.txt")
        }
      `,
    ],
  },
  {
    rule: "go/command-injection",
    bad: [
      code`
        package main
        import "os/exec"
        func run(input string) {
        	cmd := exec.Command("sh", "-c", "ls "+input) // <- command-injection
        	cmd.Run()
        }
      `,
    ],
    good: [
      code`
        package main
        import "os/exec"
        func run(input string) error {
        	cmd := exec.Command("ls", "-l", input)
        	return cmd.Run()
        }
      `,
    ],
  },
  {
    rule: "go/sql-injection",
    bad: [
      code`
        package main
        import (
        	"database/sql"
        	"fmt"
        )
        func q(db *sql.DB, name string) {
        	rows, err := db.Query(fmt.Sprintf("SELECT * FROM users WHERE name = '%s'", name)) // <- sql-injection
        	_ = rows
        	_ = err
        }
      `,
    ],
    good: [
      code`
        package main
        import "database/sql"
        func q(db *sql.DB, name string) (*sql.Rows, error) {
        	return db.Query("SELECT * FROM users WHERE name = ?", name)
        }
      `,
    ],
  },
  {
    rule: "go/weak-random",
    bad: [
      code`
        package main
        import (
        	"math/rand" // <- weak-random
        )
        func token() int {
        	return rand.Intn(1000000)
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"crypto/rand"
        	"math/big"
        )
        func token() (*big.Int, error) {
        	return rand.Int(rand.Reader, big.NewInt(1000000))
        }
      `,
    ],
  },
  {
    rule: "go/weak-crypto",
    bad: [
      code`
        package main
        import (
        	"crypto/md5" // <- weak-crypto
        	"fmt"
        )
        func h(b []byte) string {
        	return fmt.Sprintf("%x", md5.Sum(b))
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"crypto/sha256"
        	"fmt"
        )
        func h(b []byte) string {
        	return fmt.Sprintf("%x", sha256.Sum256(b))
        }
      `,
    ],
  },
  {
    rule: "go/hardcoded-credential",
    bad: [
      code`
        package main
        import "database/sql"
        func open() (*sql.DB, error) {
        	return sql.Open("mysql", "root:hunter22@tcp(127.0.0.1:3306)/app") // <- hardcoded-credential
        }
      `,
      code`
        package main
        import "net/http"
        func call() (*http.Response, error) {
        	k := "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
        	req, err := http.NewRequest("GET", "https://api.example.com/v1/charges", nil)
        	if err != nil {
        		return nil, err
        	}
        	req.Header.Set("Authorization", "Bearer "+k) // <- hardcoded-credential
        	return http.DefaultClient.Do(req)
        }
      `,
      code`
        package main
        import "net/smtp"
        const mailLogin = "Xq7!mailbot"
        func send(to []string, msg []byte) error {
        	auth := smtp.PlainAuth("", "bot@example.com", mailLogin, "smtp.example.com") // <- hardcoded-credential
        	return smtp.SendMail("smtp.example.com:587", auth, "bot@example.com", to, msg)
        }
      `,
      code`
        package main
        import "crypto/subtle"
        func allowed(given string) bool {
        	expected := "0pen-Sesame-42"
        	return subtle.ConstantTimeCompare([]byte(given), []byte(expected)) == 1 // <- hardcoded-credential
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"net/http"
        )
        const stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
        func call(req *http.Request) {
        	req.Header.Set("Authorization", fmt.Sprintf("Bearer %s", stripe)) // <- hardcoded-credential
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"net/http"
        	"os"
        )
        func call(req *http.Request) {
        	k := os.Getenv("STRIPE_KEY")
        	req.Header.Set("Authorization", fmt.Sprintf("Bearer %s", k))
        	req.Header.Set("User-Agent", fmt.Sprintf("client/%s", "1.4.2"))
        }
      `,
      code`
        package main
        import (
        	"database/sql"
        	"os"
        )
        func open() (*sql.DB, error) {
        	return sql.Open("mysql", os.Getenv("DSN"))
        }
      `,
      code`
        package main
        import (
        	"net/http"
        	"os"
        )
        func call() (*http.Response, error) {
        	k := os.Getenv("API_TOKEN")
        	ct := "application/json"
        	req, err := http.NewRequest("GET", "https://api.example.com/v1/charges", nil)
        	if err != nil {
        		return nil, err
        	}
        	req.Header.Set("Authorization", "Bearer "+k)
        	req.Header.Set("Content-Type", ct)
        	return http.DefaultClient.Do(req)
        }
      `,
      code`
        package main
        import (
        	"net/http"
        	"os"
        )
        func call(req *http.Request) {
        	k := "sk_test_placeholder"
        	k = os.Getenv("API_TOKEN")
        	req.Header.Set("Authorization", k)
        }
      `,
      code`
        package main
        import (
        	"crypto/subtle"
        	"os"
        )
        func allowed(given string) bool {
        	expected := os.Getenv("ADMIN_TOKEN")
        	return expected != "" && subtle.ConstantTimeCompare([]byte(given), []byte(expected)) == 1
        }
      `,
      code`
        package main
        func confirm(answer string) bool {
        	want := "yes"
        	return answer == want
        }
      `,
    ],
  },
  {
    rule: "go/path-traversal",
    bad: [
      code`
        package main
        import (
        	"archive/zip"
        	"io"
        	"os"
        	"path/filepath"
        )
        func extract(archive, dest string) error {
        	zr, err := zip.OpenReader(archive)
        	if err != nil {
        		return err
        	}
        	defer zr.Close()
        	for _, entry := range zr.File {
        		target := filepath.Join(dest, entry.Name) // <- path-traversal
        		w, err := os.Create(target)
        		if err != nil {
        			return err
        		}
        		rc, err := entry.Open()
        		if err != nil {
        			return err
        		}
        		io.Copy(w, rc)
        		rc.Close()
        		w.Close()
        	}
        	return nil
        }
      `,
      code`
        package main
        import (
        	"archive/tar"
        	"io"
        	"os"
        )
        func untar(r io.Reader) error {
        	tr := tar.NewReader(r)
        	for {
        		hdr, err := tr.Next()
        		if err != nil {
        			return err
        		}
        		f, err := os.Create("/srv/data/" + hdr.Name) // <- path-traversal
        		if err != nil {
        			return err
        		}
        		io.Copy(f, tr)
        		f.Close()
        	}
        }
      `,
      code`
        package main
        import (
        	"net/http"
        	"os"
        	"path/filepath"
        )
        func h(w http.ResponseWriter, r *http.Request) {
        	p := filepath.Join("/srv/files", r.URL.Query().Get("f")) // <- path-traversal
        	b, _ := os.ReadFile(p)
        	w.Write(b)
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"archive/zip"
        	"errors"
        	"io"
        	"os"
        	"path/filepath"
        	"strings"
        )
        func extract(archive, dest string) error {
        	zr, err := zip.OpenReader(archive)
        	if err != nil {
        		return err
        	}
        	defer zr.Close()
        	for _, entry := range zr.File {
        		target := filepath.Join(dest, entry.Name)
        		if !strings.HasPrefix(filepath.Clean(target), filepath.Clean(dest)+string(os.PathSeparator)) {
        			return errors.New("entry outside the destination")
        		}
        		w, err := os.Create(target)
        		if err != nil {
        			return err
        		}
        		rc, err := entry.Open()
        		if err != nil {
        			return err
        		}
        		io.Copy(w, rc)
        		rc.Close()
        		w.Close()
        	}
        	return nil
        }
      `,
      code`
        package main
        import (
        	"net/http"
        	"os"
        	"path/filepath"
        	"strings"
        )
        func h(w http.ResponseWriter, r *http.Request) {
        	p := filepath.Join("/srv/files", filepath.Clean("/"+r.URL.Query().Get("f")))
        	if !strings.HasPrefix(p, "/srv/files/") {
        		return
        	}
        	b, err := os.ReadFile(p)
        	if err == nil {
        		w.Write(b)
        	}
        }
      `,
    ],
  },
  {
    rule: "go/unsafe-pointer",
    bad: [
      code`
        package main
        import (
        	"fmt"
        	"reflect"
        	"unsafe"
        )
        func main() {
        	small := make([]byte, 2, 4)
        	big := []byte{1, 2, 3, 4, 5, 6, 7, 8}
        	sh := (*reflect.SliceHeader)(unsafe.Pointer(&small))
        	bh := (*reflect.SliceHeader)(unsafe.Pointer(&big))
        	sh.Len = bh.Len // <- unsafe-pointer
        	fmt.Println(small)
        }
      `,
      code`
        package main
        import "unsafe"
        func f(b []byte) *int {
        	return (*int)(unsafe.Pointer(&b[0])) // <- unsafe-pointer
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"reflect"
        	"unsafe"
        )
        func main() {
        	small := make([]byte, 2, 4)
        	sh := (*reflect.SliceHeader)(unsafe.Pointer(&small))
        	if n := 3; n <= sh.Cap {
        		sh.Len = n
        	}
        	fmt.Println(small)
        }
      `,
      code`
        package main
        import "encoding/binary"
        func f(b []byte) uint64 {
        	return binary.LittleEndian.Uint64(b)
        }
      `,
    ],
  },
  {
    rule: "go/format-string",
    bad: [
      code`
        package scanner
        import "fmt"
        func report(format string, args ...interface{}) {
        	msg := format + "\n"
        	fmt.Printf(msg, args...) // <- format-string
        }
      `,
      code`
        package main
        import "fmt"
        func greet(name string) {
        	fmt.Printf(name) // <- format-string
        }
      `,
    ],
    good: [
      code`
        package scanner
        import "fmt"
        type Scanner struct{ errs []string }
        func (s *Scanner) errorf(format string, args ...interface{}) {
        	s.errs = append(s.errs, fmt.Sprintf(format, args...))
        }
      `,
      code`
        package main
        import "fmt"
        const layout = "%s\n"
        func greet(name string) {
        	fmt.Printf("%s\n", name)
        	fmt.Printf(layout, name)
        }
      `,
    ],
  },
  {
    rule: "go/tls-insecure-skip-verify",
    bad: [
      code`
        package main
        import "crypto/tls"
        func cfg() *tls.Config {
        	return &tls.Config{InsecureSkipVerify: true} // <- tls-insecure-skip-verify
        }
      `,
    ],
    good: [
      code`
        package main
        import "crypto/tls"
        func cfg() *tls.Config {
        	return &tls.Config{MinVersion: tls.VersionTLS12}
        }
      `,
    ],
  },

  {
    rule: "go/error-not-handled",
    bad: [
      code`
        package main
        import (
        	"os"
        	"testing"
        )
        func TestRead(t *testing.T) {
        	f, err := os.Open("testdata/a.txt")
        	if err != nil { // <- error-not-handled
        		t.Error(err)
        	}
        	defer f.Close()
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	file, err := os.Open("data.txt")
        	if err != nil { // <- error-not-handled
        		fmt.Println(err)
        	}
        	defer file.Close()
        }
      `,
      code`
        package main
        import "os"
        func main() {
        	file, err := os.Open("data.txt")
        	defer file.Close() // <- error-not-handled
        	if err != nil {
        		return
        	}
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func report(err error) {
        	if err != nil {
        		fmt.Println("warning:", err)
        	}
        }
        func main() {
        	f, err := os.Open("settings.ini")
        	report(err)
        	info, _ := f.Stat() // <- error-not-handled
        	fmt.Println(info.Size())
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"log"
        	"os"
        )
        func check(err error) {
        	if err != nil {
        		log.Fatal(err)
        	}
        }
        func main() {
        	f, err := os.Open("settings.ini")
        	check(err)
        	info, err := f.Stat()
        	check(err)
        	fmt.Println(info.Size())
        }
      `,
      code`
        package script
        import (
        	"os"
        	"testing"
        )
        type state struct{ t *testing.T }
        func (s *state) fatalf(format string, args ...any) { s.t.Fatalf(format, args...) }
        func (s *state) must(err error) {
        	if err != nil {
        		s.fatalf("%v", err)
        	}
        }
        func (s *state) isDir(dir string) bool {
        	info, err := os.Stat(dir)
        	s.must(err)
        	return info.IsDir()
        }
      `,
      code`
        package main
        import (
        	"os"
        	"testing"
        )
        func TestRead(t *testing.T) {
        	f, err := os.Open("testdata/a.txt")
        	if err != nil {
        		t.Fatal(err)
        	}
        	defer f.Close()
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	file, err := os.Open("data.txt")
        	if err != nil {
        		fmt.Println(err)
        		return
        	}
        	defer file.Close()
        }
      `,
    ],
  },
  {
    rule: "go/index-out-of-range",
    bad: [
      code`
        package load
        import "sort"
        type Example struct{ Order int }
        func sortExamples(ex []Example, k int) {
        	sort.Slice(ex, func(i, j int) bool { return ex[i].Order < ex[j].Order })
        	ex[k].Order = 0 // <- index-out-of-range
        }
      `,
      code`
        package ssa
        type Value struct{ ID int }
        func last() *Value {
        	var controls [2]*Value
        	return controls[2] // <- index-out-of-range
        }
      `,
      code`
        package main
        type byAge []Person
        func (a byAge) Get(i int) Person {
        	return a[i] // <- index-out-of-range
        }
      `,
      code`
        package main
        func first(xs []int) int {
        	n := 0
        	return xs[n]
        }
        func Skip(xs []int, n int) int {
        	return xs[n] // <- index-out-of-range
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	var slots [8]byte
        	data := []byte(os.Args[0])
        	n := 0
        	for _, b := range data { // <- index-out-of-range
        		slots[n] = b
        		n++
        	}
        	fmt.Println(slots)
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var scores []int
        	scores = append(scores, 7, 9, 4)
        	for i := 0; i <= 3; i++ { // <- index-out-of-range
        		fmt.Println(scores[i])
        	}
        }
      `,
      code`
        package main
        import "fmt"
        type Packet struct {
        	payload [64]byte
        }
        func main() {
        	var p Packet
        	for i := 0; i <= 64; i++ { // <- index-out-of-range
        		p.payload[i] = 'A'
        	}
        	fmt.Println(p.payload[0])
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        	"strconv"
        )
        func main() {
        	if len(os.Args) < 2 {
        		return
        	}
        	n, err := strconv.Atoi(os.Args[1])
        	if err != nil {
        		return
        	}
        	var buffer [10]int
        	for i := 0; i < n; i++ { // <- index-out-of-range
        		buffer[i] = i
        	}
        	fmt.Println(buffer)
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	arr := [5]int{}
        	for i := 0; i <= 5; i++ { // <- index-out-of-range
        		arr[i] = i
        	}
        	fmt.Println(arr)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	name := os.Args[1] // <- index-out-of-range
        	fmt.Println(name)
        }
      `,
      code`
        package main
        func prefix(s string, n int) string {
        	return s[:n] // <- index-out-of-range
        }
      `,
      code`
        package main
        import "fmt"
        const width = 40
        func main() {
        	title := "Quarterly report"
        	fmt.Println(title[:width]) // <- index-out-of-range
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	raw := make([]byte, 512)
        	n, err := os.Stdin.Read(raw)
        	if err != nil {
        		return
        	}
        	var tag [8]byte
        	for i := 0; i < n; i++ { // <- index-out-of-range
        		tag[i] = raw[i]
        	}
        	fmt.Println(string(tag[:]))
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	greeting := "héllo"
        	fmt.Println(greeting[7:]) // <- index-out-of-range
        }
      `,
    ],
    good: [
      code`
        package main
        import "fmt"
        const width = 16
        func main() {
        	title := "Quarterly report"
        	fmt.Println(title[:width], title[width:])
        	banner := "=="
        	banner += " Quarterly report =="
        	fmt.Println(banner[:12])
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	raw := make([]byte, 512)
        	n, err := os.Stdin.Read(raw)
        	if err != nil {
        		return
        	}
        	var tag [8]byte
        	for i := 0; i < n; i++ {
        		if i < len(tag) {
        			tag[i] = raw[i]
        		}
        	}
        	sum := 0
        	for i := 0; i < n; i++ {
        		sum += int(raw[i])
        	}
        	pad := make([]byte, 10)
        	for i := 0; i < 20; i++ {
        		if i < len(pad) {
        			pad[i] = '.'
        		}
        	}
        	fmt.Println(string(tag[:]), sum, string(pad))
        }
      `,
      code`
        package main
        func first(title string) string {
        	return title[:3]
        }
        func main() {
        	title := "ab"
        	_ = title
        }
      `,
      code`
        package load
        import "sort"
        type Example struct{ Order int }
        func sortExamples(ex []Example) {
        	sort.Slice(ex, func(i, j int) bool { return ex[i].Order < ex[j].Order })
        }
        func find(xs []int, v int) int {
        	return sort.Search(len(xs), func(i int) bool { return xs[i] >= v })
        }
      `,
      code`
        package ssa
        type Value struct{ ID int }
        type Block struct {
        	Kind int
        	// Controls[1] must be nil if Controls[0] is nil.
        	Controls [2]*Value
        	Aux      int
        }
      `,
      code`
        package main
        type byAge []Person
        func (a byAge) Len() int           { return len(a) }
        func (a byAge) Less(i, j int) bool { return a[i].Age < a[j].Age }
        func (a byAge) Swap(i, j int)      { a[i], a[j] = a[j], a[i] }
      `,
      code`
        package main
        func Skip(n int) int { return n + 1 }
        func first(xs []int) int {
        	n := 0
        	return xs[n]
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	var slots [8]byte
        	data := []byte(os.Args[0])
        	n := 0
        	for _, b := range data {
        		if n >= len(slots) {
        			break
        		}
        		slots[n] = b
        		n++
        	}
        	fmt.Println(slots)
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var scores []int
        	scores = append(scores, 7, 9, 4)
        	for i := 0; i < len(scores); i++ {
        		fmt.Println(scores[i])
        	}
        	var more []int
        	for k := 0; k < 10; k++ {
        		more = append(more, k)
        	}
        	for i := 0; i < 8; i++ {
        		fmt.Println(more[i])
        	}
        }
      `,
      code`
        package main
        import "fmt"
        type Packet struct {
        	payload [64]byte
        }
        func main() {
        	var p Packet
        	for i := 0; i < 64; i++ {
        		p.payload[i] = 'A'
        	}
        	fmt.Println(p.payload[0])
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        	"strconv"
        )
        func main() {
        	if len(os.Args) < 2 {
        		return
        	}
        	n, err := strconv.Atoi(os.Args[1])
        	if err != nil || n < 0 || n > 10 {
        		return
        	}
        	var buffer [10]int
        	for i := 0; i < n; i++ {
        		buffer[i] = i
        	}
        	fmt.Println(buffer)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func prefix(s string, n int) string {
        	if n > len(s) {
        		n = len(s)
        	}
        	return s[:n]
        }
        func main() {
        	arr := [5]int{}
        	for i := 0; i < len(arr); i++ {
        		arr[i] = i
        	}
        	if len(os.Args) < 2 {
        		return
        	}
        	fmt.Println(os.Args[1], prefix("abc", 2))
        }
      `,
    ],
  },
  {
    rule: "go/nil-dereference",
    bad: [
      code`
        package main
        func main() {
        	var p *Profile
        	var err error
        	if _, err = parseText(nil); err != nil {
        		return
        	}
        	println(p.Name) // <- nil-dereference
        }
      `,
      code`
        package config

        var Default *Config

        func Name() string {
        	return Default.Name // <- nil-dereference
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var seen map[string]int
        	seen["x"]++ // <- nil-dereference
        	fmt.Println(seen)
        }
      `,
      code`
        package main
        import "fmt"
        type User struct{ Name string }
        func main() {
        	var u *User
        	fmt.Println(u.Name) // <- nil-dereference
        }
      `,
      code`
        package main
        import "fmt"
        type User struct{ Name string }
        func find(id int) *User {
        	if id == 1 {
        		return &User{Name: "a"}
        	}
        	return nil
        }
        func main() {
        	u := find(2)
        	fmt.Println(u.Name) // <- nil-dereference
        }
      `,
      code`
        package main
        import "fmt"
        type Account struct{ Owner string }
        func (a *Account) Describe() string {
        	return "owned by " + a.Owner
        }
        func main() {
        	var acct *Account
        	fmt.Println(acct.Describe()) // <- nil-dereference
        }
      `,
    ],
    good: [
      code`
        package main
        import "fmt"
        type Box struct{ v int }
        func main() {
        	find := func(k int) *Box {
        		if k > 0 {
        			return &Box{v: k}
        		}
        		return nil
        	}
        	b := (*Box)(&Box{v: 1})
        	fmt.Println(b.v, find(1) != nil)
        }
      `,
      code`
        package main
        import "fmt"
        type Account struct{ Owner string }
        func (a *Account) Describe() string {
        	if a == nil {
        		return "no account"
        	}
        	return "owned by " + a.Owner
        }
        func main() {
        	var acct *Account
        	fmt.Println(acct.Describe())
        }
      `,
      code`
        package cert
        import "testing"
        type Cert struct{ KeyID []byte }
        func mustParse(t *testing.T, der []byte) *Cert {
        	if len(der) == 0 {
        		t.Fatalf("empty certificate")
        		return nil
        	}
        	return &Cert{KeyID: der[:1]}
        }
        func TestKeyID(t *testing.T) {
        	c := mustParse(t, []byte{1})
        	if len(c.KeyID) == 0 {
        		t.Error("no key id")
        	}
        }
      `,
      code`
        package main
        import "fmt"
        type Registry struct{ names []string }
        func (*Registry) Kind() string { return "registry" }
        func main() {
        	var reg *Registry
        	fmt.Println(reg.Kind())
        	var other *Registry
        	kind := other.Kind
        	fmt.Println(kind())
        }
      `,
      code`
        package stats
        import "unsafe"
        func find(ptr uintptr) int {
        	var entry *tcpEntry = nil
        	entry = (*tcpEntry)(unsafe.Pointer(ptr))
        	return entry.count
        }
      `,
      code`
        package profile
        func Parse(b []byte) (*Profile, error) {
        	var p *Profile
        	var err error
        	if p, err = parseText(b); err != nil {
        		return nil, err
        	}
        	return p, p.Check()
        }
      `,
      code`
        package config

        var Default *Config

        func Name() string { return Default.Name }

        func init() {
        	Default = load("app.toml")
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var seen map[string]int
        	seen = make(map[string]int)
        	seen["x"]++
        	var fixed map[string]int = map[string]int{}
        	fixed["y"] = 1
        	fmt.Println(seen, fixed)
        }
      `,
      code`
        package main
        import "fmt"
        type User struct{ Name string }
        func find(id int) *User {
        	if id == 1 {
        		return &User{Name: "a"}
        	}
        	return nil
        }
        func main() {
        	var u *User
        	u = &User{Name: "b"}
        	fmt.Println(u.Name)
        	if v := find(2); v != nil {
        		fmt.Println(v.Name)
        	}
        	w := find(1)
        	if w == nil {
        		return
        	}
        	fmt.Println(w.Name)
        }
      `,
    ],
  },
  {
    rule: "go/race-condition",
    bad: [
      code`
        package main
        import "fmt"
        func main() {
        	hits := 0
        	done := make(chan bool)
        	for i := 0; i < 50; i++ {
        		go func() {
        			hits++ // <- race-condition
        			done <- true
        		}()
        	}
        	for i := 0; i < 50; i++ {
        		<-done
        	}
        	fmt.Println(hits)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"time"
        )
        type Data struct{ value string }
        func main() {
        	data := &Data{value: "hello"}
        	go func() {
        		time.Sleep(time.Second)
        		fmt.Println(data.value)
        	}()
        	data = nil // <- race-condition
        	time.Sleep(2 * time.Second)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"sync"
        )
        type Counter struct{ value int }
        func (c *Counter) Increment() {
        	c.value++
        }
        func main() {
        	var wg sync.WaitGroup
        	counter := &Counter{}
        	for i := 0; i < 100; i++ {
        		wg.Add(1)
        		go func() { // <- race-condition
        			defer wg.Done()
        			counter.Increment()
        		}()
        	}
        	wg.Wait()
        	fmt.Println(counter.value)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"sync"
        )
        var counter int
        func main() {
        	var wg sync.WaitGroup
        	for i := 0; i < 100; i++ {
        		wg.Add(1)
        		go func() {
        			defer wg.Done()
        			counter++ // <- race-condition
        		}()
        	}
        	wg.Wait()
        	fmt.Println(counter)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"sync"
        )
        func main() {
        	var wg sync.WaitGroup
        	seen := make(map[int]bool)
        	for i := 0; i < 8; i++ {
        		wg.Add(1)
        		go func(i int) {
        			defer wg.Done()
        			seen[i] = true // <- race-condition
        		}(i)
        	}
        	wg.Wait()
        	fmt.Println(len(seen))
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"net/http"
        	"sync"
        )
        func probe(u string) string {
        	req, err := http.NewRequest("HEAD", u, nil)
        	if err != nil {
        		return ""
        	}
        	return req.Method
        }
        func main() {
        	urls := []string{"https://a.example", "https://b.example"}
        	codes := make([]int, len(urls))
        	var wg sync.WaitGroup
        	for i, u := range urls {
        		wg.Add(1)
        		go func(i int, u string) {
        			defer wg.Done()
        			resp, err := http.Get(u)
        			if err != nil {
        				return
        			}
        			resp.Body.Close()
        			codes[i] = resp.StatusCode
        		}(i, u)
        	}
        	wg.Wait()
        	for k := 0; k < 2; k++ {
        		wg.Add(1)
        		go func() {
        			defer wg.Done()
        			req, err := http.NewRequest("GET", urls[0], nil)
        			if err != nil {
        				return
        			}
        			req.ContentLength = 0
        			fmt.Println(req.URL)
        		}()
        	}
        	wg.Wait()
        	fmt.Println(codes)
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	hits := 0
        	sem := make(chan struct{}, 1)
        	done := make(chan bool)
        	for i := 0; i < 50; i++ {
        		go func() {
        			sem <- struct{}{}
        			hits++
        			<-sem
        			done <- true
        		}()
        	}
        	for i := 0; i < 50; i++ {
        		<-done
        	}
        	fmt.Println(hits)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"sync"
        )
        type Data struct{ value string }
        func main() {
        	var wg sync.WaitGroup
        	data := &Data{value: "hello"}
        	wg.Add(1)
        	go func() {
        		defer wg.Done()
        		fmt.Println(data.value)
        	}()
        	wg.Wait()
        	data = nil
        	fmt.Println(data == nil)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"sync"
        )
        type Counter struct {
        	mu    sync.Mutex
        	value int
        }
        func (c *Counter) Increment() {
        	c.mu.Lock()
        	defer c.mu.Unlock()
        	c.value++
        }
        func main() {
        	var wg sync.WaitGroup
        	counter := &Counter{}
        	for i := 0; i < 100; i++ {
        		wg.Add(1)
        		go func() {
        			defer wg.Done()
        			counter.Increment()
        		}()
        	}
        	wg.Wait()
        	fmt.Println(counter.value)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"sync"
        )
        var counter int
        func main() {
        	var wg sync.WaitGroup
        	var mu sync.Mutex
        	for i := 0; i < 100; i++ {
        		wg.Add(1)
        		go func() {
        			defer wg.Done()
        			mu.Lock()
        			counter++
        			mu.Unlock()
        		}()
        	}
        	wg.Wait()
        	fmt.Println(counter)
        }
      `,
    ],
  },
  {
    rule: "go/inconsistent-locking",
    bad: [
      code`
        package cache
        import "sync"
        type Cache struct {
        	mu    sync.Mutex
        	items map[string]int
        }
        func (c *Cache) Put(k string, v int) {
        	c.mu.Lock()
        	defer c.mu.Unlock()
        	c.items[k] = v
        	c.evict()
        }
        func (c *Cache) Reset() {
        	c.evict()
        }
        func (c *Cache) evict() { // <- inconsistent-locking
        	c.items = map[string]int{}
        }
      `,
      code`
        package main
        import "sync"
        type Counter struct {
        	mu    sync.Mutex
        	count int
        }
        func (c *Counter) Inc() {
        	c.mu.Lock()
        	defer c.mu.Unlock()
        	c.count++
        }
        func (c *Counter) Value() int { // <- inconsistent-locking
        	return c.count
        }
      `,
    ],
    good: [
      code`
        package server
        import "sync"
        type Server struct {
        	mu    sync.Mutex
        	addr  string
        	conns int
        }
        func (s *Server) Accept() {
        	if s.addr == "" {
        		return
        	}
        	s.mu.Lock()
        	s.conns++
        	s.mu.Unlock()
        }
        func (s *Server) Addr() string {
        	return s.addr
        }
      `,
      code`
        package pool
        import (
        	"sync"
        	"sync/atomic"
        )
        type Pool struct {
        	mu      sync.Mutex
        	name    string
        	waiting int32
        	free    []int
        }
        func (p *Pool) Get() int {
        	atomic.AddInt32(&p.waiting, 1)
        	p.mu.Lock()
        	defer p.mu.Unlock()
        	atomic.AddInt32(&p.waiting, -1)
        	v := p.free[0]
        	p.free = p.free[1:]
        	return v
        }
        func (p *Pool) Waiting() int32 {
        	return atomic.LoadInt32(&p.waiting)
        }
      `,
      code`
        package cache
        import "sync"
        type Cache struct {
        	mu    sync.Mutex
        	items map[string]int
        }
        func (c *Cache) Put(k string, v int) {
        	c.mu.Lock()
        	defer c.mu.Unlock()
        	c.items[k] = v
        	c.evictLocked()
        }
        func (c *Cache) evictLocked() {
        	if len(c.items) > 100 {
        		c.items = map[string]int{}
        	}
        }
      `,
      code`
        package main
        import "sync"
        type Counter struct {
        	mu    sync.RWMutex
        	count int
        }
        func (c *Counter) Inc() {
        	c.mu.Lock()
        	defer c.mu.Unlock()
        	c.count++
        }
        func (c *Counter) Value() int {
        	c.mu.RLock()
        	defer c.mu.RUnlock()
        	return c.count
        }
      `,
    ],
  },
  {
    rule: "go/unbounded-read",
    bad: [
      code`
        package main
        import (
        	"io"
        	"net/http"
        )
        func handler(w http.ResponseWriter, r *http.Request) {
        	body, err := io.ReadAll(r.Body) // <- unbounded-read
        	if err != nil {
        		return
        	}
        	w.Write(body)
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"io"
        	"net/http"
        )
        func handler(w http.ResponseWriter, r *http.Request) {
        	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
        	body, err := io.ReadAll(r.Body)
        	if err != nil {
        		return
        	}
        	w.Header().Set("Content-Type", "text/plain")
        	w.Write(body)
        }
      `,
    ],
  },
  {
    rule: "go/open-redirect",
    bad: [
      code`
        package main
        import "net/http"
        func redirect(w http.ResponseWriter, r *http.Request) {
        	target := r.URL.Query().Get("url")
        	http.Redirect(w, r, target, http.StatusFound) // <- open-redirect
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"net/http"
        	"strings"
        )
        func redirect(w http.ResponseWriter, r *http.Request) {
        	target := r.URL.Query().Get("url")
        	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") {
        		target = "/"
        	}
        	http.Redirect(w, r, target, http.StatusFound)
        }
      `,
    ],
  },
  {
    rule: "go/xss",
    bad: [
      code`
        package main
        import (
        	"html/template"
        	"net/http"
        )
        var card = template.Must(template.New("c").Parse("<div>{{.}}</div>"))
        func profile(w http.ResponseWriter, r *http.Request) {
        	bio := r.FormValue("bio")
        	card.Execute(w, template.HTML(bio)) // <- xss
        }
      `,
      code`
        package main
        import (
        	"net/http"
        	"text/template"
        )
        var page = template.Must(template.New("p").Parse("<p>{{.}}</p>"))
        func show(w http.ResponseWriter, r *http.Request) {
        	page.Execute(w, r.URL.Query().Get("q")) // <- xss
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"net/http"
        )
        func hello(w http.ResponseWriter, r *http.Request) {
        	name := r.URL.Query().Get("name")
        	fmt.Fprintf(w, "<h1>Hello, %s</h1>", name) // <- xss
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"net/http"
        	"regexp"
        )
        var plausible = regexp.MustCompile("^[^<]{1,64}$")
        var slug = regexp.MustCompile("[a-z0-9-]+")
        func tag(w http.ResponseWriter, r *http.Request) {
        	label := r.FormValue("label")
        	if !plausible.MatchString(label) || !slug.MatchString(label) {
        		http.Error(w, "bad label", http.StatusBadRequest)
        		return
        	}
        	fmt.Fprintf(w, "<span>%s</span>", label) // <- xss
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"net/http"
        	"regexp"
        )
        var isSlug = regexp.MustCompile("^[a-zA-Z0-9_-]*$").MatchString
        var digits = regexp.MustCompile("^[0-9]{1,8}$")
        func tag(w http.ResponseWriter, r *http.Request) {
        	label := r.FormValue("label")
        	if !isSlug(label) {
        		http.Error(w, "bad label", http.StatusBadRequest)
        		return
        	}
        	page := r.FormValue("page")
        	if !digits.MatchString(page) {
        		return
        	}
        	fmt.Fprintf(w, "<span>%s</span> page %s", label, page)
        }
      `,
      code`
        package main
        import (
        	"html/template"
        	"net/http"
        )
        var card = template.Must(template.New("c").Parse("<div>{{.}}</div>"))
        func profile(w http.ResponseWriter, r *http.Request) {
        	card.Execute(w, r.FormValue("bio"))
        	card.Execute(w, template.HTML("<b>static</b>"))
        }
      `,
      code`
        package main
        import (
        	"html/template"
        	"net/http"
        )
        var page = template.Must(template.New("p").Parse("<p>{{.}}</p>"))
        func show(w http.ResponseWriter, r *http.Request) {
        	page.Execute(w, r.URL.Query().Get("q"))
        }
      `,
      code`
        package main
        import (
        	"net/http"
        	"text/template"
        )
        var page = template.Must(template.New("p").Parse("{{.}}"))
        func show(w http.ResponseWriter, r *http.Request) {
        	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
        	page.Execute(w, r.URL.Query().Get("q"))
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"html"
        	"net/http"
        )
        func hello(w http.ResponseWriter, r *http.Request) {
        	name := r.URL.Query().Get("name")
        	name = html.EscapeString(name)
        	fmt.Fprintf(w, "<h1>Hello, %s</h1>", name)
        }
      `,
    ],
  },
  {
    rule: "go/file-permissions",
    bad: [
      code`
        package main
        import "io/ioutil"
        func main() {
        	fileName := "sensitive_data.txt"
        	data := []byte("account data")
        	err := ioutil.WriteFile(fileName, data, 0644) // <- file-permissions
        	if err != nil {
        		panic(err)
        	}
        }
      `,
      code`
        package main
        import "os"
        func save(data []byte) error {
        	return os.WriteFile("secret_token.txt", data, 0644) // <- file-permissions
        }
      `,
      code`
        package main
        import "os"
        func prepare() error {
        	return os.MkdirAll("/tmp/app", 0777) // <- file-permissions
        }
      `,
    ],
    good: [
      code`
        package main
        import "io/ioutil"
        func main() {
        	fileName := "sensitive_data.txt"
        	report := "report.txt"
        	data := []byte("account data")
        	if err := ioutil.WriteFile(fileName, data, 0600); err != nil {
        		panic(err)
        	}
        	if err := ioutil.WriteFile(report, []byte("done"), 0644); err != nil {
        		panic(err)
        	}
        }
      `,
      code`
        package main
        import "os"
        func save(data []byte) error {
        	if err := os.MkdirAll("/tmp/app", 0750); err != nil {
        		return err
        	}
        	return os.WriteFile("secret_token.txt", data, 0600)
        }
      `,
    ],
  },
  {
    rule: "go/divide-by-zero",
    bad: [
      code`
        package main
        func check() int64 {
        	var x, y, r int64
        	x = 100
        	y = -4
        	r = x / y
        	y = 0
        	r = x % y // <- divide-by-zero
        	return r
        }
      `,
      code`
        package main
        func ratio(total int) int {
        	d := 4
        	return total / d
        }
        func Scale(v, d int) int {
        	return v / d // <- divide-by-zero
        }
      `,
      code`
        package main
        func average(total int, count int) int {
        	return total / count // <- divide-by-zero
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	for i := 0; i < 10; i++ {
        		fmt.Println(100 / i) // <- divide-by-zero
        	}
        }
      `,
      code`
        package main
        func share(total int, parts int, strict bool) int {
        	if parts < 2 && strict {
        		return 0
        	}
        	return total / parts // <- divide-by-zero
        }
      `,
    ],
    good: [
      code`
        package main
        func check() int64 {
        	var x, y, r int64
        	x = 100
        	y = 0
        	r = x * y
        	y = -4
        	r = x / y
        	return r
        }
      `,
      code`
        package main
        func Scale(d int) int { return 100 / (d + 1) }
        func ratio(total int) int {
        	d := 4
        	return total / d
        }
      `,
      code`
        package main
        import "errors"
        func average(total int, count int) (int, error) {
        	if count == 0 {
        		return 0, errors.New("no items")
        	}
        	return total / count, nil
        }
      `,
      code`
        package main
        import "errors"
        func split(bits int, parts int) (int, error) {
        	if parts < 2 {
        		return 0, errors.New("need at least two parts")
        	}
        	return bits / parts, nil
        }
        func perWorker(jobs int, workers int) int {
        	if workers >= 4 {
        		return jobs / workers
        	}
        	return jobs
        }
      `,
    ],
  },
  {
    rule: "go/unbounded-allocation",
    bad: [
      code`
        package main
        import "net/http"
        func handler(w http.ResponseWriter, r *http.Request) {
        	data := make([]byte, r.ContentLength+10) // <- unbounded-allocation
        	r.Body.Read(data)
        	w.Write([]byte("ok"))
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var n int
        	fmt.Scan(&n)
        	s := make([]int, n) // <- unbounded-allocation
        	fmt.Println(len(s))
        }
      `,
    ],
    good: [
      code`
        package main
        import "net/http"
        const maxBody = 1 << 20
        func handler(w http.ResponseWriter, r *http.Request) {
        	if r.ContentLength < 0 || r.ContentLength > maxBody {
        		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
        		return
        	}
        	data := make([]byte, r.ContentLength+10)
        	r.Body.Read(data)
        	w.Write([]byte("ok"))
        }
      `,
      code`
        package main
        import "fmt"
        func main() {
        	var n int
        	if _, err := fmt.Scan(&n); err != nil || n < 0 || n > 1<<16 {
        		return
        	}
        	s := make([]int, n)
        	fmt.Println(len(s))
        }
      `,
    ],
  },
  {
    rule: "go/unchecked-type-assertion",
    bad: [
      code`
        package main
        import "encoding/json"
        func name(b []byte) string {
        	var doc map[string]interface{}
        	json.Unmarshal(b, &doc)
        	var v any = doc["name"]
        	return v.(string) // <- unchecked-type-assertion
        }
      `,
      code`
        package main
        import "fmt"
        func describe(v interface{}) {
        	s := v.(string) // <- unchecked-type-assertion
        	fmt.Println(s)
        }
      `,
    ],
    good: [
      code`
        package ssa
        type Node interface{ Op() int }
        type IfStmt struct{ cond Node }
        func (s *IfStmt) Op() int { return 1 }
        func walk(n Node) Node {
        	if n.Op() == 1 {
        		s := n.(*IfStmt)
        		return s.cond
        	}
        	return n
        }
      `,
      code`
        package main
        import "fmt"
        func describe(v interface{}) {
        	if s, ok := v.(string); ok {
        		fmt.Println(s)
        	}
        	switch x := v.(type) {
        	case int:
        		fmt.Println(x)
        	}
        }
      `,
    ],
  },
  {
    rule: "go/sensitive-data-exposure",
    bad: [
      code`
        package main
        import "fmt"
        func login(user, password string) {
        	fmt.Println("login", user, password) // <- sensitive-data-exposure
        }
      `,
    ],
    good: [
      code`
        package main
        import "fmt"
        func login(user, password string) {
        	fmt.Println("login", user, len(password) > 0)
        }
      `,
    ],
  },
  {
    rule: "go/use-after-close",
    bad: [
      code`
        package main
        import "os"
        func openLog(name string) (*os.File, error) {
        	f, err := os.Create(name)
        	if err != nil {
        		return nil, err
        	}
        	defer f.Close()
        	return f, nil // <- use-after-close
        }
      `,
    ],
    good: [
      code`
        package main
        import "os"
        func openLog(name string) (*os.File, error) {
        	f, err := os.Create(name)
        	if err != nil {
        		return nil, err
        	}
        	return f, nil
        }
        func size(name string) (int64, error) {
        	f, err := os.Open(name)
        	if err != nil {
        		return 0, err
        	}
        	defer f.Close()
        	st, err := f.Stat()
        	if err != nil {
        		return 0, err
        	}
        	return st.Size(), nil
        }
      `,
    ],
  },
  {
    rule: "go/integer-overflow",
    bad: [
      code`
        package main
        import "fmt"
        func main() {
        	var x uint8 = 255
        	x = x + 10 // <- integer-overflow
        	fmt.Println(x)
        }
      `,
      code`
        package main
        import (
        	"fmt"
        	"math"
        )
        func main() {
        	n := int32(math.MaxInt32)
        	n++ // <- integer-overflow
        	fmt.Println(n)
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"math"
        )
        func main() {
        	var x uint8 = 255
        	sum := uint64(x) + 10
        	if sum > math.MaxUint8 {
        		fmt.Println("overflow")
        		return
        	}
        	var y uint8 = 200
        	y = y + 10
        	fmt.Println(uint8(sum), y)
        }
      `,
    ],
  },
  {
    rule: "go/unclosed-channel-range",
    bad: [
      code`
        package main
        import "fmt"
        func produce(ch chan int) {
        	for i := 0; i < 10; i++ {
        		ch <- i
        	}
        }
        func main() {
        	ch := make(chan int)
        	go produce(ch)
        	for v := range ch { // <- unclosed-channel-range
        		fmt.Println(v)
        	}
        }
      `,
    ],
    good: [
      code`
        package main
        import "fmt"
        func produce(ch chan int) {
        	defer close(ch)
        	for i := 0; i < 10; i++ {
        		ch <- i
        	}
        }
        func main() {
        	ch := make(chan int)
        	go produce(ch)
        	for v := range ch {
        		fmt.Println(v)
        	}
        }
      `,
    ],
  },
  {
    rule: "go/defer-in-loop",
    bad: [
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	for i := 0; i < 10; i++ {
        		f, err := os.Open("data.txt")
        		if err != nil {
        			fmt.Println(err)
        			return
        		}
        		defer f.Close() // <- defer-in-loop
        	}
        }
      `,
      code`
        package main
        type Session struct{ id int }
        func openSession(id int) *Session { return &Session{id: id} }
        func (s *Session) Close() {}
        func main() {
        	for i := 0; i < 100000; i++ {
        		s := openSession(i)
        		defer s.Close() // <- defer-in-loop
        	}
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	for i := 0; i < 10; i++ {
        		func() {
        			f, err := os.Open("data.txt")
        			if err != nil {
        				fmt.Println(err)
        				return
        			}
        			defer f.Close()
        		}()
        	}
        	var files []*os.File
        	for _, f := range files {
        		defer f.Close()
        	}
        }
      `,
    ],
  },
  {
    rule: "go/read-count-ignored",
    bad: [
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	f, err := os.Open("notes.txt")
        	if err != nil {
        		return
        	}
        	defer f.Close()
        	chunk := make([]byte, 512)
        	_, err = f.Read(chunk)
        	if err != nil {
        		return
        	}
        	fmt.Println(string(chunk)) // <- read-count-ignored
        }
      `,
      code`
        package main
        import (
        	"io"
        	"net"
        )
        func relay(conn net.Conn, w io.Writer) {
        	tmp := make([]byte, 4096)
        	for {
        		got, err := conn.Read(tmp)
        		if err != nil || got == 0 {
        			return
        		}
        		w.Write(tmp) // <- read-count-ignored
        	}
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"fmt"
        	"os"
        )
        func main() {
        	f, err := os.Open("notes.txt")
        	if err != nil {
        		return
        	}
        	defer f.Close()
        	chunk := make([]byte, 512)
        	n, err := f.Read(chunk)
        	if err != nil {
        		return
        	}
        	fmt.Println(string(chunk[:n]))
        }
      `,
      code`
        package main
        import (
        	"crypto/rand"
        	"encoding/hex"
        	"fmt"
        	"io"
        	"os"
        )
        func main() {
        	key := make([]byte, 32)
        	if _, err := rand.Read(key); err != nil {
        		return
        	}
        	fmt.Println(hex.EncodeToString(key))
        	hdr := make([]byte, 8)
        	if _, err := io.ReadFull(os.Stdin, hdr); err != nil {
        		return
        	}
        	fmt.Println(hdr)
        	buf := make([]byte, 64)
        	for {
        		n, err := os.Stdin.Read(buf)
        		if n > 0 {
        			os.Stdout.Write(buf[:n])
        		}
        		if err != nil {
        			break
        		}
        	}
        }
      `,
    ],
  },
  {
    rule: "go/hardcoded-key",
    bad: [
      code`
        package main
        import "crypto/aes"
        func encrypt(plain []byte) ([]byte, error) {
        	key := []byte("0123456789abcdef")
        	block, err := aes.NewCipher(key) // <- hardcoded-key
        	if err != nil {
        		return nil, err
        	}
        	out := make([]byte, len(plain))
        	block.Encrypt(out, plain)
        	return out, nil
        }
      `,
      code`
        package main
        import (
        	"crypto/hmac"
        	"crypto/sha256"
        )
        var macSecret = []byte{0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6}
        func sign(msg []byte) []byte {
        	mac := hmac.New(sha256.New, macSecret) // <- hardcoded-key
        	mac.Write(msg)
        	return mac.Sum(nil)
        }
      `,
      code`
        package main
        import "github.com/golang-jwt/jwt/v5"
        const signing = "jwt-s1gn-2024"
        func issue(claims jwt.MapClaims) (string, error) {
        	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
        	return tok.SignedString([]byte(signing)) // <- hardcoded-key
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"crypto/aes"
        	"crypto/rand"
        )
        func newBlock() error {
        	key := make([]byte, 32)
        	if _, err := rand.Read(key); err != nil {
        		return err
        	}
        	_, err := aes.NewCipher(key)
        	return err
        }
      `,
      code`
        package main
        import (
        	"crypto/aes"
        	"encoding/hex"
        	"os"
        )
        func newBlock() error {
        	key, err := hex.DecodeString(os.Getenv("APP_KEY"))
        	if err != nil {
        		return err
        	}
        	_, err = aes.NewCipher(key)
        	return err
        }
      `,
      code`
        package main
        import (
        	"crypto/hmac"
        	"crypto/sha256"
        )
        func sign(secret, msg []byte) []byte {
        	mac := hmac.New(sha256.New, secret)
        	mac.Write(msg)
        	return mac.Sum(nil)
        }
      `,
    ],
  },
  {
    rule: "go/static-iv",
    bad: [
      code`
        package main
        import (
        	"crypto/aes"
        	"crypto/cipher"
        )
        func encrypt(key, data []byte) []byte {
        	block, _ := aes.NewCipher(key)
        	iv := []byte("0123456789abcdef")
        	out := make([]byte, len(data))
        	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, data) // <- static-iv
        	return out
        }
      `,
      code`
        package main
        import (
        	"crypto/aes"
        	"crypto/cipher"
        )
        func encrypt(key, data []byte) []byte {
        	block, _ := aes.NewCipher(key)
        	out := make([]byte, len(data))
        	cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(out, data) // <- static-iv
        	return out
        }
      `,
    ],
    good: [
      code`
        package main
        import (
        	"crypto/aes"
        	"crypto/cipher"
        	"crypto/rand"
        	"io"
        )
        func encrypt(key, data []byte) ([]byte, error) {
        	block, err := aes.NewCipher(key)
        	if err != nil {
        		return nil, err
        	}
        	iv := make([]byte, aes.BlockSize)
        	if _, err := io.ReadFull(rand.Reader, iv); err != nil {
        		return nil, err
        	}
        	out := make([]byte, len(data))
        	cipher.NewCTR(block, iv).XORKeyStream(out, data)
        	return append(iv, out...), nil
        }
      `,
    ],
  },
];
