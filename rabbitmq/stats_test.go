package rabbitmq_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

// requirePending waits until q reports want pending messages.
func requirePending(t *testing.T, q *rabbitmq.Queue, want int64, msg string) {
	t.Helper()
	var got asyncreq.QueueStats
	require.Eventually(t, func() bool {
		s, err := q.QueueStats(t.Context())
		if err != nil {
			t.Logf("QueueStats: %v", err)
			return false
		}
		got = s
		return s.Pending == want
	}, 5*time.Second, 20*time.Millisecond, "%s: want %d pending, got %+v", msg, want, got)
	require.Equal(t, asyncreq.Uncounted, got.Running, "Running")
	require.Equal(t, asyncreq.Uncounted, got.Delayed, "Delayed")
}

// TestQueueStatsWithConsumer checks what the kit's Stats cases skip: a
// message a consumer holds, leased or prefetched, is no longer pending, and
// one it hands back without delay is pending again unless a consumer
// takes it at once.
func TestQueueStatsWithConsumer(t *testing.T) {
	u := brokerURL(t)
	name := queueName(t, u)
	producer := newQueue(t, u, &rabbitmq.Options{Queue: name})
	ctx := t.Context()
	for i := range 3 {
		require.NoError(t, producer.Enqueue(ctx, strconv.Itoa(i), 0))
	}
	requirePending(t, producer, 3, "after 3 enqueues")

	consumer := newQueue(t, u, &rabbitmq.Options{Queue: name, Prefetch: 1})
	l := dequeue(t, consumer, 2*time.Second)
	requirePending(t, producer, 2, "with one leased (and a prefetch of 1)")
	require.NoError(t, consumer.Ack(ctx, l))
	requirePending(t, producer, 1, "after the Ack, the consumer prefetches the next")
	require.NoError(t, consumer.Close())
	requirePending(t, producer, 2, "a closed consumer hands its prefetched message back")

	s, err := consumer.QueueStats(ctx)
	require.ErrorIs(t, err, asyncreq.ErrClosed, "QueueStats of a closed Queue")
	require.Zero(t, s)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = producer.QueueStats(cctx)
	require.ErrorIs(t, err, context.Canceled, "QueueStats with a canceled context")
}

// BenchmarkQueueStats measures one QueueStats call on a queue holding
// 100,000 ready messages, published straight to it in confirm mode.
func BenchmarkQueueStats(b *testing.B) {
	const pending = 100_000
	u := brokerURL(b)
	name := queueName(b, u)
	q := newQueue(b, u, &rabbitmq.Options{Queue: name})
	ctx := b.Context()

	conn, err := amqp.Dial(u)
	require.NoError(b, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(b, err)
	require.NoError(b, ch.Confirm(false))
	start := time.Now()
	const window = 1000
	for i := 0; i < pending; i += window {
		confirms := make([]*amqp.DeferredConfirmation, 0, window)
		for j := i; j < min(i+window, pending); j++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", name, false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("p" + strconv.Itoa(j))})
			require.NoError(b, err)
			confirms = append(confirms, dc)
		}
		for _, dc := range confirms {
			ok, err := dc.WaitContext(ctx)
			require.NoError(b, err)
			require.True(b, ok)
		}
	}
	b.Logf("filled in %v", time.Since(start))

	s, err := q.QueueStats(ctx)
	require.NoError(b, err)
	require.EqualValues(b, pending, s.Pending)
	for b.Loop() {
		if _, err := q.QueueStats(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
