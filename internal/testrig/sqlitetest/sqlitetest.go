// Package sqlitetest gives tests SQLite files that start migrated.
//
// Migrating a new file takes ~0.65 s under the race detector (~25 ms
// without) and the suites open hundreds; a copy of a file migrated once
// per test binary takes ~15 ms. The migrations themselves run on new
// files wherever a test opens one with sqlite.Open directly (the sqlite
// package's TestConcurrentOpenMigratesOnce, TestLooseDatabaseFileIsTightened,
// …).
package sqlitetest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/sqlite"
)

// template is a database file every migration ran on, read whole.
var template = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "holdfast-sqlite-template")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		return nil, err
	}
	if err := s.Close(); err != nil { // checkpoints the log into the file
		return nil, err
	}
	return os.ReadFile(path)
})

// Migrated makes path, if no file is there yet, a copy of a migrated
// database (mode 0600, as sqlite.Open makes one), and returns it.
func Migrated(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return path
	}
	b, err := template()
	if err != nil {
		t.Fatalf("sqlitetest: the migrated template: %v", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("sqlitetest: %v", err)
	}
	return path
}
