package sqlstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
)

// Waiting rooms. The hold path pays for them only when a room exists: it
// looks the request's pools and groups up in a map refreshed once a
// second; a protected hold carries an admission, which the claim's own
// transaction spends (one hold per admission), so an admission can never
// be used twice however many servers race.

// postOpen is where places taken after opening start: every place taken
// before (its draw, below it) comes first.
const postOpen = int64(1) << 62

// roomGuard holds what waiting rooms protect: a snapshot every hold
// reads without a lock, replaced at most once a second.
type roomGuard struct {
	mu   sync.Mutex // one refresh at a time among readers on the pool
	snap atomic.Pointer[roomSnapshot]
	gen  atomic.Int64  // bumped when a room is made: older reads are stale
	keep time.Duration // how long a read is kept (Env.CacheFor)
}

// forget drops the snapshot, and any read begun before, so the next hold
// reads the rooms as they are now.
func (g *roomGuard) forget() {
	g.gen.Add(1)
	g.snap.Store(nil)
}

// fresh is the snapshot if it is younger than keep and read after the
// last room this server made; else nil.
func (g *roomGuard) fresh() *roomSnapshot {
	if snap := g.snap.Load(); snap != nil && snap.gen == g.gen.Load() && time.Since(snap.at) < g.keep {
		return snap
	}
	return nil
}

// roomSnapshot is the protected pools and groups, by room, as of at.
type roomSnapshot struct {
	at     time.Time
	gen    int64 // roomGuard.gen when the read began
	pools  map[string]string
	groups map[string]string
}

func (s *Store) CreateRoom(ctx context.Context, r holdfast.Room) (holdfast.Room, error) {
	if r.Pools == nil {
		r.Pools = []string{}
	}
	if r.Groups == nil {
		r.Groups = []string{}
	}
	if err := r.Validate(); err != nil {
		return holdfast.Room{}, err
	}
	r.Admit = cmp.Or(r.Admit, holdfast.AdmitRate)
	var out holdfast.Room
	err := s.db.Transact(ctx, func(tx Querier) error {
		// The draw's seed, drawn now, before anyone can join: its
		// commitment is shown from this answer on (holdfast.DrawOrder).
		_, err := tx.Exec(ctx, `INSERT INTO rooms (id, opens_at, admit_per_second, admit_ttl_ms, max_inside, max_per_key, max_units_per_admission, seed, admit, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, holdfast_now_ms())`, r.ID, r.OpensAt.UnixMilli(), r.AdmitPerSecond, r.AdmitTTLSeconds*1000, r.MaxInside, r.MaxPerKey, r.MaxUnitsPerAdmission, holdfast.NewSeed(), string(r.Admit))
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return holdfast.Errorf(holdfast.CodeConflict, "room %q exists", r.ID)
			}
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO room_places (room_id) VALUES ($1)`, r.ID); err != nil {
			return err
		}
		for _, res := range []struct {
			kind, table string
			ids         []string
		}{{"pool", "pools", r.Pools}, {"group", "groups", r.Groups}} {
			for _, id := range res.ids {
				if found, err := queryRow(ctx, tx, `SELECT 1 FROM `+res.table+` WHERE id = $1`, []any{id}, new(int)); err != nil {
					return err
				} else if !found {
					return holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", res.kind, id)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO room_resources (room_id, kind, resource) VALUES ($1, $2, $3)`, r.ID, res.kind, id); err != nil {
					if s.d.Classify(err) == KindUnique {
						return holdfast.Errorf(holdfast.CodeConflict, "%s %q is behind another room (or named twice)", res.kind, id)
					}
					return err
				}
			}
		}
		if out, err = s.room(ctx, tx, r.ID); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	if err == nil {
		s.rooms.forget() // this server protects it at once
	}
	return out, err
}

func (s *Store) Room(ctx context.Context, id string) (holdfast.Room, error) {
	return s.room(ctx, s.db, id)
}

func (s *Store) Rooms(ctx context.Context) ([]holdfast.Room, error) {
	ids, err := queryStrings(ctx, s.db, `SELECT id FROM rooms ORDER BY id`)
	if err != nil {
		return nil, err
	}
	rooms := make([]holdfast.Room, 0, len(ids))
	for _, id := range ids {
		r, err := s.room(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		rooms = append(rooms, r)
	}
	return rooms, nil
}

func (s *Store) room(ctx context.Context, q Reader, id string) (holdfast.Room, error) {
	var r holdfast.Room
	var opens, ttl, created int64
	var seed string
	var open bool
	found, err := queryRow(ctx, q, `SELECT id, opens_at, admit_per_second, admit_ttl_ms, max_inside, max_per_key, max_units_per_admission, sold_out, created_at, admitted_through,
		(SELECT COUNT(*) FROM room_tickets t WHERE t.room_id = r.id AND t.status = 'waiting'),
		(SELECT COUNT(*) FROM room_tickets t WHERE t.room_id = r.id AND t.status = 'admitted'),
		seed, opens_at <= holdfast_now_ms(), admit
		FROM rooms r WHERE id = $1`, []any{id}, &r.ID, &opens, &r.AdmitPerSecond, &ttl, &r.MaxInside, &r.MaxPerKey, &r.MaxUnitsPerAdmission, &r.SoldOut, &created, &r.AdmittedThrough, &r.Waiting, &r.Inside,
		&seed, &open, (*string)(&r.Admit))
	if err != nil {
		return r, err
	}
	if !found {
		return r, holdfast.Errorf(holdfast.CodeNotFound, "room %q not found", id)
	}
	r.OpensAt, r.AdmitTTLSeconds, r.CreatedAt = msTime(opens), ttl/1000, msTime(created)
	if seed != "" {
		// The seed stays secret until opening, by the database's clock:
		// before it, anyone who knew it could pick ticket ids to suit.
		r.SeedCommitment = holdfast.SeedCommitment(seed)
		if open {
			r.Seed = seed
		}
	}
	r.Pools, r.Groups = []string{}, []string{}
	rows, err := q.Query(ctx, `SELECT kind, resource FROM room_resources WHERE room_id = $1 ORDER BY kind, resource`, id)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var kind, res string
		if err := rows.Scan(&kind, &res); err != nil {
			return r, err
		}
		if kind == "pool" {
			r.Pools = append(r.Pools, res)
		} else {
			r.Groups = append(r.Groups, res)
		}
	}
	return r, rows.Err()
}

// rankRoom numbers a room's places in place order, once, at opening (its
// room_places row locked by the caller): from then on a position is read,
// not counted.
func rankRoom(ctx context.Context, tx Querier, room string) error {
	_, err := ExecAll(ctx, tx, []Stmt{
		{`UPDATE room_tickets SET rank = numbered.n FROM (
			SELECT ticket, ROW_NUMBER() OVER (ORDER BY place, draw) AS n FROM room_tickets WHERE room_id = $1) AS numbered
			WHERE room_tickets.ticket = numbered.ticket`, []any{room}},
		{`UPDATE room_places SET ranked = TRUE, rank_base = (SELECT COUNT(*) FROM room_tickets WHERE room_id = $1) WHERE room_id = $1`, []any{room}},
	})
	return err
}

// drawPlace is a place taken before opening: the first 62 bits of the
// ticket's HMAC under the room's seed, so that place order is the draw's
// order (ties, one in 2^62, are broken by the whole HMAC: see rankRoom).
// A room made before draws existed (no seed) draws a random place.
func drawPlace(seed, ticket string) (place int64, draw *string) {
	if seed == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return int64(binary.BigEndian.Uint64(b[:]) % uint64(postOpen)), nil
	}
	d := holdfast.DrawOrder(seed, ticket)
	b, _ := hex.DecodeString(d[:16])
	return int64(binary.BigEndian.Uint64(b) >> 2), &d
}

func (s *Store) JoinRoom(ctx context.Context, room, holder, owner string) (holdfast.RoomTicket, error) {
	if err := holdfast.ValidateHolder(holder); err != nil {
		return holdfast.RoomTicket{}, err
	}
	t, err := s.join(ctx, room, holder, owner)
	if errors.Is(err, errJoinedMeanwhile) {
		// The same holder joined at the same moment: that place is theirs.
		return s.join(ctx, room, holder, owner)
	}
	return t, err
}

// errJoinedMeanwhile is a join that lost to the same holder's.
var errJoinedMeanwhile = errors.New("sqlstore: the holder joined meanwhile")

func (s *Store) join(ctx context.Context, room, holder, owner string) (holdfast.RoomTicket, error) {
	var ticket string
	err := s.db.Transact(ctx, func(tx Querier) error {
		if s.d.AsyncCommits {
			// A place in a queue is not a sale: a join does not wait for
			// its log flush, so joins after opening, numbered one at a
			// time, hold the numbering row for microseconds, not a disk
			// write. A database crash may forget the last moment's joins;
			// joining again (the same holder) takes a place again.
			if _, err := tx.Exec(ctx, s.d.AsyncCommit); err != nil {
				return err
			}
		}
		var maxPerKey int64
		var open, soldOut bool
		var seed string
		found, err := queryRow(ctx, tx, `SELECT max_per_key, opens_at <= holdfast_now_ms(), sold_out, seed FROM rooms WHERE id = $1`,
			[]any{room}, &maxPerKey, &open, &soldOut, &seed)
		if err != nil {
			return err
		}
		if !found {
			return holdfast.Errorf(holdfast.CodeNotFound, "room %q not found", room)
		}
		if found, err := queryRow(ctx, tx, `SELECT ticket FROM room_tickets WHERE room_id = $1 AND owner = $2 AND holder = $3`,
			[]any{room, owner, holder}, &ticket); err != nil {
			return err
		} else if found { // the same place again
			t, err := s.roomTicket(ctx, tx, room, ticket)
			if err != nil {
				return err
			}
			return s.record(ctx, tx, t)
		}
		if owner != "" && maxPerKey > 0 {
			n, err := tx.Exec(ctx, `INSERT INTO room_keys (room_id, owner, places) VALUES ($1, $2, 1)
				ON CONFLICT (room_id, owner) DO UPDATE SET places = room_keys.places + 1 WHERE room_keys.places < $3`, room, owner, maxPerKey)
			if err != nil {
				return err
			}
			if n == 0 {
				return holdfast.Errorf(holdfast.CodeQuotaExceeded, "this key has %d places in room %q, its most", maxPerKey, room)
			}
		}
		if !open && !soldOut && s.d.RowLocks {
			// Before opening, a join shares the numbering row with every
			// other early join, and the numbering at opening (FOR UPDATE)
			// waits for them: a join that read the clock just before
			// opens_at but commits after the numbering would be a place
			// before opening left out of it, unnumbered, missing from
			// the draw's order (the chaos queue scenario saw one). One
			// that comes after the numbering is a join after opening.
			var ranked bool
			if _, err := queryRow(ctx, tx, `SELECT ranked FROM room_places WHERE room_id = $1`+s.d.ForKeyShare, []any{room}, &ranked); err != nil {
				return err
			}
			open = ranked
		}
		// Before opening a place is the ticket's draw and locks nothing
		// but that share; after, it is the next number, from the room's
		// numbering row.
		ticket = holdfast.NewID("tk_", s.clock.Now())
		place, draw := drawPlace(seed, ticket)
		status := "waiting"
		var rank *int64
		if soldOut {
			// Told at once; never numbered, and never in the draw: a
			// sell-out comes after opening, so this place does too.
			status, place, draw = "sold_out", math.MaxInt64, nil
		} else if open && s.d.RowLocks {
			// The number and the place in one statement, so the numbering
			// row is locked for one statement and the commit: joins after
			// opening queue on it one at a time.
			ticket = holdfast.NewID("tk_", s.clock.Now())
			n, err := tx.Exec(ctx, `WITH n AS (UPDATE room_places SET next_place = next_place + 1 WHERE room_id = $2 AND ranked
					RETURNING next_place, rank_base)
				INSERT INTO room_tickets (ticket, room_id, holder, owner, place, rank, status, created_at)
				SELECT $1, $2, $3, $4, $5 + n.next_place, n.rank_base + n.next_place, 'waiting', holdfast_now_ms() FROM n`,
				ticket, room, holder, owner, postOpen)
			if err != nil {
				if s.d.Classify(err) == KindUnique {
					return errJoinedMeanwhile
				}
				return err
			}
			if n == 1 {
				t, err := s.roomTicket(ctx, tx, room, ticket)
				if err != nil {
					return err
				}
				return s.record(ctx, tx, t)
			}
			// Not numbered yet: the first join after opening numbers them.
		}
		if !soldOut && open {
			var ranked bool
			var base, next int64
			if _, err := queryRow(ctx, tx, `SELECT ranked FROM room_places WHERE room_id = $1`+s.d.ForUpdate, []any{room}, &ranked); err != nil {
				return err
			}
			if !ranked {
				if err := rankRoom(ctx, tx, room); err != nil {
					return err
				}
			}
			if _, err := queryRow(ctx, tx, `UPDATE room_places SET next_place = next_place + 1 WHERE room_id = $1 RETURNING next_place, rank_base`,
				[]any{room}, &next, &base); err != nil {
				return err
			}
			r := base + next
			place, rank, draw = postOpen+next, &r, nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO room_tickets (ticket, room_id, holder, owner, place, rank, status, draw, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, holdfast_now_ms())`, ticket, room, holder, owner, place, rank, status, draw)
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return errJoinedMeanwhile
			}
			return err
		}
		t, err := s.roomTicket(ctx, tx, room, ticket)
		if err != nil {
			return err
		}
		return s.record(ctx, tx, t)
	})
	if err != nil {
		return holdfast.RoomTicket{}, err
	}
	return s.roomTicket(ctx, s.db, room, ticket)
}

// RoomDraw publishes the draw of a room that has opened: every ticket
// taken before opening, numbered in draw order — the numbers rankRoom
// gives them at opening, computed here the same way.
func (s *Store) RoomDraw(ctx context.Context, room string) (holdfast.RoomDraw, error) {
	r, err := s.room(ctx, s.db, room)
	if err != nil {
		return holdfast.RoomDraw{}, err
	}
	if r.SeedCommitment == "" {
		return holdfast.RoomDraw{}, holdfast.Errorf(holdfast.CodeInvalidState, "room %q was made before draws existed: its places were drawn at random", room)
	}
	if r.Seed == "" {
		return holdfast.RoomDraw{}, holdfast.Errorf(holdfast.CodeInvalidState, "room %q opens at %s: its draw is published then", room, r.OpensAt.UTC().Format(time.RFC3339))
	}
	d := holdfast.RoomDraw{Room: room, SeedCommitment: r.SeedCommitment, Seed: r.Seed, Entries: []holdfast.DrawEntry{}}
	rows, err := s.db.Query(ctx, `SELECT ticket, draw FROM room_tickets WHERE room_id = $1 AND place < $2 ORDER BY place, draw`, room, postOpen)
	if err != nil {
		return d, err
	}
	defer rows.Close()
	for rows.Next() {
		var e holdfast.DrawEntry
		var draw *string
		if err := rows.Scan(&e.Ticket, &draw); err != nil {
			return d, err
		}
		if draw != nil {
			e.Draw = *draw
		}
		e.TicketSHA256, e.Place = holdfast.TicketSHA256(e.Ticket), int64(len(d.Entries)+1)
		d.Entries = append(d.Entries, e)
	}
	d.Total = len(d.Entries)
	return d, rows.Err()
}

func (s *Store) RoomTicket(ctx context.Context, room, ticket string) (holdfast.RoomTicket, error) {
	return s.roomTicket(ctx, s.db, room, ticket)
}

// roomTicket reads a place with its position, computed: the waiting with
// a lower place, plus one.
func (s *Store) roomTicket(ctx context.Context, q Reader, room, ticket string) (holdfast.RoomTicket, error) {
	var t holdfast.RoomTicket
	var status string
	var token, holdID *string
	var expires *int64
	var rate float64
	var opensIn, ahead int64
	// Ranked (from opening on), a position is one subtraction; before
	// opening, it is counted (an index range of the places before it).
	// The place is the rank once the room is ranked (its first admission
	// or join after opening); between opening and then it is counted the
	// way rankRoom will number it.
	var rank, place *int64
	found, err := queryRow(ctx, q, `SELECT t.ticket, t.room_id, t.holder, t.owner, t.status, t.token, t.expires_at, t.hold_id, t.rank,
		CASE WHEN t.rank IS NOT NULL THEN t.rank
			WHEN r.opens_at <= holdfast_now_ms() AND t.place < $3 THEN (SELECT COUNT(*) FROM room_tickets o WHERE o.room_id = t.room_id
				AND (o.place < t.place OR (o.place = t.place AND o.draw < t.draw))) + 1 END,
		r.admit_per_second, r.opens_at - holdfast_now_ms(),
		CASE WHEN t.status <> 'waiting' THEN -1
			WHEN t.rank IS NOT NULL THEN t.rank - r.admitted_through - 1
			ELSE (SELECT COUNT(*) FROM room_tickets o WHERE o.room_id = t.room_id AND o.status = 'waiting' AND o.place < t.place) END
		FROM room_tickets t JOIN rooms r ON r.id = t.room_id WHERE t.ticket = $1 AND t.room_id = $2`, []any{ticket, room, postOpen},
		&t.Ticket, &t.Room, &t.Holder, &t.Owner, &status, &token, &expires, &holdID, &rank, &place, &rate, &opensIn, &ahead)
	if err != nil {
		return t, err
	}
	if !found {
		return t, holdfast.Errorf(holdfast.CodeNotFound, "ticket %q not found in room %q", ticket, room)
	}
	t.Status = holdfast.TicketStatus(status)
	if rank != nil {
		t.Rank = *rank
	}
	if place != nil {
		t.Place = *place
	}
	if ahead >= 0 {
		t.Position = ahead + 1
		t.EstimatedWaitSeconds = math.Round((float64(ahead)/rate+max(0, float64(opensIn)/1000))*10) / 10
	}
	if token != nil && t.Status == holdfast.TicketAdmitted {
		t.Admission = *token
		e := msTime(*expires)
		t.AdmissionExpiresAt = &e
	}
	if holdID != nil {
		t.HoldID = *holdID
	}
	return t, nil
}

// protected is which room guards each pool and group, read at most once a
// second. A caller inside a transaction passes its own connection as q,
// and reads on it for itself: it must never wait on another reader. That
// reader may be one outside any transaction, waiting for a connection
// from a pool full of claims that hold their rows and wait here — a stall
// until every request's deadline (three servers' late confirms and buyers
// of one last ticket, on PostgreSQL, under load: TestRacesOnSmallPools).
// Readers on the pool itself (q is s.db) take turns, so a second's expiry
// makes one read, not one per request.
func (s *Store) protected(ctx context.Context, q Reader) (*roomSnapshot, error) {
	g := &s.rooms
	if snap := g.fresh(); snap != nil {
		return snap, nil
	}
	if q != s.db {
		return s.readRooms(ctx, q)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if snap := g.fresh(); snap != nil {
		return snap, nil // another hold refreshed it meanwhile
	}
	return s.readRooms(ctx, q)
}

// readRooms reads the rooms' resources on q, and keeps them (stale at
// once if a room is made meanwhile: see fresh).
func (s *Store) readRooms(ctx context.Context, q Reader) (*roomSnapshot, error) {
	g := &s.rooms
	snap := &roomSnapshot{at: time.Now(), gen: g.gen.Load(), pools: map[string]string{}, groups: map[string]string{}}
	rows, err := q.Query(ctx, `SELECT kind, resource, room_id FROM room_resources`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var kind, res, room string
		if err := rows.Scan(&kind, &res, &room); err != nil {
			return nil, err
		}
		if kind == "pool" {
			snap.pools[res] = room
		} else {
			snap.groups[res] = room
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	g.snap.Store(snap)
	return snap, nil
}
