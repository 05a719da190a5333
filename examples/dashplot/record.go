package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// recordScrapes scrapes server's /metrics every `every` for d into the
// file at path, while load (if set) sends the server its load. It stops
// early when ctx ends, keeping what it scraped.
func recordScrapes(ctx context.Context, path, server string, load bool, d, every time.Duration) error {
	server = strings.TrimRight(server, "/")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	client := &http.Client{Timeout: every}
	loaded := make(chan loadReport, 1)
	if load {
		go func() { loaded <- sendLoad(ctx, server, d) }()
	}

	scrapes := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := scrape(ctx, client, server+"/metrics", w); err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "dashplot: scrape:", err)
			}
		} else {
			scrapes++
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	if load {
		fmt.Fprintf(os.Stderr, "dashplot: load: %v\n", <-loaded)
	}
	fmt.Fprintf(os.Stderr, "dashplot: %d scrapes written to %s\n", scrapes, path)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scrape writes one scrape of url to w, after its marker line.
func scrape(ctx context.Context, client *http.Client, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	now := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	_, err = fmt.Fprintf(w, "%s%d\n%s\n", scrapeMarker, now.UnixMilli(), body)
	return err
}
