package chaos

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/jackc/pgx/v5"
)

// checkDB is what the checks read after a storm: a PostgreSQL database
// (through pgx) or the SQLite file (through database/sql). Both take the
// same SQL, with $1 placeholders.
type checkDB interface {
	// queryRow scans one row; errNoRows when there is none.
	queryRow(ctx context.Context, sql string, args []any, dest ...any) error
	strings(ctx context.Context, sql string, args ...any) ([]string, error)
}

var errNoRows = errors.New("no rows")

type pgxDB struct{ c *pgx.Conn }

func (d pgxDB) queryRow(ctx context.Context, q string, args []any, dest ...any) error {
	err := d.c.QueryRow(ctx, q, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}

func (d pgxDB) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := d.c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

type sqlDB struct{ db *sql.DB }

func (d sqlDB) queryRow(ctx context.Context, q string, args []any, dest ...any) error {
	err := d.db.QueryRowContext(ctx, q, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

func (d sqlDB) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func pgxDBs(conns []*pgx.Conn) []checkDB {
	out := make([]checkDB, len(conns))
	for i, c := range conns {
		out[i] = pgxDB{c}
	}
	return out
}

// eventFor is the event a successful action leaves in the outbox.
var eventFor = map[string]string{
	"confirm":  "hold.confirmed",
	"release":  "hold.released",
	"cancel":   "hold.cancelled",
	"complete": "hold.completed",
}

// resolve settles every operation that got no answer from what the
// database holds: a hold request's holder names it alone (one holder per
// request), so its hold exists or not; an action on a hold left its
// event or not. Operations that took no effect are dropped (to the
// checker they never happened); the others keep no return time.
func resolve(ctx context.Context, dbs []checkDB, ops []op) ([]op, int, error) {
	out := ops[:0:0]
	unknown := 0
	for _, o := range ops {
		if !o.Out.Unknown {
			out = append(out, o)
			continue
		}
		unknown++
		if o.In.Kind == "hold" {
			// The database (the shard) that has the hold, if any has.
			var id string
			var expires int64
			var db checkDB
			for _, d := range dbs {
				err := d.queryRow(ctx, `SELECT id, expires_at FROM holds WHERE holder = $1`, []any{o.In.Holder}, &id, &expires)
				if err == errNoRows {
					continue
				}
				if err != nil {
					return nil, 0, err
				}
				db = d
				break
			}
			if db == nil {
				continue
			}
			// Its expiry too: the flash lane's model counts a hold until
			// it expires, and a hold without one would count as expired
			// from the start, so a true sold_out during its life would
			// look illegal.
			o.Out.ID, o.Out.Expires = id, expires
			units, err := db.strings(ctx, `SELECT unit_id FROM unit_claims WHERE hold_id = $1 ORDER BY unit_id`, id)
			if err != nil {
				return nil, 0, err
			}
			o.Out.Units = units
			out = append(out, o)
			continue
		}
		n := 0
		for _, db := range dbs {
			var k int
			if err := db.queryRow(ctx, `SELECT count(*) FROM events WHERE hold_id = $1 AND type = $2`, []any{o.In.ID, eventFor[o.In.Kind]}, &k); err != nil {
				return nil, 0, err
			}
			n += k
		}
		if n > 0 {
			out = append(out, o)
		}
	}
	return out, unknown, nil
}

// dbChecks counts in the database, after the run, what must hold whatever
// happened during it. Each returned string is a broken guarantee.
//
// With shards, dbs are every shard's database (the catalog first) and
// dbArgs name them as holdfast audit takes them; each count is summed
// over the shards (each holds its own share of every invariant: a hold
// of a lane lives on the lane's shard).
func dbChecks(ctx context.Context, dbs []checkDB, bin string, dbArgs []string, ops []op) ([]string, error) {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	count := func(sql string, args ...any) int {
		total := 0
		for _, db := range dbs {
			var n int
			if err := db.queryRow(ctx, sql, args, &n); err != nil {
				fail("query %q: %v", sql, err)
			}
			total += n
		}
		return total
	}

	// holdfast audit recounts every counter from the claim rows.
	if out, err := exec.CommandContext(ctx, bin, append([]string{"audit"}, dbArgs...)...).CombinedOutput(); err != nil {
		fail("holdfast audit: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if n := count(`SELECT count(*) FROM pools p WHERE p.capacity < (SELECT coalesce(sum(l.quantity), 0)
		FROM hold_lines l JOIN holds h ON h.id = l.hold_id WHERE l.pool_id = p.id AND h.status IN ('held', 'confirmed'))`); n > 0 {
		fail("%d pools have more active claims than capacity", n)
	}
	if n := count(`SELECT count(*) FROM (SELECT c.unit_id FROM unit_claims c JOIN holds h ON h.id = c.hold_id
		WHERE h.status IN ('held', 'confirmed') GROUP BY c.unit_id HAVING count(*) > 1) d`); n > 0 {
		fail("%d units have two active holds", n)
	}
	if n := count(`SELECT count(*) FROM (SELECT l.hold_id FROM hold_lines l JOIN unit_claims c ON c.hold_id = l.hold_id AND c.line_no = l.line_no
		WHERE l.kind = 'any' GROUP BY l.hold_id, l.line_no, l.any_count HAVING count(*) <> l.any_count) d`); n > 0 {
		fail("%d \"any\" lines took a number of units other than asked", n)
	}
	if n := count(`SELECT count(*) FROM events e JOIN holds h ON h.id = e.hold_id
		WHERE e.type = 'hold.confirmed' AND e.at > h.expires_at`); n > 0 {
		fail("%d holds were confirmed after they expired", n)
	}
	if n := count(`SELECT count(*) FROM (SELECT hold_id, type FROM events WHERE hold_id IS NOT NULL
		GROUP BY hold_id, type HAVING count(*) > 1) d`); n > 0 {
		fail("%d holds went through the same change twice", n)
	}

	// Per operation: every hold request had at most one effect, the one
	// answered; every acknowledged change is what the database says now
	// (the client acted on each hold alone, and in order).
	last := map[string]op{}
	for _, o := range ops {
		switch {
		case o.In.Kind == "hold":
			var n int
			var id string
			for _, db := range dbs {
				var k int
				var kid string
				_ = db.queryRow(ctx, `SELECT count(*), coalesce(min(id), '') FROM holds WHERE holder = $1`, []any{o.In.Holder}, &k, &kid)
				n += k
				id = cmp.Or(id, kid)
			}
			switch {
			case n > 1:
				fail("hold request %s (key %s) took effect %d times", o.In.Holder, o.In.Key, n)
			case o.Out.Unknown:
			case o.Out.Code == "" && (n != 1 || id != o.Out.ID):
				fail("hold request %s was answered %s but the database has %d holds (%s)", o.In.Holder, o.Out.ID, n, id)
			case o.Out.Code != "" && n != 0:
				fail("hold request %s was refused (%s) but took effect", o.In.Holder, o.Out.Code)
			}
		case o.Out.Code == "":
			last[o.In.ID] = o // answered, or found to have taken effect
		}
	}
	want := map[string]string{"confirm": "confirmed", "release": "released", "cancel": "cancelled", "complete": "completed"}
	for id, o := range last {
		var status string
		var err error
		for _, db := range dbs {
			if err = db.queryRow(ctx, `SELECT status FROM holds WHERE id = $1`, []any{id}, &status); err != errNoRows {
				break
			}
		}
		if err != nil {
			fail("hold %s: %v", id, err)
			continue
		}
		if status != want[o.In.Kind] {
			fail("hold %s: %s was acknowledged, but the hold is %s now", id, o.In.Kind, status)
		}
	}
	if len(bad) > 20 {
		bad = append(bad[:20], fmt.Sprintf("… and %d more", len(bad)-20))
	}
	return bad, nil
}

// conns are the PostgreSQL connections among dbs, for the checks that
// only PostgreSQL scenarios run.
func conns(dbs []checkDB) []*pgx.Conn {
	var out []*pgx.Conn
	for _, d := range dbs {
		if p, ok := d.(pgxDB); ok {
			out = append(out, p.c)
		}
	}
	return out
}
