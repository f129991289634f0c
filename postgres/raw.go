package postgres

import "github.com/holdfast/holdfast/internal/rawsql"

// Tests and the lab reach past the engine through internal/rawsql: the
// hooks stay out of the public Store and shard.Set.
func init() {
	rawsql.Register(func(store any) (rawsql.Conn, bool) {
		switch s := store.(type) {
		case *Store:
			return rawsql.Funcs{ExecFunc: s.execRaw, QueryIntFunc: s.queryInt}, true
		case *shardDB:
			return rawsql.Funcs{ExecFunc: s.execRaw, QueryIntFunc: s.queryInt}, true
		}
		return nil, false
	})
}
