// Package demo is holdfast serve --demo's sample data: a concert pool, a
// seat map and a rider fleet to try the API, the CLI and the venue map on.
package demo

import (
	"context"
	"fmt"
	"math"

	"github.com/holdfast/holdfast"
)

// Seed creates the demo's sample data where it is absent: a concert
// pool of 10 tickets (4 per holder), a 10×20 seat map and 25 riders.
func Seed(ctx context.Context, s holdfast.Store) error {
	ignoreExists := func(err error) error {
		if holdfast.ErrorCode(err) == holdfast.CodeConflict {
			return nil
		}
		return err
	}
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "concert", Name: "Concert (general admission)", Capacity: 10, PerHolderLimit: 4}); ignoreExists(err) != nil {
		return err
	}
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", Name: "Concert hall", Layout: hall()}); ignoreExists(err) != nil {
		return err
	}
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "riders", Name: "Delivery riders", Reusable: true}); ignoreExists(err) != nil {
		return err
	} else if err == nil {
		var riders []string
		for n := 1; n <= 25; n++ {
			riders = append(riders, fmt.Sprintf("r-%02d", n))
		}
		return s.AddUnits(ctx, "riders", riders)
	}
	return nil
}

// hall is the demo's venue: a stage, and rows A (nearest it) to J
// of 20 seats curving around it in three sections — left (seats 1–5),
// centre (6–15) and right (16–20) — the front centre premium.
func hall() *holdfast.Layout {
	l := &holdfast.Layout{
		Stage: &holdfast.Rect{X: 250, Y: 10, W: 300, H: 44},
		Categories: []holdfast.Category{
			{ID: "premium", Name: "Premium (front centre)", Color: "#c0392b"},
			{ID: "stalls", Name: "Stalls", Color: "#2f6fb0"},
			{ID: "side", Name: "Sides", Color: "#23867a"},
		},
	}
	sections := []struct {
		id, name string
		from, to int
		gap      float64
	}{{"left", "Left", 1, 5, -26}, {"centre", "Centre", 6, 15, 0}, {"right", "Right", 16, 20, 26}}
	for _, sec := range sections {
		out := holdfast.Section{ID: sec.id, Name: sec.name}
		for r := range 10 {
			row := holdfast.Row{Name: string(rune('A' + r))}
			for n := sec.from; n <= sec.to; n++ {
				x := 400 + 30*(float64(n)-10.5) + sec.gap
				y := 100 + 32*float64(r) + 0.0011*(x-400)*(x-400)
				cat := "stalls"
				switch {
				case sec.id != "centre":
					cat = "side"
				case r < 3:
					cat = "premium"
				}
				row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("%s-%d", row.Name, n), Number: fmt.Sprint(n),
					X: math.Round(x*10) / 10, Y: math.Round(y*10) / 10, Category: cat})
			}
			out.Rows = append(out.Rows, row)
		}
		l.Sections = append(l.Sections, out)
	}
	return l
}
