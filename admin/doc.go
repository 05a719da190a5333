// Package admin is an operator's admin for asyncreq: a JSON API and a
// server-rendered web dashboard over one or more queues, to see how they
// stand, find requests, and retry, cancel, delete or purge them.
//
// # Mounting
//
// New returns a Handler, an http.Handler that routes on its own
// http.ServeMux below whatever prefix it is mounted at. Mount it with
// http.StripPrefix:
//
//	h, err := admin.New(admin.Options{
//		Queues: map[string]asyncreq.Backend{"jobs": backend},
//		Token:  token, // or Authorize: func(*http.Request) error {...}
//	})
//	mux.Handle("/admin/", http.StripPrefix("/admin", h))
//
// or, behind a router that does not strip its mount prefix, set
// Options.BasePath. The links and redirects it writes are built from the
// path each request reached it at. Start the Handler to sample its queues
// for the dashboard's charts, and Stop it on shutdown.
//
// # Routes
//
// Below the mount path ({base}), every queue-scoped route takes the queue
// by name in a queue parameter (optional when there is one queue):
//
//	GET    {base}/api/queues                     every queue's counts by state, depth, oldest pending age
//	GET    {base}/api/requests?queue=&state=&owner=&cursor=&limit=
//	                                             a page of request summaries, newest first, and the next cursor
//	GET    {base}/api/requests/{id}?queue=       a request's detail (Detail)
//	POST   {base}/api/requests/{id}/retry?queue= put a failed or canceled request back to pending
//	POST   {base}/api/requests/{id}/cancel?queue= cancel a pending or running request
//	DELETE {base}/api/requests/{id}?queue=       delete a request, keeping a tombstone
//	POST   {base}/api/purge?queue=&older_than=   delete the finished requests last changed before a time
//	                                             (or before=RFC 3339 time)
//
//	GET    {base}/                               the dashboard: queues, counts and charts
//	GET    {base}/requests?queue=…               the filterable request list
//	GET    {base}/requests/{id}?queue=…          a request's page, with Retry, Cancel and Delete forms
//	POST   {base}/requests/{id}/retry|cancel|delete, {base}/purge
//	                                             the forms, which redirect back to a page
//	GET    {base}/login, POST {base}/login, POST {base}/logout
//	                                             the login form of a Token
//	GET    {base}/static/…                       the stylesheet and the script
//
// The API answers errors as RFC 9457 problem documents (asyncreq.Problem):
// 400 for a bad parameter or cursor, 401 without authorization, 403 for a
// cross-origin state change, 404 for an unknown queue or request, 405 for
// a method a route does not serve, 409 for
// a retry of a request that is not failed or canceled or a cancel of a
// finished one, 410 for a deleted request whose tombstone lasts, and 501
// when the queue's backend lacks the capability the route needs
// (asyncreq.Lister to list and count, asyncreq.FinishedPurger to purge),
// naming it. Getting, retrying, cancelling and deleting work on every
// backend.
//
// # Security
//
// Authorization is required: New fails unless Options sets Authorize, a
// Token, or InsecureNoAuth (for a demo on a loopback address only). Every
// route but the static files and the login form is authorized; the API
// answers 401 with WWW-Authenticate, the pages redirect to the login form
// (with a Token) or answer 401. The pages show every owner's requests,
// their bodies, kept headers and results: these are the owners' data, so
// grant the admin to operators only.
//
// State changes (POST, DELETE) from another origin are refused with 403 by
// http.CrossOriginProtection, which reads the Sec-Fetch-Site and Origin
// headers browsers send: the pages' forms need no token of their own, and
// programs that send neither header are let through. Every answer carries
// a strict Content-Security-Policy (scripts, styles and images from the
// Handler only; no inline script or style; no framing; forms to the
// Handler only), X-Content-Type-Options: nosniff and Cache-Control:
// no-store. The templates (html/template) escape every value taken from a
// record.
//
// # Costs
//
// The dashboard and GET {base}/api/queues count each queue's records
// (Lister.CountStates) and read its queue statistics (QueueStater), and a
// started Handler does the same every Options.SampleInterval; a listing is
// one Lister.List call. What those cost depends on the backend: see each
// backend package's documentation.
package admin
