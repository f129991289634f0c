package holdfast_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/holdfast/holdfast"
)

// togetherByHand is the pick as first written: every block of the
// venue, in layout order, the nearest kept (strictly nearer replaces).
func togetherByHand(l *holdfast.Layout, k int, free func(string) bool) []string {
	var best []string
	bestDist := math.Inf(1)
	for _, sec := range l.Sections {
		for _, row := range sec.Rows {
			for i := 0; i+k <= len(row.Seats); i++ {
				block := row.Seats[i : i+k]
				if !slices.ContainsFunc(block, func(s holdfast.Seat) bool { return !free(s.Unit) }) {
					d := 0.0
					if l.Stage != nil {
						var cx, cy float64
						for _, s := range block {
							cx, cy = cx+s.X, cy+s.Y
						}
						d = math.Hypot(cx/float64(k)-(l.Stage.X+l.Stage.W/2), cy/float64(k)-(l.Stage.Y+l.Stage.H/2))
					}
					if d < bestDist {
						bestDist, best = d, nil
						for _, s := range block {
							best = append(best, s.Unit)
						}
					}
				}
			}
		}
	}
	return best
}

// randomVenue is a venue of a few sections of rows of uneven length,
// placed anywhere (rows not in order of distance), with or without a
// stage, some seats on the same spot as others.
func randomVenue(rng *rand.Rand) *holdfast.Layout {
	l := &holdfast.Layout{}
	if rng.IntN(4) > 0 {
		l.Stage = &holdfast.Rect{X: rng.Float64() * 100, Y: rng.Float64() * 100, W: rng.Float64() * 40, H: 5}
	}
	n := 0
	for s := range 1 + rng.IntN(3) {
		sec := holdfast.Section{ID: fmt.Sprint("s", s)}
		for range 1 + rng.IntN(12) {
			row := holdfast.Row{}
			x, y := rng.Float64()*200, rng.Float64()*200
			for range rng.IntN(15) {
				row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprint("u", n), X: x, Y: y})
				n++
				x += float64(rng.IntN(3)) * 2.5 // 0: a seat on the spot of the one before
			}
			sec.Rows = append(sec.Rows, row)
		}
		l.Sections = append(l.Sections, sec)
	}
	return l
}

// A SeatSearch, reading a few rows at a time, gives Together's
// answer, which is the first pick's: on random venues, free seats and
// block sizes.
func TestSeatSearchIsTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		l := randomVenue(rng)
		taken := map[string]bool{}
		for _, u := range l.Units() {
			taken[u] = rng.IntN(100) < 20+i%70
		}
		free := func(u string) bool { return !taken[u] }
		k := 1 + rng.IntN(5)
		want := togetherByHand(l, k, free)
		if got := l.Together(k, free); !slices.Equal(got, want) {
			t.Fatalf("venue %d, %d together: Together %v, by hand %v", i, k, got, want)
		}
		asked := map[string]bool{}
		got, err := l.Search().Together(k, 1+rng.IntN(40), func(units []string) (func(string) bool, error) {
			for _, u := range units {
				if asked[u] {
					t.Fatalf("venue %d: unit %s asked twice", i, u)
				}
				asked[u] = true
			}
			return free, nil
		})
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("venue %d, %d together: SeatSearch %v (%v), by hand %v", i, k, got, err, want)
		}
	}
}

// On a hall of 100,000 seats whose front rows are taken, the pick reads
// the rows up to the first with room, and a few more, not the hall.
func TestSeatSearchReadsTheFront(t *testing.T) {
	l := &holdfast.Layout{Stage: &holdfast.Rect{X: 0, Y: -20, W: 500, H: 10}}
	sec := holdfast.Section{ID: "hall"}
	for r := range 2000 {
		row := holdfast.Row{}
		for s := range 50 {
			row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("%d-%d", r, s), X: float64(s * 10), Y: float64(r * 10)})
		}
		sec.Rows = append(sec.Rows, row)
	}
	l.Sections = []holdfast.Section{sec}
	taken := func(u string) bool { var r, s int; fmt.Sscanf(u, "%d-%d", &r, &s); return r < 100 }
	read := 0
	got, err := l.Search().Together(4, 500, func(units []string) (func(string) bool, error) {
		read += len(units)
		return func(u string) bool { return !taken(u) }, nil
	})
	if want := l.Together(4, func(u string) bool { return !taken(u) }); err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
	if read > 20_000 {
		t.Fatalf("read %d seats of 100,000 to find a block in row 100", read)
	}
	t.Logf("read %d seats for %v", read, got)
}
