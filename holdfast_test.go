package holdfast_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

func TestErrorsMatchByCode(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", holdfast.LineErrorf(holdfast.CodeSoldOut, 2, "pool %q has 0", "p"))
	if !errors.Is(err, holdfast.ErrSoldOut) {
		t.Fatal("errors.Is(wrapped sold_out, ErrSoldOut) = false")
	}
	if errors.Is(err, holdfast.ErrUnavailable) {
		t.Fatal("sold_out matched ErrUnavailable")
	}
	if got := holdfast.ErrorCode(err); got != holdfast.CodeSoldOut {
		t.Fatalf("ErrorCode = %q", got)
	}
	if got := holdfast.ErrorLine(err); got != 2 {
		t.Fatalf("ErrorLine = %d, want 2", got)
	}
	if got := holdfast.ErrorCode(errors.New("disk on fire")); got != holdfast.CodeInternal {
		t.Fatalf("a plain error has code %q, want internal", got)
	}
}

func TestLineKind(t *testing.T) {
	for _, tc := range []struct {
		l    holdfast.Line
		want holdfast.LineKind
	}{
		{holdfast.Line{Pool: "p", Quantity: 1}, holdfast.LinePool},
		{holdfast.Line{Units: []string{"a"}}, holdfast.LineUnits},
		{holdfast.Line{Group: "g", Any: 1}, holdfast.LineAny},
		{holdfast.Line{Pool: "p", Units: []string{"a"}}, holdfast.LineInvalid},
		{holdfast.Line{Pool: "p", Group: "g"}, holdfast.LineInvalid},
		{holdfast.Line{Units: []string{"a"}, Any: 1}, holdfast.LineInvalid},
		{holdfast.Line{}, holdfast.LineInvalid},
	} {
		if got := tc.l.Kind(); got != tc.want {
			t.Errorf("%+v: got %d, want %d", tc.l, got, tc.want)
		}
	}
}

func TestParseStrategy(t *testing.T) {
	if s, err := holdfast.ParseStrategy(""); err != nil || s != holdfast.Atomic {
		t.Fatalf("default strategy: %q, %v", s, err)
	}
	if _, err := holdfast.ParseStrategy("yolo"); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("unknown strategy: %v", err)
	}
}

func TestNewHoldIDUniqueAndSorted(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := holdfast.NewHoldID(time.Now())
		if seen[id] || len(id) != 28 {
			t.Fatalf("id %q repeated or malformed", id)
		}
		seen[id] = true
	}
}

// README.md's Go code is Example_library's, line for line: the README
// shows code that compiles and prints what it says.
func TestReadmeLibraryIsTheExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile("example_library_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Using holdfast from Go")
	if !ok {
		t.Fatal("README.md has no section on using holdfast from Go")
	}
	blocks := strings.Split(section, "```go\n")
	if len(blocks) < 3 {
		t.Fatal("the section has no Go code")
	}
	shown, _, _ := strings.Cut(blocks[2], "```")
	_, body, _ := strings.Cut(string(ex), "// README:begin\n")
	body, _, _ = strings.Cut(body, "\t// README:end")
	var want []string
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		want = append(want, strings.TrimPrefix(l, "\t"))
	}
	if got := strings.TrimRight(shown, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("README.md's Go code differs from Example_library:\n--- README\n%s\n--- example\n%s", got, strings.Join(want, "\n"))
	}
}

func TestNaturalOrder(t *testing.T) {
	got := holdfast.NaturalOrder([]string{"A-10", "B-1", "A-2", "A-1", "A-02x", "A-2x", "10", "9"})
	want := []string{"9", "10", "A-1", "A-2", "A-02x", "A-2x", "A-10", "B-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("natural order: got %v, want %v", got, want)
	}
}
