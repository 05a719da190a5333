package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The transactional outbox: an application stores an order and the
// asynchronous request that renders its invoice in one transaction, so
// that both are stored or neither is. Workers of the "invoices" queue see
// the request when the transaction commits; the client polls its status
// URL as if it had been submitted over HTTP.
func ExampleBackend_AcceptTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	backend, err := postgres.New(ctx, pool, &postgres.Options{Queue: "invoices", MigrateOnStart: true})
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()

	// The Handler serving /invoices builds the record (its id, retention
	// and idempotency fingerprint) as a POST to it would.
	invoices, err := asyncreq.NewHandler(backend, &asyncreq.HandlerOptions{BasePath: "/invoices"})
	if err != nil {
		log.Fatal(err)
	}

	const order = "o-1001"
	var sub asyncreq.Submitted
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders (id, total_cents) VALUES ($1, $2)`, order, 4200); err != nil {
			return err
		}
		// One invoice per order, even if this code runs twice: a repeat
		// answers the first request.
		sub, err = invoices.SubmitVia(ctx, asyncreq.Submission{
			ContentType:    "application/json",
			Body:           []byte(`{"order":"o-1001"}`),
			IdempotencyKey: "invoice-" + order,
		}, func(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
			return backend.AcceptTx(ctx, tx, rec)
		})
		return err
	})
	if err != nil {
		log.Fatal(err) // neither the order nor the request was stored
	}
	fmt.Println("invoice status:", sub.StatusURL)
}
