package shard

import "github.com/holdfast/holdfast/internal/rawsql"

// Tests and the lab count rows on every shard through internal/rawsql,
// as the backend reaches them: the hooks stay out of the public Set.
func init() {
	rawsql.Register(func(store any) (rawsql.Conn, bool) {
		if s, ok := store.(*Set); ok {
			return rawsql.Of(s.set.db)
		}
		return nil, false
	})
}
