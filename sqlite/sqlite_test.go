package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openTemp opens a Backend on a new database file in a temporary directory
// and closes it when t ends.
func openTemp(t *testing.T, opts *sqlite.Options) (*sqlite.Backend, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "asyncreq.db")
	b, err := sqlite.Open(t.Context(), path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b, path
}

// TestConformance runs the whole asyncreqtest kit (Store, Queue and the
// HTTP contract) against a fresh database file per case.
func TestConformance(t *testing.T) {
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		b, _ := openTemp(t, nil)
		return b
	}, &asyncreqtest.Options{LeaseTTL: 500 * time.Millisecond})
}
