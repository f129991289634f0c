package sqlstore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The engine stays readable file by file: no file of it over 600 lines
// (#25). A file that grows past it is split where its parts separate, as
// changes.go was (changewrite.go).
func TestNoEngineFileOver600Lines(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if n := bytes.Count(b, []byte("\n")); n > 600 {
			t.Errorf("%s has %d lines, over 600: split it where its parts separate", f, n)
		}
	}
	if checked < 20 {
		t.Fatalf("read %d of the engine's files; the test runs in internal/sqlstore", checked)
	}
}
