package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/holdfast/holdfast/"

// door is where a plain hold's way goes (docs/design.md, "A hold's way
// through the code"): the entry, the sold-out read, the queue, the
// batch's locking reads, the one decision and the writer.
var door = []string{"hold.go", "soldout.go", "queue.go", "batch.go", "decide.go", "writer.go"}

// plumbing is what a hold may also run in internal/sqlstore: helpers
// that decide nothing.
var plumbing = []string{
	"db.go",      // QueryAll, ExecAll, rowSet: the backend's round trips
	"stats.go",   // the count of holds made, for the planner's statistics
	"store.go",   // the store's clock, ids and goroutines
	"room.go",    // the cached map of guarded pools
	"part.go",    // a shard part's context
	"queries.go", // a holder's scope, the waitlist head's context
}

// TestHoldPath builds holdpath with coverage, runs its one hold and
// checks the files of internal/sqlstore that the hold ran: every step of
// the door, and nothing beside the door but plumbing. A rule or read
// that moves out of the door's files into a file of its own fails here.
func TestHoldPath(t *testing.T) {
	files := holdPath(t)
	var sqlstore []string
	for file, fns := range files {
		t.Logf("%s: %s", file, strings.Join(fns, ", "))
		if name, ok := strings.CutPrefix(file, "internal/sqlstore/"); ok {
			sqlstore = append(sqlstore, name)
		}
	}
	for _, f := range door {
		if !slices.Contains(sqlstore, f) {
			t.Errorf("a hold did not run internal/sqlstore/%s: docs/design.md's way through the code is out of date", f)
		}
	}
	for _, f := range sqlstore {
		if !slices.Contains(door, f) && !slices.Contains(plumbing, f) {
			t.Errorf("a hold ran internal/sqlstore/%s (%s), outside the door's files (%s) and the plumbing", f, strings.Join(files["internal/sqlstore/"+f], ", "), strings.Join(door, ", "))
		}
	}
}

// holdPath returns the functions, by file of the module, that one plain
// hold ran.
func holdPath(t *testing.T) map[string][]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build holdpath with coverage: %v", err)
	}
	dir := t.TempDir()
	bin, cov, prof := filepath.Join(dir, "holdpath"), filepath.Join(dir, "cov"), filepath.Join(dir, "prof.txt")
	command(t, goBin, "build", "-cover", "-covermode=atomic",
		"-coverpkg="+module[:len(module)-1]+","+module+"internal/sqlstore,"+module+"internal/holdpath", "-o", bin, ".")
	command(t, "mkdir", cov)
	command(t, bin, cov)
	command(t, goBin, "tool", "covdata", "textfmt", "-i", cov, "-o", prof)
	out := command(t, goBin, "tool", "cover", "-func", prof)
	files := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// github.com/holdfast/holdfast/internal/sqlstore/hold.go:39:	Hold	100.0%
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] == "0.0%" || !strings.HasPrefix(f[0], module) {
			continue
		}
		file, _, _ := strings.Cut(strings.TrimPrefix(f[0], module), ":")
		if strings.HasPrefix(file, "internal/holdpath/") {
			continue
		}
		files[file] = append(files[file], f[1])
	}
	if len(files) == 0 {
		t.Fatalf("no function ran:\n%s", out)
	}
	return files
}

func command(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
