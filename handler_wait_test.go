package asyncreq_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// finishAfter plays a worker: it takes the next request from the queue,
// and after d applies fn to its record. It returns when that is done.
func finishAfter(b *memory.Backend, d time.Duration, fn func(*asyncreq.Record)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, err := b.Dequeue(context.Background(), time.Hour)
		if err != nil {
			return
		}
		time.Sleep(d)
		_, _ = b.Update(context.Background(), l.ID, func(r *asyncreq.Record) error {
			fn(r)
			r.UpdatedAt = time.Now()
			return nil
		})
	}()
	return done
}

func TestSubmitPreferWaitSucceededInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		done := finishAfter(b, 2*time.Second, succeed(&asyncreq.Result{
			ContentType: "text/plain",
			Header:      http.Header{"X-Answer": {"42"}},
			Body:        []byte("done"),
		}))
		start := time.Now()
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "respond-async, wait=10")
		<-done
		assert.Equal(t, 2*time.Second, time.Since(start), "answered when the request finished")
		require.Equal(t, http.StatusOK, rr.Code)
		assert.Equal(t, "done", rr.Body.String())
		assert.Equal(t, "text/plain", rr.Header().Get("Content-Type"))
		assert.Equal(t, "42", rr.Header().Get("X-Answer"))
		assert.Equal(t, "wait=10", rr.Header().Get("Preference-Applied"))
		assert.Equal(t, "Prefer", rr.Header().Get("Vary"))
		assert.NotEmpty(t, rr.Header().Get("ETag"))
		loc := rr.Header().Get("Content-Location")
		require.True(t, strings.HasPrefix(loc, "/"))
		id := strings.TrimPrefix(loc, "/")
		require.True(t, asyncreq.ValidID(id), loc)
		assert.Empty(t, rr.Header().Get("Location"))
	})
}

// A submit whose request ends in time in anything but a 2xx result is
// answered 303 to the status URL, never with the failure's own 4xx or 5xx:
// a client or proxy would read that as a submit that was not accepted,
// and send it again.
func TestSubmitPreferWaitFailedInTime(t *testing.T) {
	for name, finish := range map[string]func(*asyncreq.Record){
		"failed": func(r *asyncreq.Record) {
			r.State = asyncreq.StateFailed
			r.Error = &asyncreq.Problem{Status: http.StatusUnprocessableEntity, Detail: "not UTF-8"}
		},
		"failed without a status": func(r *asyncreq.Record) { r.State = asyncreq.StateFailed },
		"canceled":                func(r *asyncreq.Record) { r.State = asyncreq.StateCanceled },
		"succeeded with a 503 result": succeed(&asyncreq.Result{
			StatusCode: http.StatusServiceUnavailable, ContentType: "text/plain", Body: []byte("upstream down"),
		}),
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := memory.New(nil)
				defer b.Close()
				h := newTestHandler(t, b, nil)
				done := finishAfter(b, time.Second, finish)
				rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "wait=5")
				<-done
				require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
				doc := readDoc(t, rr)
				assert.True(t, doc.Status.Final())
				assert.Equal(t, "/"+doc.ID+"/status", rr.Header().Get("Location"))
				assert.Equal(t, "wait=5", rr.Header().Get("Preference-Applied"))
				assert.Equal(t, "Prefer", rr.Header().Get("Vary"))
				assert.Empty(t, rr.Header().Get("Content-Location"), "the answer is not the result")
				if doc.Status != asyncreq.StateSucceeded {
					require.NotNil(t, doc.Error)
					assert.GreaterOrEqual(t, doc.Error.Status, 400, "the status document carries the failure")
				}
			})
		})
	}
}

func TestSubmitPreferWaitTimesOutAtMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, &asyncreq.HandlerOptions{MaxWait: 3 * time.Second})
		done := finishAfter(b, 5*time.Second, succeed(&asyncreq.Result{}))
		start := time.Now()
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "wait=100")
		assert.Equal(t, 3*time.Second, time.Since(start), "the wait is capped by MaxWait")
		require.Equal(t, http.StatusAccepted, rr.Code)
		doc := readDoc(t, rr)
		assert.Equal(t, "/"+doc.ID+"/status", rr.Header().Get("Location"))
		assert.Empty(t, rr.Header().Get("Preference-Applied"))
		assert.Equal(t, "Prefer", rr.Header().Get("Vary"))
		<-done
	})
}

func TestSubmitRespondAsyncAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		start := time.Now()
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "respond-async")
		assert.Zero(t, time.Since(start))
		require.Equal(t, http.StatusAccepted, rr.Code)
		assert.Equal(t, "respond-async", rr.Header().Get("Preference-Applied"))
		assert.Equal(t, "Prefer", rr.Header().Get("Vary"))

		// Unknown preferences and unreadable waits are ignored.
		rr = serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "handling=lenient, wait=soon; x=1")
		assert.Zero(t, time.Since(start))
		require.Equal(t, http.StatusAccepted, rr.Code)
		assert.Empty(t, rr.Header().Get("Preference-Applied"))
	})
}

func TestSubmitPreferWaitEndsWithTheRequestContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader("x"))
		r.Header.Set("Prefer", "wait=20")
		rr := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rr, r)
		assert.Equal(t, time.Second, time.Since(start))
		require.Equal(t, http.StatusAccepted, rr.Code)
		records, _ := b.Len()
		assert.Equal(t, 1, records, "the request stays accepted")
	})
}

func TestStatusLongPoll(t *testing.T) {
	for name, watch := range map[string]bool{"watcher": true, "polling": false} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := memory.New(nil)
				defer b.Close()
				var store asyncreq.Store = b
				if !watch {
					store = storeOnly{b}
				}
				h := newTestHandler(t, asyncreq.Pair(store, b), &asyncreq.HandlerOptions{MaxWait: 15 * time.Second})
				id := postJob(t, h, "x")
				statusURL := "/" + id + "/status"

				// A change ends the wait.
				done := finishAfter(b, 2*time.Second, func(r *asyncreq.Record) {
					r.State = asyncreq.StateRunning
				})
				start := time.Now()
				rr := serveReq(t, h, http.MethodGet, statusURL, "", "Prefer", "wait=10")
				<-done
				elapsed := time.Since(start)
				if watch {
					assert.Equal(t, 2*time.Second, elapsed)
				} else {
					assert.GreaterOrEqual(t, elapsed, 2*time.Second)
					assert.LessOrEqual(t, elapsed, 2*time.Second+time.Second, "polled at least every 500ms")
				}
				require.Equal(t, http.StatusOK, rr.Code)
				assert.Equal(t, asyncreq.StateRunning, readDoc(t, rr).Status)
				assert.Equal(t, "wait=10", rr.Header().Get("Preference-Applied"))
				assert.Equal(t, "Prefer", rr.Header().Get("Vary"))
				assert.Equal(t, "no-store", rr.Header().Get("Cache-Control"))

				// Progress is news too.
				go func() {
					time.Sleep(time.Second)
					_, _ = b.Update(context.Background(), id, func(r *asyncreq.Record) error {
						r.Progress = &asyncreq.Progress{Percent: 50}
						return nil
					})
				}()
				rr = serveReq(t, h, http.MethodGet, statusURL, "", "Prefer", "wait=10")
				require.Equal(t, http.StatusOK, rr.Code)
				assert.Equal(t, 50, readDoc(t, rr).Progress.Percent)

				// No change: held for N seconds, capped by MaxWait.
				start = time.Now()
				rr = serveReq(t, h, http.MethodGet, statusURL, "", "Prefer", "wait=100")
				assert.Equal(t, 15*time.Second, time.Since(start))
				require.Equal(t, http.StatusOK, rr.Code)
				assert.Equal(t, "wait=15", rr.Header().Get("Preference-Applied"))

				// The record disappearing ends the wait with its answer.
				go func() {
					time.Sleep(time.Second)
					_ = b.Delete(context.Background(), id, true)
				}()
				checkProblem(t, serveReq(t, h, http.MethodGet, statusURL, "", "Prefer", "wait=10"), http.StatusGone)
			})
		})
	}
}

func TestStatusLongPollFinalAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		id := postJob(t, h, "x")
		setRecord(t, b, id, succeed(&asyncreq.Result{}))
		start := time.Now()
		rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=10")
		assert.Zero(t, time.Since(start))
		require.Equal(t, http.StatusSeeOther, rr.Code)
		assert.Empty(t, rr.Header().Get("Preference-Applied"))
	})
}
