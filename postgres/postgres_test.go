package postgres_test

import (
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/postgres"
)

// backend is the conformance kit's factory: a fresh Backend on a schema of
// its own per case.
func backend(t *testing.T) asyncreq.Backend {
	s, _ := newStore(t, nil)
	return s
}

func TestConformance(t *testing.T) {
	testDSN(t)
	t.Parallel()
	asyncreqtest.TestBackend(t, backend, &asyncreqtest.Options{LeaseTTL: time.Second})
}

// TestTwoInstances runs the kit's two-instance cases with the handler on
// one Backend and the workers on another, each on its own pool, on one
// schema, as an API process and a worker process: with LISTEN, and with
// DisableListen, where each Backend's Watch sees only its own changes.
func TestTwoInstances(t *testing.T) {
	testDSN(t)
	t.Parallel()
	for _, c := range []struct {
		name string
		opts *postgres.Options
	}{
		{"Listen", nil},
		{"DisableListen", &postgres.Options{DisableListen: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			asyncreqtest.TestTwoInstances(t, func(t *testing.T) (asyncreq.Backend, asyncreq.Backend) {
				poolA, poolB := newPool(t, 4), newPool(t, 4)
				schema := newSchema(t, poolA)
				a := newStoreOn(t, poolA, schema, c.opts)
				b := newStoreOn(t, poolB, schema, c.opts)
				return a, b
			}, &asyncreqtest.Options{LeaseTTL: time.Second})
		})
	}
}
