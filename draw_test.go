package holdfast_test

import (
	"os"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
)

// docs/queues.md's worked example is what the code computes (and what
// openssl computes, which the example shows).
func TestDrawExampleInTheDocs(t *testing.T) {
	doc, err := os.ReadFile("docs/queues.md")
	if err != nil {
		t.Fatal(err)
	}
	seed := "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	want := []string{holdfast.SeedCommitment(seed), holdfast.TicketSHA256("tk_alice")}
	for _, tk := range []string{"tk_alice", "tk_bob", "tk_carol"} {
		want = append(want, holdfast.DrawOrder(seed, tk))
	}
	for _, w := range want {
		if !strings.Contains(string(doc), w) {
			t.Errorf("docs/queues.md lacks %s", w)
		}
	}
	if !(holdfast.DrawOrder(seed, "tk_alice") < holdfast.DrawOrder(seed, "tk_bob") && holdfast.DrawOrder(seed, "tk_bob") < holdfast.DrawOrder(seed, "tk_carol")) {
		t.Error("the example's order is not alice, bob, carol")
	}
}
