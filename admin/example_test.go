package admin_test

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
	"github.com/asyncreq/asyncreq/memory"
)

// An admin mounted at /admin/ beside the endpoint it covers: an operator
// lists the pending requests and cancels one.
func Example() {
	backend := memory.New(nil)
	jobs, err := asyncreq.NewHandler(backend, nil)
	if err != nil {
		log.Fatal(err)
	}
	const secret = "an-operator-secret-0123456789"
	token, err := admin.NewToken(secret)
	if err != nil {
		log.Fatal(err)
	}
	ops, err := admin.New(admin.Options{Queues: map[string]asyncreq.Backend{"jobs": backend}, Token: token})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/jobs/", http.StripPrefix("/jobs", jobs))
	mux.Handle("/admin/", http.StripPrefix("/admin", ops))

	serve := func(method, target string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader("work"))
		if strings.HasPrefix(target, "/admin/") {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	serve(http.MethodPost, "/jobs/")

	w := serve(http.MethodGet, "/admin/api/requests?queue=jobs&state=pending")
	var page admin.ListDocument
	if err := json.NewDecoder(w.Body).Decode(&page); err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Code, len(page.Requests), page.Requests[0].State)

	w = serve(http.MethodPost, "/admin/api/requests/"+page.Requests[0].ID+"/cancel?queue=jobs")
	var d admin.Detail
	if err := json.NewDecoder(w.Body).Decode(&d); err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Code, d.State)
	// Output:
	// 200 1 pending
	// 200 canceled
}
