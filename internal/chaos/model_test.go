package chaos

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// The models must refuse the histories the harness exists to catch, and
// accept the ones that are fine; otherwise a green chaos run means nothing.
func TestModels(t *testing.T) {
	pool := lane{kind: lanePool, id: "p", capacity: 2}
	riders := lane{kind: laneRiders, id: "g", units: []string{"r1", "r2"}}
	hold := func(q int64) input { return input{Lane: "p", Kind: "hold", Q: q} }
	anyOf := func(k int64) input { return input{Lane: "g", Kind: "hold", Any: k} }
	act := func(kind, id string) input { return input{Lane: "p", Kind: kind, ID: id} }
	granted := func(id string, units ...string) output { return output{ID: id, Units: units} }
	ok := output{}
	code := func(c string) output { return output{Code: c} }
	type o = porcupine.Operation
	flash := lane{kind: laneExpiry, id: "f", capacity: 1}
	ms := func(n int64) int64 { return n * 1_000_000 }
	fhold := func(q int64) input { return input{Lane: "f", Kind: "hold", Q: q} }
	fact := func(kind, id string) input { return input{Lane: "f", Kind: kind, ID: id} }
	fgranted := func(id string, expiresMs int64) output { return output{ID: id, Expires: expiresMs} }
	for _, tc := range []struct {
		name string
		ln   lane
		hist []o
		want porcupine.CheckResult
	}{
		{"grants up to capacity, then sold out", pool, []o{
			{ClientId: 0, Input: hold(1), Output: granted("a"), Call: 0, Return: 1},
			{ClientId: 1, Input: hold(1), Output: granted("b"), Call: 2, Return: 3},
			{ClientId: 2, Input: hold(1), Output: code("sold_out"), Call: 4, Return: 5},
		}, porcupine.Ok},
		{"oversold: a third grant on capacity 2", pool, []o{
			{ClientId: 0, Input: hold(1), Output: granted("a"), Call: 0, Return: 1},
			{ClientId: 1, Input: hold(1), Output: granted("b"), Call: 0, Return: 1},
			{ClientId: 2, Input: hold(1), Output: granted("c"), Call: 0, Return: 1},
		}, porcupine.Illegal},
		{"stale sold_out after a release had returned", pool, []o{
			{ClientId: 0, Input: hold(2), Output: granted("a"), Call: 0, Return: 1},
			{ClientId: 0, Input: act("release", "a"), Output: ok, Call: 2, Return: 3},
			{ClientId: 1, Input: hold(1), Output: code("sold_out"), Call: 4, Return: 5},
		}, porcupine.Illegal},
		{"sold_out concurrent with the release may come first", pool, []o{
			{ClientId: 0, Input: hold(2), Output: granted("a"), Call: 0, Return: 1},
			{ClientId: 0, Input: act("release", "a"), Output: ok, Call: 2, Return: 5},
			{ClientId: 1, Input: hold(1), Output: code("sold_out"), Call: 3, Return: 4},
		}, porcupine.Ok},
		{"an unanswered hold found in the database counts from its call on", pool, []o{
			{ClientId: 0, Input: hold(2), Output: output{ID: "a", Unknown: true}, Call: 0, Return: 100},
			{ClientId: 1, Input: hold(1), Output: granted("b"), Call: 1, Return: 2},
			{ClientId: 2, Input: hold(1), Output: code("sold_out"), Call: 3, Return: 4},
		}, porcupine.Illegal}, // a (2) and b (1) pass capacity 2 in either order
		{"rider double-booked", riders, []o{
			{ClientId: 0, Input: anyOf(1), Output: granted("a", "r1"), Call: 0, Return: 1},
			{ClientId: 1, Input: anyOf(1), Output: granted("b", "r1"), Call: 2, Return: 3},
		}, porcupine.Illegal},
		{"any refused while a rider was free", riders, []o{
			{ClientId: 0, Input: anyOf(1), Output: granted("a", "r1"), Call: 0, Return: 1},
			{ClientId: 1, Input: anyOf(1), Output: code("unavailable"), Call: 2, Return: 3},
		}, porcupine.Illegal},
		{"a completed rider is free again", riders, []o{
			{ClientId: 0, Input: anyOf(2), Output: granted("a", "r1", "r2"), Call: 0, Return: 1},
			{ClientId: 0, Input: act("confirm", "a"), Output: ok, Call: 2, Return: 3},
			{ClientId: 0, Input: act("complete", "a"), Output: ok, Call: 4, Return: 5},
			{ClientId: 1, Input: anyOf(2), Output: granted("b", "r1", "r2"), Call: 6, Return: 7},
		}, porcupine.Ok},
		{"flash: an expired hold's capacity is free again", flash, []o{
			{ClientId: 0, Input: fhold(1), Output: fgranted("a", 100), Call: ms(0), Return: ms(1)},
			{ClientId: 1, Input: fhold(1), Output: fgranted("b", 300), Call: ms(150), Return: ms(151)},
		}, porcupine.Ok},
		{"flash: granted before the hold on the last unit expired", flash, []o{
			{ClientId: 0, Input: fhold(1), Output: fgranted("a", 100), Call: ms(0), Return: ms(1)},
			{ClientId: 1, Input: fhold(1), Output: fgranted("b", 300), Call: ms(50), Return: ms(51)},
		}, porcupine.Illegal},
		{"flash: confirmed after expiry", flash, []o{
			{ClientId: 0, Input: fhold(1), Output: fgranted("a", 100), Call: ms(0), Return: ms(1)},
			{ClientId: 0, Input: fact("confirm", "a"), Output: ok, Call: ms(120), Return: ms(121)},
		}, porcupine.Illegal},
		{"flash: refused as expired before expiry", flash, []o{
			{ClientId: 0, Input: fhold(1), Output: fgranted("a", 100), Call: ms(0), Return: ms(1)},
			{ClientId: 0, Input: fact("confirm", "a"), Output: code("hold_expired"), Call: ms(60), Return: ms(61)},
		}, porcupine.Illegal},
		{"flash: confirm racing the expiry may go either way", flash, []o{
			{ClientId: 0, Input: fhold(1), Output: fgranted("a", 100), Call: ms(0), Return: ms(1)},
			{ClientId: 0, Input: fact("confirm", "a"), Output: code("hold_expired"), Call: ms(90), Return: ms(110)},
		}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.hist { // as checkLane does
				in := tc.hist[i].Input.(input)
				in.T0, in.T1 = tc.hist[i].Call, tc.hist[i].Return
				tc.hist[i].Input = in
			}
			if got := porcupine.CheckOperations(laneModel(tc.ln), tc.hist); (got && tc.want != porcupine.Ok) || (!got && tc.want == porcupine.Ok) {
				t.Fatalf("linearizable = %v, want %s", got, tc.want)
			}
		})
	}
}
