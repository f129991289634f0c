package chaos

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/sqlite"
)

// A flash hold whose answer was lost, found in the database, counts until
// its expiry: a sold_out during its life is legal. Resolved without its
// expiry, the model counted it expired from the start and called a true
// sold_out illegal (seen once in shard-crash, while a shard was down).
func TestUnansweredFlashHoldCountsUntilItExpires(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "holdfast.db")
	store, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreatePool(ctx, holdfast.Pool{ID: "flash", Capacity: 6}); err != nil {
		t.Fatal(err)
	}
	call := time.Now()
	h, err := store.Hold(ctx, holdfast.HoldRequest{Holder: "lost-answer", TTL: time.Minute,
		Lines: []holdfast.Line{{Pool: "flash", Quantity: 6}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	ret := time.Now()
	ops := []op{
		{Client: 0, In: input{Lane: "flash", Kind: "hold", Holder: "lost-answer", Q: 6}, Out: output{Unknown: true},
			Call: call.UnixNano(), Ret: ret.UnixNano()},
		{Client: 1, In: input{Lane: "flash", Kind: "hold", Holder: "late", Q: 1}, Out: output{Code: "sold_out"},
			Call: ret.Add(time.Millisecond).UnixNano(), Ret: ret.Add(2 * time.Millisecond).UnixNano()},
	}
	resolved, unknown, err := resolve(ctx, []checkDB{sqlDB{db}}, ops)
	if err != nil {
		t.Fatal(err)
	}
	if unknown != 1 || len(resolved) != 2 {
		t.Fatalf("resolved %d operations (%d unknown), want both (1 unknown)", len(resolved), unknown)
	}
	if got := resolved[0].Out; got.ID != h.ID || got.Expires != h.ExpiresAt.UnixMilli() {
		t.Fatalf("the unanswered hold resolved as %q expiring at %d ms, want %q at %d ms", got.ID, got.Expires, h.ID, h.ExpiresAt.UnixMilli())
	}
	flash := lane{kind: laneExpiry, id: "flash", capacity: 6}
	end := ret.Add(time.Second).UnixNano()
	if v := checkLane(flash, resolved, end, "", time.Minute); v.result != porcupine.Ok {
		t.Fatalf("a sold_out while the unanswered hold held all 6 units: %v, want ok", v.result)
	}
}
