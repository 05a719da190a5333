package redis_test

import (
	"context"
	"log"
	"net/http"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// Example wires a handler and a worker to one Redis backend. (It needs a
// Redis server, so it is compiled but not run by go test.)
func Example() {
	ctx := context.Background()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	backend, err := redis.New(ctx, client, &redis.Options{Prefix: "myapp:", Queue: "reports"})
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()

	report := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("report for " + req.ID)}, nil
	})
	worker, err := asyncreq.NewWorker(backend, report, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := worker.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = worker.Stop(ctx)
	}()

	handler, err := asyncreq.NewHandler(backend, nil)
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/reports/", http.StripPrefix("/reports", handler))
	log.Fatal(http.ListenAndServe(":8080", nil))
}
