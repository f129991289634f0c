// Package rawsql reaches past a store's engine to its database. Tests use
// it to make time pass for a hold, to attempt the buggy writes the
// database must refuse, and to count rows; the lab counts with it. It is
// not part of holdfast's API: the stores register how they are reached,
// and nothing outside this module can import it.
package rawsql

import (
	"context"
	"sync"
)

// Conn runs SQL on a store's database, bypassing the engine. SQL uses $1
// placeholders and the schema's table names.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) error
	QueryInt(ctx context.Context, sql string, args ...any) (int64, error)
}

// Funcs is a Conn made of two functions.
type Funcs struct {
	ExecFunc     func(ctx context.Context, sql string, args ...any) error
	QueryIntFunc func(ctx context.Context, sql string, args ...any) (int64, error)
}

func (f Funcs) Exec(ctx context.Context, sql string, args ...any) error {
	return f.ExecFunc(ctx, sql, args...)
}

func (f Funcs) QueryInt(ctx context.Context, sql string, args ...any) (int64, error) {
	return f.QueryIntFunc(ctx, sql, args...)
}

var (
	mu      sync.RWMutex
	finders []func(store any) (Conn, bool)
)

// Register adds a way to reach a kind of store (a backend's init calls it).
func Register(find func(store any) (Conn, bool)) {
	mu.Lock()
	defer mu.Unlock()
	finders = append(finders, find)
}

// Of returns the Conn of store: store itself if it is one (a wrapper, a
// backend outside this module), else what a registered backend answers.
func Of(store any) (Conn, bool) {
	if c, ok := store.(Conn); ok {
		return c, true
	}
	mu.RLock()
	defer mu.RUnlock()
	for _, find := range finders {
		if c, ok := find(store); ok {
			return c, true
		}
	}
	return nil, false
}
