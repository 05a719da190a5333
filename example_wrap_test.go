package asyncreq_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// This example makes an ordinary synchronous handler asynchronous. The
// submit is answered 202 at once; the result URL later replays the
// handler's own answer, status and headers included. With "Prefer: wait"
// a client that can wait gets that answer directly.
func ExampleNewAsync() {
	greet := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "hello, %s", name)
	})

	backend := memory.New(nil)
	defer backend.Close()
	async, err := asyncreq.NewAsync(greet, backend, nil)
	if err != nil {
		panic(err)
	}
	if err := async.Start(context.Background()); err != nil {
		panic(err)
	}
	defer async.Stop(context.Background())

	mux := http.NewServeMux()
	mux.Handle("/greetings", http.StripPrefix("/greetings", async))
	mux.Handle("/greetings/", http.StripPrefix("/greetings", async))

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/greetings", strings.NewReader("gopher")))
	fmt.Println("submit:", w.Code)

	status := w.Header().Get("Location")
	for w.Code != http.StatusSeeOther {
		w = httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, status, nil)
		r.Header.Set("Prefer", "wait=5")
		mux.ServeHTTP(w, r)
	}
	w2 := httptest.NewRecorder()
	mux.ServeHTTP(w2, httptest.NewRequest(http.MethodGet, w.Header().Get("Location"), nil))
	fmt.Println("result:", w2.Code, w2.Header().Get("Content-Type"), w2.Body.String())

	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/greetings", strings.NewReader("again"))
	r.Header.Set("Prefer", "wait=5")
	mux.ServeHTTP(w, r)
	fmt.Println("waited:", w.Code, w.Body.String())
	// Output:
	// submit: 202
	// result: 201 text/plain hello, gopher
	// waited: 201 hello, again
}
