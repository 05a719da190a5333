package asyncreq

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is the status document: its type, how the Handler builds one
// from a Record, and its JSON encoding, written by hand because every
// status answer and long poll encodes one.

// StatusDocument is the JSON document the status URL serves (see the HTTP
// contract in the package documentation). Clients decode it; the handler
// builds it from a Record.
type StatusDocument struct {
	// ID is the request's identifier.
	ID string `json:"id"`
	// Status is where the request stands.
	Status State `json:"status"`
	// CreatedAt and UpdatedAt are when the request was accepted and last
	// changed, in UTC.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Attempts is the number of attempts started so far.
	Attempts int `json:"attempts"`
	// Progress is what the processor last reported while running, or nil.
	Progress *Progress `json:"progress,omitempty"`
	// StatusURL is the URL of this document.
	StatusURL string `json:"status_url"`
	// ResultURL is the URL of the result, once the request has succeeded.
	ResultURL string `json:"result_url,omitempty"`
	// Error is the failure of a failed or canceled request, or nil.
	Error *Problem `json:"error,omitempty"`
	// ExpiresAt is when a finished request will be purged; zero while it
	// is not finished.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Callback is how the delivery of the completion callback stands, when
	// the submit asked for one.
	Callback *CallbackStatus `json:"callback,omitempty"`
}

// statusDocument builds the status document of rec, with the URLs of the
// request st reached the Handler with.
func statusDocument(rec *Record, st *reqState) StatusDocument {
	var resultURL string // only a succeeded request's document has one
	if rec.State == StateSucceeded {
		resultURL = st.resultURL(rec.ID)
	}
	return statusDocumentAt(rec, st.statusURL(rec.ID), resultURL)
}

// statusDocumentAt builds the status document of rec, whose status and
// result URLs are statusURL and resultURL.
func statusDocumentAt(rec *Record, statusURL, resultURL string) StatusDocument {
	doc := StatusDocument{
		ID:        rec.ID,
		Status:    rec.State,
		CreatedAt: rec.CreatedAt.UTC(),
		UpdatedAt: rec.UpdatedAt.UTC(),
		Attempts:  rec.Attempts,
		Progress:  rec.Progress,
		StatusURL: statusURL,
	}
	if !rec.ExpiresAt.IsZero() {
		doc.ExpiresAt = rec.ExpiresAt.UTC()
	}
	switch rec.State {
	case StateSucceeded:
		doc.ResultURL = resultURL
	case StateFailed, StateCanceled:
		doc.Error = servedProblem(failureProblem(rec), http.StatusInternalServerError)
	}
	doc.Callback = callbackStatus(rec)
	return doc
}

// documentBufs holds the buffers status documents are encoded in: a
// buffer is written to the response, which copies it, before it goes
// back.
var documentBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeDocument answers with a status document as application/json.
func (h *Handler) writeDocument(w http.ResponseWriter, r *http.Request, code int, doc *StatusDocument) {
	buf := documentBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 4<<10 { // a document with a large progress or error is not kept
			documentBufs.Put(buf)
		}
	}()
	b, err := appendStatusDocument((*buf)[:0], doc)
	*buf = b[:0]
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "asyncreq: encoding a status document",
			slog.String("id", doc.ID), slog.Any("err", err))
		sendError(w, r, http.StatusInternalServerError, "the status document could not be encoded")
		return
	}
	b = append(b, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// appendStatusDocument appends the JSON encoding of d to b: the bytes
// encoding/json would write, without its reflection on the hot paths.
func appendStatusDocument(b []byte, d *StatusDocument) ([]byte, error) {
	ok := true
	b = append(b, `{"id":`...)
	b = appendJSONString(b, d.ID)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(d.Status))
	b = append(b, `,"created_at":`...)
	b, ok = appendJSONTime(b, d.CreatedAt, ok)
	b = append(b, `,"updated_at":`...)
	b, ok = appendJSONTime(b, d.UpdatedAt, ok)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(d.Attempts), 10)
	if d.Progress != nil {
		b = appendProgressJSON(append(b, `,"progress":`...), d.Progress)
	}
	b = append(b, `,"status_url":`...)
	b = appendJSONString(b, d.StatusURL)
	b = appendStringField(b, `,"result_url":`, d.ResultURL)
	if d.Error != nil {
		b = appendProblemJSON(append(b, `,"error":`...), d.Error)
	}
	if !d.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":`...)
		b, ok = appendJSONTime(b, d.ExpiresAt, ok)
	}
	if d.Callback != nil {
		b = append(b, `,"callback":{"state":`...)
		b = appendJSONString(b, d.Callback.State)
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(d.Callback.Attempts), 10)
		b = append(b, '}')
	}
	if !ok {
		return nil, errors.New("asyncreq: a time of the status document cannot be encoded in JSON")
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML-safe, invalid UTF-8 replaced).
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
