package nats_test

import (
	"context"
	"log"
	"net/http"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/nats"
)

// Example runs the handler and a worker on NATS JetStream, with three
// replicas and a 30s lease.
func Example() {
	ctx := context.Background()
	nc, err := natsgo.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	be, err := nats.New(ctx, js, &nats.Options{Replicas: 3, AckWait: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()

	h, err := asyncreq.NewHandler(be, nil)
	if err != nil {
		log.Fatal(err)
	}
	w, err := asyncreq.NewWorker(be, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}, nil
	}), &asyncreq.WorkerOptions{LeaseDuration: 30 * time.Second}) // the lease is the AckWait
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
