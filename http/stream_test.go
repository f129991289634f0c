package http_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/sqlite"
)

type sse struct{ id, event, data string }

// readSSE reads n events from the stream, resuming after lastID when set.
func readSSE(t *testing.T, url, lastID, key string, n int) []sse {
	t.Helper()
	return readSSEQuery(t, url, "", lastID, key, n, nil)
}

// readSSEQuery reads n events from the stream with the query q; ready,
// when set, is closed once the stream has answered (it is attached).
func readSSEQuery(t *testing.T, url, q, lastID, key string, n int, ready chan<- struct{}) []sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/events/stream?"+q, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sse
	var cur sse
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		if line == "retry: 1000" && ready != nil {
			close(ready)
			ready = nil
		}
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "" && cur.id != "":
			out = append(out, cur)
			cur = sse{}
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d of %d events: %v", len(out), n, sc.Err())
	}
	return out
}

// The stream delivers the outbox in order, with each event's cursor as its
// SSE id, and a reconnect with Last-Event-ID resumes right after it.
func TestEventStreamResumes(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
	holdfasttest.MustCreatePool(t, s, "p", 10, 0)
	for i := 0; i < 3; i++ {
		holdfasttest.MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 1})
	}
	first := readSSEQuery(t, srv.URL, "after=0", "", adminKey, 2, nil)
	if first[0].event != "pool.created" || first[1].event != "hold.created" {
		t.Fatalf("first events: %+v", first)
	}
	rest := readSSE(t, srv.URL, first[1].id, adminKey, 2)
	if rest[0].event != "hold.created" || rest[0].id == first[1].id {
		t.Fatalf("resumed at %+v after %s", rest[0], first[1].id)
	}
	// A new event reaches a listener that is already connected.
	done := make(chan []sse, 1)
	go func() { done <- readSSE(t, srv.URL, rest[1].id, adminKey, 1) }()
	holdfasttest.MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 2})
	if got := <-done; got[0].event != "hold.created" || !strings.Contains(got[0].data, `"holder":"b"`) {
		t.Fatalf("live event: %+v", got)
	}
	// The stream is the admin's, like the feed.
	caller{base: srv.URL}.want(t, "GET", "/v1/events/stream", "", 401, hfhttp.CodeUnauthorized)
	caller{base: srv.URL, key: adminKey}.want(t, "GET", "/v1/events/stream?after=nonsense", "", 400, holdfast.CodeInvalid)
}

// A new stream starts at the present (it does not replay the outbox), and
// ?types= and ?subject= keep only the events asked for.
func TestEventStreamFromNowAndFilters(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
	holdfasttest.MustCreatePool(t, s, "p", 10, 0)
	holdfasttest.MustCreatePool(t, s, "q", 10, 0)
	holdfasttest.MustHold(t, s, "old", holdfast.Line{Pool: "p", Quantity: 1})

	all, only := make(chan []sse, 1), make(chan []sse, 1)
	readyAll, readyOnly := make(chan struct{}), make(chan struct{})
	go func() { all <- readSSEQuery(t, srv.URL, "", "", adminKey, 2, readyAll) }()
	go func() { only <- readSSEQuery(t, srv.URL, "types=hold.confirmed&subject=q", "", adminKey, 1, readyOnly) }()
	<-readyAll
	<-readyOnly
	holdfasttest.MustHold(t, s, "new", holdfast.Line{Pool: "p", Quantity: 1})
	h := holdfasttest.MustHold(t, s, "new-q", holdfast.Line{Pool: "q", Quantity: 1})
	if _, err := s.Confirm(context.Background(), h.ID, ""); err != nil {
		t.Fatal(err)
	}
	got := <-all
	if got[0].event != "hold.created" || !strings.Contains(got[0].data, `"holder":"new"`) {
		t.Fatalf("a new stream began with %+v, want the first event after it connected", got[0])
	}
	if f := <-only; f[0].event != "hold.confirmed" || !strings.Contains(f[0].data, h.ID) {
		t.Fatalf("filtered stream got %+v, want only q's confirmation", f[0])
	}
}

// countingStore counts the feed reads made of the store.
type countingStore struct {
	*sqlite.Store
	reads atomic.Int64
}

func (c *countingStore) Events(ctx context.Context, after string, limit int) ([]holdfast.Event, string, error) {
	c.reads.Add(1)
	return c.Store.Events(ctx, after, limit)
}

// Many viewers cost one tail of the outbox, not one per viewer: with 50
// streams open the feed is read about once per poll interval (before the
// hub, each stream polled on its own: 50 reads per 200 ms).
func TestEventStreamOneTailForManyViewers(t *testing.T) {
	s := &countingStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db")).(*sqlite.Store)}
	srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
	holdfasttest.MustCreatePool(t, s, "p", 100, 0)
	const viewers = 50
	start := time.Now()
	got := make(chan []sse, viewers)
	for i := 0; i < viewers; i++ {
		ready := make(chan struct{})
		go func() { got <- readSSEQuery(t, srv.URL, "", "", adminKey, 3, ready) }()
		<-ready
	}
	for i := 0; i < 3; i++ {
		holdfasttest.MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 1})
	}
	for i := 0; i < viewers; i++ {
		if g := <-got; g[2].event != "hold.created" {
			t.Fatalf("viewer %d: %+v", i, g)
		}
	}
	polls := time.Since(start) / (100 * time.Millisecond)
	if reads := s.reads.Load(); reads > int64(polls)+5 {
		t.Fatalf("%d viewers made %d feed reads in %d poll intervals: the database is read per viewer", viewers, reads, polls)
	}
}

// Each server tails the database itself: an event written through one
// instance reaches a stream on another.
func TestEventStreamAcrossInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "holdfast.db")
	a, b := openSQLite(t, path), openSQLite(t, path)
	srvB := serve(t, b, hfhttp.Config{AdminKey: adminKey})
	holdfasttest.MustCreatePool(t, a, "p", 10, 0)
	got, ready := make(chan []sse, 1), make(chan struct{})
	go func() { got <- readSSEQuery(t, srvB.URL, "subject=p", "", adminKey, 1, ready) }()
	<-ready
	h := holdfasttest.MustHold(t, a, "x", holdfast.Line{Pool: "p", Quantity: 1})
	if e := <-got; e[0].event != "hold.created" || !strings.Contains(e[0].data, h.ID) {
		t.Fatalf("stream on B got %+v, want A's hold %s", e[0], h.ID)
	}
}

// Event streams are bounded in all: past the bound a new stream answers
// 429 too_many_streams, and a stream that ends frees its place. (They are
// the admin key's, which the bound per key does not hold — the page's
// viewers all stream under it; a client key's ticket streams are bounded
// per key: TestStreamsPerKey.)
func TestEventStreamsAreBounded(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	for _, tc := range []struct {
		name string
		cfg  hfhttp.Config
	}{
		{"in all", hfhttp.Config{AdminKey: adminKey, MaxStreams: 2, MaxStreamsPerKey: 10}},
		{"in all, past the bound per key", hfhttp.Config{AdminKey: adminKey, MaxStreams: 2, MaxStreamsPerKey: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, s, tc.cfg)
			open := func() (*http.Response, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/events/stream", nil)
				req.Header.Set("Authorization", "Bearer "+adminKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp, cancel
			}
			var cancels []context.CancelFunc
			defer func() {
				for _, c := range cancels {
					c()
				}
			}()
			for range 2 {
				resp, cancel := open()
				cancels = append(cancels, cancel)
				if resp.StatusCode != 200 {
					t.Fatalf("stream within the bounds: %d", resp.StatusCode)
				}
			}
			resp, _ := open()
			if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("the third stream: %d, want 429 with Retry-After", resp.StatusCode)
			}
			if p := (response{resp.StatusCode, resp.Header, must(io.ReadAll(resp.Body))}).problem(t); p.Code != hfhttp.CodeTooManyStreams {
				t.Fatalf("code %s", p.Code)
			}
			resp.Body.Close()
			// A viewer leaves: its place is free again (the server notices
			// the closed connection at its next write; poll the bound).
			cancels[0]()
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, cancel := open()
				if resp.StatusCode == 200 {
					cancel()
					break
				}
				resp.Body.Close()
				if time.Now().After(deadline) {
					t.Fatal("a closed stream's place was never freed")
				}
				time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A browser opens the stream with a short-lived token instead of a key in
// its URL: the token works on every server sharing the admin key, a forged
// or altered one does not, and ?key= is no longer accepted.
func TestEventStreamToken(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	a := serve(t, s, hfhttp.Config{AdminKey: adminKey})
	b := serve(t, s, hfhttp.Config{AdminKey: adminKey})
	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	caller{base: a.URL, key: adminKey}.want(t, "GET", "/v1/events/stream-token", "", 200, "").decode(t, &tok)
	if tok.Token == "" || strings.Contains(tok.Token, adminKey) || time.Until(tok.ExpiresAt) > 2*time.Minute {
		t.Fatalf("token %+v", tok)
	}
	status := func(base, q string) int {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events/stream?"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(b.URL, "token="+tok.Token); got != 200 {
		t.Fatalf("token on another server: %d", got)
	}
	forged := tok.Token[:len(tok.Token)-2] + "AA"
	for q, want := range map[string]int{"token=" + forged: 401, "token=x.y": 401, "key=" + adminKey: 401} {
		if got := status(a.URL, q); got != want {
			t.Errorf("%s: %d, want %d", q, got, want)
		}
	}
	// Another admin key signs other tokens.
	c := serve(t, s, hfhttp.Config{AdminKey: adminKey + "-other"})
	if got := status(c.URL, "token="+tok.Token); got != 401 {
		t.Errorf("token on a server with another admin key: %d", got)
	}
}
