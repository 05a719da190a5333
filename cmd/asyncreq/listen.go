package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/client"
)

// runListen receives completion callbacks: it serves a webhook receiver
// on -listen, verifies each webhook against -webhook-secret (or
// $ASYNCREQ_WEBHOOK_SECRET) and prints each event as a line of JSON. With
// -once it exits after the first event: 0 when the request succeeded, 1
// otherwise.
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("asyncreq listen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("listen", "127.0.0.1:8090", "`address` to receive webhooks on")
	var secrets listFlags
	fs.Var(&secrets, "webhook-secret", "webhook `secret` (whsec_...) to verify with (repeatable; default $ASYNCREQ_WEBHOOK_SECRET)")
	once := fs.Bool("once", false, "exit after the first event: 0 when its request succeeded, 1 otherwise")
	fs.Usage = usage(fs, stderr, "asyncreq listen [flags]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return exitOK
		}
		fmt.Fprintln(stderr, "asyncreq:", err)
		fs.Usage()
		return exitUsage
	}
	if len(secrets) == 0 {
		if s := os.Getenv("ASYNCREQ_WEBHOOK_SECRET"); s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "asyncreq: listen wants -webhook-secret (or $ASYNCREQ_WEBHOOK_SECRET) and no arguments")
		fs.Usage()
		return exitUsage
	}
	for _, s := range secrets {
		if _, err := asyncreq.ParseWebhookSecret(s); err != nil {
			fmt.Fprintln(stderr, "asyncreq: -webhook-secret:", err)
			return exitUsage
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "asyncreq:", err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "listening for webhooks on http://%s/\n", ln.Addr())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]bool{}
	code := exitOK
	h := client.WebhookHandler(&client.WebhookVerifier{Secrets: secrets}, func(_ context.Context, id string, ev *asyncreq.WebhookEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[id] || ctx.Err() != nil {
			return nil // a repeat of a delivered event
		}
		seen[id] = true
		line, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
			return err
		}
		if *once {
			if ev.Type != asyncreq.EventSucceeded {
				code = exitFailed
			}
			cancel()
		}
		return nil
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		fmt.Fprintln(stderr, "asyncreq:", err)
		return exitFailed
	case <-ctx.Done():
	}
	sctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(sctx)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !*once || len(seen) == 0 {
		return exitInterrupted
	}
	return code
}
