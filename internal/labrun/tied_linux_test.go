package labrun

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child started by startTied (the lab's `holdfast serve`) ends when its
// parent is killed with SIGKILL, which no handler of the parent sees. The
// test runs its own binary twice over: a parent that starts a child with
// startTied and prints its pid, then waits to be killed; the child waits
// to be ended.
func TestTiedChildEndsWithItsParent(t *testing.T) {
	const run = "-test.run=^TestTiedChildEndsWithItsParent$"
	switch os.Getenv("LABRUN_TIED") {
	case "child":
		time.Sleep(time.Minute) // its life, unless the signal ends it
		os.Exit(0)
	case "parent":
		exe, err := os.Executable()
		if err != nil {
			os.Exit(2)
		}
		child := exec.Command(exe, run)
		child.Env = append(os.Environ(), "LABRUN_TIED=child")
		if err := startTied(child, make(chan error, 1)); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("child", child.Process.Pid)
		time.Sleep(time.Minute) // killed before
		os.Exit(0)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(exe, run)
	parent.Env = append(os.Environ(), "LABRUN_TIED=parent")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Wait()
	defer parent.Process.Kill()
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "child %d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the parent printed no child: %v", sc.Err())
	}
	if !alive(pid) {
		t.Fatalf("child %d is not running before its parent is killed", pid)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d still runs 20 s after its parent was killed", pid)
		}
		time.Sleep(5 * time.Millisecond) // polling the child's state
	}
}

// alive reports whether pid runs: it exists and is not a zombie (a child
// whose new parent has not reaped it yet has ended).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}
