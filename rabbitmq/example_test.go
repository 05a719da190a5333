package rabbitmq_test

import (
	"context"
	"log"
	"net/http"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

// Example runs the handler and a worker with requests queued in RabbitMQ
// and kept in a Store (here the in-memory one; any Store will do).
func Example() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	const concurrency = 10
	q, err := rabbitmq.Open(ctx, "amqp://guest:guest@127.0.0.1:5672/", &rabbitmq.Options{
		Queue:    "thumbnails",
		Prefetch: concurrency, // as many deliveries held as the worker runs
	})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close() // after the worker stopped: deferred calls run last-in first-out

	h, err := asyncreq.NewHandler(asyncreq.Pair(store, q), nil)
	if err != nil {
		log.Fatal(err)
	}
	w, err := asyncreq.NewWorker(asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}, nil
	}), &asyncreq.WorkerOptions{Concurrency: concurrency})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer w.Stop(context.Background())

	http.Handle("/jobs/", http.StripPrefix("/jobs", h))
	log.Fatal(http.ListenAndServe(":8080", nil))
}
