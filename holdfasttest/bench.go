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
//	ColdPools: every client holds 1 from one of 1,000 pools at random;
//	HotPoolQuota, HotPoolConfirmPart, HotPoolConfirmPaid, HotPoolPaid: the
//	hot pool's holds under a key's quota, then confirmed in part or paid,
//	or booked paid;
//	WaitlistOffers: a line of 200 served in one round of offers;
//	SeatsTogether: holds of 2 to 4 seats together, best available, on a
//	100,000-seat venue put on sale the moment it is made.
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
	// The hot pool, each hold counted against one of 64 keys' quotas.
	b.Run("HotPoolQuota", func(b *testing.B) {
		s, _ := h.Open(b)
		MustCreatePool(b, s, "hot", holdfast.MaxCapacity, 0)
		for k := range 64 {
			mustQuotaKey(b, s, fmt.Sprint("k", k), holdfast.MaxCapacity)
		}
		benchDo(b, s, func(ctx context.Context, r *rand.Rand, n int64) error {
			k := fmt.Sprint("k", r.IntN(64))
			_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("b-", n), Owner: holdfast.KeyOwner(k), QuotaKey: k,
				Lines: []holdfast.Line{{Pool: "hot", Quantity: 1}}})
			return err
		})
	})
	// The hot pool, each a hold of 2 then a confirm that keeps 1 (a
	// partial confirm: one goes back).
	b.Run("HotPoolConfirmPart", func(b *testing.B) {
		s, _ := h.Open(b)
		MustCreatePool(b, s, "hot", holdfast.MaxCapacity, 0)
		keep := []holdfast.PartLine{{Line: 0, Quantity: 1}}
		benchDo(b, s, func(ctx context.Context, r *rand.Rand, n int64) error {
			hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("b-", n), Lines: []holdfast.Line{{Pool: "hot", Quantity: 2}}})
			if err == nil {
				_, err = s.ConfirmPart(ctx, hd.ID, "", keep)
			}
			return err
		})
	})
	// The hot pool, each a hold then a confirm that records its payment.
	b.Run("HotPoolConfirmPaid", func(b *testing.B) {
		s, _ := h.Open(b)
		MustCreatePool(b, s, "hot", holdfast.MaxCapacity, 0)
		benchDo(b, s, func(ctx context.Context, r *rand.Rand, n int64) error {
			hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("b-", n), Lines: []holdfast.Line{{Pool: "hot", Quantity: 1}}})
			if err == nil {
				_, err = s.ConfirmPaid(ctx, hd.ID, eur(fmt.Sprint("pi_", n), 900), nil)
			}
			return err
		})
	})
	// The hot pool, each a booking that records its payment.
	b.Run("HotPoolPaid", func(b *testing.B) {
		s, _ := h.Open(b)
		MustCreatePool(b, s, "hot", holdfast.MaxCapacity, 0)
		benchDo(b, s, func(ctx context.Context, r *rand.Rand, n int64) error {
			_, err := s.BookPaid(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("b-", n), Lines: []holdfast.Line{{Pool: "hot", Quantity: 1}}},
				eur(fmt.Sprint("pi_", n), 900))
			return err
		})
	})
	// "Best available" on a venue of 2,000 rows of 50 seats, the stage in
	// front: each hold asks 2 to 4 seats together, the nearest free.
	b.Run("SeatsTogether", func(b *testing.B) {
		s, _ := h.Open(b)
		l := &holdfast.Layout{Stage: &holdfast.Rect{X: 0, Y: -20, W: 500, H: 10}}
		sec := holdfast.Section{ID: "stalls", Name: "Stalls"}
		for r := range 2000 {
			row := holdfast.Row{Name: fmt.Sprint(r + 1)}
			for n := range 50 {
				row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("r%d-%d", r, n), Number: fmt.Sprint(n + 1), X: float64(n * 10), Y: float64(r * 10)})
			}
			sec.Rows = append(sec.Rows, row)
		}
		l.Sections = []holdfast.Section{sec}
		if _, err := s.CreateGroup(context.Background(), holdfast.Group{ID: "venue", Layout: l}); err != nil {
			b.Fatal(err)
		}
		var seats atomic.Int64
		benchDo(b, s, func(ctx context.Context, r *rand.Rand, n int64) error {
			hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("b-", n), Lines: []holdfast.Line{{Group: "venue", Any: 2 + r.Int64N(3), Together: true}}})
			if err == nil {
				seats.Add(int64(len(hd.Lines[0].Units)))
			}
			return err
		})
		b.ReportMetric(float64(seats.Load())/b.Elapsed().Seconds(), "seats/s")
	})
	// A pool's waitlist served: 200 waiting for one unit each, 200 units
	// come back, one round of offers (OfferWaitlists, the offerer's tick)
	// makes the offers. Only the round is timed; each op is one offer.
	b.Run("WaitlistOffers", func(b *testing.B) {
		s, _ := h.Open(b)
		ctx := context.Background()
		const line = 200
		b.ResetTimer()
		for done := 0; done < b.N; done += line {
			b.StopTimer()
			pool := fmt.Sprint("w", done)
			MustCreatePool(b, s, pool, line, 0)
			all := MustHold(b, s, "all", holdfast.Line{Pool: pool, Quantity: line})
			for i := range line {
				if _, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: pool, Holder: fmt.Sprint("w-", i), Quantity: 1}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := s.Release(ctx, all.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if n, err := s.OfferWaitlists(ctx); err != nil || n != line {
				b.Fatalf("OfferWaitlists: %d offers, %v; want %d", n, err, line)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "offers/s")
		MustAuditClean(b, s)
	})
}

func benchHolds(b *testing.B, s holdfast.Store, pool func(*rand.Rand) string) {
	benchDo(b, s, func(ctx context.Context, r *rand.Rand, n int64) error {
		_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b-%d", n), Lines: []holdfast.Line{{Pool: pool(r), Quantity: 1}}})
		return err
	})
}

// benchDo runs do from 16 goroutines a CPU; n is unique to each call.
func benchDo(b *testing.B, s holdfast.Store, do func(ctx context.Context, r *rand.Rand, n int64) error) {
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(uint64(n.Add(1)), 7))
		for pb.Next() {
			if err := do(ctx, r, n.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "holds/s")
	MustAuditClean(b, s)
}
