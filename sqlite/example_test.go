package sqlite_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/sqlite"
)

// This example keeps requests in an SQLite file: the handler answers 202
// once the request is committed to the file, a worker runs it, and a
// second Backend on the same file (another endpoint, with a queue of its
// own) sees none of it.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "asyncreq-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "asyncreq.db")

	ctx := context.Background()
	jobs, err := sqlite.Open(ctx, path, &sqlite.Options{Queue: "jobs"})
	if err != nil {
		panic(err)
	}
	defer jobs.Close()

	upper := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte(strings.ToUpper(string(req.Body)))}, nil
	})
	worker, err := asyncreq.NewWorker(jobs, upper, nil)
	if err != nil {
		panic(err)
	}
	if err := worker.Start(ctx); err != nil {
		panic(err)
	}
	defer worker.Stop(ctx)
	h, err := asyncreq.NewHandler(jobs, nil)
	if err != nil {
		panic(err)
	}

	do := func(method, target, body string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := do(http.MethodPost, "/", "hello", "Content-Type", "text/plain")
	statusURL := w.Header().Get("Location")
	fmt.Println("submit:", w.Code)
	for w.Code != http.StatusSeeOther {
		w = do(http.MethodGet, statusURL, "", "Prefer", "wait=5")
	}
	w = do(http.MethodGet, w.Header().Get("Location"), "")
	fmt.Println("result:", w.Code, w.Body.String())

	reports, err := sqlite.Open(ctx, path, &sqlite.Options{Queue: "reports"})
	if err != nil {
		panic(err)
	}
	defer reports.Close()
	id := strings.TrimSuffix(strings.TrimPrefix(statusURL, "/"), "/status")
	_, err = reports.Get(ctx, id)
	fmt.Println("in the reports queue:", err)
	// Output:
	// submit: 202
	// result: 200 HELLO
	// in the reports queue: asyncreq: not found
}
