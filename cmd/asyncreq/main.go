// Command asyncreq submits a request to an asynchronous endpoint, follows
// it to its result with the asyncreq client, and prints the result.
//
//	go install github.com/asyncreq/asyncreq/cmd/asyncreq@latest
//
// Usage:
//
//	asyncreq [flags] URL          submit, wait, print the result
//	asyncreq wait [flags] TOKEN   wait for a submitted request
//	asyncreq cancel [flags] TOKEN cancel (or forget) a request
//	asyncreq listen [flags]       receive completion webhooks (-listen ADDR)
//
// The result body goes to standard output; status, progress and the resume
// token go to standard error. On a terminal a progress bar follows the
// server's progress; otherwise progress is printed as plain lines.
//
// Examples:
//
//	asyncreq -d @report.txt -H 'Content-Type: text/plain' http://localhost:8080/jobs
//	echo hello | asyncreq -d @- http://localhost:8080/jobs
//	TOKEN=$(asyncreq -wait=false -d hello http://localhost:8080/jobs)
//	asyncreq wait "$TOKEN"
//	asyncreq cancel "$TOKEN"
//	asyncreq listen -listen 127.0.0.1:8090 -webhook-secret "$SECRET" -once &
//	asyncreq -wait=false -H 'Callback-URL: http://127.0.0.1:8090/' -d hello http://localhost:8080/jobs
//
// Exit status: 0 when a result was printed (or a cancel was accepted), 1 when
// the request failed, was canceled or the result has a 4xx/5xx status code,
// 2 for bad usage, 130 when interrupted (the resume token is printed so the
// wait can be taken up again).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/client"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags http.Header

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("header %q is not of the form 'Name: value'", s)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}

// listFlags collects a repeated string flag.
type listFlags []string

func (l *listFlags) String() string { return strings.Join(*l, ",") }

func (l *listFlags) Set(s string) error { *l = append(*l, s); return nil }

// common holds the flags every sub-command has.
type common struct {
	headers  headerFlags
	trusted  listFlags
	timeout  time.Duration
	longPoll time.Duration
	pollMax  time.Duration
	quiet    bool
	output   string
}

func (c *common) register(fs *flag.FlagSet) {
	c.headers = make(headerFlags)
	fs.Var(c.headers, "H", "header `Name: value` sent with every request to the endpoint's origin (repeatable)")
	fs.Var(&c.trusted, "trust", "another `origin` (https://host[:port]) that may receive the -H headers (repeatable)")
	fs.DurationVar(&c.timeout, "timeout", 0, "give up waiting after this long (0: no limit)")
	fs.DurationVar(&c.longPoll, "long-poll", 0, "ask the server to hold each status request up to this long (Prefer: wait)")
	fs.DurationVar(&c.pollMax, "poll-max", time.Minute, "longest wait between polls, whatever Retry-After says")
	fs.BoolVar(&c.quiet, "q", false, "print no progress or status, only the result")
	fs.StringVar(&c.output, "o", "", "write the result body to this `file` instead of standard output")
}

func (c *common) client() (*client.Client, error) {
	return client.New(&client.Options{
		HTTPClient:     &http.Client{Timeout: max(2*c.longPoll, 0) + time.Minute},
		Header:         http.Header(c.headers),
		TrustedOrigins: c.trusted,
		LongPoll:       c.longPoll,
		PollMax:        c.pollMax,
	})
}

// run is the command; main only wires it to the process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "wait":
			return runWait(ctx, args[1:], stdout, stderr)
		case "cancel":
			return runCancel(ctx, args[1:], stdout, stderr)
		case "listen":
			return runListen(ctx, args[1:], stdout, stderr)
		}
	}
	return runSubmit(ctx, args, stdin, stdout, stderr)
}

func usage(fs *flag.FlagSet, stderr io.Writer, synopsis string) func() {
	return func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags:\n", synopsis)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
	}
}

func runSubmit(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("asyncreq", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c common
	c.register(fs)
	method := fs.String("X", http.MethodPost, "request `method`")
	data := fs.String("d", "", "request body: text, @file to read a file, or @- to read standard input")
	ctype := fs.String("content-type", "", "Content-Type of the body (default: the -H one, else none)")
	key := fs.String("idempotency-key", "", "Idempotency-Key to send; makes the submit safe to retry")
	genKey := fs.Bool("generate-key", false, "generate a random Idempotency-Key")
	wait := fs.Bool("wait", true, "wait for the result; with -wait=false print the resume token and exit")
	preferWait := fs.Duration("prefer-wait", 0, "let the server answer the submit with the result if it is ready within this long")
	fs.Usage = usage(fs, stderr, "asyncreq [flags] URL\n       asyncreq wait [flags] TOKEN\n       asyncreq cancel [flags] TOKEN")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return exitOK
		}
		fmt.Fprintln(stderr, "asyncreq:", err)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "asyncreq: want exactly one URL")
		fs.Usage()
		return exitUsage
	}
	body, err := readData(*data, stdin)
	if err != nil {
		fmt.Fprintln(stderr, "asyncreq:", err)
		return exitUsage
	}
	cl, err := c.client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	op, err := cl.Submit(ctx, *method, fs.Arg(0), body, &client.SubmitOptions{
		ContentType:            *ctype,
		IdempotencyKey:         *key,
		GenerateIdempotencyKey: *genKey,
		Wait:                   *preferWait,
	})
	if err != nil {
		fmt.Fprintln(stderr, "submit:", err)
		return exitFailed
	}
	token, tokErr := op.ResumeToken()
	if !*wait {
		if tokErr == nil {
			fmt.Fprintln(stdout, token)
			return exitOK
		}
		// The server answered with the result itself: there is nothing to
		// come back to, so show it now.
		fmt.Fprintln(stderr, "the request finished at once; its result follows")
	}
	if !c.quiet {
		if op.ID() != "" {
			fmt.Fprintf(stderr, "accepted: %s\n", op.ID())
		}
		if tokErr == nil && !op.Done() {
			fmt.Fprintf(stderr, "resume token: %s\n", token)
		}
	}
	return follow(ctx, op, token, &c, stdout, stderr)
}

func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("asyncreq wait", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c common
	c.register(fs)
	fs.Usage = usage(fs, stderr, "asyncreq wait [flags] TOKEN")
	op, code := parseToken(fs, &c, args, stderr)
	if op == nil {
		return code
	}
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	return follow(ctx, op, strings.TrimSpace(fs.Arg(0)), &c, stdout, stderr)
}

func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("asyncreq cancel", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c common
	c.register(fs)
	fs.Usage = usage(fs, stderr, "asyncreq cancel [flags] TOKEN")
	op, code := parseToken(fs, &c, args, stderr)
	if op == nil {
		return code
	}
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if err := op.Cancel(ctx); err != nil {
		if errors.Is(err, asyncreq.ErrNotFound) || errors.Is(err, asyncreq.ErrGone) {
			fmt.Fprintln(stderr, "no such request (finished and forgotten, or never there):", err)
			return exitFailed
		}
		fmt.Fprintln(stderr, "cancel:", err)
		return exitFailed
	}
	switch doc := op.Status(); {
	case doc == nil:
		fmt.Fprintln(stdout, "forgotten: the request had finished; it and its result are deleted")
	case doc.Status == asyncreq.StateCanceled:
		fmt.Fprintln(stdout, "canceled")
	default:
		fmt.Fprintf(stdout, "cancel requested (the request is %s)\n", doc.Status)
	}
	return exitOK
}

// parseToken parses a sub-command's flags and its token argument.
func parseToken(fs *flag.FlagSet, c *common, args []string, stderr io.Writer) (*client.Operation, int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return nil, exitOK
		}
		fmt.Fprintln(stderr, "asyncreq:", err)
		fs.Usage()
		return nil, exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "asyncreq: want exactly one resume token")
		fs.Usage()
		return nil, exitUsage
	}
	cl, err := c.client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitUsage
	}
	op, err := cl.Resume(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitUsage
	}
	return op, exitOK
}

// follow waits for op, showing progress, and prints its result.
func follow(ctx context.Context, op *client.Operation, token string, c *common, stdout, stderr io.Writer) int {
	var p progress
	switch {
	case c.quiet:
		p = quietProgress{}
	case isTerminal(stderr):
		p = newBarProgress(stderr)
	default:
		p = &lineProgress{w: stderr}
	}
	res, err := op.Wait(ctx, &client.WaitOptions{OnProgress: p.update})
	p.done()
	if err != nil {
		var oe *client.OperationError
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			fmt.Fprintln(stderr, "stopped waiting:", err)
			if token != "" {
				fmt.Fprintf(stderr, "resume with: asyncreq wait %s\n", token)
			}
			return exitInterrupted
		case errors.As(err, &oe):
			fmt.Fprintf(stderr, "request %s: %s (%d)\n", oe.State, problemText(oe.Problem), oe.Problem.Status)
			return exitFailed
		case errors.Is(err, asyncreq.ErrGone):
			fmt.Fprintln(stderr, "the request and its result have been purged:", err)
			return exitFailed
		case errors.Is(err, asyncreq.ErrNotFound):
			fmt.Fprintln(stderr, "no such request:", err)
			return exitFailed
		}
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	if !c.quiet {
		fmt.Fprintf(stderr, "result: %d %s", res.StatusCode, http.StatusText(res.StatusCode))
		if res.ContentType != "" {
			fmt.Fprintf(stderr, " (%s, %d bytes)", res.ContentType, len(res.Body))
		}
		fmt.Fprintln(stderr)
	}
	if err := writeResult(c.output, res.Body, stdout); err != nil {
		fmt.Fprintln(stderr, "asyncreq:", err)
		return exitFailed
	}
	if res.StatusCode >= 400 {
		return exitFailed
	}
	return exitOK
}

func problemText(p *asyncreq.Problem) string {
	switch {
	case p.Detail != "":
		return p.Detail
	case p.Title != "":
		return p.Title
	}
	return "no detail"
}

func writeResult(path string, body []byte, stdout io.Writer) error {
	if path == "" {
		_, err := stdout.Write(body)
		if err == nil && len(body) > 0 && body[len(body)-1] != '\n' && isTerminal(stdout) {
			_, err = io.WriteString(stdout, "\n")
		}
		return err
	}
	return os.WriteFile(path, body, 0o644)
}

// readData returns the body a -d value names.
func readData(d string, stdin io.Reader) ([]byte, error) {
	switch {
	case d == "":
		return nil, nil
	case d == "@-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	case strings.HasPrefix(d, "@"):
		b, err := os.ReadFile(d[1:])
		if err != nil {
			return nil, fmt.Errorf("reading the body: %w", err)
		}
		return b, nil
	}
	return []byte(d), nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows the status documents a wait sees.
type progress interface {
	update(doc *asyncreq.StatusDocument)
	done()
}

type quietProgress struct{}

func (quietProgress) update(*asyncreq.StatusDocument) {}
func (quietProgress) done()                           {}

// lineProgress prints a line whenever the state or progress changes.
type lineProgress struct {
	w    io.Writer
	last string
}

func (l *lineProgress) update(doc *asyncreq.StatusDocument) {
	line := describe(doc)
	if line != l.last {
		fmt.Fprintln(l.w, line)
		l.last = line
	}
}

func (l *lineProgress) done() {}

func describe(doc *asyncreq.StatusDocument) string {
	s := "status: " + string(doc.Status)
	if doc.Progress != nil {
		s += fmt.Sprintf(" %d%%", doc.Progress.Percent)
		if doc.Progress.Message != "" {
			s += " " + doc.Progress.Message
		}
	}
	return s
}

// barProgress drives a progress bar from the server's progress.
type barProgress struct {
	bar   *progressbar.ProgressBar
	shown bool
}

func newBarProgress(w io.Writer) *barProgress {
	return &barProgress{bar: progressbar.NewOptions(100,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("pending"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(50*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

func (b *barProgress) update(doc *asyncreq.StatusDocument) {
	b.shown = true
	desc := string(doc.Status)
	if doc.Progress != nil && doc.Progress.Message != "" {
		desc += ": " + doc.Progress.Message
	}
	b.bar.Describe(desc)
	switch {
	case doc.Status == asyncreq.StateSucceeded:
		_ = b.bar.Finish()
	case doc.Progress != nil:
		_ = b.bar.Set(doc.Progress.Percent)
	default:
		_ = b.bar.Add(0) // redraw with the new description
	}
}

func (b *barProgress) done() {
	if b.shown && !b.bar.IsFinished() {
		_ = b.bar.Exit() // keeps the bar where it stopped and ends the line
	}
}
