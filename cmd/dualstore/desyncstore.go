package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"

	"github.com/dualstore/dualstore/stores"
	"github.com/dualstore/dualstore/stores/s3"
)

// desyncStore is a desync chunk store named on the command line the way
// desync names it: a directory (DIR/<4 hex>/<id>.cacnk, zstd), or
// s3+http://HOST[:PORT]/BUCKET[/PREFIX] (s3+https for TLS, ?lookup=path
// for path addressing) with desync's credentials in the environment
// (S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION), else the AWS ones. export
// writes chunks into it; import reads them. Nothing but chunk files is
// ever written into it: desync's verify and prune see only what desync
// itself writes.
type desyncStore struct {
	loc string
	dir string    // a local store, or
	s3  *s3.Store // an S3 one (casync layout)
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func openDesyncStore(ctx context.Context, loc string, maxChunk uint64) (*desyncStore, error) {
	d := &desyncStore{loc: loc}
	var err error
	if d.dec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxChunk+1), zstd.WithDecoderConcurrency(1)); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(loc, "s3+") {
		if st, err := os.Stat(loc); err != nil || !st.IsDir() {
			d.dec.Close()
			return nil, usageErr(fmt.Errorf("desync store %s: not a directory (%v)", loc, err))
		}
		if d.enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1)); err != nil {
			d.dec.Close()
			return nil, err
		}
		d.dir = loc
		return d, nil
	}
	opts, err := desyncS3Options(loc)
	if err != nil {
		d.dec.Close()
		return nil, usageErr(err)
	}
	if d.s3, err = s3.New(ctx, opts); err != nil {
		d.dec.Close()
		return nil, fmt.Errorf("desync store %s: %w", loc, err)
	}
	return d, nil
}

// desyncS3Options reads desync's S3 store URL.
func desyncS3Options(loc string) (s3.Options, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return s3.Options{}, fmt.Errorf("desync store %s: %w", loc, err)
	}
	o := s3.Options{Name: loc, Layout: s3.LayoutCasync, Region: os.Getenv("S3_REGION"),
		AccessKey: os.Getenv("S3_ACCESS_KEY"), SecretKey: os.Getenv("S3_SECRET_KEY")}
	switch u.Scheme {
	case "s3+http":
		o.DisableTLS = true
	case "s3+https":
	default:
		return o, fmt.Errorf("desync store %s: scheme %q: want s3+http or s3+https (or a directory)", loc, u.Scheme)
	}
	o.Endpoint = u.Host
	bucket, prefix, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if u.Host == "" || bucket == "" {
		return o, fmt.Errorf("desync store %s: want s3+http(s)://HOST[:PORT]/BUCKET[/PREFIX]", loc)
	}
	o.Bucket, o.Prefix = bucket, prefix
	switch l := u.Query().Get("lookup"); l {
	case "path":
		o.Addressing = s3.AddressingPath
	case "dns":
		o.Addressing = s3.AddressingVirtualHost
	case "", "auto":
	default:
		return o, fmt.Errorf("desync store %s: lookup=%q: want path, dns or auto", loc, l)
	}
	if o.AccessKey == "" {
		o.SecretKey = ""
	}
	return o, o.Validate()
}

func (d *desyncStore) Close() {
	d.dec.Close()
	if d.enc != nil {
		d.enc.Close()
	}
	if d.s3 != nil {
		_ = d.s3.Close()
	}
}

func (d *desyncStore) chunkPath(id [32]byte) string {
	name := hex.EncodeToString(id[:])
	return filepath.Join(d.dir, name[:4], name+".cacnk")
}

// Put stores one chunk, zstd, unless the store holds it already. A local
// one is written to a temp name and renamed (a reader never sees a part).
func (d *desyncStore) Put(ctx context.Context, id [32]byte, data []byte) error {
	if d.s3 != nil {
		if err := d.s3.Put(ctx, stores.ID(id), data); err != nil {
			return fmt.Errorf("desync store %s: %w", d.loc, err)
		}
		return nil
	}
	final := d.chunkPath(id)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	shard := filepath.Dir(final)
	if err := os.MkdirAll(shard, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(shard, ".tmp-cacnk-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(d.enc.EncodeAll(data, nil))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Get reads one chunk of size bytes (as the blob index says), decoded.
// Its id is the caller's to check. A stored object that cannot be this
// chunk (not a regular file, larger than any frame of size bytes, not
// zstd) is an error naming it, read no further than that bound.
func (d *desyncStore) Get(ctx context.Context, id [32]byte, size uint64) ([]byte, error) {
	if d.s3 != nil {
		// The blob index's size bounds the read (stores.BoundOf).
		data, err := d.s3.Get(stores.WithExpectedSize(ctx, stores.ID(id), int64(size)), stores.ID(id))
		if err != nil {
			return nil, fmt.Errorf("desync store %s: %w", d.loc, err)
		}
		return data, nil
	}
	p := d.chunkPath(id)
	raw, err := readBounded(p, stores.CompressedBound(int64(size)))
	if err != nil {
		return nil, err
	}
	data, err := d.dec.DecodeAll(raw, make([]byte, 0, size))
	if err != nil {
		return nil, fmt.Errorf("%s: not zstd: %w", p, err)
	}
	return data, nil
}

// readBounded reads a chunk file, refusing one that is not a regular file
// or is larger than max (a damaged or hostile store) without reading it.
// O_NONBLOCK: a FIFO in its place must not hang the open.
func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > max {
		return nil, fmt.Errorf("%s: not a chunk file of at most %d bytes", p, max)
	}
	buf, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > max {
		return nil, errors.New(p + ": grew while read")
	}
	return buf, nil
}
