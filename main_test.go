package asyncreq_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any test leaves a goroutine
// running: handlers, workers and backends must all stop what they start.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
