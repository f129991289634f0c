//go:build !unix

package sqlite

import "context"

// lockFile is a no-op where there is no flock: processes starting at once
// on one new file may race to migrate it (goose then fails one of them).
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
