package stores

import (
	"context"
	"errors"
)

// Has reports whether s holds id, using Stat so no chunk data is read. A
// missing chunk is (false, nil); any other failure is returned, since "the
// store could not tell" is not "the chunk is missing".
func Has(ctx context.Context, s Store, id ID) (bool, error) {
	_, err := s.Stat(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}
