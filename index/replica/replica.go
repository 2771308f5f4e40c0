package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/index"
	"github.com/dualstore/dualstore/stores"
)

// Target is a tier the index is replicated into.
type Target struct {
	Name  string // "primary", "safety"
	Store stores.MetaStore
}

// Options configure a Replicator.
type Options struct {
	// FSID is the filesystem's id (the index header's): objects live
	// under index/<FSID>/.
	FSID    string
	Targets []Target
	// StateFile records, at a clean stop, where the backup stands, so the
	// next start continues the generation instead of taking a snapshot.
	StateFile string
	// SnapshotInterval starts a new generation this long after the last
	// snapshot (at the next change). Default 24h.
	SnapshotInterval time.Duration
	// Retention keeps every point in time this far back. Default 7 days.
	Retention time.Duration
	// SpoolLimit caps the bytes of objects not yet in every tier; past
	// it, the queue is dropped and a new generation starts. Default 256 MiB.
	SpoolLimit int64
	// CallTimeout bounds one store call. Default 2 min.
	CallTimeout time.Duration
	Log         zerolog.Logger
}

func (o *Options) defaults() {
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = 24 * time.Hour
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.SpoolLimit <= 0 {
		o.SpoolLimit = 256 << 20
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 2 * time.Minute
	}
}

// queued is an object on its way to the tiers.
type queued struct {
	o    object
	data []byte
	snap bool
	// since is when the oldest commit the object brings was made (zero:
	// only the index's own bookkeeping): a tier's lag counts from it.
	since time.Time
}

// tier is one target's shipping state.
type tier struct {
	t       Target
	next    int64  // spool index of the next object to ship
	pos     object // the newest object it holds (Seq 0: none known)
	gap     bool   // it missed objects: nothing is whole until a new snapshot lands
	objects int64
	bytes   int64
	errs    int64
	lastErr string
	errAt   time.Time
	prune   bool // a snapshot landed: prune old generations
}

// Replicator ships the index's snapshot and cuts to every target.
type Replicator struct {
	db   *index.DB
	opts Options
	log  zerolog.Logger

	mu   sync.Mutex
	cond *sync.Cond // on mu: new objects, shipped objects, close

	gen      string
	seq      uint64
	sums     *sums
	snapTime time.Time
	segBytes int64 // bytes of segments since the snapshot
	dbBytes  int64
	point    time.Time // newest point handed to the spool
	from     uint64    // cuts of earlier epochs are in the snapshot

	snapping bool        // a snapshot is being read: cuts wait in held
	held     []index.Cut // cuts that arrived meanwhile
	want     string      // why a new snapshot is wanted ("" if not)
	broken   bool        // capture stopped (a log read failed)
	snaps    int64

	spool      []queued
	base       int64 // spool index of spool[0]
	spoolBytes int64
	tiers      []*tier

	closed bool
	ctx    context.Context // cancelled by Close: ends calls in flight
	cancel context.CancelFunc
	stop   chan struct{}
	hurry  chan struct{} // closed by Close: retry now, do not back off
	kick   chan struct{}
	wg     sync.WaitGroup
}

// state is what StateFile holds.
type state struct {
	FSID     string    `json:"fsid"`
	Gen      string    `json:"generation"`
	Seq      uint64    `json:"seq"`
	Checksum string    `json:"checksum"`
	Pages    uint32    `json:"pages"`
	PageSize uint32    `json:"page_size"`
	SnapTime time.Time `json:"snapshot_time"`
	SegBytes int64     `json:"segment_bytes"`
}

// Start begins replicating db: it starts the index's capture, reads a
// snapshot, and either continues the generation the state file names (the
// database is exactly what that generation's last object left, and every
// target holds it) or starts a new one with the snapshot. Shipping runs in
// the background; Start fails only on a local error (the index, the state
// file), never because a target is down.
func Start(ctx context.Context, db *index.DB, opts Options) (*Replicator, error) {
	opts.defaults()
	if !validFSID(opts.FSID) {
		return nil, fmt.Errorf("index backup: fsid %q is not a filesystem id", opts.FSID)
	}
	if len(opts.Targets) == 0 {
		return nil, errors.New("index backup: no tier to replicate into")
	}
	r := &Replicator{
		db: db, opts: opts, log: opts.Log.With().Str("component", "index-backup").Logger(),
		stop: make(chan struct{}), hurry: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	r.cond = sync.NewCond(&r.mu)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for _, t := range opts.Targets {
		r.tiers = append(r.tiers, &tier{t: t})
	}
	prev, err := r.takeState()
	if err != nil {
		return nil, err
	}
	if err := db.StartCapture(r.sink); err != nil {
		return nil, fmt.Errorf("index backup: %w", err)
	}
	r.mu.Lock()
	r.snapping = true
	r.mu.Unlock()
	snap, s, info, t, err := r.read(ctx)
	if err != nil {
		db.StopCapture()
		return nil, fmt.Errorf("index backup: %w", err)
	}
	r.mu.Lock()
	if prev != nil && r.continues(ctx, prev, s, info) {
		r.gen, r.seq, r.sums, r.snapTime, r.segBytes = prev.Gen, prev.Seq, s, prev.SnapTime, prev.SegBytes
		r.dbBytes = int64(info.Pages) * int64(info.PageSize)
		r.from = info.Epoch
		for _, tr := range r.tiers {
			tr.pos = object{FSID: opts.FSID, Gen: prev.Gen, Seq: prev.Seq}
		}
		r.finishSnapshot(nil)
		r.log.Info().Str("generation", r.gen).Uint64("seq", r.seq).Msg("index backup continues")
	} else {
		r.newGeneration(snap, s, info, t)
		r.log.Info().Str("generation", r.gen).Int("bytes", len(snap)).Msg("index backup: new generation")
	}
	r.mu.Unlock()

	for _, tr := range r.tiers {
		r.wg.Add(1)
		go r.ship(tr)
	}
	r.wg.Add(2)
	go r.tailLoop()
	go r.snapLoop()
	return r, nil
}

// takeState reads the state file and removes it: from now on the backup
// moves on, and only a clean Close writes a new one. A crash thus always
// starts a new generation.
func (r *Replicator) takeState() (*state, error) {
	p := r.opts.StateFile
	if p == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("index backup: state %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil {
		return nil, fmt.Errorf("index backup: state %s: %w", p, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return nil, fmt.Errorf("index backup: state %s: %w", p, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		r.log.Warn().Err(err).Str("path", p).Msg("index backup: unreadable state file; starting a new generation")
		return nil, nil
	}
	return &st, nil
}

// continues reports whether the generation in st can go on: the database
// is what its last object left, and every target holds that object.
func (r *Replicator) continues(ctx context.Context, st *state, s *sums, info index.SnapshotInfo) bool {
	if st.FSID != r.opts.FSID || st.Checksum != s.value().String() || st.PageSize != info.PageSize ||
		st.Pages != info.Pages || !validGen(st.Gen) || st.Seq == 0 {
		return false
	}
	for _, tr := range r.tiers {
		ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
		list, err := tr.t.Store.ListMeta(ctx, genPrefix(r.opts.FSID, st.Gen))
		cancel()
		if err != nil {
			r.log.Warn().Err(err).Str("tier", tr.t.Name).Msg("index backup: cannot list the generation to continue; starting a new one")
			return false
		}
		var first, last uint64
		for _, m := range list {
			if o, ok := parseObject(m.Name); ok {
				if o.Seq == 1 {
					first = 1
				}
				last = max(last, o.Seq)
			}
		}
		if first != 1 || last != st.Seq {
			return false
		}
	}
	return true
}

// read takes a snapshot of the index, encoded.
func (r *Replicator) read(ctx context.Context) ([]byte, *sums, index.SnapshotInfo, time.Time, error) {
	var enc *snapEncoder
	var pages uint32
	t := time.Now()
	info, err := r.db.Snapshot(ctx, func(pg uint32, data []byte) error {
		if enc == nil {
			var err error
			// The page count is known only after page 1: its header has it.
			pages = pageCount(data)
			if enc, err = newSnapEncoder(uint32(len(data)), pages, t); err != nil {
				return err
			}
		}
		return enc.page(pg, data)
	})
	if err != nil {
		return nil, nil, info, t, err
	}
	if enc == nil || info.Pages != pages {
		return nil, nil, info, t, fmt.Errorf("snapshot: %d pages, page 1 says %d", info.Pages, pages)
	}
	b, s, err := enc.close()
	if err == nil && len(b) > MaxObjectBytes {
		err = fmt.Errorf("snapshot: %d bytes, more than an index backup object may be (%d): a restore would refuse it", len(b), int64(MaxObjectBytes))
	}
	return b, s, info, t, err
}

// pageCount is the database size in pages from page 1's header (bytes
// 28-31, valid in WAL mode since SQLite 3.7.0).
func pageCount(p1 []byte) uint32 {
	if len(p1) < 32 {
		return 0
	}
	return uint32(p1[28])<<24 | uint32(p1[29])<<16 | uint32(p1[30])<<8 | uint32(p1[31])
}

// newGeneration queues snap as the first object of a new generation.
// Caller holds mu.
func (r *Replicator) newGeneration(snap []byte, s *sums, info index.SnapshotInfo, t time.Time) {
	r.gen, r.seq, r.sums, r.snapTime, r.segBytes = newGen(t), 1, s, t, 0
	r.dbBytes = int64(info.Pages) * int64(info.PageSize)
	r.from = info.Epoch
	r.snaps++
	o := object{FSID: r.opts.FSID, Gen: r.gen, Seq: 1, Time: t, Sum: sum64(snap)}
	r.enqueue(queued{o: o, data: snap, snap: true, since: t})
	r.finishSnapshot(nil)
}

// finishSnapshot ends a snapshot: the cuts that arrived meanwhile and are
// not in it become segments. Caller holds mu.
func (r *Replicator) finishSnapshot(err error) {
	held := r.held
	r.held, r.snapping = nil, false
	if err != nil {
		// The old generation goes on where it was, unless capture broke.
		if r.broken {
			for _, c := range held {
				r.db.Recycle(c)
			}
			return
		}
		r.apply(held)
		return
	}
	r.want, r.broken = "", false
	var keep []index.Cut
	for _, c := range held {
		if c.Epoch >= r.from {
			keep = append(keep, c)
		} else {
			r.db.Recycle(c)
		}
	}
	r.apply(keep)
}

// sink receives the cuts of settled epochs from the index.
func (r *Replicator) sink(cuts []index.Cut, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.broken = true
		r.wantSnapshot("reading the index log failed: " + err.Error())
		return
	}
	if r.snapping || r.broken {
		r.held = append(r.held, cuts...)
		return
	}
	r.apply(cuts)
}

// apply turns cuts into one segment. Caller holds mu.
func (r *Replicator) apply(cuts []index.Cut) {
	var live []index.Cut
	for _, c := range cuts {
		if c.Epoch >= r.from {
			live = append(live, c)
		} else {
			r.db.Recycle(c)
		}
	}
	if len(live) == 0 {
		return
	}
	pages := live[0].Pages
	if len(live) > 1 {
		pages = map[uint32][]byte{}
		for _, c := range live {
			for pg, d := range c.Pages {
				pages[pg] = d
			}
		}
	}
	last := live[len(live)-1]
	var since time.Time
	for _, c := range live {
		if !c.Since.IsZero() && (since.IsZero() || c.Since.Before(since)) {
			since = c.Since
		}
	}
	m := index.Cut{Pages: pages}
	order := m.SortedPages()
	seq := r.seq + 1
	b, err := encodeSegment(r.sums, seq, last.Time, last.Commit, pages, order)
	if err == nil && len(b) > MaxObjectBytes {
		err = fmt.Errorf("segment %d: %d bytes, more than an index backup object may be (%d)", seq, len(b), int64(MaxObjectBytes))
	}
	for _, c := range live {
		r.db.Recycle(c)
	}
	if err != nil {
		// The image the segments apply to is unknown now: start over.
		r.log.Error().Err(err).Msg("index backup: encoding a segment failed")
		r.broken = true
		r.db.StopCapture()
		r.wantSnapshot("encoding a segment failed: " + err.Error())
		return
	}
	r.seq = seq
	r.segBytes += int64(len(b))
	r.dbBytes = int64(last.Commit) * int64(last.PageSize)
	o := object{FSID: r.opts.FSID, Gen: r.gen, Seq: seq, Time: last.Time, Sum: sum64(b)}
	r.enqueue(queued{o: o, data: b, since: since})
	switch {
	case time.Since(r.snapTime) >= r.opts.SnapshotInterval:
		r.wantSnapshot("snapshot interval")
	case r.segBytes > max(r.dbBytes, 16<<20):
		r.wantSnapshot("segments outgrew the database")
	case r.seq > 2000:
		r.wantSnapshot("2000 segments since the snapshot")
	}
}

// enqueue adds an object for every tier. Caller holds mu.
func (r *Replicator) enqueue(q queued) {
	if r.spoolBytes+int64(len(q.data)) > r.opts.SpoolLimit && len(r.spool) > 0 && !q.snap {
		// A tier is too far behind to keep its queue: drop it, and let a
		// new generation bring every tier back whole.
		r.log.Warn().Int64("bytes", r.spoolBytes).Msg("index backup: a tier is too far behind; the queue is dropped and a new generation starts")
		end := r.base + int64(len(r.spool))
		for _, tr := range r.tiers {
			if tr.next < end {
				tr.gap = true
				tr.next = end
			}
		}
		r.base, r.spool, r.spoolBytes = end, nil, 0
		r.broken = true // the current generation cannot continue
		r.db.StopCapture()
		r.wantSnapshot("spool overflow")
		return
	}
	r.spool = append(r.spool, q)
	r.spoolBytes += int64(len(q.data))
	if q.snap {
		r.point = q.o.Time
	} else if q.o.Time.After(r.point) {
		r.point = q.o.Time
	}
	r.cond.Broadcast()
}

func (r *Replicator) wantSnapshot(why string) {
	if r.want == "" {
		r.want = why
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// snapLoop takes the snapshots sink and apply ask for.
func (r *Replicator) snapLoop() {
	defer r.wg.Done()
	backoff := time.Second
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
		}
		r.mu.Lock()
		why, broken := r.want, r.broken
		if why == "" || r.closed {
			r.mu.Unlock()
			continue
		}
		r.snapping = true
		r.mu.Unlock()
		var err error
		if broken {
			r.db.StopCapture()
			err = r.db.StartCapture(r.sink)
		}
		var snap []byte
		var s *sums
		var info index.SnapshotInfo
		var t time.Time
		if err == nil {
			snap, s, info, t, err = r.read(context.Background())
		}
		r.mu.Lock()
		if err != nil {
			r.log.Error().Err(err).Str("why", why).Msg("index backup: snapshot failed; retrying")
			r.finishSnapshot(err)
			r.mu.Unlock()
			select {
			case <-r.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			r.wantSnapshot(why)
			continue
		}
		backoff = time.Second
		r.log.Info().Str("why", why).Int("bytes", len(snap)).Msg("index backup: new generation")
		r.newGeneration(snap, s, info, t)
		r.mu.Unlock()
	}
}

// tailLoop keeps the index's log reader current, so Seal has little to
// read under the writer lock.
func (r *Replicator) tailLoop() {
	defer r.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if err := r.db.Tail(); err != nil {
			r.log.Warn().Err(err).Msg("index backup: reading the index log")
		}
	}
}

// ship sends the spool to one tier, in order, retrying with backoff.
func (r *Replicator) ship(tr *tier) {
	defer r.wg.Done()
	var backoff time.Duration
	for {
		r.mu.Lock()
		for !r.closed && tr.next >= r.base+int64(len(r.spool)) {
			r.cond.Wait()
		}
		if r.closed {
			r.mu.Unlock()
			return
		}
		q := r.spool[tr.next-r.base]
		r.mu.Unlock()

		ctx, cancel := context.WithTimeoutCause(r.ctx, r.opts.CallTimeout, stores.ErrTimeout)
		err := tr.t.Store.PutMeta(ctx, q.o.name(), q.data)
		cancel()

		r.mu.Lock()
		if err != nil {
			tr.errs++
			tr.lastErr, tr.errAt = err.Error(), time.Now()
			closed := r.closed
			r.cond.Broadcast()
			r.mu.Unlock()
			r.log.Warn().Err(err).Str("tier", tr.t.Name).Str("object", q.o.name()).Msg("index backup: tier did not take an object; retrying")
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			if closed {
				return // Close gave up waiting
			}
			select {
			case <-r.stop:
				return
			case <-r.hurry:
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if tr.next == r.base+int64(len(r.spool)) || r.spool[tr.next-r.base].o != q.o {
			// The spool was dropped meanwhile (overflow): this object
			// is no longer the tier's next.
			r.mu.Unlock()
			continue
		}
		tr.next++
		tr.pos = q.o
		tr.objects++
		tr.bytes += int64(len(q.data))
		if q.snap {
			tr.gap = false
			tr.prune = true
		}
		r.trim()
		prune := tr.prune && !r.closed
		tr.prune = false
		r.cond.Broadcast()
		r.mu.Unlock()
		if prune {
			r.prune(tr)
		}
	}
}

// trim drops the objects every tier has. Caller holds mu.
func (r *Replicator) trim() {
	low := r.base + int64(len(r.spool))
	for _, tr := range r.tiers {
		low = min(low, tr.next)
	}
	n := int(low - r.base)
	if n <= 0 {
		return
	}
	for _, q := range r.spool[:n] {
		r.spoolBytes -= int64(len(q.data))
	}
	r.spool = append([]queued(nil), r.spool[n:]...)
	r.base = low
}

// prune removes a tier's generations older than the retention window: a
// generation goes once a newer one whose snapshot is in the tier started
// before the window. The current generation always stays, and so does an
// unfinished one younger than a day (it may be another start's).
func (r *Replicator) prune(tr *tier) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.CallTimeout)
	defer cancel()
	list, err := tr.t.Store.ListMeta(ctx, fsidPrefix(r.opts.FSID))
	if err != nil {
		r.log.Warn().Err(err).Str("tier", tr.t.Name).Msg("index backup: listing old generations")
		return
	}
	r.mu.Lock()
	cur := r.gen
	r.mu.Unlock()
	gens := groupGens(list)
	names := make([]string, 0, len(gens))
	for g := range gens {
		names = append(names, g)
	}
	sort.Strings(names)
	cutoff := time.Now().Add(-r.opts.Retention)
	for i, g := range names {
		if g >= cur {
			break
		}
		// The newest complete generation after g, started before the
		// window, covers every point g could restore inside it.
		covered := false
		for _, h := range names[i+1:] {
			if gens[h].snap != nil && !gens[h].snap.Time.After(cutoff) {
				covered = true
			}
		}
		if gens[g].snap == nil && time.Since(genTime(g)) > 24*time.Hour {
			covered = true
		}
		if !covered {
			continue
		}
		for _, o := range gens[g].objs {
			if err := tr.t.Store.DeleteMeta(ctx, o.name()); err != nil {
				r.log.Warn().Err(err).Str("tier", tr.t.Name).Str("object", o.name()).Msg("index backup: removing an old generation")
				return
			}
		}
		r.log.Info().Str("tier", tr.t.Name).Str("generation", g).Msg("index backup: old generation removed")
	}
}

// genObjs is one generation's objects in one tier.
type genObjs struct {
	snap *object
	objs []object // by seq
}

func groupGens(list []stores.MetaInfo) map[string]*genObjs {
	gens := map[string]*genObjs{}
	for _, m := range list {
		o, ok := parseObject(m.Name)
		if !ok {
			continue
		}
		g := gens[o.Gen]
		if g == nil {
			g = &genObjs{}
			gens[o.Gen] = g
		}
		g.objs = append(g.objs, o)
		if o.Seq == 1 {
			oc := o
			g.snap = &oc
		}
	}
	for _, g := range gens {
		sort.Slice(g.objs, func(i, j int) bool { return g.objs[i].Seq < g.objs[j].Seq })
	}
	return gens
}

// Wait returns once every point handed over before the call is in every
// tier, or ctx ends (the error names the tiers behind and why).
func (r *Replicator) Wait(ctx context.Context) error { return r.wait(ctx, false) }

// drain waits, for Close, like Wait, but gives up as soon as every tier
// still behind has failed a call since drain began (its backoff cut
// short): a tier that is down is not waited for (the next start begins a
// new generation instead).
func (r *Replicator) drain(ctx context.Context) error {
	close(r.hurry)
	return r.wait(ctx, true)
}

func (r *Replicator) wait(ctx context.Context, notDown bool) error {
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	target := r.base + int64(len(r.spool))
	stopWake := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stopWake()
	for {
		behind := r.behind(target)
		if len(behind) == 0 {
			return nil
		}
		down := notDown
		for _, tr := range r.tiers {
			if (tr.next < target || tr.gap) && !tr.errAt.After(start) {
				down = false
			}
		}
		if down || ctx.Err() != nil || r.closed {
			return fmt.Errorf("index backup not in every tier: %s", errors.Join(behind...))
		}
		r.cond.Wait()
	}
}

// behind lists the tiers that lack an object before target. Caller holds mu.
func (r *Replicator) behind(target int64) []error {
	var out []error
	for _, tr := range r.tiers {
		if tr.next < target || tr.gap {
			why := "still shipping"
			if tr.lastErr != "" && tr.errAt.After(time.Now().Add(-time.Minute)) {
				why = tr.lastErr
			}
			out = append(out, fmt.Errorf("tier %s: %s", tr.t.Name, why))
		}
	}
	return out
}

// Close writes the last cut (the changes of the last durability point's
// own settling), waits until every tier has everything or ctx ends, stops,
// and records the state for the next start when nothing is missing. The
// index must not change after (the caller closed its file layer).
func (r *Replicator) Close(ctx context.Context) error {
	// Settle's own commit is in no cut yet. Settling again is safe only
	// when nothing is unsettled (the last durability point succeeded):
	// then it drops no undo record and only hands over that commit.
	if u, err := r.db.Unsettled(ctx); err == nil && len(u) == 0 {
		e := r.db.Seal()
		if _, err := r.db.Settle(ctx, e); err != nil {
			r.log.Warn().Err(err).Msg("index backup: last cut")
		}
	}
	werr := r.drain(ctx)
	r.mu.Lock()
	r.closed = true
	r.cond.Broadcast()
	r.mu.Unlock()
	r.cancel()
	close(r.stop)
	r.wg.Wait()
	r.db.StopCapture()

	r.mu.Lock()
	defer r.mu.Unlock()
	if werr != nil || r.want != "" || r.broken || r.snapping || len(r.held) > 0 {
		if werr == nil {
			werr = fmt.Errorf("index backup: a new generation was due (%s)", r.want)
		}
		return fmt.Errorf("%w; the next start begins a new generation", werr)
	}
	if r.opts.StateFile == "" {
		return nil
	}
	st := state{FSID: r.opts.FSID, Gen: r.gen, Seq: r.seq, Checksum: r.sums.value().String(),
		Pages: r.sums.pages(), PageSize: r.sums.psize, SnapTime: r.snapTime, SegBytes: r.segBytes}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileSync(r.opts.StateFile, b); err != nil {
		return fmt.Errorf("index backup: state %s: %w", r.opts.StateFile, err)
	}
	return nil
}

// TierStats is one tier's side of Stats.
type TierStats struct {
	Name       string    `json:"name"`
	Generation string    `json:"generation"`
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"` // the point in time its newest object holds
	// LagSeconds is the age of the oldest commit the tier lacks: not yet
	// cut by a durability point, or cut and not yet shipped to it (0 when
	// it holds every commit).
	LagSeconds float64 `json:"lag_seconds"`
	Behind     int64   `json:"behind_objects"`
	Objects    int64   `json:"objects"`
	Bytes      int64   `json:"bytes"`
	Errors     int64   `json:"errors"`
	LastError  string  `json:"last_error,omitempty"`
}

// Stats is the backup's state for the stats file.
type Stats struct {
	Generation   string      `json:"generation"`
	Seq          uint64      `json:"seq"`
	Point        time.Time   `json:"point"` // newest point handed over
	SnapshotTime time.Time   `json:"snapshot_time"`
	Snapshots    int64       `json:"snapshots"`
	SpoolObjects int         `json:"spool_objects"`
	SpoolBytes   int64       `json:"spool_bytes"`
	Pending      string      `json:"pending_snapshot,omitempty"`
	Tiers        []TierStats `json:"tiers"`
}

// Stats returns the backup's position, per tier.
func (r *Replicator) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Generation: r.gen, Seq: r.seq, Point: r.point, SnapshotTime: r.snapTime, Snapshots: r.snaps,
		SpoolObjects: len(r.spool), SpoolBytes: r.spoolBytes, Pending: r.want}
	end := r.base + int64(len(r.spool))
	now := time.Now()
	// Commits not yet in any object: in the index's cuts and log, or
	// held while a snapshot is read.
	oldest := r.db.Unhanded()
	for _, c := range r.held {
		oldest = earliest(oldest, c.Since)
	}
	for _, tr := range r.tiers {
		ts := TierStats{Name: tr.t.Name, Generation: tr.pos.Gen, Seq: tr.pos.Seq, Time: tr.pos.Time,
			Behind: end - tr.next, Objects: tr.objects, Bytes: tr.bytes, Errors: tr.errs, LastError: tr.lastErr}
		o := oldest
		for i := max(tr.next, r.base); i < end; i++ {
			o = earliest(o, r.spool[i-r.base].since)
		}
		if !o.IsZero() {
			ts.LagSeconds = max(0, now.Sub(o).Seconds())
		}
		s.Tiers = append(s.Tiers, ts)
	}
	return s
}

// earliest is the earlier of two times, a zero one not counting.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// writeFileSync writes a file atomically and durably.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
