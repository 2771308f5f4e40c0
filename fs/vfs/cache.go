package vfs

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"

	"github.com/dualstore/dualstore/stores"
)

// chunkCache is a bounded LRU of verified chunk bytes, with one fetch in
// flight per id: a read and the prefetch of the same chunk share it.
// Cached slices are never modified.
type chunkCache struct {
	max   int64
	fetch func(ctx context.Context, id stores.ID) ([]byte, error)

	mu       sync.Mutex
	size     int64
	lru      *list.List // of *cacheEntry, front = most recent
	entries  map[stores.ID]*list.Element
	inflight map[stores.ID]*fetchCall

	hits, misses atomic.Int64
}

type cacheEntry struct {
	id   stores.ID
	data []byte
}

type fetchCall struct {
	done chan struct{}
	data []byte
	err  error
}

func newChunkCache(max int64, fetch func(ctx context.Context, id stores.ID) ([]byte, error)) *chunkCache {
	return &chunkCache{
		max: max, fetch: fetch, lru: list.New(),
		entries: map[stores.ID]*list.Element{}, inflight: map[stores.ID]*fetchCall{},
	}
}

// get returns the chunk from the cache or fetches it (once, however many
// callers ask at the same time).
func (c *chunkCache) get(ctx context.Context, id stores.ID) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.entries[id]; ok {
		c.lru.MoveToFront(el)
		data := el.Value.(*cacheEntry).data
		c.mu.Unlock()
		c.hits.Add(1)
		return data, nil
	}
	c.misses.Add(1)
	if call, ok := c.inflight[id]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.data, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &fetchCall{done: make(chan struct{})}
	c.inflight[id] = call
	c.mu.Unlock()

	// The fetch is shared, so one caller's cancellation must not fail the
	// others: it runs without the caller's cancellation.
	call.data, call.err = c.fetch(context.WithoutCancel(ctx), id)
	c.mu.Lock()
	delete(c.inflight, id)
	if call.err == nil {
		c.addLocked(id, call.data)
	}
	c.mu.Unlock()
	close(call.done)
	return call.data, call.err
}

// contains reports whether id is cached or being fetched.
func (c *chunkCache) contains(id stores.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[id]
	_, ok2 := c.inflight[id]
	return ok || ok2
}

func (c *chunkCache) addLocked(id stores.ID, data []byte) {
	if int64(len(data)) > c.max {
		return
	}
	c.entries[id] = c.lru.PushFront(&cacheEntry{id, data})
	c.size += int64(len(data))
	for c.size > c.max {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, e.id)
		c.size -= int64(len(e.data))
	}
}

func (c *chunkCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
