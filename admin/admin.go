package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
)

// This file is the Handler: its options, its construction, its routes,
// and the wrapping every request passes through (security headers, the
// cross-origin check, authorization, the mount base).

// Options configures a Handler. Queues and one of Authorize, Token and
// InsecureNoAuth are required; every other zero field means its default.
type Options struct {
	// Queues are the queues the Handler covers, by the name it shows
	// them under. At least one is required; a name must be 1 to 64
	// letters, digits, '-', '_' or '.'.
	Queues map[string]asyncreq.Backend

	// Authorize decides whether a request may use the Handler: nil lets
	// it through, an error refuses it (401). It is called for every
	// request but those of the static files and the login page, and must
	// be safe for concurrent use.
	Authorize func(r *http.Request) error

	// Token authorizes requests that carry its secret, as a bearer token
	// or in the cookie of the login form the Handler then serves at
	// {base}/login (see Token). Set Token or Authorize, not both.
	Token *Token

	// InsecureNoAuth lets every request through. It is for a demo bound
	// to a loopback address only: the pages show, retry, cancel and
	// delete every owner's requests, results included, to anyone who
	// can reach them.
	InsecureNoAuth bool

	// BasePath, if set, is stripped from r.URL.Path before routing, for
	// routers that do not strip the mount prefix; a request outside it
	// gets 404. The default is "": mount the Handler with
	// http.StripPrefix. Either way the links and redirects it writes are
	// built from the path the request reached it at.
	BasePath string

	// SampleInterval is how often a started Handler (see Start) samples
	// each queue's counts and statistics for the dashboard's charts. The
	// default is 5s.
	SampleInterval time.Duration

	// Samples is how many samples of each queue the charts keep, oldest
	// dropped first. The default is 120 (ten minutes at 5s).
	Samples int

	// PreviewBytes is how much of a request's body and of its result the
	// request page and API show. The default is 4096.
	PreviewBytes int

	// Logger receives the backend errors that the answers do not show.
	// The default discards them.
	Logger *slog.Logger
}

// withDefaults returns a copy of o with defaults applied, or an error
// naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if len(o.Queues) == 0 {
		return o, errors.New("admin: Options.Queues: at least one queue is required")
	}
	for name, b := range o.Queues {
		if !validQueueName(name) {
			return o, fmt.Errorf("admin: Options.Queues: invalid name %q (1 to 64 letters, digits, '-', '_' or '.')", name)
		}
		if b == nil {
			return o, fmt.Errorf("admin: Options.Queues[%q]: nil Backend", name)
		}
		if s, q := asyncreq.Parts(b); s == nil || q == nil {
			return o, fmt.Errorf("admin: Options.Queues[%q]: a nil Store or Queue", name)
		}
	}
	auths := 0
	for _, set := range []bool{o.Authorize != nil, o.Token != nil, o.InsecureNoAuth} {
		if set {
			auths++
		}
	}
	switch {
	case auths == 0:
		return o, errors.New("admin: Options: set Authorize or Token (or InsecureNoAuth, for a loopback demo only)")
	case auths > 1:
		return o, errors.New("admin: Options: set only one of Authorize, Token and InsecureNoAuth")
	}
	if o.BasePath != "" && (!strings.HasPrefix(o.BasePath, "/") || strings.HasSuffix(o.BasePath, "/")) {
		return o, fmt.Errorf("admin: Options.BasePath %q must start with '/' and not end with one", o.BasePath)
	}
	switch {
	case o.SampleInterval == 0:
		o.SampleInterval = 5 * time.Second
	case o.SampleInterval < 100*time.Millisecond:
		return o, fmt.Errorf("admin: Options.SampleInterval %v is shorter than 100ms", o.SampleInterval)
	}
	switch {
	case o.Samples == 0:
		o.Samples = 120
	case o.Samples < 2 || o.Samples > 100000:
		return o, fmt.Errorf("admin: Options.Samples %d is not within 2..100000", o.Samples)
	}
	switch {
	case o.PreviewBytes == 0:
		o.PreviewBytes = 4096
	case o.PreviewBytes < 0 || o.PreviewBytes > 1<<20:
		return o, fmt.Errorf("admin: Options.PreviewBytes %d is not within 1..1048576", o.PreviewBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// validQueueName reports whether name may name a queue: it appears in
// URLs and pages as it is.
func validQueueName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Handler is the operator's admin: a JSON API under {base}/api/ and HTML
// pages under {base}/ over the queues of its Options (see the package
// documentation for the routes). It is an http.Handler, safe for
// concurrent use.
//
// The charts of the dashboard come from samples a started Handler takes
// (see Start); a Handler never started serves everything else, and its
// charts say that nothing is sampled.
type Handler struct {
	opts    Options
	queues  []*queue // by name
	byName  map[string]*queue
	pages   *pages
	handler http.Handler // the whole chain ServeHTTP runs
	sampler sampler
}

// queue is one queue the Handler covers, with the capabilities its
// backend has.
type queue struct {
	name    string
	backend asyncreq.Backend
	lister  asyncreq.Lister         // nil without the capability
	purger  asyncreq.FinishedPurger // nil without the capability
	stater  asyncreq.QueueStater    // nil without the capability
	samples *ring                   // for the charts
}

// New returns a Handler over the queues of opts. It returns an error
// naming the field when an option is missing or invalid; authorization is
// required (Authorize, Token or InsecureNoAuth). New does no I/O.
func New(opts Options) (*Handler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	pg, err := newPages()
	if err != nil {
		return nil, err
	}
	h := &Handler{opts: o, byName: map[string]*queue{}, pages: pg}
	for name, b := range o.Queues {
		store, q := asyncreq.Parts(b)
		qu := &queue{name: name, backend: b, samples: newRing(o.Samples)}
		qu.lister, _ = store.(asyncreq.Lister)
		qu.purger, _ = store.(asyncreq.FinishedPurger)
		qu.stater, _ = q.(asyncreq.QueueStater)
		h.queues = append(h.queues, qu)
		h.byName[name] = qu
	}
	slices.SortFunc(h.queues, func(a, b *queue) int { return strings.Compare(a.name, b.name) })
	h.sampler.init(h)

	mux := http.NewServeMux()
	// The JSON API.
	mux.HandleFunc("GET /api/queues", h.apiQueues)
	mux.HandleFunc("GET /api/requests", h.apiList)
	mux.HandleFunc("GET /api/requests/{id}", h.apiGet)
	mux.HandleFunc("DELETE /api/requests/{id}", h.apiDelete)
	mux.HandleFunc("POST /api/requests/{id}/retry", h.apiRetry)
	mux.HandleFunc("POST /api/requests/{id}/cancel", h.apiCancel)
	mux.HandleFunc("POST /api/purge", h.apiPurge)
	for path, allow := range map[string]string{
		"/api/queues": "GET, HEAD", "/api/requests": "GET, HEAD", "/api/requests/{id}": "GET, HEAD, DELETE",
		"/api/requests/{id}/retry": "POST", "/api/requests/{id}/cancel": "POST", "/api/purge": "POST",
	} {
		mux.HandleFunc(path, h.apiMethodNotAllowed(allow))
	}
	mux.HandleFunc("/api/", h.apiNotFound)
	// The pages and their forms.
	mux.HandleFunc("GET /{$}", h.pageDashboard)
	mux.HandleFunc("GET /requests", h.pageList)
	mux.HandleFunc("GET /requests/{id}", h.pageRequest)
	mux.HandleFunc("POST /requests/{id}/retry", h.formRetry)
	mux.HandleFunc("POST /requests/{id}/cancel", h.formCancel)
	mux.HandleFunc("POST /requests/{id}/delete", h.formDelete)
	mux.HandleFunc("POST /purge", h.formPurge)
	mux.HandleFunc("GET /login", h.pageLogin)
	mux.HandleFunc("POST /login", h.formLogin)
	mux.HandleFunc("POST /logout", h.formLogout)
	mux.Handle("GET /static/", h.staticHandler())
	mux.HandleFunc("/", h.pageNotFound)

	// Cross-origin state changes (a form another site posts, a fetch)
	// are refused before anything else runs, login included.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(h.crossOrigin))
	h.handler = cop.Handler(h.authorized(mux))
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("X-Frame-Options", "DENY")

	p := r.URL.Path
	if h.opts.BasePath != "" {
		rest, ok := strings.CutPrefix(p, h.opts.BasePath)
		if !ok || rest != "" && rest[0] != '/' {
			h.problem(w, r, http.StatusNotFound, "the path is not under the admin's BasePath "+h.opts.BasePath)
			return
		}
		p = rest
	}
	if p == "" {
		p = "/"
	}
	// The mux would redirect an unclean path to its clean form without
	// the mount path: answer it here instead.
	if c := path.Clean(p); c != p && c+"/" != p {
		h.problem(w, r, http.StatusNotFound, "no such path")
		return
	}
	// Route a shallow copy, as http.StripPrefix does.
	r2 := r.WithContext(withBase(r.Context(), mountBase(r, p)))
	u := *r.URL
	u.Path, u.RawPath = p, ""
	r2.URL = &u
	// Forms are small; nothing here reads a larger body.
	if r2.Body != nil {
		r2.Body = http.MaxBytesReader(w, r2.Body, maxFormBytes)
	}
	h.handler.ServeHTTP(w, r2)
}

// maxFormBytes bounds the body of a request to the Handler.
const maxFormBytes = 64 << 10

// contentSecurityPolicy is sent with every answer: the pages load their
// own script and stylesheet and nothing else, and no inline script or
// style runs.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// mountBase returns the path the Handler is mounted at as the client sees
// it: the path of the request line less routed, the path the Handler
// routes on. It is "" when that cannot be told (the Handler then writes
// links from its root), and never a path that starts with "//" or "/\",
// which a browser would take for another host.
func mountBase(r *http.Request, routed string) string {
	reqPath := r.URL.EscapedPath()
	if ru := r.RequestURI; ru != "" {
		if ru[0] == '/' {
			reqPath, _, _ = strings.Cut(ru, "?")
		} else if u, err := url.ParseRequestURI(ru); err == nil && strings.HasPrefix(u.EscapedPath(), "/") {
			reqPath = u.EscapedPath()
		}
	}
	routedEsc := (&url.URL{Path: routed}).EscapedPath()
	base, ok := strings.CutSuffix(reqPath, routedEsc)
	if !ok && routed == "/" {
		base, ok = reqPath, true
	}
	if !ok {
		return ""
	}
	base = strings.TrimRight(base, "/")
	if len(base) >= 2 && base[0] == '/' && (base[1] == '/' || base[1] == '\\') {
		return ""
	}
	return base
}

// isAPI reports whether r is for the JSON API, whose answers are problem
// documents rather than pages.
func isAPI(r *http.Request) bool {
	return r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/")
}

// crossOrigin answers a state-changing request from another origin.
func (h *Handler) crossOrigin(w http.ResponseWriter, r *http.Request) {
	const detail = "cross-origin requests may not change anything here"
	if isAPI(r) {
		h.problem(w, r, http.StatusForbidden, detail)
		return
	}
	h.errorPage(w, r, http.StatusForbidden, detail)
}

// authorized runs next for the requests that Options allow, and answers
// the others 401 (the API, with WWW-Authenticate) or with the login page
// or an error page. The static files and the login routes need no
// authorization: they carry no data.
func (h *Handler) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/static/") || p == "/login" {
			next.ServeHTTP(w, r)
			return
		}
		err := h.authorize(r)
		if err == nil {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="asyncreq admin"`)
		switch {
		case isAPI(r):
			h.problem(w, r, http.StatusUnauthorized, "authorization required: "+err.Error())
		case h.opts.Token != nil && r.Method == http.MethodGet:
			http.Redirect(w, r, baseOf(r)+"/login", http.StatusSeeOther)
		default:
			h.errorPage(w, r, http.StatusUnauthorized, "authorization required: "+err.Error())
		}
	})
}

// authorize applies the Options' authorization to r.
func (h *Handler) authorize(r *http.Request) error {
	switch {
	case h.opts.InsecureNoAuth:
		return nil
	case h.opts.Token != nil:
		return h.opts.Token.Authorize(r)
	}
	return h.opts.Authorize(r)
}

// queueOf returns the queue that r's "queue" parameter (query or form)
// names, the only queue when it names none and there is one, or false
// after answering 400 or 404.
func (h *Handler) queueOf(w http.ResponseWriter, r *http.Request, answer func(w http.ResponseWriter, r *http.Request, status int, detail string)) (*queue, bool) {
	name := r.FormValue("queue")
	if name == "" {
		if len(h.queues) == 1 {
			return h.queues[0], true
		}
		answer(w, r, http.StatusBadRequest, "the queue parameter is required: one of "+h.queueNames())
		return nil, false
	}
	q, ok := h.byName[name]
	if !ok {
		answer(w, r, http.StatusNotFound, "no queue named "+fmt.Sprintf("%q", name)+"; there are "+h.queueNames())
		return nil, false
	}
	return q, true
}

// queueNames lists the queue names, comma-separated.
func (h *Handler) queueNames() string {
	names := make([]string, len(h.queues))
	for i, q := range h.queues {
		names[i] = q.name
	}
	return strings.Join(names, ", ")
}
