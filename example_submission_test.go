package asyncreq_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// This example starts a request from the service's own code with
// Handler.Submit, and reads it over HTTP at the status URL it returned.
// A repeat with the same idempotency key is the same request; another
// request under that key is ErrIdempotencyMismatch (422 over HTTP).
func ExampleHandler_Submit() {
	backend := memory.New(nil)
	defer backend.Close()

	upper := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte(strings.ToUpper(string(req.Body)))}, nil
	})
	worker, err := asyncreq.NewWorker(backend, upper, nil)
	if err != nil {
		panic(err)
	}
	if err := worker.Start(context.Background()); err != nil {
		panic(err)
	}
	defer worker.Stop(context.Background())

	jobs, err := asyncreq.NewHandler(backend, &asyncreq.HandlerOptions{BasePath: "/jobs"})
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	s := asyncreq.Submission{ContentType: "text/plain", Body: []byte("nightly report"), IdempotencyKey: "report-2026-12-04"}
	sub, err := jobs.Submit(ctx, s)
	if err != nil {
		panic(err)
	}
	fmt.Println("submitted:", sub.StatusURL == "/jobs/"+sub.ID+"/status")

	again, err := jobs.Submit(ctx, s)
	fmt.Println("repeat:", again.ID == sub.ID, again.Repeated, err)

	s.Body = []byte("another report")
	_, err = jobs.Submit(ctx, s)
	fmt.Println("mismatch:", errors.Is(err, asyncreq.ErrIdempotencyMismatch))

	w := httptest.NewRecorder()
	for w.Code != http.StatusSeeOther {
		w = httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, sub.StatusURL, nil)
		r.Header.Set("Prefer", "wait=5")
		jobs.ServeHTTP(w, r)
	}
	fmt.Println("status:", w.Code, w.Header().Get("Location") == sub.ResultURL)
	w = httptest.NewRecorder()
	jobs.ServeHTTP(w, httptest.NewRequest(http.MethodGet, sub.ResultURL, nil))
	fmt.Println("result:", w.Code, w.Body.String())
	// Output:
	// submitted: true
	// repeat: true true <nil>
	// mismatch: true
	// status: 303 true
	// result: 200 NIGHTLY REPORT
}
