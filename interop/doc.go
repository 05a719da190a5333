// Package interop checks the asyncreq handler against clients that were
// not written for it: the Azure SDK for Go's long-running-operation poller
// (azure_test.go), Go's http.Client following redirects, and curl
// (redirect_test.go). It has no API; it is a module of its own so that the
// clients it needs stay out of the library's dependencies, and it is not
// released.
package interop
