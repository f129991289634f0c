package holdfasttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/holdfast/holdfast"
)

// Bench runs the storage benchmarks against the backend h opens:
//
//	HotPool:   every client holds 1 from the same pool (a flash sale's row);
//	ColdPools: every client holds 1 from one of 1,000 pools at random.
//
// Clients are b.RunParallel goroutines, 16 per GOMAXPROCS.
func Bench(b *testing.B, h Harness) {
	b.Run("HotPool", func(b *testing.B) {
		s, _ := h.Open(b)
		MustCreatePool(b, s, "hot", holdfast.MaxCapacity, 0)
		benchHolds(b, s, func(*rand.Rand) string { return "hot" })
	})
	b.Run("ColdPools", func(b *testing.B) {
		s, _ := h.Open(b)
		for i := 0; i < 1000; i++ {
			MustCreatePool(b, s, fmt.Sprintf("cold-%d", i), holdfast.MaxCapacity, 0)
		}
		benchHolds(b, s, func(r *rand.Rand) string { return fmt.Sprintf("cold-%d", r.IntN(1000)) })
	})
}

func benchHolds(b *testing.B, s holdfast.Store, pool func(*rand.Rand) string) {
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(uint64(n.Add(1)), 7))
		for pb.Next() {
			_, err := s.Hold(ctx, holdfast.HoldRequest{
				Holder: fmt.Sprintf("b-%d", n.Add(1)),
				Lines:  []holdfast.Line{{Pool: pool(r), Quantity: 1}},
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "holds/s")
	MustAuditClean(b, s)
}
