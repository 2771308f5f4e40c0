package s3

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/internal/zchunk"
)

// The layouts of a store's chunk objects (Options.Layout).
const (
	// LayoutDualstore is dualstore's own layout, the default:
	// `<prefix>/<4 hex>/<64 hex id>.chunk` holding the chunk's bytes as
	// they are.
	LayoutDualstore = "dualstore"
	// LayoutCasync is the layout desync (v0.9.6) reads and writes in an S3
	// store (its S3Store.nameFromID): `<prefix>/<4 hex>/<64 hex id>.cacnk`,
	// always a zstd frame, even when that is not smaller, named by the
	// SHA512/256 of the uncompressed bytes (the filesystem's hash must be
	// sha512-256, see Config.RequiredHash). desync's store URL
	// `s3+http(s)://host:port/bucket/prefix` names the same keys as
	// endpoint, bucket and prefix here.
	LayoutCasync = "casync"
)

const (
	// casyncExt ends every chunk's key in the casync layout (desync's
	// CompressedChunkExt).
	casyncExt = ".cacnk"
	// casyncHash is the chunk hash the casync layout needs: desync names
	// chunks by the SHA512/256 of their bytes (its default digest).
	casyncHash = "sha512-256"
)

// validLayout checks a layout name; "" is the default.
func validLayout(layout string) error {
	switch layout {
	case "", LayoutDualstore, LayoutCasync:
		return nil
	}
	return fmt.Errorf("s3 store: layout %q: want %s or %s", layout, LayoutDualstore, LayoutCasync)
}

// ext ends every chunk's key: .chunk, or .cacnk in the casync layout.
func (s *Store) ext() string {
	if s.casync {
		return casyncExt
	}
	return chunkExt
}

// Shared reports whether other tools (desync) use the store too: in the
// casync layout they do (see stores.Sharer), so gc never deletes from it.
func (s *Store) Shared() bool { return s.casync }

var _ stores.Sharer = (*Store)(nil)

// codec is the casync layout's zstd encoder and decoder. EncodeAll and
// DecodeAll are safe for concurrent use; one of each serves every call.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// newCodec makes the casync layout's codec (zchunk's encoder, with an
// empty chunk a frame too, and its bounded decoder).
func newCodec() (*codec, error) {
	enc, err := zchunk.NewEncoder(true)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zchunk.NewDecoder()
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, dec: dec}, nil
}

func (c *codec) close() {
	c.enc.Close()
	c.dec.Close()
}

// zstdMagic starts every zstd frame.
const zstdMagic = zchunk.Magic

// isZstd reports whether b starts with the zstd magic number.
func isZstd(b []byte) bool { return zchunk.IsFrame(b) }

// encode returns the object body for a chunk: its bytes as they are, or
// in the casync layout a zstd frame of them. The frame's buffer has room
// for incompressible data (stored blocks, a little over the chunk): one
// of half the chunk grew, and copied, twice for a chunk of random bytes.
func (s *Store) encode(data []byte) []byte {
	if s.codec == nil {
		return data
	}
	return s.codec.enc.EncodeAll(data, make([]byte, 0, stores.CompressedBound(int64(len(data)))))
}

// decode returns the chunk an object body holds, within its bound: the
// body as it is, or in the casync layout the chunk its zstd frame holds. A
// chunk of another size than the bound allows, and in the casync layout a
// body that is no zstd frame or does not decode, wraps stores.ErrCorrupt
// (desync would refuse it too, so the tier's fallback and heal must
// replace it).
func (s *Store) decode(body []byte, b stores.Bound) ([]byte, error) {
	if s.codec == nil {
		return body, b.Check(int64(len(body)))
	}
	if !isZstd(body) {
		return nil, fmt.Errorf("%w: not a zstd frame", stores.ErrCorrupt)
	}
	return zchunk.Decode(s.codec.dec, body, b)
}

// errNotFrame marks a casync-layout object whose head is no zstd frame
// header; it is reported wrapping stores.ErrCorrupt.
var errNotFrame = errors.New("not a zstd frame")

// frameSize returns the chunk size the zstd frame header at the start of
// key records (-1 when the frame does not say), with a ranged GET of at
// most zstd.HeaderMaxSize bytes. An object larger than the zstd bound of
// max, or whose header records more than max, wraps stores.ErrCorrupt.
func (s *Store) frameSize(ctx context.Context, key string, max int64) (int64, error) {
	var opts minio.GetObjectOptions
	_ = opts.SetRange(0, zstd.HeaderMaxSize-1)
	body, info, h, err := s.core.GetObject(ctx, s.bucket, key, opts)
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code == "InvalidRange" {
		return 0, fmt.Errorf("%w: %w (empty object)", stores.ErrCorrupt, errNotFrame)
	}
	if err != nil {
		return 0, err
	}
	defer body.Close()
	total, err := objectSize(key, info, h)
	if err != nil {
		return 0, err
	}
	if limit := stores.CompressedBound(max); total > limit {
		return 0, fmt.Errorf("%w: the object is %d bytes, more than any compressed chunk (%d)", stores.ErrCorrupt, total, limit)
	}
	// A server that ignores ranges sends it all: read no more than asked.
	head, err := io.ReadAll(io.LimitReader(body, zstd.HeaderMaxSize))
	if err != nil {
		return 0, fmt.Errorf("reading the frame header: %w", err)
	}
	if !isZstd(head) {
		return 0, fmt.Errorf("%w: %w", stores.ErrCorrupt, errNotFrame)
	}
	return zchunk.ContentSize(head, max)
}
