package memory_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// TestUpdateKeepsItsOwnBodies: the bodies an Update leaves as they were
// are shared between the stored versions, never with a caller: changing
// the bytes of what Update returned, or of fn's argument, changes nothing
// stored, whether fn changed the bodies or not.
func TestUpdateKeepsItsOwnBodies(t *testing.T) {
	b := memory.New(nil)
	defer b.Close()
	ctx := t.Context()
	rec := createRunning(t, b, []byte("request"), []byte("result"))

	var arg *asyncreq.Record
	got, err := b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		arg = r
		r.Progress = &asyncreq.Progress{Percent: 10}
		return nil
	})
	require.NoError(t, err)
	copy(got.Body, "XXXXXXX")
	copy(got.Result.Body, "XXXXXX")
	copy(arg.Body, "YYYYYYY")

	got, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Body = []byte("changed")
		return nil
	})
	require.NoError(t, err)
	copy(got.Body, "ZZZZZZZ")
	copy(got.Result.Body, "ZZZZZZ")

	stored, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, "changed", string(stored.Body))
	assert.Equal(t, "result", string(stored.Result.Body))
	assert.Equal(t, 10, stored.Progress.Percent)
}

// createRunning creates a running record with body and a result of
// result through b.
func createRunning(tb testing.TB, b *memory.Backend, body, result []byte) *asyncreq.Record {
	tb.Helper()
	now := time.Now()
	rec := &asyncreq.Record{
		ID: asyncreq.NewID(), State: asyncreq.StateRunning, CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
		Body: body, Result: &asyncreq.Result{Body: result},
	}
	_, err := b.Create(tb.Context(), rec)
	require.NoError(tb, err)
	return rec
}
