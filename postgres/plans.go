package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// genericPlans has the rest of its transaction run each prepared statement
// with its generic plan.
//
// The statements that write or read a batch of records take their ids as
// an array (id = ANY($2), unnest of the new values). PostgreSQL plans a
// prepared statement afresh for each run (a custom plan) until a generic
// plan looks cheaper, and it estimates a generic plan for an array of ten
// elements: so where batches are smaller, as under a light or a
// closed-loop load, it planned the batched update at every run, and
// planning took longer than the update (446 µs a run, against 419).
// The generic plan of each of these statements finds the records by their
// primary key once records holds a few pages (as
// TestBatchStatementsKeepAGenericPlan checks); one made before is not
// kept as the table grows, for the Backend analyzes records each time it
// has doubled, up to 8 MiB (analyze.go), which has PostgreSQL plan again.
//
// It is sent in the same round trip as the statement it serves, and set
// for its transaction only (is_local), so the setting never outlives it
// on a connection the application shares.
const genericPlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`

// batchSender is what queryGeneric needs: a pool or a connection.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// queryGeneric runs query with args in a transaction of its own, with its
// generic plan (see genericPlans), and passes its rows to scan.
func queryGeneric(ctx context.Context, db batchSender, query string, args []any, scan func(pgx.Rows) error) error {
	return sendGeneric(ctx, db, false, query, args, scan)
}

// beginGeneric begins a transaction on conn and runs query with args in
// it, in one round trip, and passes its rows to scan. The transaction's
// statements run with their generic plans (see genericPlans); it is left
// open for the caller to commit or roll back.
func beginGeneric(ctx context.Context, conn batchSender, query string, args []any, scan func(pgx.Rows) error) error {
	return sendGeneric(ctx, conn, true, query, args, scan)
}

// sendGeneric sends, in one round trip, BEGIN if begin, genericPlans and
// query, and passes query's rows to scan.
func sendGeneric(ctx context.Context, db batchSender, begin bool, query string, args []any, scan func(pgx.Rows) error) error {
	var b pgx.Batch
	if begin {
		b.Queue("BEGIN")
	}
	b.Queue(genericPlans)
	b.Queue(query, args...)
	br := db.SendBatch(ctx, &b)
	var err error
	for range b.Len() - 1 {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			err = scan(rows)
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
