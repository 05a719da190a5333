package postgres_test

import (
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
)

// backend is the conformance kit's factory: a fresh Backend on a schema of
// its own per case.
func backend(t *testing.T) (asyncreq.Store, asyncreq.Queue) {
	s, _ := newStore(t, nil)
	return s, s
}

func TestConformance(t *testing.T) {
	testDSN(t)
	t.Parallel()
	asyncreqtest.TestBackend(t, backend, &asyncreqtest.Options{LeaseTTL: time.Second})
}
