package holdfasttest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/holdfast/holdfast"
)

// hall is a small venue: rows A (nearest the stage) to D of 8 seats each,
// the stage above row A; the middle of row A is VIP.
func hall() *holdfast.Layout {
	l := &holdfast.Layout{
		Stage:      &holdfast.Rect{X: 5, Y: -20, W: 80, H: 10},
		Categories: []holdfast.Category{{ID: "vip", Name: "VIP", Color: "#c33"}, {ID: "std", Name: "Standard", Color: "#36c"}},
	}
	sec := holdfast.Section{ID: "stalls", Name: "Stalls"}
	for r, name := range []string{"A", "B", "C", "D"} {
		row := holdfast.Row{Name: name}
		for n := 1; n <= 8; n++ {
			cat := "std"
			if r == 0 && n >= 3 && n <= 6 {
				cat = "vip"
			}
			row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("%s%d", name, n), Number: fmt.Sprint(n), X: float64(n * 10), Y: float64(r * 10), Category: cat})
		}
		sec.Rows = append(sec.Rows, row)
	}
	l.Sections = []holdfast.Section{sec}
	return l
}

// rowOf maps each seat of a layout to its row and place in it.
func rowOf(l *holdfast.Layout) map[string][2]int {
	out := map[string][2]int{}
	r := 0
	for _, sec := range l.Sections {
		for _, row := range sec.Rows {
			for i, seat := range row.Seats {
				out[seat.Unit] = [2]int{r, i}
			}
			r++
		}
	}
	return out
}

// together reports whether units are next to each other in one row.
func together(where map[string][2]int, units []string) bool {
	var places []int
	for _, u := range units {
		p, ok := where[u]
		if !ok || p[0] != where[units[0]][0] {
			return false
		}
		places = append(places, p[1])
	}
	slices.Sort(places)
	return places[len(places)-1]-places[0] == len(places)-1
}

// A group made with a layout: its seats are its units, the layout reads
// back as made, and {group, any: k, together: true} takes k seats next to
// each other in one row, nearest the stage, or refuses, taking nothing.
func testSeatsTogether(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	l := hall()
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", Layout: l}); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Group(ctx, "hall"); err != nil || g.Units != 32 || g.Free != 32 || g.Layout != nil {
		t.Fatalf("a group made with a layout of 32 seats: %+v, %v", g, err)
	}
	if lr, ok := s.(interface {
		GroupLayout(ctx context.Context, id string) (*holdfast.Layout, error)
	}); ok {
		got, err := lr.GroupLayout(ctx, "hall")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(l, got); diff != "" {
			t.Fatalf("the layout read back (-made +read):\n%s", diff)
		}
		_, err = lr.GroupLayout(ctx, "nope")
		wantCode(t, err, holdfast.CodeNotFound, -1)
	}
	where := rowOf(l)

	// Nearest the stage: the middle of row A.
	a := MustHold(t, s, "ann", holdfast.Line{Group: "hall", Any: 4, Together: true})
	if got := a.Lines[0].Units; !slices.Equal(sortedCopy(got), []string{"A3", "A4", "A5", "A6"}) {
		t.Fatalf("4 together nearest the stage: %v, want A3–A6", got)
	}
	// Row A has 2 + 2 left: 3 together are in row B, its middle.
	b := MustHold(t, s, "bob", holdfast.Line{Group: "hall", Any: 3, Together: true})
	if got := b.Lines[0].Units; !together(where, got) || where[got[0]][0] != 1 {
		t.Fatalf("3 together with row A broken up: %v, want a block of row B", got)
	}
	// Two lines of one hold never share a seat.
	c := MustHold(t, s, "cat", holdfast.Line{Group: "hall", Any: 2, Together: true}, holdfast.Line{Group: "hall", Any: 2, Together: true})
	if u := append(slices.Clone(c.Lines[0].Units), c.Lines[1].Units...); len(u) != 4 || len(uniq(u)) != 4 || !together(where, c.Lines[0].Units) || !together(where, c.Lines[1].Units) {
		t.Fatalf("two pairs in one hold: %+v", c.Lines)
	}

	// Refusals take nothing: more than a row, a group without a layout,
	// together on another line form.
	before := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`)
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Group: "hall", Any: 9, Together: true}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	MustCreateGroup(t, s, "bare", false, "x1", "x2")
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: "nope", Quantity: 1}, {Group: "bare", Any: 2, Together: true}}})
	if code := holdfast.ErrorCode(err); code != holdfast.CodeNotFound && code != holdfast.CodeInvalid {
		t.Fatalf("together on a group without a layout: %v", err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Group: "bare", Any: 2, Together: true}}})
	wantCode(t, err, holdfast.CodeInvalid, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Units: []string{"D1"}, Together: true}}})
	wantCode(t, err, holdfast.CodeInvalid, 0)
	if after := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`); after != before {
		t.Fatalf("refused holds took seats: %d taken before, %d after", before, after)
	}
	// A bad layout is refused whole: no group, no units.
	bad := hall()
	bad.Sections[0].Rows[1].Seats[0].Unit = "A1"
	_, err = s.CreateGroup(ctx, holdfast.Group{ID: "bad", Layout: bad})
	wantCode(t, err, holdfast.CodeInvalid, -1)
	bad = hall()
	bad.Sections[0].Rows[0].Seats[0].Category = "gold"
	_, err = s.CreateGroup(ctx, holdfast.Group{ID: "bad", Layout: bad})
	wantCode(t, err, holdfast.CodeInvalid, -1)
	_, err = s.Group(ctx, "bad")
	wantCode(t, err, holdfast.CodeNotFound, -1)
}

// Buyers asking for 2 to 4 seats together, all at once, until none are
// left together: no seat is had twice, and every hold's seats are next to
// each other in one row.
// On the small hall, and on a bigger one whose seats a pick reads a few
// rows at a time (its first read is ten rows of fifty), its first nine
// rows taken before the race but for single seats, so the race is for
// the tenth row and the two behind it (a second read).
func raceSeatsTogether(t *testing.T, h Harness) {
	t.Run("hall", func(t *testing.T) { raceTogetherIn(t, h, hall(), 12, nil) })
	var front []holdfast.Line
	for r := range 9 {
		var l holdfast.Line
		for n := range 50 {
			if n%7 != 3 {
				l.Units = append(l.Units, fmt.Sprintf("R%d-%d", r, n))
			}
		}
		front = append(front, l)
	}
	t.Run("big", func(t *testing.T) { raceTogetherIn(t, h, bigHall(), 16, front) })
}

// bigHall is 12 rows of 50 seats, the stage in front of the middle.
func bigHall() *holdfast.Layout {
	l := &holdfast.Layout{Stage: &holdfast.Rect{X: 200, Y: -20, W: 100, H: 10}}
	sec := holdfast.Section{ID: "floor", Name: "Floor"}
	for r := range 12 {
		row := holdfast.Row{Name: fmt.Sprint("R", r)}
		for n := range 50 {
			row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("R%d-%d", r, n), Number: fmt.Sprint(n), X: float64(n * 10), Y: float64(r * 10)})
		}
		sec.Rows = append(sec.Rows, row)
	}
	l.Sections = []holdfast.Section{sec}
	return l
}

// raceTogetherIn races buyers for seats together on layout, after each of
// taken (lines of named seats) was held.
func raceTogetherIn(t *testing.T, h Harness, layout *holdfast.Layout, buyers int, taken []holdfast.Line) {
	s, reopen := h.Open(t)
	ctx := ctxT(t)
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", Layout: layout}); err != nil {
		t.Fatal(err)
	}
	where := rowOf(layout)
	var mu sync.Mutex
	got := map[string]string{}
	for _, l := range taken { // a hold a line: a strategy may bound what one names
		hd := MustHold(t, s, "front", l)
		for _, u := range l.Units {
			got[u] = hd.ID
		}
	}
	refused := map[int64]bool{} // the sizes of block a buyer was refused
	var wg sync.WaitGroup
	for w := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if w%2 == 1 {
				st = reopen(t)
			}
			k := int64(2 + w%3)
			for range 20 {
				hd, err := st.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", w), Lines: []holdfast.Line{{Group: "hall", Any: k, Together: true}}})
				if err != nil {
					if c := holdfast.ErrorCode(err); c != holdfast.CodeUnavailable {
						t.Errorf("buyer %d: %v", w, err)
					}
					mu.Lock()
					refused[k] = true
					mu.Unlock()
					return
				}
				if !together(where, hd.Lines[0].Units) || len(hd.Lines[0].Units) != int(k) {
					t.Errorf("buyer %d got %v, not %d together", w, hd.Lines[0].Units, k)
				}
				mu.Lock()
				for _, u := range hd.Lines[0].Units {
					if other, ok := got[u]; ok {
						t.Errorf("seat %s twice: %s and %s", u, other, hd.ID)
					}
					got[u] = hd.ID
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`); n != int64(len(got)) {
		t.Fatalf("%d seats taken in the database, %d answered", n, len(got))
	}
	// Seats were only taken, never given back: a block free now was free
	// when a buyer was told there was none.
	for k := range refused {
		if b := layout.Together(int(k), func(u string) bool { _, taken := got[u]; return !taken }); b != nil {
			t.Errorf("a buyer of %d together was refused unavailable, and %v are still free together", k, b)
		}
	}
	rep, err := s.Audit(ctx)
	if err != nil || rep.DoubleBooked > 0 || len(rep.Differences) > 0 {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}

func sortedCopy(s []string) []string { c := slices.Clone(s); slices.Sort(c); return c }

func uniq(s []string) []string { c := sortedCopy(s); return slices.Compact(c) }
