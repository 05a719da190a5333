package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/asyncreq/asyncreq"
)

// report is what the example computes for a text document.
type report struct {
	Bytes  int    `json:"bytes"`
	Lines  int    `json:"lines"`
	Words  int    `json:"words"`
	SHA256 string `json:"sha256"`
}

// errNotUTF8 is the permanent failure for a body that is not UTF-8 text.
var errNotUTF8 = errors.New("the body is not valid UTF-8 text")

// errEmpty is the validator's answer to an empty body.
var errEmpty = &asyncreq.Problem{
	Type:   "about:blank",
	Title:  "Unprocessable Content",
	Status: http.StatusUnprocessableEntity,
	Detail: "the body is empty: send the text document to report on",
}

// makeReport computes the report of body. It spreads the simulated
// workTime over ten steps, calling progress after each, and stops early
// when ctx ends.
func makeReport(ctx context.Context, body []byte, workTime time.Duration, progress func(percent int, msg string)) (*report, error) {
	if !utf8.Valid(body) {
		return nil, errNotUTF8
	}
	const steps = 10
	step := workTime / steps
	var t *time.Timer
	if step > 0 {
		t = time.NewTimer(step)
		defer t.Stop()
	}
	for i := 1; i <= steps; i++ {
		if t != nil {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
				t.Reset(step)
			}
		}
		if progress != nil && i < steps {
			progress(i*100/steps, stepMessage(i))
		}
	}
	sum := sha256.Sum256(body)
	lines := bytes.Count(body, []byte{'\n'})
	if len(body) > 0 && body[len(body)-1] != '\n' {
		lines++
	}
	return &report{
		Bytes:  len(body),
		Lines:  lines,
		Words:  len(bytes.Fields(body)),
		SHA256: hex.EncodeToString(sum[:]),
	}, nil
}

func stepMessage(i int) string {
	switch {
	case i <= 3:
		return "reading the document"
	case i <= 7:
		return "counting lines and words"
	default:
		return "hashing"
	}
}

// reportProcessor is the Processor behind /jobs.
func reportProcessor(workTime time.Duration) asyncreq.Processor {
	return asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		rep, err := makeReport(ctx, req.Body, workTime, func(p int, msg string) {
			// Progress is advisory: a lost lease shows up in the outcome.
			_ = asyncreq.ReportProgress(ctx, p, msg)
		})
		if errors.Is(err, errNotUTF8) {
			return nil, asyncreq.Permanent(err, http.StatusUnprocessableEntity)
		}
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(rep)
		if err != nil {
			return nil, err
		}
		return &asyncreq.Result{ContentType: "application/json", Body: b}, nil
	})
}

// validateReport rejects an empty body before anything is stored.
func validateReport(_ *http.Request, body []byte) error {
	if len(body) == 0 {
		return errEmpty
	}
	return nil
}

// reportHandler is the synchronous /report endpoint: it answers the report
// in the request itself, taking workTime to do so.
func reportHandler(workTime time.Duration, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeProblem(w, r, http.StatusMethodNotAllowed, "only POST is supported here")
			return
		}
		body, err := readBody(w, r, maxBody)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeProblem(w, r, http.StatusRequestEntityTooLarge, "the body is larger than the limit")
				return
			}
			writeProblem(w, r, http.StatusBadRequest, "the body could not be read")
			return
		}
		if len(body) == 0 {
			writeProblem(w, r, http.StatusUnprocessableEntity, errEmpty.Detail)
			return
		}
		rep, err := makeReport(r.Context(), body, workTime, nil)
		switch {
		case errors.Is(err, errNotUTF8):
			writeProblem(w, r, http.StatusUnprocessableEntity, err.Error())
			return
		case err != nil:
			writeProblem(w, r, http.StatusServiceUnavailable, "the report was interrupted")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

// writeProblem answers with a problem document, as asyncreq writes its
// own.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	(&asyncreq.Problem{Status: status, Detail: detail}).ServeHTTP(w, r)
}
