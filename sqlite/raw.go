package sqlite

import "github.com/holdfast/holdfast/internal/rawsql"

// Tests and the lab reach past the engine through internal/rawsql: the
// hooks stay out of the public Store.
func init() {
	rawsql.Register(func(store any) (rawsql.Conn, bool) {
		s, ok := store.(*Store)
		if !ok {
			return nil, false
		}
		return rawsql.Funcs{ExecFunc: s.execRaw, QueryIntFunc: s.queryInt}, true
	})
}
