package asyncreq_test

import (
	"context"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// A metrics exporter asks a Queue for its statistics when it implements
// QueueStater, and leaves out the counts the backend reports as Uncounted.
func ExampleQueueStater() {
	ctx := context.Background()
	var queue asyncreq.Queue = memory.New(nil)

	for _, id := range []string{"a", "b", "c"} {
		_ = queue.Enqueue(ctx, id, 0)
	}
	_ = queue.Enqueue(ctx, "later", time.Hour)
	_, _ = queue.Dequeue(ctx, time.Minute) // a worker holds one

	st, ok := queue.(asyncreq.QueueStater)
	if !ok {
		return // no statistics from this backend
	}
	s, err := st.QueueStats(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	gauges := map[string]int64{"pending": s.Pending, "delayed": s.Delayed, "running": s.Running}
	for _, name := range []string{"pending", "delayed", "running"} {
		if n := gauges[name]; n != asyncreq.Uncounted {
			fmt.Printf("asyncreq_queue_%s{queue=%q} %d\n", name, s.Queue, n)
		}
	}
	fmt.Println("oldest pending waited under a minute:", s.OldestPendingAge() < time.Minute)
	// Output:
	// asyncreq_queue_pending{queue=""} 2
	// asyncreq_queue_delayed{queue=""} 1
	// asyncreq_queue_running{queue=""} 1
	// oldest pending waited under a minute: true
}
