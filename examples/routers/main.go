// Command routers mounts one asyncreq handler on the standard library's
// ServeMux and another on a chi router, under prefixes, to show that the
// URLs the handler writes follow the prefix it was reached at.
//
//	go run ./examples/routers -addr :8081
//	curl -i -X POST -d hello localhost:8081/std/jobs      # Location: /std/jobs/{id}/status
//	curl -i -X POST -d hello localhost:8081/api/v1/jobs   # Location: /api/v1/jobs/{id}/status
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// upper is the processor of both endpoints: it upper-cases the body.
var upper = asyncreq.ProcessorFunc(func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	return &asyncreq.Result{ContentType: "text/plain; charset=utf-8", Body: bytes.ToUpper(req.Body)}, nil
})

func main() {
	addr := flag.String("addr", ":8081", "address to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "routers:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	backend := memory.New(nil)
	defer backend.Close()
	mux, err := routes(backend, logger)
	if err != nil {
		return err
	}
	w, err := asyncreq.NewWorker(backend, upper, &asyncreq.WorkerOptions{Logger: logger})
	if err != nil {
		return err
	}
	// The end of ctx (the signal) stops the worker gracefully; Stop below
	// waits for it.
	if err := w.Start(ctx); err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("listening", "addr", addr, "endpoints", "/std/jobs, /api/v1/jobs")
	select {
	case err := <-errc:
		return errors.Join(err, w.Stop(context.Background()))
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(shutdown), w.Stop(shutdown))
}

// routes returns the two endpoints over backend: /std/jobs on the standard
// mux and /api/v1/jobs on chi.
func routes(backend *memory.Backend, logger *slog.Logger) (http.Handler, error) {
	// The standard mux: StripPrefix tells the handler where its paths start.
	std, err := asyncreq.NewHandler(backend, &asyncreq.HandlerOptions{Logger: logger})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/std/jobs", http.StripPrefix("/std/jobs", std))
	mux.Handle("/std/jobs/", http.StripPrefix("/std/jobs", std))

	// chi: Mount does not strip the prefix, so the handler is given it as
	// BasePath. Both handlers share one backend here; in an application
	// each endpoint would usually have a queue of its own.
	viaChi, err := asyncreq.NewHandler(backend, &asyncreq.HandlerOptions{BasePath: "/api/v1/jobs", Logger: logger})
	if err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	r.Route("/api/v1", func(r chi.Router) {
		r.Mount("/jobs", viaChi)
	})
	mux.Handle("/api/", r)
	return mux, nil
}
