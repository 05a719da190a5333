package admin

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
)

// This file is the HTML side: the templates, the pages, and the form
// routes that change a request and redirect back to a page.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one template set per page, each with the layout.
type pages struct {
	byName map[string]*template.Template
}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return formatSpan(time.Since(t)) + " ago"
	},
	"seconds": func(s float64) string { return formatSpan(time.Duration(s * float64(time.Second))) },
	"states": func() []asyncreq.State {
		return []asyncreq.State{asyncreq.StatePending, asyncreq.StateRunning, asyncreq.StateSucceeded,
			asyncreq.StateFailed, asyncreq.StateCanceled}
	},
	"count": func(c *Counts, s asyncreq.State) int64 { return c.Of(s) },
	"deref": func(p *int64) int64 { return *p },
	"rate":  func(p *float64) string { return strconv.FormatFloat(*p, 'f', 2, 64) },
}

func newPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range []string{"dashboard", "list", "request", "login", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("admin: parsing the %s template: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// page is what every page shows around its content.
type page struct {
	Base   string
	Title  string
	Flash  string
	Logout bool // a login session can be ended
}

func (h *Handler) page(r *http.Request, title string) page {
	return page{Base: baseOf(r), Title: title, Flash: flash(r), Logout: h.opts.Token != nil}
}

// render answers with the named page. It renders into a buffer first, so
// that a template failure answers 500 instead of half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := h.pages.byName[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		h.opts.Logger.ErrorContext(r.Context(), "admin: rendering a page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

type errorData struct {
	page
	Status int
	Detail string
}

// errorPage answers with an error page.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, status int, detail string) {
	h.render(w, r, status, "error", errorData{page: h.page(r, http.StatusText(status)), Status: status, Detail: detail})
}

// pageError answers an operation's error with an error page.
func (h *Handler) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := h.statusOf(r, err)
	h.errorPage(w, r, status, detail)
}

func (h *Handler) pageNotFound(w http.ResponseWriter, r *http.Request) {
	h.errorPage(w, r, http.StatusNotFound, "no such page")
}

// flashes are the messages a redirect after a form may ask a page to
// show, by key: the page never repeats text from the URL.
var flashes = map[string]string{
	"retried":  "Retried: the request is pending again and runs as if new.",
	"canceled": "Cancel requested: a pending request is canceled; a running one stops when its worker notices.",
	"deleted":  "Deleted: the request's owner is now answered 410 Gone.",
	"purged":   "Purged the finished requests older than the given age.",
	"loggedin": "Logged in.",
}

func flash(r *http.Request) string {
	msg := flashes[r.URL.Query().Get("done")]
	if n := r.URL.Query().Get("n"); msg != "" && n != "" {
		if k, err := strconv.Atoi(n); err == nil {
			msg += " (" + strconv.Itoa(k) + ")"
		}
	}
	return msg
}

type queueCard struct {
	Queue
	Charts []template.HTML
}

type dashboardData struct {
	page
	Queues   []queueCard
	Sampling bool
	Interval time.Duration
}

func (h *Handler) pageDashboard(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	d := dashboardData{page: h.page(r, "Queues"), Sampling: h.sampling(), Interval: h.opts.SampleInterval}
	for _, q := range h.queues {
		c := queueCard{Queue: h.queueView(ctx, q)}
		for _, ch := range charts(q.samples.samples()) {
			c.Charts = append(c.Charts, ch.svg())
		}
		d.Queues = append(d.Queues, c)
	}
	h.render(w, r, http.StatusOK, "dashboard", d)
}

type listData struct {
	page
	Queue    string
	Queues   []string
	State    asyncreq.State
	Owner    string
	Limit    int
	Cursor   string
	Requests []Summary
	Next     string
}

func (h *Handler) pageList(w http.ResponseWriter, r *http.Request) {
	q, lq, doc, ok := h.listed(w, r, h.pageAnswers())
	if !ok {
		return
	}
	d := listData{page: h.page(r, "Requests of "+q.name), Queue: q.name, State: lq.State, Owner: lq.Owner,
		Limit: lq.PageLimit(), Cursor: lq.Cursor, Requests: doc.Requests, Next: doc.Next}
	for _, q := range h.queues {
		d.Queues = append(d.Queues, q.name)
	}
	h.render(w, r, http.StatusOK, "list", d)
}

type requestData struct {
	page
	Detail
	CanRetry, CanCancel bool
}

func (h *Handler) pageRequest(w http.ResponseWriter, r *http.Request) {
	q, rec, ok := h.found(w, r, h.pageAnswers())
	if !ok {
		return
	}
	d := requestData{page: h.page(r, "Request "+rec.ID), Detail: h.detailOf(q, rec, time.Now()),
		CanRetry:  rec.State == asyncreq.StateFailed || rec.State == asyncreq.StateCanceled,
		CanCancel: !rec.State.Final() && !rec.CancelRequested}
	h.render(w, r, http.StatusOK, "request", d)
}

// requestURL is the path of a request's page, with a flash key.
func requestURL(r *http.Request, q *queue, id, done string) string {
	v := url.Values{"queue": {q.name}}
	if done != "" {
		v.Set("done", done)
	}
	return baseOf(r) + "/requests/" + url.PathEscape(id) + "?" + v.Encode()
}

// formOperate runs an operation a page's form asked for and redirects to
// the request's page, or to the list of its queue when the request is
// gone.
func (h *Handler) formOperate(op operation, done string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := h.queueOf(w, r, h.errorPage)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		id := r.PathValue("id")
		rec, err := op(ctx, q.backend, id)
		switch {
		case err != nil:
			h.pageError(w, r, err)
		case rec == nil:
			http.Redirect(w, r, baseOf(r)+"/requests?"+url.Values{"queue": {q.name}, "done": {done}}.Encode(), http.StatusSeeOther)
		default:
			http.Redirect(w, r, requestURL(r, q, id, done), http.StatusSeeOther)
		}
	}
}

func (h *Handler) formRetry(w http.ResponseWriter, r *http.Request) {
	h.formOperate(retry, "retried")(w, r)
}

func (h *Handler) formCancel(w http.ResponseWriter, r *http.Request) {
	h.formOperate(cancelRequest, "canceled")(w, r)
}

func (h *Handler) formDelete(w http.ResponseWriter, r *http.Request) {
	h.formOperate(deleteRequest, "deleted")(w, r)
}

func (h *Handler) formPurge(w http.ResponseWriter, r *http.Request) {
	q, ok := h.queueOf(w, r, h.errorPage)
	if !ok {
		return
	}
	before, err := purgeBefore(r, time.Now())
	if err != nil {
		h.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	n, err := h.purge(r.Context(), q, before)
	if err != nil {
		h.pageError(w, r, err)
		return
	}
	http.Redirect(w, r, baseOf(r)+"/?"+url.Values{"done": {"purged"}, "n": {strconv.Itoa(n)}}.Encode(), http.StatusSeeOther)
}

type loginData struct {
	page
	Failed bool
}

func (h *Handler) pageLogin(w http.ResponseWriter, r *http.Request) {
	if h.opts.Token == nil {
		h.errorPage(w, r, http.StatusNotFound, "this admin has no login form: authorization is by its own means")
		return
	}
	d := loginData{page: h.page(r, "Log in")}
	d.Logout = false
	h.render(w, r, http.StatusOK, "login", d)
}

func (h *Handler) formLogin(w http.ResponseWriter, r *http.Request) {
	t := h.opts.Token
	if t == nil {
		h.errorPage(w, r, http.StatusNotFound, "this admin has no login form: authorization is by its own means")
		return
	}
	if !t.matches(r.PostFormValue("token")) {
		d := loginData{page: h.page(r, "Log in"), Failed: true}
		d.Logout = false
		h.render(w, r, http.StatusUnauthorized, "login", d)
		return
	}
	t.setSession(w, r, baseOf(r)+"/")
	http.Redirect(w, r, baseOf(r)+"/?done=loggedin", http.StatusSeeOther)
}

func (h *Handler) formLogout(w http.ResponseWriter, r *http.Request) {
	clearSession(w, r, baseOf(r)+"/")
	http.Redirect(w, r, baseOf(r)+"/login", http.StatusSeeOther)
}

// staticHandler serves the script and the stylesheet from
// {base}/static/, and no directory listing.
func (h *Handler) staticHandler() http.Handler {
	files := http.FileServerFS(staticFS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			h.pageNotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}
