package sqlstore

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// BenchmarkHoldWriter builds a batch's writes for n holds of one pool
// line each, keyed: what the claim batch's writer costs in the process,
// apart from the database.
func BenchmarkHoldWriter(b *testing.B) {
	for _, n := range []int{16, 256} {
		holds := make([]holdfast.Hold, n)
		recs := make([]*holdfast.Idempotency, n)
		for i := range holds {
			holds[i] = holdfast.Hold{ID: fmt.Sprintf("h_%08d", i), Holder: fmt.Sprintf("buyer-%d", i), Status: holdfast.StatusHeld,
				ExpiresAt: time.UnixMilli(1_800_000_000_000), Lines: []holdfast.Line{{Pool: "concert", Quantity: 1}}}
			recs[i] = &holdfast.Idempotency{Scope: "k", Key: fmt.Sprintf("key-%d", i), Deferred: true,
				Render: func(result any) holdfast.StoredResponse {
					body, _ := json.Marshal(result)
					return holdfast.StoredResponse{Status: 201, Body: body}
				}}
		}
		for _, d := range []struct {
			name string
			d    Dialect
		}{{"values", Dialect{BlobType: "BLOB"}}, {"arrays", Dialect{BlobType: "bytea", ArrayRows: true}}} {
			b.Run(fmt.Sprintf("%s/holds=%d", d.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					w := newHoldWriter(d.d)
					for i, h := range holds {
						if _, err := w.add(h, false, quotaTake{}, recs[i], 1_700_000_000_000); err != nil {
							b.Fatal(err)
						}
					}
					st := &batchState{pools: map[string]*poolRow{"concert": {capacity: 1 << 40, addHeld: int64(n)}}}
					if stmts, _, _ := w.batchStmts(st); len(stmts) == 0 {
						b.Fatal("no statements")
					}
				}
			})
		}
	}
}

func TestParams(t *testing.T) {
	for _, c := range []struct {
		start, n int
		want     string
	}{{1, 0, ""}, {1, 1, "$1"}, {9, 3, "$9, $10, $11"}, {998, 4, "$998, $999, $1000, $1001"}} {
		if got := params(c.start, c.n); got != c.want {
			t.Errorf("params(%d, %d) = %q, want %q", c.start, c.n, got, c.want)
		}
	}
}
