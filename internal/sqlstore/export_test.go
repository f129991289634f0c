package sqlstore

import (
	"context"

	"github.com/holdfast/holdfast"
)

// Explain is explain, for the test that holds it to the claim's answers.
func (s *Store) Explain(ctx context.Context, r holdfast.HoldRequest) error {
	return s.explain(ctx, r, false)
}
