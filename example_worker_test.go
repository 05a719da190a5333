package asyncreq_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

func ExampleNewWorker() {
	backend := memory.New(nil)
	defer backend.Close()
	ctx := context.Background()

	// The processor does the work: here it upper-cases the submitted text,
	// reporting progress on the way.
	p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if err := asyncreq.ReportProgress(ctx, 50, "upper-casing"); err != nil {
			return nil, err
		}
		// The progress shows on the status document while the request runs.
		rec, err := backend.Get(ctx, req.ID)
		if err != nil {
			return nil, err
		}
		fmt.Printf("attempt %d: %s, %d%% %s\n", req.Attempt, rec.State, rec.Progress.Percent, rec.Progress.Message)
		return &asyncreq.Result{ContentType: "text/plain", Body: bytes.ToUpper(req.Body)}, nil
	})

	w, err := asyncreq.NewWorker(backend, p, &asyncreq.WorkerOptions{Concurrency: 4})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := w.Stop(stopCtx); err != nil {
			log.Print(err)
		}
	}()

	// A Handler records and enqueues each POST like this.
	id := asyncreq.NewID()
	now := time.Now()
	if _, err := backend.Accept(ctx, &asyncreq.Record{
		ID: id, State: asyncreq.StatePending, Method: http.MethodPost, URL: "/jobs",
		ContentType: "text/plain", Body: []byte("hello, worker"),
		CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
	}); err != nil {
		log.Fatal(err)
	}

	// Wait until the request is finished.
	var rec *asyncreq.Record
	for {
		changed, err := backend.Watch(ctx, id)
		if err != nil {
			log.Fatal(err)
		}
		if rec, err = backend.Get(ctx, id); err != nil {
			log.Fatal(err)
		}
		if rec.State.Final() {
			break
		}
		<-changed
	}
	fmt.Println(rec.State, rec.Result.ContentType, string(rec.Result.Body))
	// Output:
	// attempt 1: running, 50% upper-casing
	// succeeded text/plain HELLO, WORKER
}
