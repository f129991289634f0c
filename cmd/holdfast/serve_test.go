package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/sqlite"
)

func TestServeRefusesOpenNonLoopback(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	code, _, errOut := runCmd(t, "serve", "--db", db, "--addr", "0.0.0.0:0")
	if code != 2 || !strings.Contains(errOut, "without --admin-key") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "serve", "--db", db, "--addr", "0.0.0.0:0", "--admin-key", "short")
	if code != 2 || !strings.Contains(errOut, "at least 16") {
		t.Fatalf("short key: exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "serve", "--db", db, "--addr", "127.0.0.1:0", "--admin-key", "a long key with spaces")
	if code != 2 || !strings.Contains(errOut, "spaces") {
		t.Fatalf("key with spaces: exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "serve", "--db", db, "--addr", "127.0.0.1:0", "--admin-key-file", filepath.Join(t.TempDir(), "missing"))
	if code != 2 || !strings.Contains(errOut, "--admin-key-file") {
		t.Fatalf("missing key file: exit %d, stderr:\n%s", code, errOut)
	}
	// An empty key file is a mistake, never an open server.
	empty := filepath.Join(t.TempDir(), "empty.key")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd(t, "serve", "--db", db, "--addr", "127.0.0.1:0", "--admin-key-file", empty)
	if code != 2 || !strings.Contains(errOut, "is empty") || !strings.Contains(errOut, "openssl rand") {
		t.Fatalf("empty key file: exit %d, stderr:\n%s", code, errOut)
	}
	for _, weak := range []string{"aaaaaaaaaaaaaaaaaaaa", "abababababababababab", "abcabcabcabcabcabc"} {
		code, _, errOut = runCmd(t, "serve", "--db", db, "--addr", "127.0.0.1:0", "--admin-key", weak)
		if code != 2 || !strings.Contains(errOut, "distinct") || !strings.Contains(errOut, "openssl rand") {
			t.Fatalf("weak key %q: exit %d, stderr:\n%s", weak, code, errOut)
		}
	}
}

// The admin key can come from a file (argv is visible to every user of the
// machine), and the SQLite file is created readable by its owner only.
func TestAdminKeyFileAndPrivateDatabase(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "admin.key")
	if err := os.WriteFile(keyFile, []byte("a-file-admin-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "holdfast.db")
	base := startServer(t, "--db", db, "--admin-key-file", keyFile)
	for key, want := range map[string]int{"a-file-admin-key-0123456789": 200, "": 401} {
		req, _ := http.NewRequest("GET", base+"/v1/pools", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("key %q: %d, want %d", key, resp.StatusCode, want)
		}
	}
	if fi, err := os.Stat(db); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

func TestCLIAgainstServer(t *testing.T) {
	t.Chdir(t.TempDir())
	base := startServer(t, "--demo")
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCmd(t, append(args, "--server", base)...)
	}
	code, out, errOut := cli("pool", "list")
	if code != 0 || !strings.Contains(out, "concert") || !strings.Contains(out, "AVAILABLE") {
		t.Fatalf("pool list: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = cli("group", "get", "hall")
	if code != 0 || !regexp.MustCompile(`hall\s+200\s+200\s+0\s+0`).MatchString(out) {
		t.Fatalf("group get hall: %d\n%s", code, out)
	}
	// The lines keep the order the flags came in (refusals name lines by
	// number), and a unit list takes commas or spaces.
	code, out, errOut = cli("hold", "create", "--holder", "alice", "--any", "riders:1", "--units", "A-1, A-2", "--pool", "concert:2", "--json")
	var h holdfast.Hold
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil || h.Status != holdfast.StatusHeld || len(h.Lines) != 3 {
		t.Fatalf("hold create: %d\n%s%s", code, out, errOut)
	}
	if h.Lines[0].Group != "riders" || len(h.Lines[1].Units) != 2 || h.Lines[1].Units[1] != "A-2" || h.Lines[2].Pool != "concert" {
		t.Fatalf("hold create --any --units --pool: lines %+v, want them in the order given", h.Lines)
	}
	code, _, errOut = cli("hold", "create", "--holder", "dave", "--units", "A-9", "--pool", "concert:1000")
	if code != 1 || !strings.Contains(errOut, "line 1") {
		t.Fatalf("a refusal of the second line given: exit %d, stderr %s, want it named line 1", code, errOut)
	}
	if code, out, _ = cli("hold", "confirm", h.ID, "--payment-ref", "pi_1"); code != 0 || !strings.Contains(out, "confirmed") {
		t.Fatalf("hold confirm: %d\n%s", code, out)
	}
	if code, out, _ = cli("book", "--holder", "bob", "--pool", "concert:4"); code != 0 || !strings.Contains(out, "confirmed") {
		t.Fatalf("book: %d\n%s", code, out)
	}
	if code, _, _ = cli("book", "--holder", "erin", "--pool", "concert:4"); code != 0 {
		t.Fatal("book erin")
	}
	code, _, errOut = cli("hold", "create", "--holder", "carol", "--pool", "concert:1")
	if code != 1 || !strings.Contains(errOut, "sold_out") {
		t.Fatalf("a sold-out hold: exit %d, stderr %s", code, errOut)
	}
	code, _, errOut = cli("hold", "create", "--holder", "carol", "--pool", "concert")
	if code != 2 || !strings.Contains(errOut, "ID:NUMBER") {
		t.Fatalf("a malformed line: exit %d, stderr %s", code, errOut)
	}
	if code, out, _ = cli("hold", "get", h.ID); code != 0 || !strings.Contains(out, "A-1,A-2") {
		t.Fatalf("hold get: %d\n%s", code, out)
	}
	if code, out, _ = cli("hold", "create", "--holder", "dave", "--any", "riders:1", "--json"); code != 0 || json.Unmarshal([]byte(out), &h) != nil {
		t.Fatalf("hold create --any: %d\n%s", code, out)
	}
	if code, out, _ = cli("hold", "release", h.ID); code != 0 || !strings.Contains(out, "released") {
		t.Fatalf("hold release: %d\n%s", code, out)
	}
	if code, out, _ = cli("pool", "create", "--id", "gala", "--capacity", "3"); code != 0 || !strings.Contains(out, "gala") {
		t.Fatalf("pool create: %d\n%s", code, out)
	}
	if code, _, _ = cli("group", "create", "--id", "vans", "--reusable"); code != 0 {
		t.Fatal("group create")
	}
	if code, out, _ = cli("group", "add-units", "vans", "v-1,v-2", "v-3"); code != 0 || !strings.Contains(out, "3") {
		t.Fatalf("group add-units: %d\n%s", code, out)
	}
	if code, out, _ = cli("pool", "get", "gala", "--json"); code != 0 || !strings.Contains(out, `"capacity": 3`) {
		t.Fatalf("pool get: %d\n%s", code, out)
	}
	// A room, listed, and its queue on /metrics (what the alert on a room
	// that admits nobody watches).
	if code, _, errOut = cli("room", "create", "--id", "gate", "--pool", "gala", "--opens-at", "2099-01-01T00:00:00Z"); code != 0 {
		t.Fatalf("room create: %d %s", code, errOut)
	}
	if code, _, errOut = cli("room", "join", "gate", "--holder", "w1"); code != 0 {
		t.Fatalf("room join: %d %s", code, errOut)
	}
	if code, out, _ = cli("room", "list"); code != 0 || !regexp.MustCompile(`(?m)^gate\s`).MatchString(out) {
		t.Fatalf("room list: %d\n%s", code, out)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"holdfast_db_connections_open", "holdfast_strategy_retries_total", "holdfast_batch_failures_total", "holdfast_batches_total", "holdfast_sweeper_expired_total",
		"holdfast_audit_differences 0", `holdfast_holds_total{outcome="sold_out"} 1`,
		`holdfast_room_waiting{room="gate"} 1`, `holdfast_room_open{room="gate"} 0`, `holdfast_room_admitted_total{room="gate"} 0`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestCLIWithKeys(t *testing.T) {
	const admin = "an-admin-key-of-some-length"
	base := startServer(t, "--db", filepath.Join(t.TempDir(), "x.db"), "--admin-key", admin, "--demo")
	code, out, errOut := runCmd(t, "key", "create", "--name", "box-office", "--server", base, "--key", admin, "--json")
	var k struct{ Key string }
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || k.Key == "" {
		t.Fatalf("key create: %d\n%s%s", code, out, errOut)
	}
	env := func(key string) func(string) string {
		return func(name string) string {
			return map[string]string{"HOLDFAST_SERVER": base, "HOLDFAST_KEY": key}[name]
		}
	}
	var o, e syncBuffer
	if code := run(context.Background(), []string{"hold", "create", "--holder", "a", "--pool", "concert:1"}, env(k.Key), &o, &e); code != 0 {
		t.Fatalf("client key hold: %d %s", code, e.String())
	}
	e = syncBuffer{}
	if code := run(context.Background(), []string{"pool", "create", "--id", "x", "--capacity", "1"}, env(k.Key), &o, &e); code != 1 || !strings.Contains(e.String(), "forbidden") {
		t.Fatalf("client key pool create: %d %s", code, e.String())
	}
	e = syncBuffer{}
	if code := run(context.Background(), []string{"pool", "list"}, env(""), &o, &e); code != 1 || !strings.Contains(e.String(), "unauthorized") {
		t.Fatalf("no key: %d %s", code, e.String())
	}
	// The admin sets a quota, lists the keys (no secret), and revokes one.
	var ks struct{ ID string }
	_ = json.Unmarshal([]byte(out), &ks)
	adminEnv := env(admin)
	for _, args := range [][]string{{"key", "quota", ks.ID, "1"}, {"key", "list"}, {"key", "revoke", ks.ID}} {
		o, e = syncBuffer{}, syncBuffer{}
		if code := run(context.Background(), args, adminEnv, &o, &e); code != 0 || strings.Contains(o.String(), k.Key) {
			t.Fatalf("%v: %d %s%s", args, code, o.String(), e.String())
		}
	}
	if !strings.Contains(o.String(), ks.ID) {
		t.Fatalf("key revoke: %s", o.String())
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		o, e = syncBuffer{}, syncBuffer{}
		code := run(context.Background(), []string{"pool", "list"}, env(k.Key), &o, &e)
		if code == 1 && strings.Contains(e.String(), "unauthorized") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked key still works: %d %s", code, e.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a deadline
	}
}

// Shutdown with a request in flight: the server stops accepting, the
// request finishes whole, the process exits 0, and the books balance.
func TestGracefulShutdown(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--demo"}, noEnv, outW, errW)
		outW.Close()
		errW.Close()
		done <- code
	}()
	shuttingDown := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "shutting down") {
				close(shuttingDown)
				break
			}
		}
		io.Copy(io.Discard, errR)
	}()
	var addr string
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		if m := regexp.MustCompile(`listening on http://(\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	go io.Copy(io.Discard, outR)
	if addr == "" {
		t.Fatal("server did not start")
	}

	// An event stream open when the shutdown starts: it never goes idle,
	// so the server must end it (or Shutdown would wait out its grace).
	streamResp, err := http.Get("http://" + addr + "/v1/events/stream")
	if err != nil || streamResp.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", streamResp, err)
	}
	defer streamResp.Body.Close()
	streamEnd := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(streamResp.Body)
		streamEnd <- string(b)
	}()

	// A hold whose body is only half sent when the shutdown starts. It
	// asks "Expect: 100-continue", so the server's "100 Continue" says its
	// handler is running and reading the body: the request is in flight.
	// (A connection whose request line the server has not read when the
	// shutdown begins is closed unanswered — net/http's rule, and safe: a
	// request never started changed nothing, and clients retry it.)
	body := `{"holder":"late","lines":[{"pool":"concert","quantity":2}]}`
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/holds HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body))
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("the server did not start the hold: %v %v", resp, err)
	}
	fmt.Fprint(conn, body[:20])
	cancel()
	<-shuttingDown
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the server still accepts connections after shutdown began")
	}
	fmt.Fprint(conn, body[20:])
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("in-flight request lost: %v", err)
	}
	if resp.StatusCode != 201 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("in-flight hold: %d %s", resp.StatusCode, b)
	}
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if last := <-streamEnd; !strings.Contains(last, "server shutting down; reconnect with Last-Event-ID") {
		t.Fatalf("the event stream ended without telling its viewer to reconnect:\n%s", last)
	}
	s, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p := holdfasttest.MustPool(t, s, "concert"); p.Held != 2 {
		t.Fatalf("after shutdown the pool has %d held, want the in-flight hold's 2", p.Held)
	}
	holdfasttest.MustAuditClean(t, s)
}

// The webhook CLI against a real server: register (the secret shown
// once), receive a signed event, list deliveries, send one again, disable.
func TestWebhookCLI(t *testing.T) {
	const admin = "an-admin-key-of-some-length"
	var mu sync.Mutex
	var secret string
	got := map[string]int{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, err := hfhttp.VerifyWebhook(r, secret)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var msg struct{ Type string }
		_ = json.Unmarshal(body, &msg)
		got[msg.Type+" "+r.Header.Get("webhook-id")]++
	}))
	defer receiver.Close()

	guarded := startServer(t, "--db", filepath.Join(t.TempDir(), "g.db"), "--admin-key", admin)
	if code, _, errOut := runCmd(t, "webhook", "create", "--url", receiver.URL, "--server", guarded, "--key", admin); code != 1 || !strings.Contains(errOut, "private") {
		t.Fatalf("a loopback webhook without --webhook-allow-private: exit %d, %s", code, errOut)
	}

	base := startServer(t, "--db", filepath.Join(t.TempDir(), "x.db"), "--admin-key", admin, "--demo", "--webhook-allow-private")
	code, out, errOut := runCmd(t, "webhook", "create", "--url", receiver.URL+"/hooks", "--events", "hold.confirmed", "--server", base, "--key", admin, "--json")
	var created struct{ ID, Secret string }
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || !strings.HasPrefix(created.Secret, "whsec_") {
		t.Fatalf("webhook create: %d %s%s", code, out, errOut)
	}
	mu.Lock()
	secret = created.Secret
	mu.Unlock()
	code, out, errOut = runCmd(t, "book", "--holder", "alice", "--pool", "concert:1", "--server", base, "--key", admin, "--json")
	var booked struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &booked) != nil {
		t.Fatalf("book: %d %s%s", code, out, errOut)
	}
	var deliveries []holdfast.Delivery
	for deadline := time.Now().Add(20 * time.Second); len(deliveries) == 0 || deliveries[0].Status != holdfast.DeliverySucceeded; {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery succeeded: %+v", deliveries)
		}
		time.Sleep(100 * time.Millisecond) // polling a deadline: the dispatcher runs on its own
		code, out, errOut = runCmd(t, "webhook", "deliveries", created.ID, "--server", base, "--key", admin, "--json")
		if code != 0 || json.Unmarshal([]byte(out), &deliveries) != nil {
			t.Fatalf("webhook deliveries: %d %s%s", code, out, errOut)
		}
	}
	id := deliveries[0].ID
	if code, out, errOut := runCmd(t, "webhook", "retry", created.ID, id, "--server", base, "--key", admin); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("webhook retry: %d %s%s", code, out, errOut)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		n := got["hold.confirmed "+id]
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver got %v, want hold.confirmed %s twice", got, id)
		}
	}
	for _, args := range [][]string{{"webhook", "list"}, {"webhook", "disable", created.ID}, {"webhook", "update", created.ID, "--description", "box office"}} {
		code, out, errOut := runCmd(t, append(args, "--server", base, "--key", admin)...)
		if code != 0 || strings.Contains(out, created.Secret) || !strings.Contains(out, created.ID) {
			t.Fatalf("%v: %d %s%s", args, code, out, errOut)
		}
	}
	if code, out, _ := runCmd(t, "webhook", "list", "--server", base, "--key", admin); !strings.Contains(out, "false") || code != 0 {
		t.Fatalf("webhook list after disable: %s", out)
	}
}

// A sale behind a waiting room from the CLI: the server admits on its
// own, and the admission holds.
func TestRoomCLI(t *testing.T) {
	const admin = "an-admin-key-of-some-length"
	base := startServer(t, "--db", filepath.Join(t.TempDir(), "x.db"), "--admin-key", admin, "--demo")
	cli := adminCLI(t, base, admin)
	cli("room", "create", "--id", "gala", "--pool", "concert", "--opens-at", time.Now().Add(-time.Second).UTC().Format(time.RFC3339), "--admit-per-second", "50", "--max-inside", "5")
	if code, _, errOut := runCmd(t, "hold", "create", "--holder", "alice", "--pool", "concert:1", "--server", base, "--key", admin); code != 1 || !strings.Contains(errOut, "admission_required") {
		t.Fatalf("a hold without an admission: %d %s", code, errOut)
	}
	var tk holdfast.RoomTicket
	if err := json.Unmarshal([]byte(cli("room", "join", "gala", "--holder", "alice")), &tk); err != nil || tk.Position != 1 {
		t.Fatalf("room join: %+v %v", tk, err)
	}
	for deadline := time.Now().Add(10 * time.Second); tk.Admission == ""; time.Sleep(50 * time.Millisecond) { // polling, as a buyer's page does
		if time.Now().After(deadline) {
			t.Fatalf("never admitted: %+v", tk)
		}
		if err := json.Unmarshal([]byte(cli("room", "ticket", "gala", tk.Ticket)), &tk); err != nil {
			t.Fatal(err)
		}
	}
	out := cli("hold", "create", "--holder", "alice", "--pool", "concert:1", "--admission", tk.Admission)
	if !strings.Contains(out, `"held"`) {
		t.Fatalf("a hold with the admission: %s", out)
	}
	if out := cli("room", "show", "gala"); !strings.Contains(out, `"inside": 1`) && !strings.Contains(out, `"inside":1`) {
		t.Fatalf("room show: %s", out)
	}
}

// A sold-out pool's waitlist from the CLI, against a running server: the
// server's own loop offers the released unit to the entry, as a hold the
// holder confirms.
func TestWaitlistCLI(t *testing.T) {
	const admin = "an-admin-key-of-some-length"
	base := startServer(t, "--db", filepath.Join(t.TempDir(), "x.db"), "--admin-key", admin)
	cli := adminCLI(t, base, admin)
	cli("pool", "create", "--id", "last", "--capacity", "1", "--offer-ttl", "60")
	var sold holdfast.Hold
	if err := json.Unmarshal([]byte(cli("hold", "create", "--holder", "mallory", "--pool", "last:1")), &sold); err != nil {
		t.Fatal(err)
	}
	var en holdfast.WaitlistEntry
	if err := json.Unmarshal([]byte(cli("waitlist", "join", "last", "--holder", "alice")), &en); err != nil || en.Position != 1 {
		t.Fatalf("waitlist join: %+v %v", en, err)
	}
	if out := cli("waitlist", "list", "last"); !strings.Contains(out, en.ID) {
		t.Fatalf("waitlist list: %s", out)
	}
	cli("hold", "release", sold.ID)
	for deadline := time.Now().Add(10 * time.Second); en.Status != holdfast.WaitlistOffered; time.Sleep(50 * time.Millisecond) { // polling, as a buyer's page does
		if time.Now().After(deadline) {
			t.Fatalf("never offered: %+v", en)
		}
		if err := json.Unmarshal([]byte(cli("waitlist", "show", "last", en.ID)), &en); err != nil {
			t.Fatal(err)
		}
	}
	if out := cli("hold", "confirm", en.HoldID); !strings.Contains(out, `"confirmed"`) {
		t.Fatalf("confirming the offer: %s", out)
	}
	if code, _, errOut := runCmd(t, "hold", "create", "--holder", "bob", "--pool", "last:1", "--server", base, "--key", admin); code != 1 || !strings.Contains(errOut, "sold_out") {
		t.Fatalf("a new buyer after the offer: %d %s", code, errOut)
	}

	// A group's waitlist: two seats back, offered to the pair.
	cli("group", "create", "--id", "row")
	cli("group", "add-units", "row", "R-1,R-2")
	if err := json.Unmarshal([]byte(cli("hold", "create", "--holder", "mallory", "--units", "R-1,R-2")), &sold); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(cli("waitlist", "join", "--group", "row", "--holder", "pair", "--any", "2")), &en); err != nil || en.Position != 1 || en.Group != "row" || en.Any != 2 {
		t.Fatalf("waitlist join --group: %+v %v", en, err)
	}
	if code, _, errOut := runCmd(t, "waitlist", "join", "last", "--holder", "x", "--any", "2", "--server", base, "--key", admin); code != 2 {
		t.Fatalf("--any on a pool's waitlist: %d %s", code, errOut)
	}
	if out := cli("waitlist", "list", "--group", "row"); !strings.Contains(out, en.ID) {
		t.Fatalf("waitlist list --group: %s", out)
	}
	cli("hold", "release", sold.ID)
	for deadline := time.Now().Add(10 * time.Second); en.Status != holdfast.WaitlistOffered; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the group's entry was never offered: %+v", en)
		}
		if err := json.Unmarshal([]byte(cli("waitlist", "show", "--group", "row", en.ID)), &en); err != nil {
			t.Fatal(err)
		}
	}
	if out := cli("waitlist", "leave", "--group", "row", en.ID); !strings.Contains(out, `"released"`) {
		t.Fatalf("leaving with the offer out: %s", out)
	}
}

// adminCLI runs the CLI against base with the admin key and --json, and
// fails the test on a non-zero exit.
func adminCLI(t *testing.T, base, admin string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		code, out, errOut := runCmd(t, append(args, "--server", base, "--key", admin, "--json")...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s%s", args, code, out, errOut)
		}
		return out
	}
}

// A room's draw, checked from the API alone: `room verify` as the admin
// (every ticket's hash and HMAC recomputed) and as a buyer with their
// ticket (its HMAC and the place it reads); a client key's view of the
// draw names no ticket ids; before opening there is no draw to check.
func TestRoomVerify(t *testing.T) {
	const admin = "verify-admin-key-0123456789"
	base := startServer(t, "--db", filepath.Join(t.TempDir(), "holdfast.db"), "--admin-key", admin)
	as := func(key string, args ...string) (int, string, string) {
		t.Helper()
		return runCmd(t, append(args, "--server", base, "--key", key)...)
	}
	if code, _, errOut := as(admin, "pool", "create", "--id", "gala", "--capacity", "10"); code != 0 {
		t.Fatalf("pool create: %s", errOut)
	}
	opens := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
	if code, _, errOut := as(admin, "room", "create", "--id", "gate", "--pool", "gala", "--opens-at", opens); code != 0 {
		t.Fatalf("room create: %s", errOut)
	}
	code, out, errOut := as(admin, "key", "create", "--name", "shop", "--json")
	var key struct{ Key string }
	if code != 0 || json.Unmarshal([]byte(out), &key) != nil || key.Key == "" {
		t.Fatalf("key create: %d %s %s", code, out, errOut)
	}
	var mine holdfast.RoomTicket
	for i := range 12 {
		code, out, errOut := as(key.Key, "room", "join", "gate", "--holder", fmt.Sprintf("b%d", i), "--json")
		if code != 0 {
			t.Fatalf("room join: %s", errOut)
		}
		if i == 5 && json.Unmarshal([]byte(out), &mine) != nil {
			t.Fatalf("room join: %s", out)
		}
	}
	if code, _, errOut := as(admin, "room", "verify", "gate"); code == 0 || !strings.Contains(errOut, "invalid_state") {
		t.Fatalf("room verify before opening: exit %d, stderr %s; want the draw refused until opening", code, errOut)
	}
	// Wait for the opening: the seed appears on the room.
	for {
		_, out, _ := as(admin, "room", "show", "gate", "--json")
		if strings.Contains(out, `"seed":`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, out, errOut := as(admin, "room", "verify", "gate"); code != 0 || !strings.Contains(out, "ok: room gate, 12 tickets") || !strings.Contains(out, "HMAC") {
		t.Fatalf("room verify as the admin: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := as(key.Key, "room", "verify", "gate", "--ticket", mine.Ticket); code != 0 || !strings.Contains(out, "your ticket is in it") {
		t.Fatalf("room verify with a ticket: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := as(key.Key, "room", "verify", "gate", "--ticket", "tk_someone_else"); code != 1 || !strings.Contains(errOut, "not in the draw") {
		t.Fatalf("room verify with a ticket not in the draw: exit %d, stderr %s", code, errOut)
	}
	req, _ := http.NewRequest("GET", base+"/v1/rooms/gate/draw", nil)
	req.Header.Set("Authorization", "Bearer "+key.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(body), `"ticket":`) || !strings.Contains(string(body), `"ticket_sha256"`) {
		t.Fatalf("a client key's draw: %d %s; want hashes, no ticket ids", resp.StatusCode, body)
	}
}

// A presale from the command line: the admin sets part of a pool aside
// for a channel, a reseller's key sells from it (and only it), and the
// admin ends it, giving what is unsold back.
func TestCLIAllocate(t *testing.T) {
	const admin = "an-admin-key-of-some-length"
	base := startServer(t, "--db", filepath.Join(t.TempDir(), "x.db"), "--admin-key", admin, "--demo")
	cli := func(key string, args ...string) (int, string, string) {
		var o, e syncBuffer
		code := run(context.Background(), args, func(name string) string {
			return map[string]string{"HOLDFAST_SERVER": base, "HOLDFAST_KEY": key}[name]
		}, &o, &e)
		return code, o.String(), e.String()
	}
	if code, out, errOut := cli(admin, "pool", "create", "--id", "gig", "--capacity", "10"); code != 0 {
		t.Fatalf("pool create: %d %s%s", code, out, errOut)
	}
	code, out, errOut := cli(admin, "pool", "allocate", "gig", "--channel", "presale", "--quantity", "4", "--json")
	var p holdfast.Pool
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Available != 6 || len(p.Allocations) != 1 {
		t.Fatalf("pool allocate: %d %s%s", code, out, errOut)
	}
	if code, out, _ := cli(admin, "pool", "get", "gig"); code != 0 || !strings.Contains(out, "gig (presale)") {
		t.Fatalf("pool get shows no allocation: %d %s", code, out)
	}
	if code, _, errOut := cli(admin, "pool", "allocate", "gig", "--channel", "presale", "--quantity", "11", "--change"); code != 1 || !strings.Contains(errOut, "conflict") {
		t.Fatalf("allocating more than is unsold: %d %s", code, errOut)
	}
	if code, _, errOut := cli(admin, "pool", "allocate", "gig", "--channel", "presale"); code != 2 {
		t.Fatalf("allocate without --quantity: %d %s", code, errOut)
	}
	code, out, errOut = cli(admin, "key", "create", "--name", "reseller", "--channel", "presale", "--json")
	var k struct{ Key string }
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || k.Key == "" {
		t.Fatalf("key create --channel: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := cli(k.Key, "hold", "create", "--holder", "r", "--pool", "gig:5"); code != 1 || !strings.Contains(errOut, "sold_out") {
		t.Fatalf("the reseller past its allocation: %d %s%s", code, out, errOut)
	}
	code, out, errOut = cli(k.Key, "hold", "create", "--holder", "r", "--pool", "gig:4", "--json")
	var h holdfast.Hold
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil || h.Lines[0].Channel != "presale" {
		t.Fatalf("the reseller's hold: %d %s%s", code, out, errOut)
	}
	code, out, errOut = cli(admin, "pool", "allocate", "gig", "--channel", "presale", "--end", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || len(p.Allocations) != 0 || p.Available != 6 {
		t.Fatalf("pool allocate --end: %d %s%s", code, out, errOut)
	}

	// Named seats: X-2 set aside for the reseller's channel.
	for _, args := range [][]string{{"group", "create", "--id", "box"}, {"group", "add-units", "box", "X-1,X-2"}} {
		if code, out, errOut := cli(admin, args...); code != 0 {
			t.Fatalf("%v: %d %s%s", args, code, out, errOut)
		}
	}
	code, out, errOut = cli(admin, "group", "allocate", "box", "X-2", "--channel", "presale", "--json")
	var g holdfast.GroupAvailability
	if code != 0 || json.Unmarshal([]byte(out), &g) != nil || g.Free != 1 || len(g.Allocations) != 1 {
		t.Fatalf("group allocate: %d %s%s", code, out, errOut)
	}
	if code, _, errOut := cli(admin, "group", "allocate", "box", "--channel", "presale"); code != 2 {
		t.Fatalf("group allocate without units: %d %s", code, errOut)
	}
	if code, out, errOut := cli(k.Key, "hold", "create", "--holder", "r", "--units", "X-1"); code != 1 || !strings.Contains(errOut, "unavailable") {
		t.Fatalf("the reseller naming a seat of the general sale: %d %s%s", code, out, errOut)
	}
	code, out, errOut = cli(k.Key, "hold", "create", "--holder", "r", "--any", "box:1", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &h) != nil || len(h.Lines[0].Units) != 1 || h.Lines[0].Units[0] != "X-2" {
		t.Fatalf("the reseller's any 1: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := cli(admin, "group", "allocate", "box", "--channel", "presale", "--end"); code != 0 || !strings.Contains(out, "CHANNEL") {
		t.Fatalf("group allocate --end: %d %s%s", code, out, errOut)
	}
}

// Payments from the command line: a paid confirm is captured, one after
// the hold expired is due back, listed, and marked refunded.
func TestCLIPayments(t *testing.T) {
	const admin = "an-admin-key-of-some-length"
	db := filepath.Join(t.TempDir(), "x.db")
	base := startServer(t, "--db", db, "--admin-key", admin, "--demo")
	cli := func(args ...string) (int, string, string) {
		var o, e syncBuffer
		code := run(context.Background(), args, func(name string) string {
			return map[string]string{"HOLDFAST_SERVER": base, "HOLDFAST_KEY": admin}[name]
		}, &o, &e)
		return code, o.String(), e.String()
	}
	c := hfhttp.NewClient(base, admin)
	ctx := context.Background()
	paid, err := c.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "concert", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli("hold", "confirm", paid.ID, "--payment-ref", "pi_ok", "--amount", "5000"); code != 0 {
		t.Fatalf("a paid confirm: %d %s%s", code, out, errOut)
	}
	if code, out, _ := cli("payment", "get", "pi_ok"); code != 0 || !strings.Contains(out, "captured") || !strings.Contains(out, paid.ID) {
		t.Fatalf("payment get: %d %s", code, out)
	}
	// A payment for a hold already confirmed is due back.
	if code, _, errOut := cli("hold", "confirm", paid.ID, "--payment-ref", "pi_twice", "--amount", "5000"); code != 1 || !strings.Contains(errOut, "invalid_state") {
		t.Fatalf("a second payment: %d %s", code, errOut)
	}
	code, out, errOut := cli("payment", "list", "--status", "refund_due", "--json")
	var due []holdfast.Payment
	if code != 0 || json.Unmarshal([]byte(out), &due) != nil || len(due) != 1 || due[0].Ref != "pi_twice" {
		t.Fatalf("payment list: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := cli("payment", "refunded", "pi_twice"); code != 0 || !strings.Contains(out, "refunded") {
		t.Fatalf("payment refunded: %d %s%s", code, out, errOut)
	}
	if code, _, errOut := cli("payment", "refunded", "pi_ok"); code != 1 || !strings.Contains(errOut, "invalid_state") {
		t.Fatalf("refunding a captured payment: %d %s", code, errOut)
	}
}
