package asyncreq_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// Resize is the input of the thumbnail endpoint.
type Resize struct {
	URL   string `json:"url"`
	Width int    `json:"width"`
}

// Validate refuses what no attempt could process; NewEndpoint checks it
// at submit, before anything is stored.
func (r Resize) Validate() error {
	if r.Width <= 0 || r.Width > 4096 {
		return errors.New("width must be between 1 and 4096")
	}
	return nil
}

// Thumbnail is the output of the thumbnail endpoint.
type Thumbnail struct {
	URL string `json:"url"`
}

// This example serves one asynchronous JSON endpoint with NewEndpoint and
// JSONProcessor: a typed function becomes the processor, and input it
// would refuse is answered 422 at submit.
func ExampleNewEndpoint() {
	backend := memory.New(nil)
	defer backend.Close()

	resize := func(ctx context.Context, in Resize) (Thumbnail, error) {
		return Thumbnail{URL: fmt.Sprintf("%s?w=%d", in.URL, in.Width)}, nil
	}
	thumbnails, err := asyncreq.NewEndpoint(backend, asyncreq.JSONProcessor(resize), nil)
	if err != nil {
		panic(err)
	}
	if err := thumbnails.Start(context.Background()); err != nil {
		panic(err)
	}
	defer thumbnails.Stop(context.Background())

	mux := http.NewServeMux()
	mux.Handle("/thumbnails/", http.StripPrefix("/thumbnails", thumbnails))

	post := func(body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/thumbnails/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Prefer", "wait=5")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	w := post(`{"url": "/img/cat.png", "width": 128}`)
	fmt.Println(w.Code, w.Header().Get("Content-Type"), w.Body.String())

	w = post(`{"url": "/img/cat.png", "width": "wide"}`)
	fmt.Println(w.Code, w.Header().Get("Content-Type"))
	w = post(`{"url": "/img/cat.png", "width": 0}`)
	fmt.Println(w.Code, strings.Contains(w.Body.String(), "width must be between 1 and 4096"))
	// Output:
	// 200 application/json {"url":"/img/cat.png?w=128"}
	// 422 application/problem+json
	// 422 true
}

// This example decodes and validates a body as JSONProcessor and
// ValidateJSON do, showing the problem a client is answered with.
func ExampleDecodeJSON() {
	_, err := asyncreq.DecodeJSON[Resize]("application/json", []byte(`{"url": "/img/cat.png", "width": "wide"}`))
	var p *asyncreq.Problem
	if errors.As(err, &p) {
		fmt.Println(p.Status, p.Detail)
	}
	_, err = asyncreq.DecodeJSON[Resize]("application/json", []byte(`{"url": "/img/cat.png", "height": 10}`))
	if errors.As(err, &p) {
		fmt.Println(p.Status, p.Detail)
	}
	// Output:
	// 422 the field "width" must be an integer, not a string
	// 422 the request body has an unknown field "height"
}
