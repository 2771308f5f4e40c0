package chunker

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/restic/chunker"
)

// ErrInvalidParams is wrapped by every error that Params.Validate returns.
var ErrInvalidParams = errors.New("chunker: invalid params")

const (
	kiB = 1 << 10
	miB = 1 << 20

	// MinSizeLimit is restic's rolling-hash window: restic skips the first
	// MinSize-64 bytes of a chunk, so a smaller MinSize underflows.
	MinSizeLimit = 64
	// MaxSizeLimit bounds the memory a stream holds (one chunk of up to
	// MaxSize is assembled in memory) and the size of one store object.
	MaxSizeLimit = 64 * miB
	// polynomialDegree is the only degree restic generates and the largest
	// its table-driven digest supports.
	polynomialDegree = 53
)

// Params are the content-defined chunking parameters of one filesystem.
// They are fixed when the filesystem is created and stored in the index
// header: changing any of them moves the cut points, so chunks written
// before and after the change no longer deduplicate.
type Params struct {
	// Polynomial is the irreducible polynomial of degree 53 that the Rabin
	// fingerprint is computed with. Create one per filesystem with
	// NewPolynomial.
	Polynomial uint64
	// MinSize is the smallest chunk the chunker cuts (only the final chunk
	// of a stream may be smaller). At least 64, restic's window size.
	MinSize uint
	// AvgSize sets how often a cut point matches after MinSize: a cut is
	// taken where the fingerprint's low log2(AvgSize) bits are zero, so
	// chunks average about MinSize+AvgSize bytes. Must be a power of two.
	AvgSize uint
	// MaxSize is the largest chunk; a cut is forced there. At most 64 MiB.
	MaxSize uint
}

// DefaultParams returns the default chunk sizes (see the package
// documentation for the measurements behind them) with a zero Polynomial:
// the caller sets one per filesystem, from NewPolynomial.
func DefaultParams() Params {
	return Params{
		MinSize: DefaultMinSize,
		AvgSize: DefaultAvgSize,
		MaxSize: DefaultMaxSize,
	}
}

// Default chunk sizes, chosen by measurement (see the package documentation).
const (
	DefaultMinSize = 256 * kiB
	DefaultAvgSize = 512 * kiB
	DefaultMaxSize = 4 * miB
)

// Validate reports whether p can be used for chunking. Its errors name the
// offending field and wrap ErrInvalidParams.
func (p Params) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidParams, fmt.Sprintf(format, args...))
	}
	pol := chunker.Pol(p.Polynomial)
	switch {
	case p.Polynomial == 0:
		return bad("Polynomial is zero (create one per filesystem with NewPolynomial)")
	case pol.Deg() != polynomialDegree:
		return bad("Polynomial %#x has degree %d, want %d", p.Polynomial, pol.Deg(), polynomialDegree)
	case !irreducible(pol):
		return bad("Polynomial %#x is not irreducible", p.Polynomial)
	case p.MinSize < MinSizeLimit:
		return bad("MinSize %d is below %d (restic's window size)", p.MinSize, MinSizeLimit)
	case p.AvgSize == 0 || bits.OnesCount(p.AvgSize) != 1:
		return bad("AvgSize %d is not a power of two", p.AvgSize)
	case p.AvgSize <= p.MinSize:
		return bad("AvgSize %d must be greater than MinSize %d", p.AvgSize, p.MinSize)
	case p.MaxSize <= p.AvgSize:
		return bad("MaxSize %d must be greater than AvgSize %d", p.MaxSize, p.AvgSize)
	case p.MaxSize > MaxSizeLimit:
		return bad("MaxSize %d is above %d", p.MaxSize, MaxSizeLimit)
	}
	return nil
}

// knownIrreducible memoises irreducible: testing a polynomial costs about
// 0.6 ms, and every stream (every file written) validates its parameters,
// which in a filesystem are the same few polynomials over and over. A
// cache of a pure function's results; it only ever grows by one entry per
// polynomial seen.
var knownIrreducible sync.Map // chunker.Pol → bool

func irreducible(pol chunker.Pol) bool {
	if v, ok := knownIrreducible.Load(pol); ok {
		return v.(bool)
	}
	ok := pol.Irreducible()
	knownIrreducible.Store(pol, ok)
	return ok
}

// averageBits is the SetAverageBits argument for a valid p.
func (p Params) averageBits() int {
	return bits.TrailingZeros(p.AvgSize)
}

// NewPolynomial returns a random irreducible polynomial of degree 53 for a
// new filesystem's Params.Polynomial (restic's RandomPolynomial, from
// crypto/rand).
func NewPolynomial() (uint64, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return 0, fmt.Errorf("chunker: new polynomial: %w", err)
	}
	return uint64(pol), nil
}
