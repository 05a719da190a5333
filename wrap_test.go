package asyncreq_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// process runs HandlerProcessor(next) on a request like the handler
// records.
func process(t *testing.T, next http.HandlerFunc, req *asyncreq.Request) (*asyncreq.Result, error) {
	t.Helper()
	if req == nil {
		req = &asyncreq.Request{ID: asyncreq.NewID(), Method: http.MethodPost, URL: "/reports?x=1", Body: []byte("body")}
	}
	return asyncreq.HandlerProcessor(next).Process(t.Context(), req)
}

func TestHandlerProcessorReplaysTheRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
	}, &asyncreq.Request{
		ID:          asyncreq.NewID(),
		Method:      http.MethodPut,
		URL:         "/reports/7?format=json&x=%20y",
		Header:      http.Header{"X-Trace": {"t1"}, "Accept": {"application/json"}},
		ContentType: "text/plain; charset=utf-8",
		Body:        []byte("hello world"),
	})
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, http.MethodPut, got.Method)
	assert.Equal(t, "/reports/7", got.URL.Path)
	assert.Equal(t, "json", got.URL.Query().Get("format"))
	assert.Equal(t, " y", got.URL.Query().Get("x"))
	assert.Equal(t, "/reports/7?format=json&x=%20y", got.RequestURI)
	assert.Equal(t, "t1", got.Header.Get("X-Trace"))
	assert.Equal(t, "application/json", got.Header.Get("Accept"))
	assert.Equal(t, "text/plain; charset=utf-8", got.Header.Get("Content-Type"))
	assert.Equal(t, int64(11), got.ContentLength)
	assert.Equal(t, "hello world", string(body))
	assert.Equal(t, "HTTP/1.1", got.Proto)
	require.NotNil(t, got.GetBody)
	rc, err := got.GetBody()
	require.NoError(t, err)
	again, _ := io.ReadAll(rc)
	assert.Equal(t, "hello world", string(again))

	// A handler that writes nothing answers 200 with no body.
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Empty(t, res.Body)
	assert.Empty(t, res.ContentType)
}

func TestHandlerProcessorRecordsTheResponse(t *testing.T) {
	res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/reports/7")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Connection", "close, X-Conn-Only")
		w.Header().Set("X-Conn-Only", "hop")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Date", "Mon, 01 Jan 2024 00:00:00 GMT")
		w.WriteHeader(http.StatusCreated)
		w.Header().Set("X-After", "ignored") // after WriteHeader: not sent
		w.WriteHeader(http.StatusTeapot)     // superfluous: ignored
		_, _ = io.WriteString(w, `{"id":7}`)
	}, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, res.StatusCode)
	assert.Equal(t, "application/json", res.ContentType)
	assert.Equal(t, `{"id":7}`, string(res.Body))
	assert.Equal(t, http.Header{
		"Location": {"/reports/7"},
		"X-Multi":  {"a", "b"},
	}, res.Header)
}

func TestHandlerProcessorWriterSemantics(t *testing.T) {
	t.Run("implicit 200 and sniffing", func(t *testing.T) {
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "<!DOCTYPE html><html><body>hi</body></html>")
		}, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, res.StatusCode)
		assert.Equal(t, "text/html; charset=utf-8", res.ContentType)
	})
	t.Run("no sniffing with an explicit or empty type or an encoding", func(t *testing.T) {
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, "<html></html>")
		}, nil)
		require.NoError(t, err)
		assert.Empty(t, res.ContentType)
		ct, kept := res.Header["Content-Type"]
		assert.True(t, kept, "the wish for no type is kept")
		assert.Empty(t, ct)
		res, err = process(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write([]byte{0x1f, 0x8b, 0})
		}, nil)
		require.NoError(t, err)
		assert.Empty(t, res.ContentType)
		assert.Equal(t, "gzip", res.Header.Get("Content-Encoding"))
	})
	t.Run("flush commits the header", func(t *testing.T) {
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "plain words ")
			require.NoError(t, http.NewResponseController(w).Flush())
			w.Header().Set("X-Late", "ignored")
			_, _ = io.WriteString(w, "<html>")
		}, nil)
		require.NoError(t, err)
		assert.Equal(t, "text/plain; charset=utf-8", res.ContentType, "sniffed from what was flushed")
		assert.Equal(t, "plain words <html>", string(res.Body))
		assert.Empty(t, res.Header.Get("X-Late"))
	})
	t.Run("informational answers are skipped", func(t *testing.T) {
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, "ok")
		}, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusAccepted, res.StatusCode)
		assert.Equal(t, "</style.css>; rel=preload", res.Header.Get("Link"))
	})
	t.Run("no body where the status allows none", func(t *testing.T) {
		var werr error
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
			_, werr = io.WriteString(w, "x")
		}, nil)
		require.NoError(t, err)
		assert.ErrorIs(t, werr, http.ErrBodyNotAllowed)
		assert.Equal(t, http.StatusNoContent, res.StatusCode)
		assert.Empty(t, res.Body)
	})
	t.Run("declared Content-Length is enforced", func(t *testing.T) {
		var werr error
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			_, _ = io.WriteString(w, "abc")
			_, werr = io.WriteString(w, "d")
		}, nil)
		require.NoError(t, err)
		assert.ErrorIs(t, werr, http.ErrContentLength)
		assert.Equal(t, "abc", string(res.Body))
		assert.Empty(t, res.Header.Get("Content-Length"), "the handler serving the result sets its own")
	})
	t.Run("trailers become headers", func(t *testing.T) {
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "data")
			w.Header().Set("X-Checksum", "abc")
			w.Header().Set(http.TrailerPrefix+"X-Elapsed", "5ms")
		}, nil)
		require.NoError(t, err)
		assert.Equal(t, "abc", res.Header.Get("X-Checksum"))
		assert.Equal(t, "5ms", res.Header.Get("X-Elapsed"))
		assert.Empty(t, res.Header.Get("Trailer"))
	})
	t.Run("HEAD discards the body", func(t *testing.T) {
		res, err := process(t, func(w http.ResponseWriter, r *http.Request) {
			n, err := io.WriteString(w, "abc")
			assert.Equal(t, 3, n)
			assert.NoError(t, err)
		}, &asyncreq.Request{Method: http.MethodHead, URL: "/"})
		require.NoError(t, err)
		assert.Empty(t, res.Body)
	})
}

func TestHandlerProcessorFailures(t *testing.T) {
	_, err := process(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(42) }, nil)
	var pe *asyncreq.PermanentError
	require.ErrorAs(t, err, &pe, "an invalid status is a permanent failure")
	assert.Equal(t, http.StatusInternalServerError, pe.Status)

	_, err = process(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusSwitchingProtocols)
	}, nil)
	require.ErrorAs(t, err, &pe)

	_, err = process(t, func(w http.ResponseWriter, r *http.Request) {}, &asyncreq.Request{URL: "::not a url"})
	require.ErrorAs(t, err, &pe)

	// The context's end wins over whatever the handler wrote.
	ctx, cancel := context.WithCancelCause(t.Context())
	_, err = asyncreq.HandlerProcessor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel(asyncreq.ErrCanceled)
		<-r.Context().Done()
		assert.ErrorIs(t, context.Cause(r.Context()), asyncreq.ErrCanceled, "the handler sees the cause")
		http.Error(w, "canceled", http.StatusServiceUnavailable)
	})).Process(ctx, &asyncreq.Request{URL: "/"})
	require.ErrorIs(t, err, context.Canceled)
}

func TestHandlerProcessorProgress(t *testing.T) {
	var got []asyncreq.Progress
	ctx := asyncreq.WithProgress(t.Context(), func(_ context.Context, p asyncreq.Progress) error {
		got = append(got, p)
		return nil
	})
	_, err := asyncreq.HandlerProcessor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, asyncreq.ReportProgress(r.Context(), 50, "halfway"))
	})).Process(ctx, &asyncreq.Request{URL: "/"})
	require.NoError(t, err)
	assert.Equal(t, []asyncreq.Progress{{Percent: 50, Message: "halfway"}}, got)
}

// reportHandler is an ordinary synchronous handler for the middleware
// tests: it echoes what it received.
func reportHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if len(body) == 0 {
		http.Error(w, "empty body", http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Report", "1")
	w.WriteHeader(http.StatusCreated)
	_, _ = fmt.Fprintf(w, `{"words":%d,"trace":%q,"auth":%q,"cookie":%q,"prefer":%q,"path":%q}`,
		len(strings.Fields(string(body))), r.Header.Get("X-Trace"), r.Header.Get("Authorization"),
		r.Header.Get("Cookie"), r.Header.Get("Prefer"), r.URL.Path)
}

// startAsync returns a started Async over a memory backend, stopped when
// the test ends.
func startAsync(t *testing.T, next http.Handler, opts *asyncreq.AsyncOptions) *asyncreq.Async {
	t.Helper()
	b := newMemory(t)
	a, err := asyncreq.NewAsync(next, b, opts)
	require.NoError(t, err)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.Stop(ctx))
	})
	return a
}

func TestAsyncReplaysAsIfSynchronous(t *testing.T) {
	a := startAsync(t, http.HandlerFunc(reportHandler), nil)

	// Submit, poll, follow the 303, get the handler's own answer.
	rr := serveReq(t, a, http.MethodPost, "/", "one two three", "X-Trace", "t1", "Authorization", "Bearer x", "Cookie", "c=1")
	require.Equal(t, http.StatusAccepted, rr.Code)
	statusURL := rr.Header().Get("Location")
	for {
		rr = serveReq(t, a, http.MethodGet, statusURL, "", "Prefer", "wait=5")
		if rr.Code != http.StatusOK {
			break
		}
	}
	require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
	rr = serveReq(t, a, http.MethodGet, rr.Header().Get("Location"), "")
	require.Equal(t, http.StatusCreated, rr.Code)
	assert.Equal(t, "application/json", rr.Header().Get("Content-Type"))
	assert.Equal(t, "1", rr.Header().Get("X-Report"))
	assert.JSONEq(t, `{"words":3,"trace":"t1","auth":"","cookie":"","prefer":"","path":"/"}`, rr.Body.String(),
		"end-to-end headers kept, credentials and Prefer not")

	// Prefer: wait answers with the replay itself.
	rr = serveReq(t, a, http.MethodPost, "/", "four words in here", "Prefer", "wait=10")
	require.Equal(t, http.StatusCreated, rr.Code, rr.Body.String())
	assert.Contains(t, rr.Body.String(), `"words":4`)
	assert.Equal(t, "wait=10", rr.Header().Get("Preference-Applied"))
	assert.NotEmpty(t, rr.Header().Get("Content-Location"))
	assert.Equal(t, "1", rr.Header().Get("X-Report"))

	// The handler's own error answer is the result, replayed at the
	// result URL; the submit answers 303 to the status URL, not with the
	// error, which would read as a submit that was not accepted.
	rr = serveReq(t, a, http.MethodPost, "/", "", "Prefer", "wait=10")
	require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
	rr = serveReq(t, a, http.MethodGet, rr.Header().Get("Location"), "")
	require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
	rr = serveReq(t, a, http.MethodGet, rr.Header().Get("Location"), "")
	require.Equal(t, http.StatusUnprocessableEntity, rr.Code)
	assert.Equal(t, "empty body\n", rr.Body.String())
}

func TestAsyncKeepHeadersChoice(t *testing.T) {
	a := startAsync(t, http.HandlerFunc(reportHandler), &asyncreq.AsyncOptions{
		Handler: asyncreq.HandlerOptions{KeepHeaders: []string{"*", "Authorization"}},
	})
	rr := serveReq(t, a, http.MethodPost, "/", "x", "Authorization", "Bearer x", "X-Trace", "t", "Prefer", "wait=10")
	require.Equal(t, http.StatusCreated, rr.Code, rr.Body.String())
	assert.JSONEq(t, `{"words":1,"trace":"t","auth":"Bearer x","cookie":"","prefer":"","path":"/"}`, rr.Body.String())

	a = startAsync(t, http.HandlerFunc(reportHandler), &asyncreq.AsyncOptions{
		Handler: asyncreq.HandlerOptions{KeepHeaders: []string{}},
	})
	rr = serveReq(t, a, http.MethodPost, "/", "x", "X-Trace", "t", "Prefer", "wait=10")
	require.Equal(t, http.StatusCreated, rr.Code, rr.Body.String())
	assert.Contains(t, rr.Body.String(), `"trace":""`, "an empty list keeps none")
}

func TestAsyncCancelRunningHandler(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	a := startAsync(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		<-r.Context().Done()
	}), &asyncreq.AsyncOptions{Worker: asyncreq.WorkerOptions{LeaseDuration: 300 * time.Millisecond}})
	id := postJob(t, a, "x")
	<-started
	rr := serveReq(t, a, http.MethodDelete, "/"+id, "")
	require.Equal(t, http.StatusAccepted, rr.Code)
	for {
		rr = serveReq(t, a, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=5")
		require.Contains(t, []int{http.StatusOK}, rr.Code)
		if readDoc(t, rr).Status == asyncreq.StateCanceled {
			break
		}
	}
	checkProblem(t, serveReq(t, a, http.MethodGet, "/"+id, ""), http.StatusConflict)
}

func TestNewAsyncValidation(t *testing.T) {
	b := newMemory(t)
	_, err := asyncreq.NewAsync(nil, b, nil)
	require.Error(t, err)
	_, err = asyncreq.NewAsync(http.NotFoundHandler(), b, &asyncreq.AsyncOptions{Handler: asyncreq.HandlerOptions{MaxWait: -1}})
	require.ErrorContains(t, err, "HandlerOptions.MaxWait")
	_, err = asyncreq.NewAsync(http.NotFoundHandler(), b, &asyncreq.AsyncOptions{Worker: asyncreq.WorkerOptions{Concurrency: -1}})
	require.ErrorContains(t, err, "WorkerOptions.Concurrency")
	_, err = asyncreq.NewAsync(http.NotFoundHandler(), asyncreq.Pair(nil, b), nil)
	require.Error(t, err)

	// Stop before Start is fine.
	a, err := asyncreq.NewAsync(http.NotFoundHandler(), b, nil)
	require.NoError(t, err)
	require.NoError(t, a.Stop(t.Context()))
	require.Error(t, a.Start(t.Context()), "a stopped Async cannot start")
}
