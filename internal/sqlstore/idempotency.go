package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/holdfast/holdfast"
)

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Store) BeginIdempotent(ctx context.Context, scope, key, fingerprint string, staleAfter time.Duration) (string, *holdfast.StoredResponse, error) {
	token := newToken()
	var replay *holdfast.StoredResponse
	err := s.db.Transact(ctx, func(tx Querier) error {
		replay = nil
		if s.d.AsyncCommits {
			// The claim on a key need not wait for its own WAL flush: the
			// change it guards commits later and durably, and flushing that
			// commit flushes this one, which came first in the log. A crash
			// before then loses both, and the retry starts afresh.
			if _, err := tx.Exec(ctx, s.d.AsyncCommit); err != nil {
				return err
			}
		}
		n, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, token, state, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 'in_flight', holdfast_now_ms(), holdfast_now_ms()) ON CONFLICT (scope, key) DO NOTHING`,
			scope, key, fingerprint, token)
		if err != nil || n == 1 {
			return err
		}
		var fp, state string
		var status *int64
		var body []byte
		var forgotten, stale bool
		err = tx.QueryRow(ctx, `SELECT fingerprint, state, status, body,
			created_at <= holdfast_now_ms() - CASE WHEN status >= 400 THEN CAST($5 AS BIGINT) ELSE CAST($3 AS BIGINT) END, updated_at <= holdfast_now_ms() - $4
			FROM idempotency_keys WHERE scope = $1 AND key = $2`+s.d.ForUpdate,
			scope, key, holdfast.IdempotencyTTL.Milliseconds(), staleAfter.Milliseconds(), holdfast.IdempotencyRefusalTTL.Milliseconds()).
			Scan(&fp, &state, &status, &body, &forgotten, &stale)
		if err != nil {
			return err
		}
		switch {
		case forgotten, state == "in_flight" && stale && fp == fingerprint:
			// A key past its lifetime is new again; a request stalled past
			// staleAfter loses its claim: its own change will be refused
			// when it tries to record under the old token.
			_, err := tx.Exec(ctx, `UPDATE idempotency_keys SET fingerprint = $3, token = $4, state = 'in_flight', status = NULL, body = NULL,
				created_at = holdfast_now_ms(), updated_at = holdfast_now_ms() WHERE scope = $1 AND key = $2`, scope, key, fingerprint, token)
			return err
		case fp != fingerprint:
			return holdfast.Errorf(holdfast.CodeIdempotencyMismatch, "this Idempotency-Key was used for a different request")
		case state == "in_flight":
			return holdfast.Errorf(holdfast.CodeIdempotencyInFlight, "the first request with this Idempotency-Key is still in flight")
		}
		replay = &holdfast.StoredResponse{Status: int(derefInt(status)), Body: body}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	if replay != nil {
		return "", replay, nil
	}
	return token, nil, nil
}

func derefInt(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// Keyed returns a view of s whose change records its answer under k.
func (s *Store) Keyed(k holdfast.Idempotency) holdfast.Keyed {
	return keyed{&Store{shared: s.shared, key: &k}}
}

// keyed is a Store with a key: the one request's view.
type keyed struct{ *Store }

func (k keyed) Answer() (holdfast.StoredResponse, bool) {
	if k.answer == nil {
		return holdfast.StoredResponse{}, false
	}
	return *k.answer, true
}

// record stores the answer of a change under the store's key (when it has
// one), inside the change's own transaction. If the key is no longer this
// request's, the change is refused and rolls back.
func (s *Store) record(ctx context.Context, tx Querier, result any) error {
	st, settle := s.recording(result)
	if st == nil {
		return nil
	}
	n, err := tx.Exec(ctx, st.SQL, st.Args...)
	if err != nil {
		return err
	}
	return settle(n)
}

// recording returns the statement that stores result's answer under the
// store's key (nil without a key), for the caller to send with others,
// and settle, which takes the rows it affected and says whether the
// change may commit.
func (s *Store) recording(result any) (st *Stmt, settle func(n int64) error) {
	i := s.key
	if i == nil {
		return nil, nil
	}
	r := i.Render(result)
	if i.Deferred {
		// Claim and settle in one: a new key is recorded done; our own
		// in-flight claim (from a batch) is settled; anyone else's key
		// refuses, and the change rolls back.
		return &Stmt{upsertDoneSQL, upsertDoneArgs(i, r)}, func(n int64) error {
			if n != 1 {
				return holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")
			}
			s.answer = &r
			return nil
		}
	}
	return &Stmt{`UPDATE idempotency_keys SET state = 'done', status = $4, body = $5, updated_at = holdfast_now_ms()
		WHERE scope = $1 AND key = $2 AND token = $3 AND state = 'in_flight'`, []any{i.Scope, i.Key, i.Token, r.Status, r.Body}}, func(n int64) error {
			if n != 1 {
				return holdfast.Errorf(holdfast.CodeIdempotencyInFlight, "this request's Idempotency-Key was taken over by a retry")
			}
			s.answer = &r
			return nil
		}
}

func (s *Store) FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r holdfast.StoredResponse) error {
	var n int64
	err := s.db.Transact(ctx, func(tx Querier) (err error) {
		n, err = upsertDone(ctx, tx, &holdfast.Idempotency{Scope: scope, Key: key, Fingerprint: fingerprint, Token: token}, r)
		return err
	})
	if err == nil && n != 1 {
		return holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is another request's")
	}
	return err
}

// upsertDone records a key's answer: a new record, or the settling of
// the in-flight claim the token holds. It reports 0 rows when another
// request holds the key.
func upsertDone(ctx context.Context, q Querier, i *holdfast.Idempotency, r holdfast.StoredResponse) (int64, error) {
	return q.Exec(ctx, upsertDoneSQL, upsertDoneArgs(i, r)...)
}

const upsertDoneSQL = `INSERT INTO idempotency_keys (scope, key, fingerprint, token, state, status, body, created_at, updated_at)
	VALUES ($1, $2, $3, $4, 'done', $5, $6, holdfast_now_ms(), holdfast_now_ms())
	ON CONFLICT (scope, key) DO UPDATE SET state = 'done', status = excluded.status, body = excluded.body, updated_at = excluded.updated_at
	WHERE idempotency_keys.token = excluded.token AND idempotency_keys.state = 'in_flight'`

func upsertDoneArgs(i *holdfast.Idempotency, r holdfast.StoredResponse) []any {
	return []any{i.Scope, i.Key, i.Fingerprint, i.Token, r.Status, r.Body}
}

func (s *Store) AbandonIdempotent(ctx context.Context, scope, key, token string) error {
	return s.db.Transact(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND token = $3 AND state = 'in_flight'`, scope, key, token)
		return err
	})
}

func (s *Store) PurgeIdempotency(ctx context.Context) (int, error) {
	var n int64
	err := s.db.Transact(ctx, func(tx Querier) (err error) {
		n, err = tx.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at <= holdfast_now_ms() - $1
			OR (status >= 400 AND created_at <= holdfast_now_ms() - CAST($2 AS BIGINT))`, holdfast.IdempotencyTTL.Milliseconds(), holdfast.IdempotencyRefusalTTL.Milliseconds())
		return err
	})
	return int(n), err
}

// ---- API keys ----

func (s *Store) CreateKey(ctx context.Context, k holdfast.APIKey) (holdfast.APIKey, error) {
	if err := holdfast.ValidateID("key", k.ID); err != nil {
		return k, err
	}
	if err := holdfast.ValidateName("name", k.Name, true); err != nil {
		return k, err
	}
	if k.Role != holdfast.RoleAdmin && k.Role != holdfast.RoleClient {
		return k, holdfast.Errorf(holdfast.CodeInvalid, "role must be admin or client")
	}
	if err := validQuota(k.MaxHeldUnits); err != nil {
		return k, err
	}
	if k.Channel != "" {
		if err := holdfast.ValidateID("channel", k.Channel); err != nil {
			return k, err
		}
		if k.Role != holdfast.RoleClient {
			return k, holdfast.Errorf(holdfast.CodeInvalid, "only a client key is bound to a channel (an admin names the channel on a line)")
		}
	}
	k.HeldUnits = 0
	err := s.db.Transact(ctx, func(tx Querier) error {
		var created int64
		err := tx.QueryRow(ctx, `INSERT INTO api_keys (id, name, role, hash, created_at, max_held_units, channel) VALUES ($1, $2, $3, $4, holdfast_now_ms(), $5, $6) RETURNING created_at`,
			k.ID, k.Name, string(k.Role), k.Hash, k.MaxHeldUnits, k.Channel).Scan(&created)
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return holdfast.Errorf(holdfast.CodeConflict, "key %q exists", k.ID)
			}
			return err
		}
		k.CreatedAt = msTime(created)
		return s.record(ctx, tx, k)
	})
	return k, err
}

const keyColumns = `id, name, role, hash, created_at, last_used_at, revoked_at, max_held_units, held_units, channel`

func scanKey(r Row) (holdfast.APIKey, error) {
	var k holdfast.APIKey
	var role string
	var created int64
	var used, revoked *int64
	if err := r.Scan(&k.ID, &k.Name, &role, &k.Hash, &created, &used, &revoked, &k.MaxHeldUnits, &k.HeldUnits, &k.Channel); err != nil {
		return k, err
	}
	k.Role, k.CreatedAt = holdfast.Role(role), msTime(created)
	if used != nil {
		t := msTime(*used)
		k.LastUsedAt = &t
	}
	if revoked != nil {
		t := msTime(*revoked)
		k.RevokedAt = &t
	}
	return k, nil
}

func (s *Store) APIKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	if holdfast.ValidateID("key", id) != nil { // no such id was ever made
		return holdfast.APIKey{}, holdfast.Errorf(holdfast.CodeNotFound, "key not found")
	}
	k, err := scanKey(s.db.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, ErrNoRows) {
		return k, holdfast.Errorf(holdfast.CodeNotFound, "key not found")
	}
	return k, err
}

func (s *Store) Keys(ctx context.Context) ([]holdfast.APIKey, error) {
	return collect(ctx, s.db, scanKey, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
}

func (s *Store) RevokeKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	// COALESCE: the first revocation's time stands.
	k, err := s.updateKey(ctx, id, `revoked_at = COALESCE(revoked_at, holdfast_now_ms())`)
	if err != nil || s.routed {
		return k, err
	}
	return k, s.EndKeyClaims(ctx, id, nil)
}

// EndKeyClaims ends what revoked key id still claims on the future: its
// waitlist entries are cancelled, its places in waiting rooms done, and
// its unconfirmed holds released (what it confirmed stays sold), each by
// release (nil: this store's Release). Running it again ends nothing more. Each hold is released on its own: a crash
// midway leaves the rest to expire, and an offer to the key's entries
// made meanwhile is cancelled by the offerer.
func (s *Store) EndKeyClaims(ctx context.Context, id string, release func(context.Context, string) (holdfast.Hold, error)) error {
	plain, owner := &Store{shared: s.shared}, holdfast.KeyOwner(id)
	if release == nil {
		release = plain.Release
	}
	type entry struct {
		id, pool string
		q        int64
	}
	err := s.db.Transact(ctx, func(tx Querier) error {
		// Pools in id order: the claim's lock order.
		entries, err := collect(ctx, tx, func(r Row) (entry, error) {
			var e entry
			return e, r.Scan(&e.id, &e.pool, &e.q)
		}, `SELECT id, pool_id, quantity FROM waitlist_entries WHERE owner = $1 AND status = 'waiting' ORDER BY pool_id, id`, owner)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := plain.dropEntry(ctx, tx, e.id, e.pool, e.q, holdfast.WaitlistCancelled, "the key was revoked"); err != nil {
				return err
			}
		}
		groupEntries, err := collect(ctx, tx, func(r Row) (entry, error) {
			var e entry
			return e, r.Scan(&e.id, &e.pool)
		}, `SELECT id, group_id FROM group_waitlist_entries WHERE owner = $1 AND status = 'waiting' ORDER BY group_id, id`, owner)
		if err != nil {
			return err
		}
		for _, e := range groupEntries {
			if err := plain.dropGroupEntry(ctx, tx, e.id, e.pool, "the key was revoked"); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE room_tickets SET status = 'done' WHERE owner = $1 AND hold_id IS NULL AND status IN ('waiting', 'admitted')`, owner)
		return err
	})
	if err != nil {
		return err
	}
	held, err := queryStrings(ctx, s.db, `SELECT id FROM holds WHERE owner = $1 AND status = 'held' ORDER BY id`, owner)
	if err != nil {
		return err
	}
	for _, h := range held {
		if _, err := release(ctx, h); err != nil && !isEnded(err) && holdfast.ErrorCode(err) != holdfast.CodeNotFound {
			return err
		}
	}
	return nil
}

func (s *Store) SetKeyQuota(ctx context.Context, id string, maxHeldUnits int64) (holdfast.APIKey, error) {
	if err := validQuota(maxHeldUnits); err != nil {
		return holdfast.APIKey{}, err
	}
	return s.updateKey(ctx, id, `max_held_units = $2`, maxHeldUnits)
}

// updateKey applies set (a SET clause; $1 is the id, args from $2) to key
// id and returns the key as it is now, recording it under the store's
// idempotency key. ErrNotFound.
func (s *Store) updateKey(ctx context.Context, id, set string, args ...any) (holdfast.APIKey, error) {
	if holdfast.ValidateID("key", id) != nil { // no such id was ever made
		return holdfast.APIKey{}, holdfast.Errorf(holdfast.CodeNotFound, "key not found")
	}
	var k holdfast.APIKey
	err := s.db.Transact(ctx, func(tx Querier) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `UPDATE api_keys SET `+set+` WHERE id = $1 RETURNING `+keyColumns, append([]any{id}, args...)...))
		if errors.Is(err, ErrNoRows) {
			return holdfast.Errorf(holdfast.CodeNotFound, "key not found")
		}
		if err != nil {
			return err
		}
		return s.record(ctx, tx, k)
	})
	return k, err
}

func validQuota(n int64) error {
	if n < 0 || n > holdfast.MaxCapacity {
		return holdfast.Errorf(holdfast.CodeInvalid, "max_held_units must be between 0 (no quota) and %d", int64(holdfast.MaxCapacity))
	}
	return nil
}

func (s *Store) TouchKey(ctx context.Context, id string) error {
	return s.db.Transact(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, `UPDATE api_keys SET last_used_at = holdfast_now_ms() WHERE id = $1`, id)
		return err
	})
}
