package chaos

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The models are the sequential specification each lane must look like,
// whatever ran concurrently, crashed or was retried: a counted pool whose
// grants never pass its capacity and whose sold_out is true when said,
// and a set of exclusive units (seats, riders) where a unit has one hold
// at a time and unavailable is true when said.
//
// Every operation's output is known by the time the checker runs: one
// without an answer is resolved from the database (see resolve) and kept,
// with no return time, only if it took effect.

// holdState is one active hold in a model.
type holdState struct {
	q         int64
	units     []string
	confirmed bool
	expires   int64 // ns; the flash lane only
}

// state is a model's state; key is its canonical form, for Equal and Hash.
type state struct {
	used  int64
	holds map[string]holdState
	taken map[string]string // unit → hold
	// t is the earliest time (ns) the last operation can have taken
	// effect at: the flash lane's model of time (see expiryStep).
	t   int64
	key string
}

func newState(used int64, holds map[string]holdState, taken map[string]string) *state {
	return newStateAt(used, holds, taken, 0)
}

func newStateAt(used int64, holds map[string]holdState, taken map[string]string, t int64) *state {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%d|", used, t)
	for _, id := range slices.Sorted(maps.Keys(holds)) {
		h := holds[id]
		fmt.Fprintf(&b, "%s:%d:%v:%d:%s;", id, h.q, h.confirmed, h.expires, strings.Join(h.units, ","))
	}
	return &state{used: used, holds: holds, taken: taken, key: b.String()}
}

func (s *state) String() string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(s.holds)) {
		h := s.holds[id]
		st := "held"
		if h.confirmed {
			st = "confirmed"
		}
		if h.units != nil {
			parts = append(parts, fmt.Sprintf("%s %s %v", id, st, h.units))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s ×%d", id, st, h.q))
		}
	}
	return fmt.Sprintf("used %d; %s", s.used, strings.Join(parts, "; "))
}

// with returns a copy of s with hold id set to h (or removed if h is nil).
func (s *state) with(id string, h *holdState, free bool) *state {
	holds := maps.Clone(s.holds)
	taken := maps.Clone(s.taken)
	used := s.used
	if old, ok := holds[id]; ok {
		if free {
			used -= old.q
			for _, u := range old.units {
				delete(taken, u)
			}
		}
		delete(holds, id)
	}
	if h != nil {
		if _, existed := s.holds[id]; !existed {
			used += h.q
			for _, u := range h.units {
				taken[u] = id
			}
		}
		holds[id] = *h
	}
	return newStateAt(used, holds, taken, s.t)
}

// laneModel is the model for one lane.
func laneModel(ln lane) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return newState(0, map[string]holdState{}, map[string]string{}) },
		Step: func(st, in, out any) (bool, any) {
			if ln.kind == laneExpiry {
				return expiryStep(ln, st.(*state), in.(input), out.(output))
			}
			return step(ln, st.(*state), in.(input), out.(output))
		},
		Equal: func(a, b any) bool { return a.(*state).key == b.(*state).key },
		Hash: func(s any) uint64 {
			h := fnv.New64a()
			h.Write([]byte(s.(*state).key))
			return h.Sum64()
		},
		DescribeOperation: func(in, out any) string {
			i, o := in.(input), out.(output)
			var what string
			switch {
			case i.Kind == "hold" && i.Q > 0:
				what = fmt.Sprintf("hold ×%d", i.Q)
			case i.Kind == "hold" && i.Any > 0:
				what = fmt.Sprintf("hold any %d", i.Any)
			case i.Kind == "hold":
				what = fmt.Sprintf("hold %v", i.Units)
			default:
				what = i.Kind + " " + i.ID
			}
			res := o.Code
			switch {
			case res == "" && i.Kind == "hold":
				res = o.ID
				if len(o.Units) > 0 && i.Q == 0 {
					res += fmt.Sprint(" ", o.Units)
				}
			case res == "":
				res = "ok"
			}
			if o.Unknown {
				res += " (no answer; found in the database)"
			}
			return what + " → " + res
		},
		DescribeState: func(s any) string { return s.(*state).String() },
	}
}

func step(ln lane, s *state, i input, o output) (bool, any) {
	h, exists := s.holds[i.ID]
	switch i.Kind {
	case "hold":
		switch o.Code {
		case "":
			nh := holdState{q: i.Q}
			if ln.kind == lanePool {
				return s.used+i.Q <= ln.capacity, s.with(o.ID, &nh, false)
			}
			want := i.Units
			if i.Any > 0 {
				if int64(len(o.Units)) != i.Any {
					return false, s
				}
				want = o.Units
			}
			if !sameSet(want, o.Units) {
				return false, s
			}
			for _, u := range want {
				if _, taken := s.taken[u]; taken || !slices.Contains(ln.units, u) {
					return false, s
				}
			}
			nh.units = slices.Clone(want)
			return true, s.with(o.ID, &nh, false)
		case "sold_out":
			return ln.kind == lanePool && s.used+i.Q > ln.capacity, s
		case "unavailable":
			if ln.kind == lanePool {
				return false, s
			}
			if i.Any > 0 {
				return int64(len(ln.units)-len(s.taken)) < i.Any, s
			}
			for _, u := range i.Units {
				if _, taken := s.taken[u]; taken {
					return true, s
				}
			}
			return false, s
		}
		return false, s
	case "confirm":
		switch o.Code {
		case "":
			if !exists || h.confirmed {
				return false, s
			}
			h.confirmed = true
			return true, s.with(i.ID, &h, false)
		case "invalid_state":
			return !exists || h.confirmed, s
		}
		return false, s // hold_expired cannot happen: these holds live an hour
	case "release", "cancel", "complete":
		// release gives back a held hold; cancel a confirmed one; complete
		// returns a reusable rider.
		ok := exists && (i.Kind == "release") != h.confirmed
		switch o.Code {
		case "":
			return ok, s.with(i.ID, nil, true)
		case "invalid_state":
			return !ok, s
		}
		return false, s
	}
	return false, s
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

// slack covers the database clock's millisecond rounding against the
// clients' nanoseconds (one machine, one clock).
const slack = int64(5 * time.Millisecond)

// expiryStep is the flash lane's model: a pool of holds that expire. An
// operation takes effect at some moment p inside [call, return], no
// earlier than the one before it (s.t); a held hold counts until its
// expires_at. Each step picks the earliest p its answer allows — a later
// p only frees more capacity, which helps no answer but a grant or an
// expiry refusal, and those pick the earliest p that works — so the
// search loses nothing by it.
func expiryStep(ln lane, s *state, i input, o output) (bool, any) {
	lo := max(s.t, i.T0)
	if lo > i.T1 {
		return false, s
	}
	// used at p: confirmed holds, and held ones not yet expired (counted
	// expired from e on, e = expires shifted by shift).
	used := func(p, shift int64) int64 {
		var n int64
		for _, h := range s.holds {
			if h.confirmed || h.expires+shift > p {
				n += h.q
			}
		}
		return n
	}
	at := func(p int64, holds map[string]holdState) *state {
		// Holds surely expired by p are gone for good.
		for id, h := range holds {
			if !h.confirmed && h.expires+slack <= p {
				delete(holds, id)
			}
		}
		return newStateAt(0, holds, map[string]string{}, p)
	}
	h, exists := s.holds[i.ID]
	switch {
	case i.Kind == "hold" && o.Code == "":
		// The earliest p at which q fits, counting expiries as early as
		// the clocks allow.
		p := lo
		if used(p, -slack)+i.Q > ln.capacity {
			var times []int64
			for _, h := range s.holds {
				if !h.confirmed && h.expires-slack > lo {
					times = append(times, h.expires-slack)
				}
			}
			slices.Sort(times)
			p = -1
			for _, e := range times {
				if used(e, -slack)+i.Q <= ln.capacity {
					p = e
					break
				}
			}
			if p < 0 {
				return false, s
			}
		}
		if p > i.T1 {
			return false, s
		}
		holds := maps.Clone(s.holds)
		holds[o.ID] = holdState{q: i.Q, expires: o.Expires * int64(time.Millisecond)}
		return true, at(p, holds)
	case i.Kind == "hold" && o.Code == "sold_out":
		return used(lo, slack)+i.Q > ln.capacity, at(lo, maps.Clone(s.holds))
	case i.Kind == "confirm" && o.Code == "":
		if !exists || h.confirmed || lo >= h.expires+slack {
			return false, s
		}
		holds := maps.Clone(s.holds)
		h.confirmed = true
		holds[i.ID] = h
		return true, at(lo, holds)
	case i.Kind == "confirm" && o.Code == "hold_expired":
		if !exists {
			return true, at(lo, maps.Clone(s.holds)) // gone: expired earlier
		}
		p := max(lo, h.expires-slack)
		if h.confirmed || p > i.T1 {
			return false, s
		}
		return true, at(p, maps.Clone(s.holds))
	}
	return false, s
}

// linearizability is the verdict on one lane.
type linearizability struct {
	lane   string
	ops    int
	result porcupine.CheckResult
	html   string // the visualisation, written when the lane is not linearizable
}

// checkLane checks one lane's operations with porcupine; a failing history
// is written as porcupine's HTML visualisation to htmlPath.
func checkLane(ln lane, ops []op, end int64, htmlPath string, timeout time.Duration) linearizability {
	hist := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		ret := o.Ret
		if o.Out.Unknown {
			ret = end // it may have taken effect at any point after its call
		}
		in := o.In
		in.T0, in.T1 = o.Call, ret
		hist = append(hist, porcupine.Operation{ClientId: o.Client, Input: in, Output: o.Out, Call: o.Call, Return: ret})
	}
	model := laneModel(ln)
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	v := linearizability{lane: ln.id, ops: len(hist), result: res}
	if res != porcupine.Ok && htmlPath != "" {
		if err := porcupine.VisualizePath(model, info, htmlPath); err == nil {
			v.html = htmlPath
		}
	}
	return v
}
