package chaos

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Lanes: each client works on one partition of the data, so the history
// splits into independent parts the checker can decide one by one (a
// history is linearizable if and only if each part is).
type laneKind int

const (
	lanePool   laneKind = iota // counted pool, holds of 1–4, long TTL
	laneSeats                  // seat map: 1–3 adjacent seats, overlapping
	laneRiders                 // reusable riders, any:1–2, completed back
	laneExpiry                 // pool with 1 s holds, confirmed late on purpose
)

type lane struct {
	kind     laneKind
	id       string // pool or group id
	capacity int64  // pools
	units    []string
}

// input and output are what the history records of one operation.
type input struct {
	Lane   string   `json:"lane"`
	Kind   string   `json:"kind"` // hold, confirm, release, cancel, complete
	Holder string   `json:"holder,omitempty"`
	Q      int64    `json:"q,omitempty"`
	Units  []string `json:"units,omitempty"`
	Any    int64    `json:"any,omitempty"`
	ID     string   `json:"id,omitempty"`
	Key    string   `json:"key"`
	// T0, T1: the operation's call and return (ns), for the flash lane's
	// model of time; set by the checker.
	T0 int64 `json:"-"`
	T1 int64 `json:"-"`
}

type output struct {
	Code    string   `json:"code,omitempty"` // "" for success
	ID      string   `json:"id,omitempty"`
	Units   []string `json:"units,omitempty"`
	Expires int64    `json:"expires_ms,omitempty"`
	// Unknown: no answer within the operation's budget (every retry timed
	// out or found the servers down). Resolved from the database after
	// the run: the effect happened or it did not.
	Unknown bool `json:"unknown,omitempty"`
}

type op struct {
	Client   int    `json:"client"`
	In       input  `json:"in"`
	Out      output `json:"out"`
	Call     int64  `json:"call_ns"`
	Ret      int64  `json:"ret_ns"`
	Attempts int    `json:"attempts"`
}

// recorder collects the history and the counters of one run.
type recorder struct {
	mu       sync.Mutex
	ops      []op
	busy     atomic.Int64 // 503s seen
	inFlight atomic.Int64 // 409 idempotency_in_flight seen (retried)
	netErrs  atomic.Int64 // timeouts and connection errors (retried)
	tooMany  atomic.Int64 // 429s: must stay 0, nothing here is rate limited
	// noRetryAfter: 503s that do not say when to come back; must stay 0.
	noRetryAfter atomic.Int64
}

func (r *recorder) add(o op) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

// driver sends one logical operation with retries: the same
// Idempotency-Key every time, rotating over the servers, until a definite
// answer or the budget runs out.
type driver struct {
	urls     []string
	adminKey string
	http     *http.Client
	attempt  time.Duration // per try
	budget   time.Duration // per operation
	rec      *recorder
}

type problem struct {
	Code string `json:"code"`
}

type holdJSON struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	ExpiresAt string `json:"expires_at"`
	Lines     []struct {
		Units []string `json:"units"`
	} `json:"lines"`
}

func newKey() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// do runs one operation and returns its output, retried as a careful
// client would; home is the server the client prefers.
func (d *driver) do(ctx context.Context, home int, path string, body any, key string) (output, int) {
	b, _ := json.Marshal(body)
	deadline := time.Now().Add(d.budget)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(min(attempt, 5)) * 50 * time.Millisecond
			if time.Now().Add(backoff).After(deadline) {
				return output{Unknown: true}, attempt
			}
			time.Sleep(backoff + rand.N(backoff))
		}
		url := d.urls[(home+attempt)%len(d.urls)]
		out, retry := d.try(ctx, url+path, b, key)
		if !retry {
			return out, attempt + 1
		}
	}
}

func (d *driver) try(ctx context.Context, url string, body []byte, key string) (output, bool) {
	actx, cancel := context.WithTimeout(ctx, d.attempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+d.adminKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := d.http.Do(req)
	if err != nil {
		d.rec.netErrs.Add(1)
		return output{}, true
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		d.rec.netErrs.Add(1)
		return output{}, true
	}
	if resp.StatusCode >= 400 {
		var p problem
		_ = json.Unmarshal(rb, &p)
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			d.rec.busy.Add(1)
			if resp.Header.Get("Retry-After") == "" {
				d.rec.noRetryAfter.Add(1)
			}
			return output{}, true
		case p.Code == "idempotency_in_flight":
			d.rec.inFlight.Add(1)
			return output{}, true
		case resp.StatusCode == http.StatusTooManyRequests:
			d.rec.tooMany.Add(1)
		}
		if p.Code == "" {
			p.Code = fmt.Sprintf("http_%d", resp.StatusCode)
		}
		return output{Code: p.Code}, false
	}
	var h holdJSON
	if err := json.Unmarshal(rb, &h); err != nil {
		return output{Code: "bad_json"}, false
	}
	out := output{ID: h.ID}
	for _, l := range h.Lines {
		out.Units = append(out.Units, l.Units...)
	}
	if t, err := time.Parse(time.RFC3339Nano, h.ExpiresAt); err == nil {
		out.Expires = t.UnixMilli()
	}
	return out, false
}

// myHold is a hold a client got and may act on.
type myHold struct {
	id        string
	q         int64
	confirmed bool
	expires   int64
}

// client runs one buyer until ctx ends.
func (d *driver) client(ctx context.Context, n int, ln lane, home int) {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(time.Now().UnixNano())))
	var mine []myHold
	seq := 0
	for ctx.Err() == nil {
		seq++
		time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
		in := input{Lane: ln.id, Key: newKey()}
		var path string
		var body any
		pick := -1
		if len(mine) > 0 && (len(mine) >= 3 || rng.IntN(2) == 0) {
			pick = rng.IntN(len(mine))
		}
		if ln.kind == laneExpiry && pick >= 0 {
			// Confirm late, some after expiry on purpose; the server must
			// refuse those (hold_expired) and accept the others.
			h := mine[pick]
			wait := time.Until(time.UnixMilli(h.expires)) + time.Duration(rng.IntN(600)-300)*time.Millisecond
			if wait > 0 {
				time.Sleep(wait)
			}
			in.Kind, in.ID = "confirm", h.id
		} else if pick >= 0 {
			h := mine[pick]
			in.ID = h.id
			switch {
			case !h.confirmed && rng.IntN(5) < 3:
				in.Kind = "confirm"
			case !h.confirmed:
				in.Kind = "release"
			case ln.kind == laneRiders:
				in.Kind = "complete"
			default:
				in.Kind = "cancel"
			}
		} else {
			in.Kind, in.Holder = "hold", fmt.Sprintf("c%d-%d", n, seq)
			var line map[string]any
			ttl := 600
			switch ln.kind {
			case lanePool:
				in.Q = 1 + rng.Int64N(4)
				line = map[string]any{"pool": ln.id, "quantity": in.Q}
			case laneExpiry:
				in.Q = 1 + rng.Int64N(2)
				line = map[string]any{"pool": ln.id, "quantity": in.Q}
				ttl = 1
			case laneSeats:
				k := 1 + rng.IntN(3)
				start := rng.IntN(len(ln.units) - k + 1)
				in.Units = append([]string(nil), ln.units[start:start+k]...)
				line = map[string]any{"units": in.Units}
			case laneRiders:
				in.Any = 1 + rng.Int64N(2)
				line = map[string]any{"group": ln.id, "any": in.Any}
			}
			path, body = "/v1/holds", map[string]any{"holder": in.Holder, "lines": []any{line}, "ttl_seconds": ttl}
		}
		if in.Kind != "hold" {
			path, body = "/v1/holds/"+in.ID+"/"+in.Kind, map[string]any{}
		}
		call := time.Now().UnixNano()
		// The storm's end stops new operations, not the ones under way.
		out, attempts := d.do(context.Background(), home, path, body, in.Key)
		ret := time.Now().UnixNano()
		d.rec.add(op{Client: n, In: in, Out: out, Call: call, Ret: ret, Attempts: attempts})
		// What the client knows now.
		switch {
		case in.Kind == "hold" && out.Code == "" && !out.Unknown:
			mine = append(mine, myHold{id: out.ID, q: in.Q, expires: out.Expires})
		case in.Kind != "hold":
			h := mine[pick]
			mine = append(mine[:pick], mine[pick+1:]...)
			if in.Kind == "confirm" && out.Code == "" && !out.Unknown && ln.kind != laneExpiry {
				h.confirmed = true
				mine = append(mine, h)
			}
			// After an unknown outcome the client gives the hold up: the
			// run's end finds out from the database what happened.
		}
	}
}
