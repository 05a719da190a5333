package asyncreq_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// This example serves the contract under /jobs on a ServeMux, with a
// Worker running the processor: submit, long-poll the status until the
// 303, and fetch the result.
func ExampleNewHandler() {
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

	jobs, err := asyncreq.NewHandler(backend, nil)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/jobs", http.StripPrefix("/jobs", jobs))
	mux.Handle("/jobs/", http.StripPrefix("/jobs", jobs))

	do := func(method, target, body string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}

	w := do(http.MethodPost, "/jobs", "hello", "Content-Type", "text/plain")
	statusURL := w.Header().Get("Location")
	fmt.Println("submit:", w.Code, strings.HasPrefix(statusURL, "/jobs/"))

	for w.Code != http.StatusSeeOther {
		w = do(http.MethodGet, statusURL, "", "Prefer", "wait=5")
	}
	resultURL := w.Header().Get("Location")
	fmt.Println("status:", w.Code, resultURL+"/status" == statusURL)

	w = do(http.MethodGet, resultURL, "")
	fmt.Println("result:", w.Code, w.Body.String())

	w = do(http.MethodPost, "/jobs", "again", "Prefer", "wait=5")
	fmt.Println("submit with Prefer: wait:", w.Code, w.Body.String())
	// Output:
	// submit: 202 true
	// status: 303 true
	// result: 200 HELLO
	// submit with Prefer: wait: 200 AGAIN
}

// This example serves the contract at /jobs on a ServeMux without
// StripPrefix, so the handler is told the prefix with BasePath. A router
// that mounts without stripping, such as chi's Mount, is given it the same
// way (examples/routers).
func ExampleHandlerOptions_basePath() {
	backend := memory.New(nil)
	defer backend.Close()
	jobs, err := asyncreq.NewHandler(backend, &asyncreq.HandlerOptions{
		BasePath:   "/jobs",
		RetryAfter: 2 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/jobs", jobs)
	mux.Handle("/jobs/", jobs)

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/jobs", strings.NewReader("x")))
	fmt.Println(w.Code, w.Header().Get("Retry-After"), strings.HasPrefix(w.Header().Get("Location"), "/jobs/"))
	// Output:
	// 202 2 true
}
