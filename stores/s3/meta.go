package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
)

// metaDir is the key segment below the prefix that holds the meta
// objects: `<prefix>/_meta/<name>`. It is no 4-hex shard, so parseKey
// refuses every meta key and List never reports one.
const metaDir = "_meta"

var _ stores.MetaStore = (*Store)(nil)

// metaBase returns the key prefix of every meta object.
func (s *Store) metaBase() string { return s.keyPrefix + metaDir + "/" }

// metaKey returns the key of a meta object; name has passed
// ValidMetaName, so the key stays below metaBase.
func (s *Store) metaKey(name string) string { return s.metaBase() + name }

// beginMeta is begin for a meta object's call: it also refuses a bad name
// (after begin, so that a closed store says so first). op names the
// object, for begin's and fail's messages.
func (s *Store) beginMeta(ctx context.Context, what, name string, timed bool) (op string, cctx context.Context, done func(), err error) {
	op = what + " " + strconv.Quote(name)
	cctx, done, err = s.begin(ctx, op, nil, timed)
	if err != nil {
		return op, nil, nil, err
	}
	if err := stores.ValidMetaName(name); err != nil {
		done()
		return op, nil, nil, fmt.Errorf("s3 %s: %s: %w", s.where, op, err)
	}
	return op, cctx, done, nil
}

// PutMeta stores the meta object with one single-part PUT, replacing what
// was there: S3 makes it atomic, and a PUT that the server acknowledged is
// durable.
func (s *Store) PutMeta(ctx context.Context, name string, data []byte) error {
	op, cctx, done, err := s.beginMeta(ctx, "put meta", name, true)
	if err != nil {
		return err
	}
	defer done()
	body := &guardedReader{r: bytes.NewReader(data)} // see put
	defer body.close()
	_, err = s.client.PutObject(cctx, s.bucket, s.metaKey(name), body, int64(len(data)), minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true,
	})
	if err != nil {
		return s.fail(ctx, cctx, op, nil, err)
	}
	s.out.ok()
	return nil
}

// GetMeta reads the meta object. A missing one wraps stores.ErrNotFound;
// one whose Content-Length is over max wraps stores.ErrCorrupt and is not
// read, and no more than max+1 bytes of a body are ever read. A body cut
// short is retried like Get's.
func (s *Store) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	op, cctx, done, err := s.beginMeta(ctx, "get meta", name, true)
	if err != nil {
		return nil, err
	}
	defer done()
	key := s.metaKey(name)
	for attempt := 0; ; attempt++ {
		data, retry, err := s.getMeta(cctx, key, max)
		if err == nil || errors.Is(err, stores.ErrCorrupt) {
			s.out.ok() // the server answered
		}
		if err == nil {
			return data, nil
		}
		if !retry || attempt >= s.retries || !sleep(cctx, backoff(attempt)) {
			return nil, s.fail(ctx, cctx, op, nil, err)
		}
	}
}

// getMeta is one GET of a meta object; retry says, as for get, that the
// request succeeded but reading the body failed.
func (s *Store) getMeta(ctx context.Context, key string, max int64) (data []byte, retry bool, err error) {
	body, info, _, err := s.core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, false, err
	}
	defer body.Close()
	if info.Size > max {
		return nil, false, fmt.Errorf("%s: %w: %d bytes, more than the %d allowed", key, stores.ErrCorrupt, info.Size, max)
	}
	var b bytes.Buffer
	if info.Size >= 0 {
		b.Grow(int(info.Size) + bytes.MinRead)
	}
	if _, err := b.ReadFrom(io.LimitReader(body, max+1)); err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("reading %s: %w", key, err)
	}
	switch n := int64(b.Len()); {
	case n > max:
		return nil, false, fmt.Errorf("%s: %w: more than the %d bytes allowed", key, stores.ErrCorrupt, max)
	case info.Size >= 0 && n != info.Size:
		return nil, ctx.Err() == nil, fmt.Errorf("reading %s: %d of %d bytes: %w", key, n, info.Size, io.ErrUnexpectedEOF)
	}
	return b.Bytes(), false, nil
}

// ListMeta lists the keys below `<prefix>/_meta/<prefix arg>` and returns
// the meta objects among them, sorted by name. Keys whose rest is no valid
// meta name (directory markers, foreign objects) are skipped. A prefix no
// valid name can start with is not sent to the server. Options.Timeout
// bounds each page's request, as for List.
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]stores.MetaInfo, error) {
	op := "list meta " + strconv.Quote(prefix)
	cctx, done, err := s.begin(ctx, op, nil, false)
	if err != nil {
		return nil, err
	}
	defer done()
	if !metaPrefixPossible(prefix) {
		return nil, nil
	}
	base := s.metaBase()
	var out []stores.MetaInfo
	for obj := range s.client.ListObjectsIter(cctx, s.bucket, minio.ListObjectsOptions{Prefix: base + prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.fail(ctx, cctx, op, nil, obj.Err)
		}
		name, ok := strings.CutPrefix(obj.Key, base)
		if !ok || stores.ValidMetaName(name) != nil || !strings.HasPrefix(name, prefix) {
			continue
		}
		out = append(out, stores.MetaInfo{Name: name, Size: obj.Size})
	}
	if err := cctx.Err(); err != nil {
		return nil, s.fail(ctx, cctx, op, nil, err)
	}
	s.out.ok()
	// S3 lists in key order, which is name order; not every server does.
	slices.SortFunc(out, func(a, b stores.MetaInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// metaPrefixPossible reports whether some valid meta name starts with p:
// p itself is one, or p+"x" is (p ends inside a name, or right after a
// '/'). A name longer than p starts with p exactly when p+"x" is valid.
func metaPrefixPossible(p string) bool {
	return p == "" || stores.ValidMetaName(p) == nil || stores.ValidMetaName(p+"x") == nil
}

// DeleteMeta removes the meta object; a missing one is not an error.
func (s *Store) DeleteMeta(ctx context.Context, name string) error {
	op, cctx, done, err := s.beginMeta(ctx, "delete meta", name, true)
	if err != nil {
		return err
	}
	defer done()
	err = s.client.RemoveObject(cctx, s.bucket, s.metaKey(name), minio.RemoveObjectOptions{})
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code == minio.NoSuchKey {
		err = nil
	}
	if err != nil {
		return s.fail(ctx, cctx, op, nil, err)
	}
	s.out.ok()
	return nil
}
