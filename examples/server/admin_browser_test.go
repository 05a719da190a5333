package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestAdminInBrowser drives the admin dashboard in a real Chromium: it
// logs in with the token, finds the request that failed among the
// succeeded ones, presses Retry, and sees it succeed. It saves a
// screenshot of each step (PNG) to $ASYNCREQ_TEST_ARTIFACTS, or to a
// temporary directory whose path it logs.
func TestAdminInBrowser(t *testing.T) {
	chromium := os.Getenv("ASYNCREQ_TEST_CHROMIUM")
	if chromium == "" {
		t.Skip("ASYNCREQ_TEST_CHROMIUM is not set: set it to a Chromium binary (such as /usr/bin/chromium, " +
			"Debian's chromium package) to run the admin dashboard in a real browser")
	}
	artifacts := os.Getenv("ASYNCREQ_TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	t.Logf("screenshots in %s", artifacts)

	// One worker, so that a backlog builds up for the charts.
	srv := startApp(t, config{backend: "memory", processor: "report", workTime: 200 * time.Millisecond, concurrency: 1,
		adminToken: testAdminToken, failWord: "FAIL-ONCE", adminSampleInterval: 250 * time.Millisecond})

	// Some traffic over a few samples: reports that succeed, and one
	// that fails.
	var ids []string
	for i := range 16 {
		ids = append(ids, submitJob(t, srv, strings.Repeat("a line of text\n", i+1)))
		time.Sleep(80 * time.Millisecond)
	}
	failedID := submitJob(t, srv, "this report should FAIL-ONCE\n")
	for _, id := range ids {
		awaitState(t, srv, id, asyncreq.StateSucceeded)
	}
	awaitState(t, srv, failedID, asyncreq.StateFailed)
	time.Sleep(time.Second) // a few samples more, for the charts

	browser := newBrowser(t, chromium)
	// Each step gets 30s: a missing element fails the test then, not at
	// the browser's watchdog.
	ctx := browser
	step := func() {
		c, cancel := context.WithTimeout(browser, 30*time.Second)
		t.Cleanup(cancel)
		ctx = c
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(artifacts, name), png, 0o644))
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		require.NoError(t, err)
		return s
	}

	// The dashboard sends a browser without a session to the login form.
	step()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("token")),
	))
	shot("admin-login.png")
	step()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), testAdminToken),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("queue-jobs")),
		// Once more, without the login's message, for the screenshot.
		chromedp.Navigate(srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("queue-jobs")),
	))
	shot("admin-dashboard.png")
	counts := text(`#queue-jobs table.counts`)
	require.Contains(t, counts, "failed")
	require.Contains(t, counts, "succeeded")

	// The failed request, from the list of failed ones.
	step()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#queue-jobs th a[href$="state=failed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.requests`)),
	))
	shot("admin-failed-list.png")
	list := text(`table.requests tbody`)
	require.Contains(t, list, failedID)
	require.Equal(t, 1, strings.Count(list, "failed"), "only the failed request is listed: %s", list)

	step()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a.id`)),
		chromedp.WaitVisible(chromedp.ID("retry")),
	))
	shot("admin-request-failed.png")
	require.Equal(t, "failed", text(`#state`))
	require.Contains(t, text(`section.problem`), "FAIL-ONCE")

	// Retry: the page comes back with the request pending, and its
	// script shows it succeed without a reload.
	step()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("retry")),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	))
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](
		`document.getElementById("state") && document.getElementById("state").textContent === "succeeded"`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "the page never showed the retried request succeed")
	shot("admin-request-retried.png")
	require.Equal(t, "succeeded", text(`#state`))
	awaitState(t, srv, failedID, asyncreq.StateSucceeded)
}

// newBrowser starts a headless Chromium for the test and returns its
// context; the browser is closed, and its goroutines ended, when the test
// ends.
func newBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	// The browser lives as long as the context of its first action: this
	// one, the test's watchdog.
	ctx, cancelTimeout := context.WithTimeout(browserCtx, 2*time.Minute)
	t.Cleanup(func() {
		// Close the browser gracefully and wait for it to exit.
		closing, cancel := context.WithTimeout(browserCtx, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(closing); err != nil {
			t.Logf("closing the browser: %v", err)
		}
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser now, with a context that lasts for the test, so
	// that a failure to launch it is told as such.
	require.NoError(t, chromedp.Do(ctx), "starting %s", chromium)
	return ctx
}
