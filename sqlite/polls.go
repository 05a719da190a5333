package sqlite

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
)

// Polling clients. A Backend answers Get from a reccache.PollCache of the
// records it recently read or wrote, so that a client polling a running
// request does not cost a read of the file at every poll, and a handler
// beside the worker reads the claim and the outcome the worker just wrote
// without one.
//
// In this process every write of the file goes through the engine's
// writer, which tells every cache of the record's table prefix and queue
// once it committed: the writing Backend's cache keeps the record as
// written (Wrote), the others drop it (Changed). Other processes' writes
// are not announced, but SQLite counts them: PRAGMA data_version on a
// connection changes when another connection has committed since its last
// read, and the writer's connection commits this process's writes itself,
// so a change of it there means another process (or another engine on the
// same file) wrote. The writer reads it at the start of every transaction
// and whenever a Get asks for it (checkVersion), and drops every cache when
// it changed.
//
// A cached record answers a Get only if a check covers a moment after the
// Get began, so that a poll sees every write committed before it, by any
// process, as a read of the file would:
//
//   - while the writer is in a transaction whose check succeeded, no other
//     connection can commit (it holds the write lock), so its check covers
//     every moment until it commits;
//   - otherwise the Get asks the writer for a check and waits for it (the
//     checks of many Gets are one), at most versionCheckWait; then it reads
//     the file.
//
// A check is one PRAGMA on the writer's connection when the writer idles,
// and nothing more when it writes, where a read of the file is a query on
// a connection of the read pool.

// versionCheckWait is the longest a Get waits for a check of PRAGMA
// data_version before it reads the file instead: the writer may be
// waiting for another process's write lock.
const versionCheckWait = 5 * time.Millisecond

// defaultPollCacheAge is Options.PollCacheAge's default: longer than a
// Handler's default Retry-After (1s) several times over, so that clients
// that wait it between polls are answered from the cache. Unlike a
// backend told of changes by notifications, which may be lost, the age is
// no bound on how late a change is seen here (every Get is checked), only
// on how long a record stays cached.
const defaultPollCacheAge = 5 * time.Second

type pollCache = reccache.PollCache[*asyncreq.Record]

// pollCaches are the poll caches of an engine's Backends, with what the
// writer last read of PRAGMA data_version.
type pollCaches struct {
	mu sync.Mutex
	m  map[string][]*pollCache // by table prefix and queue (cacheGroup)

	// checked is a time (monoNanos) up to which the caches are known to
	// miss no other process's write: when the last check began; 0: none
	// yet, or the last check failed.
	checked atomic.Int64
	// inTx is set while the writer is in a transaction whose check
	// succeeded: until it commits, no other process can.
	inTx atomic.Bool
	// ended, when not nil, is closed at the end of the next check, for the
	// Gets that wait for one (await).
	endedMu sync.Mutex
	ended   chan struct{}
	// version is the data_version the writer read last, if has (the last
	// check succeeded: in a transaction, the check that began it); used by
	// the writer goroutine only.
	version int64
	has     bool

	asked atomic.Bool   // a check is requested and not yet begun
	ask   chan struct{} // to the writer: check (room for one)
}

// cacheGroup names the records of a table prefix and queue.
func cacheGroup(prefix, queue string) string { return prefix + "\x00" + queue }

// add registers c, the cache of a Backend of group.
func (s *pollCaches) add(group string, c *pollCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string][]*pollCache)
	}
	s.m[group] = append(s.m[group], c)
}

// remove unregisters c.
func (s *pollCaches) remove(group string, c *pollCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.m[group]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(s.m, group)
		return
	}
	s.m[group] = cs
}

// any reports whether a cache is registered.
func (s *pollCaches) any() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m) > 0
}

// changed drops id from the caches of group, except from but.
func (s *pollCaches) changed(group, id string, but *pollCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.m[group] {
		if c != but {
			c.Changed(id)
		}
	}
}

// reset drops everything every cache holds.
func (s *pollCaches) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cs := range s.m {
		for _, c := range cs {
			c.Listen(true)
		}
	}
}

// covers reports whether a check covers a moment at or after now: the
// writer holds the write lock with a check made, or a check began then.
func (s *pollCaches) covers(now time.Time) bool {
	return s.inTx.Load() || s.checked.Load() >= monoNanos(now)
}

// monoStart is what monoNanos counts from.
var monoStart = time.Now()

// monoNanos is t in nanoseconds of the monotonic clock, which a change of
// the wall clock does not move, for comparing the times of checks and
// Gets. It is above 0 for a t after the package was loaded.
func monoNanos(t time.Time) int64 {
	return int64(t.Sub(monoStart)) + 1
}

// await waits until a check covers a moment at or after now, asking the
// writer for one, for versionCheckWait at most. It reports whether one
// does.
func (s *pollCaches) await(ctx context.Context, now time.Time) bool {
	if s.covers(now) {
		return true
	}
	timer := time.NewTimer(versionCheckWait)
	defer timer.Stop()
	for {
		s.endedMu.Lock()
		if s.ended == nil {
			s.ended = make(chan struct{})
		}
		ended := s.ended
		s.endedMu.Unlock()
		if s.covers(now) { // a check ended before ended was made
			return true
		}
		s.request()
		select {
		case <-ended:
			if s.covers(now) {
				return true
			}
			// That check began before now: ask for the next.
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// checkEnded wakes the Gets waiting for a check (await). The writer calls
// it after each check, once what the check found is in place.
func (s *pollCaches) checkEnded() {
	s.endedMu.Lock()
	defer s.endedMu.Unlock()
	if s.ended != nil {
		close(s.ended)
		s.ended = nil
	}
}

// request asks the writer for a check, unless one is asked already.
func (s *pollCaches) request() {
	if s.asked.CompareAndSwap(false, true) {
		select {
		case s.ask <- struct{}{}:
		default: // one is on its way already
		}
	}
}

// checkVersion reads PRAGMA data_version on the writer's connection and
// drops every cache if another connection committed since the last read,
// or if the read fails; start is when the check began (before the
// transaction it runs in, if any). It runs in the writer goroutine.
func (e *engine) checkVersion(ctx context.Context, start time.Time) {
	s := &e.polls
	s.asked.Store(false)
	if !s.any() {
		s.has = false
		s.checked.Store(0)
		return
	}
	var v int64
	st, err := (&wtx{e: e}).stmt("PRAGMA data_version")
	if err == nil {
		err = st.QueryRowContext(ctx).Scan(&v)
	}
	if err != nil {
		s.has = false
		s.checked.Store(0)
		s.reset()
		return
	}
	if !s.has || v != s.version {
		// Before the first read, nothing tells what the caches missed.
		s.reset()
	}
	s.version, s.has = v, true
	s.checked.Store(monoNanos(start))
}

// beginTx notes that the writer's transaction began with the check that
// checkVersion just made, if it succeeded, and wakes the Gets waiting for
// one. It runs in the writer goroutine.
func (s *pollCaches) beginTx() {
	s.inTx.Store(s.has)
	s.checkEnded()
}

// endTx notes that the writer's transaction is about to commit or roll
// back, after which other processes may commit again. It runs in the
// writer goroutine.
func (s *pollCaches) endTx() {
	s.inTx.Store(false)
}

// cached returns a copy of the record of id as b's cache holds it, if it
// may answer a Get that began at now: once a check covers a moment after
// now (see await), what the cache then holds.
func (b *Backend) cached(ctx context.Context, id string, now time.Time) (*asyncreq.Record, bool) {
	if !b.eng.polls.covers(now) {
		// Wait for a check only for a record the cache holds.
		if _, ok := b.polls.Get(id, now); !ok || !b.eng.polls.await(ctx, now) {
			return nil, false
		}
	}
	rec, ok := b.polls.Get(id, now) // a check may have dropped it
	if !ok {
		return nil, false
	}
	return rec.Clone(), true
}

// beginWrite notes in b's cache a write of id about to be committed.
func (b *Backend) beginWrite(id string) *reccache.PollMark {
	return b.polls.Begin(id, time.Now())
}

// wrote tells the caches and watches that the write of id that mark
// noted committed rec; b's cache keeps a copy of it.
func (b *Backend) wrote(id string, mark *reccache.PollMark, rec *asyncreq.Record) {
	if mark != nil {
		b.polls.Wrote(id, mark, rec.Clone())
	} else {
		b.polls.Changed(id) // the cache is off
	}
	b.eng.polls.changed(b.group, id, b.polls)
	b.eng.watches.notify(b.recordKey(id))
}

// changed tells the caches and watches that the record of id changed (or
// may have: after a write whose outcome is unknown).
func (b *Backend) changed(id string) {
	b.eng.polls.changed(b.group, id, nil)
	b.eng.watches.notify(b.recordKey(id))
}

// forget drops what the caches hold of id after a write that failed: it
// may have committed nothing, or something unknown.
func (b *Backend) forget(id string) {
	b.eng.polls.changed(b.group, id, nil)
}
