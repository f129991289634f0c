package holdfast

import (
	"cmp"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Layout is how a group's units sit in a venue: sections of rows of
// seats, each seat a unit with a position and a category, and the stage
// the seats face. A page draws the venue from it; the engine reads it to
// find seats together (Line.Together): seats next to each other in a row
// are adjacent, and a row's seats are listed in the order they sit.
type Layout struct {
	// Stage is where the stage is, in the seats' coordinates: "nearest the
	// stage" is measured from its centre. Optional.
	Stage      *Rect      `json:"stage,omitempty"`
	Categories []Category `json:"categories,omitempty"`
	Sections   []Section  `json:"sections"`
}

// Rect is an area of the venue (x, y its top left corner).
type Rect struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
	W float64 `json:"w"`
	H float64 `json:"h"`
}

// Category is a kind of seat (a price band): its seats are drawn in its
// colour.
type Category struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Color string `json:"color"` // #rgb or #rrggbb
}

// Section is a block of rows (stalls left, balcony…).
type Section struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Rows []Row  `json:"rows"`
}

// Row is a row of seats, listed in the order they sit.
type Row struct {
	Name  string `json:"name"`
	Seats []Seat `json:"seats"`
}

// Seat is one unit of the group, where it is drawn.
type Seat struct {
	Unit     string  `json:"unit"`
	Number   string  `json:"number"`
	X        float64 `json:"x"`
	Y        float64 `json:"y"`
	Category string  `json:"category,omitempty"`
}

// MaxLayoutSeats bounds the seats of one layout (a stadium).
const MaxLayoutSeats = 100_000

var colorRE = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// Validate checks a layout: at least one seat, at most MaxLayoutSeats,
// every unit id valid and once, every category named defined, positions
// finite, names bounded.
func (l *Layout) Validate() error {
	if len(l.Sections) == 0 {
		return Errorf(CodeInvalid, "layout: at least one section")
	}
	cats := map[string]bool{}
	for _, c := range l.Categories {
		if err := ValidateID("layout category", c.ID); err != nil {
			return err
		}
		if cats[c.ID] {
			return Errorf(CodeInvalid, "layout: category %q twice", c.ID)
		}
		cats[c.ID] = true
		if err := validateText("layout category name", c.Name, MaxNameLen, false); err != nil {
			return err
		}
		if !colorRE.MatchString(c.Color) {
			return Errorf(CodeInvalid, "layout: category %q: color must be #rgb or #rrggbb", c.ID)
		}
	}
	if s := l.Stage; s != nil && (!finite(s.X, s.Y, s.W, s.H) || s.W < 0 || s.H < 0) {
		return Errorf(CodeInvalid, "layout: the stage needs a finite x, y and a w, h not below 0")
	}
	units := map[string]bool{}
	for _, sec := range l.Sections {
		if err := ValidateID("layout section", sec.ID); err != nil {
			return err
		}
		if err := validateText("layout section name", sec.Name, MaxNameLen, false); err != nil {
			return err
		}
		for _, row := range sec.Rows {
			if err := validateText("layout row name", row.Name, 40, false); err != nil {
				return err
			}
			for _, seat := range row.Seats {
				if err := ValidateID("unit", seat.Unit); err != nil {
					return err
				}
				if units[seat.Unit] {
					return Errorf(CodeInvalid, "layout: unit %q is two seats", seat.Unit)
				}
				units[seat.Unit] = true
				if len(units) > MaxLayoutSeats {
					return Errorf(CodeInvalid, "layout: at most %d seats", MaxLayoutSeats)
				}
				if err := validateText("layout seat number", seat.Number, 40, false); err != nil {
					return err
				}
				if !finite(seat.X, seat.Y) {
					return Errorf(CodeInvalid, "layout: seat %q needs a finite x and y", seat.Unit)
				}
				if seat.Category != "" && !cats[seat.Category] {
					return Errorf(CodeInvalid, "layout: seat %q is of category %q, which is not defined", seat.Unit, seat.Category)
				}
			}
		}
	}
	if len(units) == 0 {
		return Errorf(CodeInvalid, "layout: at least one seat")
	}
	return nil
}

func finite(fs ...float64) bool {
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

// Units lists the layout's units, in layout order.
func (l *Layout) Units() []string {
	var out []string
	for _, sec := range l.Sections {
		for _, row := range sec.Rows {
			for _, seat := range row.Seats {
				out = append(out, seat.Unit)
			}
		}
	}
	return out
}

// Together picks k free seats next to each other in one row, the block
// nearest the stage (the distance from the stage's centre to the
// block's; without a stage, the first block in layout order; among
// blocks as near, the first in layout order). free reports whether a unit
// is free. nil when no row has k free together.
func (l *Layout) Together(k int, free func(unit string) bool) []string {
	sx, sy, stage := l.centre()
	var best []Seat
	bestDist := math.Inf(1)
	for _, sec := range l.Sections {
		for _, row := range sec.Rows {
			if b, d := nearestIn(row.Seats, k, free, stage, sx, sy); b != nil && d < bestDist {
				best, bestDist = b, d
				if !stage {
					return unitsOf(best)
				}
			}
		}
	}
	return unitsOf(best)
}

// A SeatSearch is a layout's rows in the order a search for seats
// together reads them: nearest the stage first. Made once per layout
// (Search), it serves any number of searches at once.
type SeatSearch struct {
	rows   []searchRow
	stage  bool
	sx, sy float64
}

type searchRow struct {
	seats []Seat
	order int     // in layout order
	bound float64 // the least distance from the stage a block of it can have
}

// Search orders the layout's rows for Together searches.
func (l *Layout) Search() *SeatSearch {
	p := &SeatSearch{}
	p.sx, p.sy, p.stage = l.centre()
	for _, sec := range l.Sections {
		for _, row := range sec.Rows {
			r := searchRow{seats: row.Seats, order: len(p.rows)}
			if p.stage && len(row.Seats) > 0 {
				// A block's centre lies in the box around the row's
				// seats: no block of the row is nearer than the box.
				x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
				for _, s := range row.Seats {
					x0, y0, x1, y1 = min(x0, s.X), min(y0, s.Y), max(x1, s.X), max(y1, s.Y)
				}
				d := math.Hypot(max(x0-p.sx, 0, p.sx-x1), max(y0-p.sy, 0, p.sy-y1))
				// Less a hair, for the rounding of a block's centre.
				r.bound = max(0, d*(1-1e-9)-1e-9)
			}
			p.rows = append(p.rows, r)
		}
	}
	if p.stage {
		slices.SortStableFunc(p.rows, func(a, b searchRow) int { return cmp.Compare(a.bound, b.bound) })
	}
	return p
}

// Together is Layout.Together reading which seats are free a few rows at
// a time. free is asked for the units of the next rows — at least
// minUnits of them, twice as many each time after — and reports which of
// those are free. The search stops as soon as no row left could hold a
// block nearer than the best found: on a venue that fills from the front
// it reads the front rows, not the whole map. The answer is Together's.
func (p *SeatSearch) Together(k, minUnits int, free func(units []string) (func(unit string) bool, error)) ([]string, error) {
	var best []Seat
	bestDist, bestOrder := math.Inf(1), 0
	rows := p.rows
	for i, want := 0, max(minUnits, 1); i < len(rows); want *= 2 {
		j, n := i, 0
		for ; j < len(rows) && (n < want || j == i); j++ {
			n += len(rows[j].seats)
		}
		ids := make([]string, 0, n)
		for _, r := range rows[i:j] {
			for _, s := range r.seats {
				ids = append(ids, s.Unit)
			}
		}
		isFree, err := free(ids)
		if err != nil {
			return nil, err
		}
		for _, r := range rows[i:j] {
			if b, d := nearestIn(r.seats, k, isFree, p.stage, p.sx, p.sy); b != nil && (d < bestDist || d == bestDist && r.order < bestOrder) {
				best, bestDist, bestOrder = b, d, r.order
			}
		}
		i = j
		if best != nil && (!p.stage || i == len(rows) || bestDist < rows[i].bound) {
			break
		}
	}
	return unitsOf(best), nil
}

// centre is the stage's centre, if the layout has a stage.
func (l *Layout) centre() (x, y float64, ok bool) {
	if l.Stage == nil {
		return 0, 0, false
	}
	return l.Stage.X + l.Stage.W/2, l.Stage.Y + l.Stage.H/2, true
}

// nearestIn returns the block of k free seats of a row whose centre is
// nearest (sx, sy), the first of the row among blocks as near (without a
// stage, the row's first block, at distance 0), and its distance; nil
// when the row has no k free together.
func nearestIn(seats []Seat, k int, free func(string) bool, stage bool, sx, sy float64) ([]Seat, float64) {
	var best []Seat
	bestDist := math.Inf(1)
	run := 0
	for i, seat := range seats {
		if !free(seat.Unit) {
			run = 0
			continue
		}
		if run++; run < k {
			continue
		}
		block := seats[i-k+1 : i+1]
		if !stage {
			return block, 0
		}
		var cx, cy float64
		for _, s := range block {
			cx, cy = cx+s.X, cy+s.Y
		}
		if d := math.Hypot(cx/float64(k)-sx, cy/float64(k)-sy); d < bestDist {
			best, bestDist = block, d
		}
	}
	return best, bestDist
}

func unitsOf(seats []Seat) []string {
	if seats == nil {
		return nil
	}
	out := make([]string, len(seats))
	for i, s := range seats {
		out[i] = s.Unit
	}
	return out
}

// NaturalOrder returns unit ids sorted the way people read seat numbers:
// digit runs by value, so A-2 comes before A-10 (the API and the stores
// order ids bytewise).
func NaturalOrder(ids []string) []string {
	out := slices.Clone(ids)
	slices.SortStableFunc(out, CompareNatural)
	return out
}

// CompareNatural compares two ids in NaturalOrder.
func CompareNatural(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
