package sqlite_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/sqlite"
)

// running moves a record to running, with progress p.
func running(p int) func(r *asyncreq.Record) error {
	return func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.Progress = &asyncreq.Progress{Percent: p}
		return nil
	}
}

// TestPollsOfARunningRequestReadLittle polls a request the Backend
// claimed: the polls are answered from what the claim wrote, with a read
// of the file at most every few of them, and each poll returns a copy of
// its own.
func TestPollsOfARunningRequestReadLittle(t *testing.T) {
	ctx := t.Context()
	b, _ := openTemp(t, nil)
	id := newRecordID(t, b)
	_, err := b.Update(ctx, id, running(10))
	require.NoError(t, err)

	const polls = 200
	before := sqlite.Reads(b)
	for range polls {
		got, err := b.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, asyncreq.StateRunning, got.State)
		require.Equal(t, 10, got.Progress.Percent)
		got.Progress.Percent = 99 // a caller's change is its own
		got.Body[0] = 'X'
	}
	reads := sqlite.Reads(b) - before
	assert.Less(t, reads, int64(polls/10), "reads of the file for %d polls", polls)

	got, err := b.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, 10, got.Progress.Percent)
	assert.Equal(t, "poll me", string(got.Body))
}

// newRecordID accepts a new pending record and returns its id.
func newRecordID(t *testing.T, b *sqlite.Backend) string {
	t.Helper()
	rec := newRecord("poll me")
	_, err := b.Accept(t.Context(), rec)
	require.NoError(t, err)
	return rec.ID
}

// TestPollsAtTheRetryAfterAreCached: a client that polls at the
// Retry-After a Handler sends by default (1s) is answered from the record
// the worker wrote, with the Backend's default options: the cache's age is
// longer than that interval, and what the cache answers is checked against
// other processes' writes at every Get whatever its age.
func TestPollsAtTheRetryAfterAreCached(t *testing.T) {
	ctx := t.Context()
	b, _ := openTemp(t, nil)
	id := newRecordID(t, b)
	_, err := b.Update(ctx, id, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{StatusCode: 200, Body: []byte("done")}
		return nil
	})
	require.NoError(t, err)

	before := sqlite.Reads(b)
	const polls = 2
	for range polls {
		time.Sleep(time.Second + 50*time.Millisecond) // a Handler's default Retry-After, and a little
		got, err := b.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateSucceeded, got.State)
	}
	// A poll whose check of other processes' writes does not come within
	// 5ms reads the file whatever the age (a busy machine); an entry aged
	// out makes every one of them read it.
	assert.Less(t, sqlite.Reads(b)-before, int64(polls), "reads of the file by %d polls a Retry-After apart", polls)
}

// TestPollsOffReadEveryTime: with PollCacheAge negative every Get reads
// the file.
func TestPollsOffReadEveryTime(t *testing.T) {
	ctx := t.Context()
	b, _ := openTemp(t, &sqlite.Options{PollCacheAge: -1})
	id := newRecordID(t, b)
	before := sqlite.Reads(b)
	for range 20 {
		_, err := b.Get(ctx, id)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(20), sqlite.Reads(b)-before)
}

// TestPollsSeeTheOtherBackendsOfTheProcessAtOnce: two Backends of one
// file and queue in one process share the file's writer, and a write
// through one is seen by the next Get of the other, however recently that
// one cached the record.
func TestPollsSeeTheOtherBackendsOfTheProcessAtOnce(t *testing.T) {
	api, path := openTemp(t, nil)
	worker, err := sqlite.Open(t.Context(), path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, worker.Close()) })
	require.True(t, sqlite.SharesEngine(api, worker))
	seesWrites(t, api, worker, asyncreq.ErrNotFound)
}

// TestPollsSeeAnotherProcess: a write by another process (another engine
// on the file) is seen by the next Get, however recently the record was
// cached, and while Gets come all the time.
func TestPollsSeeAnotherProcess(t *testing.T) {
	api, path := openTemp(t, nil)
	seesWrites(t, api, openOther(t, api, path, nil), asyncreq.ErrGone)
}

// seesWrites has worker update a record of api's many times, and then
// delete it with a tombstone if deleted is ErrGone, while api's Gets keep
// answering from its cache: the Get of api after each write must see it.
func seesWrites(t *testing.T, api, worker *sqlite.Backend, deleted error) {
	ctx := t.Context()
	id := newRecordID(t, api)
	for p := range 10 {
		for range 20 {
			_, err := api.Get(ctx, id) // cached by api
			require.NoError(t, err)
		}
		_, err := worker.Update(ctx, id, running(p))
		require.NoError(t, err)
		got, err := api.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, asyncreq.StateRunning, got.State)
		require.Equal(t, p, got.Progress.Percent, "update %d", p)
	}
	require.NoError(t, worker.Delete(ctx, id, errors.Is(deleted, asyncreq.ErrGone)))
	_, err := api.Get(ctx, id)
	assert.ErrorIs(t, err, deleted)
}

// TestPollsSeeAnotherProcessWhileThisOneWrites: the check the writer makes
// at each of its transactions sees another process's write too.
func TestPollsSeeAnotherProcessWhileThisOneWrites(t *testing.T) {
	api, _, id := writtenByAnother(t, 50)
	// A write of this process, after the other's: its transaction's check
	// finds the other's commit.
	newRecordID(t, api)
	got, err := api.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateRunning, got.State)
}

// TestWorkerWritesReadNothing: a worker's claim and outcome update the
// record as the accept (or the claim) wrote it, without reading it again.
func TestWorkerWritesReadNothing(t *testing.T) {
	ctx := t.Context()
	b, path := openTemp(t, nil)
	id := newRecordID(t, b)
	before := sqlite.WriterReads(b)
	claims, err := b.DequeueClaim(ctx, 10, time.Minute, func(_ *asyncreq.Lease, r *asyncreq.Record) error {
		return running(5)(r)
	})
	require.NoError(t, err)
	require.Len(t, claims, 1)
	require.NoError(t, claims[0].Err)
	_, err = b.Update(ctx, id, func(r *asyncreq.Record) error {
		require.Equal(t, 5, r.Progress.Percent)
		r.Progress.Percent = 60
		return nil
	})
	require.NoError(t, err)
	done, err := b.Complete(ctx, claims[0].Lease, func(r *asyncreq.Record) error {
		require.Equal(t, 60, r.Progress.Percent)
		require.Equal(t, "poll me", string(r.Body))
		r.Body = append(r.Body, '!') // the request body changes too
		return finish(time.Now().Add(time.Hour))(r)
	})
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, done.State)
	assert.Zero(t, sqlite.WriterReads(b)-before, "records read by the writer")

	// What was written, read from the file by another engine.
	other := openOther(t, b, path, nil)
	got, err := other.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, got.State)
	assert.Equal(t, "poll me!", string(got.Body))
	assert.Equal(t, 60, got.Progress.Percent)
}

// TestWriterReadsAnotherProcessWrite: an update after another process's
// write of the record starts from that write, not from the cache.
func TestWriterReadsAnotherProcessWrite(t *testing.T) {
	ctx := t.Context()
	api, worker, id := writtenByAnother(t, 7)
	_, err := api.Update(ctx, id, func(r *asyncreq.Record) error {
		require.Equal(t, asyncreq.StateRunning, r.State)
		require.NotNil(t, r.Progress)
		require.Equal(t, 7, r.Progress.Percent)
		r.Progress.Percent = 8
		return nil
	})
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond) // for worker, api is another process
	got, err := worker.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, 8, got.Progress.Percent)
}

// writtenByAnother accepts a record through api, a Backend on a new file,
// has api cache it, and has worker, another process's Backend on the
// file, claim it with progress p.
func writtenByAnother(t *testing.T, p int) (api, worker *sqlite.Backend, id string) {
	t.Helper()
	api, path := openTemp(t, nil)
	worker = openOther(t, api, path, nil)
	id = newRecordID(t, api)
	_, err := api.Get(t.Context(), id)
	require.NoError(t, err)
	_, err = worker.Update(t.Context(), id, running(p))
	require.NoError(t, err)
	return api, worker, id
}

// TestPollsDuringALongTransaction: while the writer is in a transaction
// that began with a check, no other process can commit, so a poll of
// another record is answered from the cache at once, without waiting for
// a check the writer cannot make before the transaction ends.
func TestPollsDuringALongTransaction(t *testing.T) {
	b, _, busy, polled := cachedPair(t)
	inTx := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := b.Update(t.Context(), busy, func(r *asyncreq.Record) error {
			close(inTx)
			time.Sleep(100 * time.Millisecond) // in the writer's transaction
			return running(1)(r)
		})
		done <- err
	}()
	<-inTx
	_, reads, took := timedPoll(t, b, polled)
	assert.Zero(t, reads, "reads of the file by a poll during the transaction")
	assert.Less(t, took, 50*time.Millisecond, "a poll during the transaction waited for it")
	require.NoError(t, <-done)
}

// TestPollsWhileAnotherProcessHoldsTheWriteLock: while another process
// holds the file's write lock and this process's writer waits for it, the
// writer cannot check for other processes' writes; a poll then waits for a
// check a few milliseconds at most and reads the file.
func TestPollsWhileAnotherProcessHoldsTheWriteLock(t *testing.T) {
	ctx := t.Context()
	b, path, busy, polled := cachedPair(t)
	other, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { // waits for the lock in the writer
		_, err := b.Update(ctx, busy, running(1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)

	got, reads, took := timedPoll(t, b, polled)
	assert.Equal(t, asyncreq.StatePending, got.State)
	assert.EqualValues(t, 1, reads, "reads of the file by the poll")
	assert.Less(t, took, 50*time.Millisecond, "the poll waited for the other process's transaction")

	_, err = conn.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, <-done)
}

// cachedPair opens a new file with two records: busy, for a write to
// keep the writer busy with, and polled, which b's cache holds.
func cachedPair(t *testing.T) (b *sqlite.Backend, path, busy, polled string) {
	t.Helper()
	b, path = openTemp(t, nil)
	busy, polled = newRecordID(t, b), newRecordID(t, b)
	_, err := b.Get(t.Context(), polled)
	require.NoError(t, err)
	return b, path, busy, polled
}

// timedPoll gets the record of id from b, and returns it with the reads of
// the file the Get made and how long it took.
func timedPoll(t *testing.T, b *sqlite.Backend, id string) (*asyncreq.Record, int64, time.Duration) {
	t.Helper()
	before := sqlite.Reads(b)
	start := time.Now()
	rec, err := b.Get(t.Context(), id)
	took := time.Since(start)
	require.NoError(t, err)
	return rec, sqlite.Reads(b) - before, took
}
