package stores

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The meta calls of a Tier go to the members that implement MetaStore; a
// member that does not, or whose calls wrap ErrNoMeta (a Fault or a Tier
// over stores that keep none), is passed over as if it were not in the
// tier, and is not counted. A tier with no such member fails every meta
// call with an error wrapping ErrNoMeta.
//
// A meta call that fails counts as a failure of its store, in the same
// error counters as chunk calls (a store that cannot take the index backup
// is failing); successes, bytes, a missing object and latencies do not
// count, so the writes and reads of the stats stay chunk writes and reads
// (the index backup reports its own objects and bytes per tier).

// checkMeta reports why a meta call may not start: a closed tier, a done
// ctx, or (when name is checked) a bad name.
func (t *Tier) checkMeta(ctx context.Context, op, name string, validate bool) error {
	var err error
	switch {
	case t.closed.Load():
		err = ErrClosed
	case ctx.Err() != nil:
		err = ctx.Err()
	case validate:
		err = ValidMetaName(name)
	}
	if err != nil {
		return fmt.Errorf("tier %s: %s %s: %w", t.name, op, strconv.Quote(name), err)
	}
	return nil
}

// noMeta reports whether err says a member keeps no meta objects.
func noMeta(err error) bool { return err != nil && errors.Is(err, ErrNoMeta) }

// PutMeta writes the meta object to the first member that accepts it,
// like Put. When all fail the error joins every member's error.
//
// A member that failed keeps what it held under name, and GetMeta, trying
// members in order, returns that older object again once the member
// answers. Callers that must read back the newest object write each
// version under a new name (a generation number) and pick the newest
// from ListMeta, rather than replace one name.
func (t *Tier) PutMeta(ctx context.Context, name string, data []byte) error {
	if err := t.checkMeta(ctx, "put meta", name, true); err != nil {
		return err
	}
	var errs []error
	for i, m := range t.members {
		ms, ok := m.(MetaStore)
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		err := ms.PutMeta(ctx, name, data)
		if noMeta(err) {
			continue
		}
		c := &t.stats[i]
		if err == nil {
			return nil
		}
		if !cancelled(ctx, err) {
			c.writesErr.Add(1)
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("tier %s: put meta %q: %w", t.name, name, ErrNoMeta)
	}
	joined := errors.Join(errs...)
	if !cancelled(ctx, joined) {
		t.total.writesErr.Add(1)
	}
	return fmt.Errorf("tier %s: put meta %q: %w", t.name, name, joined)
}

// GetMeta returns the meta object from the first member that has it,
// trying the next on any failure, like Get. The error wraps ErrNotFound
// only when every member said not found, and ErrCorrupt when any refused
// the object (over max, or not what was put).
func (t *Tier) GetMeta(ctx context.Context, name string, max int64) ([]byte, error) {
	if err := t.checkMeta(ctx, "get meta", name, true); err != nil {
		return nil, err
	}
	var merrs []memberError
	for i, m := range t.members {
		ms, ok := m.(MetaStore)
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			merrs = append(merrs, memberError{failed, err})
			break
		}
		data, err := ms.GetMeta(ctx, name, max)
		if noMeta(err) {
			continue
		}
		c := &t.stats[i]
		switch {
		case err == nil:
			return data, nil
		case errors.Is(err, ErrCorrupt):
			c.readsBad.Add(1)
			t.total.readsBad.Add(1)
			merrs = append(merrs, memberError{bad, fmt.Errorf("%s: %w", m.Name(), err)})
		case errors.Is(err, ErrNotFound):
			merrs = append(merrs, memberError{missing, fmt.Errorf("%s: %w", m.Name(), err)})
		default:
			if !cancelled(ctx, err) {
				c.readsErr.Add(1)
			}
			merrs = append(merrs, memberError{failed, fmt.Errorf("%s: %w", m.Name(), err)})
		}
	}
	if len(merrs) == 0 {
		return nil, fmt.Errorf("tier %s: get meta %q: %w", t.name, name, ErrNoMeta)
	}
	err := t.readError("get meta "+strconv.Quote(name), merrs)
	if !cancelled(ctx, err) && !errors.Is(err, ErrNotFound) {
		t.total.readsErr.Add(1)
	}
	return nil, err
}

// ListMeta merges the listings of every member that keeps meta objects:
// each name once, sorted, with the size of the first member (in order)
// that holds it, the copy GetMeta returns. A member that fails to list
// fails the call: a listing that silently lacks a member's objects could
// pass for their absence.
func (t *Tier) ListMeta(ctx context.Context, prefix string) ([]MetaInfo, error) {
	if err := t.checkMeta(ctx, "list meta", prefix, false); err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var out []MetaInfo
	listed := false
	for _, m := range t.members {
		ms, ok := m.(MetaStore)
		if !ok {
			continue
		}
		list, err := ms.ListMeta(ctx, prefix)
		if noMeta(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tier %s: list meta %q: %s: %w", t.name, prefix, m.Name(), err)
		}
		listed = true
		for _, mi := range list {
			if !seen[mi.Name] {
				seen[mi.Name] = true
				out = append(out, mi)
			}
		}
	}
	if !listed {
		return nil, fmt.Errorf("tier %s: list meta %q: %w", t.name, prefix, ErrNoMeta)
	}
	slices.SortFunc(out, func(a, b MetaInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteMeta removes the meta object from every member that keeps meta
// objects, since failover may have put it in any of them. Members that do
// not hold it are fine.
func (t *Tier) DeleteMeta(ctx context.Context, name string) error {
	if err := t.checkMeta(ctx, "delete meta", name, true); err != nil {
		return err
	}
	var errs []error
	deleted := false
	for _, m := range t.members {
		ms, ok := m.(MetaStore)
		if !ok {
			continue
		}
		err := ms.DeleteMeta(ctx, name)
		if noMeta(err) {
			continue
		}
		deleted = true
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tier %s: delete meta %q: %w", t.name, name, err)
	}
	if !deleted {
		return fmt.Errorf("tier %s: delete meta %q: %w", t.name, name, ErrNoMeta)
	}
	return nil
}
