package holdfasttest

import (
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/webhook"
)

// implements reports whether s implements capability c's contract.
func implements(s any, c holdfast.Capability) bool {
	var ok bool
	switch c {
	case holdfast.CapLayouts:
		_, ok = s.(holdfast.GroupLayouts)
	case holdfast.CapUnitPages:
		_, ok = s.(holdfast.UnitPages)
	case holdfast.CapEventTail:
		_, ok = s.(holdfast.EventTail)
	case holdfast.CapConfig:
		_, ok = s.(holdfast.Configured)
	case holdfast.CapStats:
		_, ok = s.(holdfast.StatsReporter)
	case holdfast.CapWebhookQueue:
		_, ok = s.(webhook.Queue)
	}
	return ok
}

// testCapabilities checks the backend's declaration of its optional
// contracts: each declared one is implemented and works, none is
// implemented undeclared (a caller that type-asserts would find a
// contract nobody tests), and the harness's Capabilities, when set, are
// exactly what is declared.
func testCapabilities(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	var declared []holdfast.Capability
	if c, ok := s.(holdfast.Capable); ok {
		declared = c.Capabilities()
	}
	for _, c := range declared {
		if !slices.Contains(holdfast.AllCapabilities, c) {
			t.Errorf("%T declares %q, which is no capability", s, c)
		}
	}
	for _, c := range holdfast.AllCapabilities {
		switch d, i := slices.Contains(declared, c), implements(s, c); {
		case d && !i:
			t.Errorf("%T declares %q but does not implement its contract", s, c)
		case i && !d:
			t.Errorf("%T implements %q's contract without declaring it", s, c)
		}
	}
	if h.Capabilities != nil {
		got, want := slices.Sorted(slices.Values(declared)), slices.Sorted(slices.Values(h.Capabilities))
		if !slices.Equal(got, want) {
			t.Errorf("%T declares %q, the backend promises %q", s, got, want)
		}
	}
	if t.Failed() {
		return
	}

	// Each declared contract does what it says.
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", Layout: hall()}); err != nil {
		t.Fatal(err)
	}
	held := MustHold(t, s, "ann", holdfast.Line{Units: []string{"A1", "A2"}})
	for _, c := range holdfast.AllCapabilities { // in this order: the feed's check releases the hold
		if !slices.Contains(declared, c) {
			continue
		}
		switch c {
		case holdfast.CapLayouts:
			l, err := s.(holdfast.GroupLayouts).GroupLayout(ctx, "hall")
			if err != nil || l == nil || len(l.Sections) != 1 || len(l.Sections[0].Rows) != 4 {
				t.Errorf("GroupLayout: %+v, %v; want the hall's 4 rows", l, err)
			}
			if _, err := s.(holdfast.GroupLayouts).GroupLayout(ctx, "nowhere"); holdfast.CodeOf(err) != holdfast.CodeNotFound {
				t.Errorf("GroupLayout of no group: %v, want not_found", err)
			}
		case holdfast.CapUnitPages:
			p := s.(holdfast.UnitPages)
			var all []string
			for after := ""; ; {
				units, next, err := p.UnitsPage(ctx, "hall", "", after, 10)
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range units {
					all = append(all, u.ID)
				}
				if next == "" {
					break
				}
				after = next
			}
			if len(all) != 32 || !slices.IsSorted(all) {
				t.Errorf("UnitsPage by 10 listed %d units (%v), want the hall's 32 in order", len(all), all)
			}
			heldOnly, _, err := p.UnitsPage(ctx, "hall", holdfast.UnitHeld, "", 100)
			if err != nil || len(heldOnly) != 2 {
				t.Errorf("UnitsPage of held units: %d, %v; want A1 and A2", len(heldOnly), err)
			}
			st, err := p.UnitStatuses(ctx, "hall")
			if err != nil || len(st) != 32 || st[0] != 'h' || st[1] != 'h' || st[2] != 'f' {
				t.Errorf("UnitStatuses: %q, %v; want hh then f… for A1 A2 held", st, err)
			}
		case holdfast.CapEventTail:
			// Once the hold's event is visible, the tail is at or after
			// it: nothing follows until the release.
			has := func(typ holdfast.EventType) func([]holdfast.Event) bool {
				return func(es []holdfast.Event) bool {
					return slices.ContainsFunc(es, func(e holdfast.Event) bool { return e.Type == typ && e.HoldID == held.ID })
				}
			}
			feedFrom(t, s, "", has(holdfast.EventHoldCreated))
			cur, err := s.(holdfast.EventTail).LastEventCursor(ctx)
			if err != nil || cur == "" {
				t.Fatalf("LastEventCursor after a hold: %q, %v", cur, err)
			}
			after, _, err := s.Events(ctx, cur, 10)
			if err != nil || len(after) != 0 {
				t.Errorf("events after the last cursor: %d, %v; want none", len(after), err)
			}
			if _, err := s.Release(ctx, held.ID); err != nil {
				t.Fatal(err)
			}
			after = feedFrom(t, s, cur, has(holdfast.EventHoldReleased))
			if len(after) != 1 || after[0].Type != holdfast.EventHoldReleased {
				t.Errorf("events after the last cursor, then a release: %+v; want the release", after)
			}
		case holdfast.CapConfig:
			if c := s.(holdfast.Configured).Config(); c.DefaultTTL <= 0 || c.MaxTTL < c.DefaultTTL {
				t.Errorf("Config: %+v, want the TTL bounds with defaults filled in", c)
			}
		case holdfast.CapStats:
			if st := s.(holdfast.StatsReporter).Stats(); st.Max <= 0 {
				t.Errorf("Stats: %+v, want the connection pool's size", st)
			}
		case holdfast.CapWebhookQueue:
			if _, err := s.(webhook.Queue).QueueDeliveries(ctx, time.Now(), 10); err != nil {
				t.Errorf("QueueDeliveries: %v", err)
			}
		}
	}
}
