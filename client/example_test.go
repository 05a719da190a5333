package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/client"
	"github.com/asyncreq/asyncreq/memory"
)

// startServer runs an asyncreq handler and worker at /jobs/ for the
// examples, with a processor that upper-cases the body and fails on "bad".
func startServer() (submitURL string, stop func()) {
	b := memory.New(nil)
	h, err := asyncreq.NewHandler(b, nil)
	if err != nil {
		panic(err)
	}
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if string(req.Body) == "bad" {
			return nil, asyncreq.Permanent(errors.New("bad is not allowed"), http.StatusUnprocessableEntity)
		}
		_ = asyncreq.ReportProgress(ctx, 50, "upper-casing")
		return &asyncreq.Result{ContentType: "text/plain", Body: bytes.ToUpper(req.Body)}, nil
	}), nil)
	if err != nil {
		panic(err)
	}
	if err := w.Start(context.Background()); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	srv := httptest.NewServer(mux)
	return srv.URL + "/jobs/", func() {
		srv.Close()
		_ = w.Stop(context.Background())
		_ = b.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	}
}

func Example() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()

	// PollMax caps the server's Retry-After (1s) to keep the example fast.
	c, err := client.New(&client.Options{PollMax: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	op, err := c.Submit(ctx, http.MethodPost, url, []byte("hello"), &client.SubmitOptions{
		ContentType:            "text/plain",
		GenerateIdempotencyKey: true, // safe to retry the submit
	})
	if err != nil {
		panic(err)
	}
	res, err := op.Wait(ctx, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.StatusCode, res.ContentType, string(res.Body))
	// Output: 200 text/plain HELLO
}

func ExampleOperation_Wait_failure() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()

	c, _ := client.New(&client.Options{PollMax: 20 * time.Millisecond})
	op, err := c.Submit(ctx, http.MethodPost, url, []byte("bad"), nil)
	if err != nil {
		panic(err)
	}
	_, err = op.Wait(ctx, nil)
	var oe *client.OperationError
	if errors.As(err, &oe) {
		fmt.Println(oe.State, oe.Problem.Status, oe.Problem.Detail)
	}
	// Output: failed 422 bad is not allowed
}

func ExampleOperation_ResumeToken() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()

	c, _ := client.New(nil)
	op, err := c.Submit(ctx, http.MethodPost, url, []byte("later"), nil)
	if err != nil {
		panic(err)
	}
	token, err := op.ResumeToken()
	if err != nil {
		panic(err)
	}

	// Elsewhere, perhaps in another process after a restart:
	other, _ := client.New(&client.Options{PollMax: 20 * time.Millisecond})
	resumed, err := other.Resume(token)
	if err != nil {
		panic(err)
	}
	res, err := resumed.Wait(ctx, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(resumed.ID() == op.ID(), string(res.Body))
	// Output: true LATER
}

func ExampleTracker() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()

	c, _ := client.New(&client.Options{PollMax: 20 * time.Millisecond})
	// OpenFileTrackerStore keeps the pending operations across restarts; the
	// memory store (the default) does for this example.
	tr, err := client.NewTracker(c, &client.TrackerOptions{Concurrency: 2})
	if err != nil {
		panic(err)
	}
	if err := tr.Start(ctx); err != nil {
		panic(err)
	}
	defer tr.Stop(ctx)

	for _, s := range []string{"a", "b", "c"} {
		op, err := c.Submit(ctx, http.MethodPost, url, []byte(s), nil)
		if err != nil {
			panic(err)
		}
		if _, err := tr.Track(ctx, op); err != nil {
			panic(err)
		}
	}
	var got []string
	for range 3 {
		d := <-tr.Results()
		if d.Err != nil {
			panic(d.Err)
		}
		got = append(got, string(d.Result.Body))
	}
	sort.Strings(got)
	fmt.Println(got)
	// Output: [A B C]
}
