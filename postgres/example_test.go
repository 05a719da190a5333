package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

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

	const order = "o-1001"
	body := []byte(`{"order":"o-1001"}`)
	sum := sha256.Sum256(body)
	now := time.Now()
	rec := &asyncreq.Record{
		ID:             asyncreq.NewID(),
		IdempotencyKey: "invoice-" + order, // one invoice per order, even if this code runs twice
		BodyHash:       hex.EncodeToString(sum[:]),
		State:          asyncreq.StatePending,
		Method:         "POST",
		URL:            "/invoices",
		ContentType:    "application/json",
		Body:           body,
		CreatedAt:      now,
		UpdatedAt:      now,
		Retention:      24 * time.Hour,
		TombstoneTTL:   7 * 24 * time.Hour,
	}
	id := rec.ID
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders (id, total_cents) VALUES ($1, $2)`, order, 4200); err != nil {
			return err
		}
		existing, err := backend.AcceptTx(ctx, tx, rec)
		if errors.Is(err, asyncreq.ErrDuplicate) {
			id = existing.ID // already requested: point at that request
			return nil
		}
		return err
	})
	if err != nil {
		log.Fatal(err) // neither the order nor the request was stored
	}
	fmt.Printf("invoice status: /invoices/%s/status\n", id)
}
