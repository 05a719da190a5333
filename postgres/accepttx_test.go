package postgres_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestAcceptRefusesAnInvalidID checks that a record whose id no Handler
// would serve (every Handler answers 404 for it without asking the Store)
// is refused with an error saying so, instead of being stored for good.
func TestAcceptRefusesAnInvalidID(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, nil)
	ctx := t.Context()

	rec := testRecord("", "", []byte("x"))
	rec.ID = "order-1001"
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = s.AcceptTx(ctx, tx, rec)
	require.ErrorContains(t, err, `"order-1001" is not an id`)
	require.NoError(t, tx.Commit(ctx), "the refusal leaves the transaction usable")

	_, err = s.Accept(ctx, rec)
	require.ErrorContains(t, err, `"order-1001" is not an id`)
	_, err = s.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound)
}

// TestSubmitViaAcceptTx checks a submission from Go recorded inside the
// caller's transaction: nothing exists before the commit, the Handler
// serves it at the returned status URL after, and a repeat in another
// transaction is the same request.
func TestSubmitViaAcceptTx(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, nil)
	ctx := t.Context()
	h, err := asyncreq.NewHandler(s, &asyncreq.HandlerOptions{BasePath: "/invoices"})
	require.NoError(t, err)
	sub := asyncreq.Submission{ContentType: "application/json", Body: []byte(`{"order":"o-1"}`), IdempotencyKey: "invoice-o-1"}

	submit := func(tx pgx.Tx) asyncreq.Submitted {
		got, err := h.SubmitVia(ctx, sub, func(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
			return s.AcceptTx(ctx, tx, rec)
		})
		require.NoError(t, err)
		return got
	}
	status := func(url string) int {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, url, nil))
		return rr.Code
	}

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	first := submit(tx)
	assert.Equal(t, http.StatusNotFound, status(first.StatusURL), "visible before the commit")
	require.NoError(t, tx.Commit(ctx))
	assert.Equal(t, http.StatusOK, status(first.StatusURL))

	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		again := submit(tx)
		assert.Equal(t, first.ID, again.ID)
		assert.True(t, again.Repeated)
		return nil
	}))

	sub.Body = []byte(`{"order":"o-2"}`)
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := h.SubmitVia(ctx, sub, func(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
			return s.AcceptTx(ctx, tx, rec)
		})
		require.ErrorIs(t, err, asyncreq.ErrIdempotencyMismatch)
		return nil
	}))
}
