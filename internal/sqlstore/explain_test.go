package sqlstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

// explain (the refusal a claim gives, read outside its transaction) and
// the claims are encodings of the same rules: limit before sold out, named
// units before "any" lines, the first failing line in request order. The
// ordinary path takes its refusal from explain, so there they differ only
// in whether the claim succeeds; a coalesced batch decides definite
// refusals itself (refusal in coalesce.go), a second encoding. On thousands of random requests against a changing state, with
// nothing else running, they must agree: explain says nil exactly when the
// claim succeeds, and otherwise names the claim's code and line.
func TestExplainAgreesWithClaim(t *testing.T) {
	ctx := context.Background()
	for _, coalesce := range []bool{false, true} {
		t.Run(fmt.Sprint("coalesce=", coalesce), func(t *testing.T) {
			s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"), sqlite.Options{NoCoalesce: !coalesce})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			holdfasttest.MustCreatePool(t, s, "p1", 12, 0)
			holdfasttest.MustCreatePool(t, s, "p2", 30, 3)
			var seats []string
			for i := range 12 {
				seats = append(seats, fmt.Sprintf("s%02d", i))
			}
			holdfasttest.MustCreateGroup(t, s, "hall", false, seats...)
			holdfasttest.MustCreateGroup(t, s, "fleet", true, "r1", "r2", "r3")
			rng := rand.New(rand.NewPCG(7, uint64(len(seats))))
			pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
			var held []string
			agree, refused := 0, 0
			for n := range 1500 {
				var lines []holdfast.Line
				for range 1 + rng.IntN(3) {
					switch rng.IntN(4) {
					case 0:
						lines = append(lines, holdfast.Line{Pool: pick([]string{"p1", "p2", "nope"}), Quantity: 1 + rng.Int64N(4)})
					case 1:
						lines = append(lines, holdfast.Line{Units: []string{pick(seats), pick(append(seats, "ghost"))}})
					default:
						lines = append(lines, holdfast.Line{Group: pick([]string{"hall", "fleet", "void"}), Any: 1 + rng.Int64N(3)})
					}
				}
				r := holdfast.HoldRequest{Holder: pick([]string{"a", "b", "c"}), Lines: lines}
				if r.Validate(holdfast.Config{}.WithDefaults()) != nil {
					continue
				}
				explained := s.Explain(ctx, r)
				h, err := s.Hold(ctx, r)
				switch {
				case (explained == nil) != (err == nil):
					t.Fatalf("request %d %+v: explain says %v, the claim %v", n, r, explained, err)
				case err != nil && (holdfast.ErrorCode(err) != holdfast.ErrorCode(explained) || holdfast.ErrorLine(err) != holdfast.ErrorLine(explained)):
					t.Fatalf("request %d %+v: explain says %s at line %d (%v), the claim %s at line %d (%v)", n, r,
						holdfast.ErrorCode(explained), holdfast.ErrorLine(explained), explained, holdfast.ErrorCode(err), holdfast.ErrorLine(err), err)
				case err != nil:
					refused++
				default:
					held = append(held, h.ID)
				}
				agree++
				// Let capacity come back now and then, so both answers are
				// exercised all along.
				if len(held) > 0 && rng.IntN(3) == 0 {
					i := rng.IntN(len(held))
					if _, err := s.Release(ctx, held[i]); err != nil {
						t.Fatal(err)
					}
					held = append(held[:i], held[i+1:]...)
				}
			}
			if refused < agree/10 || refused > agree*9/10 {
				t.Fatalf("%d of %d requests refused: the test does not exercise both answers", refused, agree)
			}
		})
	}
}
