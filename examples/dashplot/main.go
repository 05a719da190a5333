// Command dashplot draws the panels of examples/grafana-dashboard.json
// from scrapes of the example server's /metrics, without Prometheus or
// Grafana: it evaluates each panel's query (rate, sum and max by labels,
// histogram_quantile) at every scrape, as PromQL would, and draws the
// lines into a PNG. docs/img/dashboard.png is drawn by it.
//
// It records, then renders:
//
//	go run ./examples/server -addr 127.0.0.1:8090 -sqlite-path /tmp/dash.db -work-time 50ms -concurrency 4
//	go run ./examples/dashplot -record /tmp/scrapes.txt -server http://127.0.0.1:8090 -load -d 2m
//	go run ./examples/dashplot -in /tmp/scrapes.txt -png docs/img/dashboard.png
//
// -record scrapes the server's /metrics every -every for -d into a file,
// each scrape after a line "# SCRAPE <unix milliseconds>"; with -load it
// also sends the server a load that changes every quarter of -d (see
// load.go). -in reads such a file and -png writes the picture; rates and
// quantiles are taken over -window.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"gonum.org/v1/plot/vg"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashplot:", err)
		os.Exit(1)
	}
}

// renderOptions is how the picture is drawn.
type renderOptions struct {
	title                   string
	window                  time.Duration
	panelWidth, panelHeight float64 // points
	headerHeight            vg.Length
}

func run(args []string) error {
	fs := flag.NewFlagSet("dashplot", flag.ContinueOnError)
	record := fs.String("record", "", "scrape the server's /metrics into this `file`")
	server := fs.String("server", "http://127.0.0.1:8090", "the example server's base `URL` (-record)")
	load := fs.Bool("load", false, "while recording, send the server the load of load.go")
	d := fs.Duration("d", 2*time.Minute, "how long to record")
	every := fs.Duration("every", 2*time.Second, "time between two scrapes")
	in := fs.String("in", "", "render the scrapes in this `file`")
	out := fs.String("png", "dashboard.png", "write the picture to this `file` (-in)")
	window := fs.Duration("window", 16*time.Second, "the range of rate() and histogram_quantile(), as [$__rate_interval] in the dashboard")
	title := fs.String("title", "", "the picture's title (default: what it shows and the scrapes' span)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *record == "" && *in == "" {
		return errors.New("nothing to do: give -record FILE, -in FILE, or both")
	}
	if *every <= 0 || *d <= 0 || *window <= 0 {
		return errors.New("-every, -d and -window must be positive")
	}
	if *record != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		if err := recordScrapes(ctx, *record, *server, *load, *d, *every); err != nil {
			return err
		}
	}
	if *in == "" {
		return nil
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	db, err := readScrapes(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	o := renderOptions{title: *title, window: *window, panelWidth: 480, panelHeight: 250, headerHeight: 30}
	if o.title == "" {
		span := db.times[len(db.times)-1].Sub(db.times[0]).Round(time.Second)
		o.title = fmt.Sprintf("asyncreq example server: the Grafana dashboard's queries over %d scrapes in %s (rates over %s), drawn by examples/dashplot",
			len(db.times), span, *window)
	}
	w, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := render(w, db, panels, o); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
