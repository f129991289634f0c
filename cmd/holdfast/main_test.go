package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func noEnv(string) string { return "" }

// TestMain runs the command when the test binary is started as holdfast
// (a first argument that is not a flag, as `lab --bench` starts
// `holdfast serve` with this very binary): go test starts it with flags
// only.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		main()
	}
	os.Exit(m.Run())
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := run(context.Background(), args, noEnv, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCmd(t, "bogus"); code != 1 {
		t.Fatalf("unknown command: exit %d, want 1", code)
	}
	code, out, _ := runCmd(t, "--help")
	if code != 0 || !strings.Contains(out, "Example") || !strings.Contains(out, "holdfast serve") {
		t.Fatalf("--help: exit %d, output:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "serve", "--help")
	if code != 0 || !strings.Contains(out, "HOLDFAST_DB") || !strings.Contains(out, "Example") {
		t.Fatalf("serve --help: exit %d, output:\n%s", code, out)
	}
}

func TestMigrateAndAudit(t *testing.T) {
	db := filepath.Join(t.TempDir(), "holdfast.db")
	if code, out, errOut := runCmd(t, "migrate", "--db", db); code != 0 || !strings.Contains(out, "migrated") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	s, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	holdfasttest.MustCreatePool(t, s, "p", 10, 0)
	holdfasttest.MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 3})
	if code, out, errOut := runCmd(t, "audit", "--db", db); code != 0 || !strings.Contains(out, "ok:") {
		t.Fatalf("audit of a clean database: exit %d\n%s%s", code, out, errOut)
	}
	// A buggy write that no constraint can see: the counter says 4 held,
	// the claim rows say 3.
	holdfasttest.MustExec(t, s, `UPDATE pools SET held = 4 WHERE id = 'p'`)
	s.Close()
	code, out, _ := runCmd(t, "audit", "--db", db)
	if code != 1 || !strings.Contains(out, "DIFFERENCE pool p: held counter 4, recount 3") {
		t.Fatalf("audit of a drifted counter: exit %d, want 1; output:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "audit", "--db", db, "--json")
	var rep holdfast.AuditReport
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.OK() {
		t.Fatalf("audit --json: exit %d, output:\n%s", code, out)
	}
	// A mistyped path is an error, not a new empty database that audits
	// clean; and the audit creates nothing.
	missing := filepath.Join(t.TempDir(), "holdfsat.db")
	code, out, errOut := runCmd(t, "audit", "--db", missing)
	if code == 0 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("audit of a missing file: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("audit of a missing file created it: %v", err)
	}
}

func TestUnsupportedStrategyRefusedAtStart(t *testing.T) {
	code, _, errOut := runCmd(t, "serve", "--db", filepath.Join(t.TempDir(), "x.db"), "--addr", "127.0.0.1:0", "--strategy", "advisory")
	if code == 0 || !strings.Contains(errOut, `strategy "advisory" is not available on sqlite`) {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "serve", "--db", filepath.Join(t.TempDir(), "x.db"), "--addr", "127.0.0.1:0", "--strategy", "unsafe")
	if code != 2 || !strings.Contains(errOut, "--allow-unsafe") {
		t.Fatalf("unsafe without --allow-unsafe: exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "serve", "--db", filepath.Join(t.TempDir(), "x.db"), "--addr", "127.0.0.1:0", "--strategy", "magic")
	if code == 0 || !strings.Contains(errOut, `unknown strategy "magic"`) {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

// startServer runs "holdfast serve" in-process on a free port and returns
// its base URL; the server stops when the test ends, and the test checks it
// stopped cleanly.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), noEnv, pw, &errOut)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	addr := regexp.MustCompile(`listening on (http://\S+)`)
	var base string
	for lines.Scan() {
		if m := addr.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("server did not start; exit %d; stderr:\n%s", <-done, errOut.String())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d; stderr:\n%s", code, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	return base
}

// TestReadmeQuickStart runs the README's quick start as written: the curl
// commands, in order, against a server started as the first command says.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir) // serve's default --db is ./holdfast.db, as in the README
	var serveArgs []string
	var curls []string
	for _, line := range strings.Split(string(readme), "\n") {
		// The quick start builds once and runs the binary: ./holdfast serve.
		if _, rest, ok := strings.Cut(line, "./holdfast serve"); ok && serveArgs == nil && strings.HasPrefix(line, "go build -o holdfast ./cmd/holdfast && ") {
			rest, _, _ = strings.Cut(rest, "#")
			serveArgs = append([]string{}, strings.Fields(rest)...)
		}
		if strings.HasPrefix(line, "curl ") {
			curls = append(curls, line)
		}
	}
	if serveArgs == nil {
		t.Fatal("the README's quick start starts no server")
	}
	base := startServer(t, serveArgs...)
	if len(curls) < 5 {
		t.Fatalf("the README's quick start has %d curl commands", len(curls))
	}
	var statuses []int
	var bodies [][]byte
	for _, c := range curls {
		status, body := curl(t, base, c)
		statuses = append(statuses, status)
		bodies = append(bodies, body)
	}
	last := bodies[len(bodies)-1]
	want := []int{201, 201, 200, 201, 409, 200}
	if fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("quick start statuses %v, want %v (as the README explains)", statuses, want)
	}
	// The README says carol's answer is sold_out on line 0.
	var refusal struct {
		Code string `json:"code"`
		Line *int   `json:"line"`
	}
	if err := json.Unmarshal(bodies[4], &refusal); err != nil || refusal.Code != "sold_out" || refusal.Line == nil || *refusal.Line != 0 {
		t.Fatalf("carol's answer: %s, want sold_out on line 0 as the README says", bodies[4])
	}
	var feed struct {
		Events []holdfast.Event `json:"events"`
	}
	if err := json.Unmarshal(last, &feed); err != nil || len(feed.Events) < 4 {
		t.Fatalf("events feed: %v, %s", err, last)
	}
	if _, err := os.Stat(filepath.Join(dir, "holdfast.db")); err != nil {
		t.Fatalf("serve did not keep its data in ./holdfast.db: %v", err)
	}
}

// curl runs one README curl line (the forms the README uses: -s, -X
// METHOD, -d BODY, a localhost:8080 URL) against base.
func curl(t *testing.T, base, line string) (int, []byte) {
	t.Helper()
	method, url, body := "GET", "", ""
	fields := regexp.MustCompile(`'[^']*'|\S+`).FindAllString(line, -1)
	for i := 1; i < len(fields); i++ {
		switch f := fields[i]; {
		case f == "-s":
		case f == "-X":
			i++
			method = fields[i]
		case f == "--json": // curl ≥ 7.82: POST with Content-Type: application/json
			i++
			body = strings.Trim(fields[i], "'")
			if method == "GET" {
				method = "POST"
			}
		case strings.HasPrefix(f, "localhost:8080"):
			url = base + strings.TrimPrefix(f, "localhost:8080")
		default:
			t.Fatalf("README curl line uses %q, which this test does not understand: %s", f, line)
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // what --json sends
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A malformed environment value stops the program at start-up, naming the
// setting; it is never replaced by the default in silence.
func TestMalformedEnvironmentIsAnError(t *testing.T) {
	for _, kv := range [][2]string{{"HOLDFAST_HOLD_TTL", "10"}, {"HOLDFAST_DB_CONNS", "many"}, {"HOLDFAST_COALESCE", "flase"}, {"HOLDFAST_RATE_LIMIT", "1/s"}} {
		getenv := func(k string) string {
			if k == kv[0] {
				return kv[1]
			}
			return ""
		}
		var out, errOut syncBuffer
		code := run(context.Background(), []string{"serve", "--db", filepath.Join(t.TempDir(), "x.db"), "--addr", "127.0.0.1:0"}, getenv, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), kv[0]) {
			t.Errorf("%s=%s: exit %d, want 2 naming it; stderr:\n%s", kv[0], kv[1], code, errOut.String())
		}
	}
}

// With no server at the URL, a client command says it could not reach
// holdfast there and how to point it elsewhere — never "busy" — and
// exits non-zero; an unknown subcommand is an error, not the parent's
// help with exit 0.
func TestCLIUnreachableAndUnknownCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _, errOut := runCmd(t, "pool", "list", "--server", url)
	if code == 0 || !strings.Contains(errOut, "could not reach holdfast at "+url) || !strings.Contains(errOut, "--server") ||
		!strings.Contains(errOut, "HOLDFAST_SERVER") || strings.Contains(errOut, "busy") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	code, out, errOut := runCmd(t, "room", "frobnicate")
	if code == 0 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("holdfast room frobnicate: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if code, out, _ := runCmd(t, "room"); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Fatalf("holdfast room alone: exit %d, %s", code, out)
	}
}

// No command's --help shows a secret taken from the environment: it says
// the variable is set, never its value.
func TestHelpNeverShowsASecret(t *testing.T) {
	const secret = "adm-secret-do-not-print-0123456789"
	env := func(k string) string {
		if k == "HOLDFAST_KEY" || k == "HOLDFAST_ADMIN_KEY" {
			return secret
		}
		return ""
	}
	n := eachCommand(t, env, func(path []string, help string) {
		if strings.Contains(help, secret) {
			t.Errorf("holdfast %s --help shows the secret:\n%s", strings.Join(path, " "), help)
		}
	})
	if n < 40 {
		t.Fatalf("walked %d commands: the help did not list them", n)
	}
}

// Every command's --help shows an example, and every required flag says
// so.
func TestEveryCommandHasAnExample(t *testing.T) {
	eachCommand(t, noEnv, func(path []string, help string) {
		if !strings.Contains(help, "Examples:") {
			t.Errorf("holdfast %s --help shows no example", strings.Join(path, " "))
		}
	})
	if _, out, _ := runCmd(t, "room", "create", "--help"); !regexp.MustCompile(`--opens-at .*\(required\)`).MatchString(out) {
		t.Errorf("room create --help does not say --opens-at is required:\n%s", out)
	}
}

// eachCommand runs every command's --help (env gives the environment) and
// calls fn with the command's path and the help it printed.
func eachCommand(t *testing.T, env func(string) string, fn func(path []string, help string)) int {
	t.Helper()
	n := 0
	var walk func(prefix []string)
	walk = func(prefix []string) {
		var out syncBuffer
		run(context.Background(), append(append([]string{}, prefix...), "--help"), env, &out, &out)
		fn(prefix, out.String())
		n++
		inCommands := false
		for _, line := range strings.Split(out.String(), "\n") {
			switch {
			case strings.HasPrefix(line, "Available Commands:"):
				inCommands = true
			case inCommands && strings.HasPrefix(line, "  "):
				if name := strings.Fields(line)[0]; name != "help" && name != "completion" {
					walk(append(append([]string{}, prefix...), name))
				}
			default:
				inCommands = false
			}
		}
	}
	walk(nil)
	return n
}
