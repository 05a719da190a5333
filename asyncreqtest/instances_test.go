package asyncreqtest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// TestTwoInstancesOverViews runs TestTwoInstances on two InstanceViews of
// one memory Backend, which is also both instances' Queue: each instance's
// Watch sees only its own changes, as with SQLite files opened by two
// processes.
func TestTwoInstancesOverViews(t *testing.T) {
	TestTwoInstances(t, func(t *testing.T) (asyncreq.Backend, asyncreq.Backend) {
		b := memory.New(nil)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return asyncreq.Pair(InstanceView(b), b), asyncreq.Pair(InstanceView(b), b)
	}, nil)
}
