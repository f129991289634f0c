package http_test

import (
	"bufio"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
)

type sse struct{ id, event, data string }

// readSSE reads n events from the stream, resuming after lastID when set.
func readSSE(t *testing.T, url, lastID, key string, n int) []sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/events/stream", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if key != "" {
		q := req.URL.Query()
		q.Set("key", key)
		req.URL.RawQuery = q.Encode()
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
	first := readSSE(t, srv.URL, "", adminKey, 2)
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
