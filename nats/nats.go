// Package nats is an asyncreq backend on NATS JetStream: a key-value bucket
// is the Store and a work-queue stream with a durable pull consumer is the
// Queue. One Backend value is both, and it is also an
// asyncreq.UnenqueuedLister, an asyncreq.Watcher, an asyncreq.BatchDequeuer,
// and for operators an asyncreq.Lister and an asyncreq.FinishedPurger (but
// no asyncreq.Requeuer: see Operator capabilities).
//
// Its names follow the convention of every asyncreq backend module: the
// type that is both Store and Queue is Backend, and since the caller hands
// in a JetStream context on a connection it owns, the constructor is
// New(ctx, js, opts), where ctx bounds the creation of the bucket, stream
// and consumer and nil opts means the defaults. The Backend's Close leaves
// the connection open; close it after the Backend.
//
// # Layout
//
// New creates (or updates) three things with the configured replicas and
// storage:
//
//   - the key-value bucket Options.Bucket, history 1, holding
//     "r.<id>" (a record, or its tombstone after it is purged or deleted:
//     when it runs out and the record's owner),
//     "b.<id>.<tag>.<n>" (the chunks of a body or result larger than 64 KiB,
//     since a value is limited to the server's max_payload),
//     "i.<hash>" (the idempotency key of an owner, pointing at a record id),
//     "u.<id>" (a marker for a record that is not yet known to be enqueued)
//     and "x.<id>" (a marker for a final record or a tombstone, holding the
//     time Purge next has work for it);
//   - the stream Options.Stream with work-queue retention on
//     Options.Subject, whose messages carry request ids;
//   - the durable pull consumer Options.Consumer on that stream, shared by
//     every worker process.
//
// # Records and retention
//
// Update is a compare-and-set on the record's revision: it reads the
// record, runs fn, and writes only if nothing was written in between,
// retrying (and so running fn again) on a conflict. A stale worker cannot
// overwrite a newer outcome.
//
// JetStream's key-value TTL is bucket-wide: every key is dropped when its
// last write is older than the bucket's max age, whatever the record's own
// Retention says. So the per-record work is done by Purge (which the worker
// calls every PurgeInterval): it reads the "x." markers in one streamed
// pass, and for each one that is due replaces the expired record with a
// tombstone that lasts until ExpiresAt plus TombstoneTTL, or removes a
// tombstone that ran out. A pass costs one read of every marker (a few
// dozen bytes each) plus work for the due records only.
// The bucket TTL (Options.TTL, default 8 days, the handler's default
// Retention plus TombstoneTTL) is a backstop only: it removes whatever a
// crash left behind (a marker, the chunks of a body whose record was never
// written), and the delete markers of removed keys. It must be longer than
// Retention plus TombstoneTTL and longer than any request may wait
// unfinished without a state change, or records vanish early (they then
// answer 404).
//
// # Accepting a request
//
// A key-value write and a stream publish cannot be one atomic step, so a
// Backend does not implement asyncreq.Accepter: the handler calls Create
// (with Enqueued false), Enqueue, then Update (Enqueued true). Create writes
// the idempotency key first, then the "u." marker, then the record; Update
// to Enqueued true removes the marker. A crash between any two steps is
// harmless:
//
//   - an idempotency key without its record (crash after the first step)
//     answers a repeat with a pending, unenqueued record, so the handler
//     answers 409; after a minute it is taken as abandoned and the next
//     request with that key replaces it;
//   - a "u." marker without its record is removed by ListUnenqueued once it
//     is older than the sweep age;
//   - a record that was never enqueued keeps its "u." marker, so the
//     worker's sweep (ListUnenqueued) finds it and enqueues it.
//
// # Leases
//
// The lease is the consumer's AckWait, which is fixed per consumer: the ttl
// arguments of Dequeue and Extend are ignored, and Options.AckWait is the
// lease length (set the worker's LeaseDuration to the same value, so that
// it extends the lease every AckWait/3). Extend sends an in-progress
// acknowledgement, which restarts the AckWait; Nack sends a negative
// acknowledgement with the delay. The consumer's MaxDeliver is unlimited:
// the worker's MaxAttempts, counted in the Store, bounds the attempts, so
// the last attempt's failure is always recorded (a MaxDeliver limit would
// drop the message silently once reached).
//
// A Backend tracks each delivery it handed out: Ack, Nack and Extend of a
// lease that was already settled, or whose AckWait ran out (so JetStream
// may have delivered it again), return asyncreq.ErrLeaseLost without
// talking to the server.
//
// Dequeue waits with pull requests of up to five seconds. A Dequeue whose
// context ends while its pull request is open may leave a message that the
// server sent just then to nobody; like any unacknowledged delivery it
// comes back after the AckWait.
//
// A delayed Enqueue publishes at once with a not-before header; a delivery
// that comes early is handed back with a negative acknowledgement delayed
// to its due time, and each such hand-back counts as a delivery in
// Lease.Delivery. Delayed messages count against the consumer's
// MaxAckPending (Options.MaxAckPending).
//
// # Watching
//
// Watch is cross-process: it is a key-value watch on the record's key,
// kept by the server, so it sees a change made through any Backend on the
// bucket, in any process. A worker process's outcome ends a long poll in
// an API process at once, and a client's cancel reaches the worker running
// the request at once.
//
// # Durability
//
// Enqueue returns nil once JetStream acknowledged the publish, and every
// key-value write is acknowledged the same way: the data is stored on the
// configured number of replicas (a quorum of them for Replicas > 1). By
// default the NATS server writes to the operating system and flushes to
// disk on its own schedule (its sync_interval, two minutes by default), so
// a 202 survives a server process crash but, with one replica, not a power
// loss on that machine within the interval. For a stronger promise run
// three replicas (Options.Replicas = 3), or set sync_interval: always in
// the server's jetstream configuration.
//
// # Replicas
//
// With Options.Replicas above 1 the Backend reads records and idempotency
// keys from the leader of the bucket's stream. A direct get, which the
// key-value API makes by default, is answered by any replica, and NATS
// does not promise that it sees the latest write: a replica catching up
// after a restart or a leader change answers with an older revision, and a
// worker that reads its own claim back without its lease token takes the
// request to be another attempt's and lets its delivery go. Body chunks
// are written once under a new name and never changed, so they are read
// directly, from the leader only when a replica does not have them yet.
//
// A replicated bucket needs nats-server 2.11 or later. Older servers
// (2.9 was measured) can acknowledge two compare-and-set writes of one key
// made against the same revision, when they race or when the stream's
// leader changes: the second replaces the first, a worker's claim is lost,
// and its request with it.
//
// # Operator capabilities
//
// A key-value bucket keeps no order but a key's and lists keys in the
// order of their last write, so a Backend keeps no listing index: List and
// CountStates read every record of the bucket in one streamed pass (a
// key-value watch of the current values of the "r." keys, the inline
// bodies included) and keep what the query selects. Every page and every
// count is O(n) in the records held, whatever the page size or filter: it
// suits an operator's occasional look, not a dashboard that polls a large
// bucket. A record written while a pass runs may be seen in its old state
// and in its new one (a pass reads the writes made during it too):
// CountStates may count it twice, and List may list it on the pages of two
// states (but once on one page). An index kept in other keys could not be
// written in the same step as the record, so it could disagree with the
// records after a crash between the two writes; a full pass always agrees
// with them.
//
// PurgeFinished finds final records through their expiry markers (one
// streamed pass over the markers, as Purge makes) and deletes each as
// Delete does, with a compare-and-set on its revision.
//
// Requeue would have to store a record and publish its id in one atomic
// step, and JetStream has none across a bucket and a stream, so a Backend
// is no asyncreq.Requeuer. asyncreq.RetryRequest then stores the record
// back to pending with Enqueued false, enqueues the id and marks the
// record enqueued; the Update that makes a record pending and unenqueued
// writes its "u." marker first, so that if the retry stops between its
// steps the Worker's sweep (ListUnenqueued) finds the record and enqueues
// it.
//
// # Statistics
//
// QueueStats (asyncreq.QueueStater) reads the consumer's info and the
// first undelivered message: two requests answered from the server's
// counters, under a millisecond for a million messages. JetStream counts
// by delivery, so Pending is the messages not yet delivered (a delayed
// Enqueue included) and Running the delivered, unacknowledged ones (a
// nacked message included); Delayed is not counted.
package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configures a Backend. A nil *Options means all defaults.
type Options struct {
	// Bucket is the name of the key-value bucket that holds the records.
	// The default is "asyncreq".
	Bucket string
	// Stream is the name of the work-queue stream that carries request ids.
	// The default is "ASYNCREQ".
	Stream string
	// Subject is the subject the stream holds and Enqueue publishes to.
	// The default is "asyncreq.requests".
	Subject string
	// Consumer is the durable name of the pull consumer shared by all
	// workers. The default is "asyncreq-worker".
	Consumer string
	// AckWait is the consumer's ack wait: the lease length. The default is
	// 30s; it must be at least 100ms.
	AckWait time.Duration
	// MaxAckPending is the most messages the consumer has out at once,
	// leased or waiting for a delayed redelivery. The default is 10000.
	MaxAckPending int
	// Replicas is the number of replicas of the bucket and the stream.
	// The default is 1. More than one needs a JetStream cluster of
	// nats-server 2.11 or later (see Replicas in the package
	// documentation).
	Replicas int
	// Storage is where the bucket and the stream keep their data. The
	// default is jetstream.FileStorage.
	Storage jetstream.StorageType
	// TTL is the bucket's max age: the backstop that removes any key whose
	// last write is older (see the package documentation). It must exceed
	// the handler's Retention plus TombstoneTTL. The default is 8 days; a
	// negative value means no max age.
	TTL time.Duration
	// Now returns the current time, for record expiry and tombstones. The
	// default is time.Now.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultBucket        = "asyncreq"
	DefaultStream        = "ASYNCREQ"
	DefaultSubject       = "asyncreq.requests"
	DefaultConsumer      = "asyncreq-worker"
	DefaultAckWait       = 30 * time.Second
	DefaultMaxAckPending = 10000
	DefaultTTL           = 8 * 24 * time.Hour
)

// withDefaults returns a copy of o with defaults applied, or an error that
// names a bad field.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < 0 {
		c.TTL = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.AckWait < 100*time.Millisecond:
		return c, fmt.Errorf("nats: Options.AckWait %s is shorter than 100ms", c.AckWait)
	case c.MaxAckPending < 0:
		return c, fmt.Errorf("nats: Options.MaxAckPending %d is negative", c.MaxAckPending)
	case c.Replicas < 0:
		return c, fmt.Errorf("nats: Options.Replicas %d is negative", c.Replicas)
	case c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage:
		return c, fmt.Errorf("nats: Options.Storage %d is not a known storage type", c.Storage)
	}
	return c, nil
}

// Backend is a Store and a Queue on NATS JetStream. It is safe for
// concurrent use. The zero value is not usable; call New.
type Backend struct {
	opts Options
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	cons jetstream.Consumer
	// stream is the queue's stream, for QueueStats.
	stream jetstream.Stream
	// blobs is kv for reading body chunks, which are written once (see
	// leaderKV and writtenOnceKV).
	blobs jetstream.KeyValue

	// inlineMax is the largest body kept inside the record's value;
	// chunkSize is the size of the chunks of larger ones.
	inlineMax, chunkSize int

	// createGrace is how long an idempotency key without its record is
	// taken to belong to a create still in progress.
	createGrace time.Duration

	mu      sync.Mutex
	closed  bool
	done    chan struct{}       // closed by Close
	wg      sync.WaitGroup      // watch and pull request goroutines
	fetches map[*fetch]struct{} // pull requests in flight, canceled by Close
	orphans chan jetstream.Msg  // messages that arrived for abandoned pull requests
}

// fetch is one pull request in flight.
type fetch struct{ cancel context.CancelFunc }

var (
	_ asyncreq.Store            = (*Backend)(nil)
	_ asyncreq.Queue            = (*Backend)(nil)
	_ asyncreq.Watcher          = (*Backend)(nil)
	_ asyncreq.UnenqueuedLister = (*Backend)(nil)
	_ asyncreq.BatchDequeuer    = (*Backend)(nil)
)

// New creates or updates the bucket, the stream and the consumer that opts
// name, with opts' replicas and storage, and returns a Backend on them.
// The Backend does not own js or its connection; close them after the
// Backend.
func New(ctx context.Context, js jetstream.JetStream, opts *Options) (*Backend, error) {
	if js == nil {
		return nil, errors.New("nats: nil JetStream")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "asyncreq records",
		History:     1,
		TTL:         o.TTL,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("nats: bucket %s: %w", o.Bucket, err))
	}
	blobs := kv
	if o.Replicas > 1 {
		leader := newLeaderKV(js, kv)
		kv, blobs = leader, &writtenOnceKV{KeyValue: kv, leader: leader}
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "asyncreq request ids",
		Subjects:    []string{o.Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("nats: stream %s: %w", o.Stream, err))
	}
	maxAckPending := o.MaxAckPending
	cons, err := js.CreateOrUpdateConsumer(ctx, o.Stream, jetstream.ConsumerConfig{
		Durable:       o.Consumer,
		Description:   "asyncreq workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		FilterSubject: o.Subject,
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("nats: consumer %s: %w", o.Consumer, err))
	}
	chunk := 256 << 10
	if mp := js.Conn().MaxPayload(); mp > 0 {
		chunk = min(chunk, int(mp)/2)
	}
	return &Backend{
		inlineMax:   min(64<<10, chunk),
		chunkSize:   chunk,
		opts:        o,
		js:          js,
		kv:          kv,
		blobs:       blobs,
		cons:        cons,
		stream:      stream,
		createGrace: time.Minute,
		done:        make(chan struct{}),
		orphans:     make(chan jetstream.Msg),
	}, nil
}

// Close releases waiting Dequeue and Watch calls and makes every later call
// return asyncreq.ErrClosed. It does not close the NATS connection, and it
// leaves the bucket, stream and consumer in place. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.done)
		for f := range b.fetches {
			f.cancel()
		}
	}
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}

// check returns ctx.Err() or ErrClosed if b should not start an operation.
func (b *Backend) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-b.done:
		return asyncreq.ErrClosed
	default:
		return nil
	}
}

// ctxErr returns ctx.Err() unwrapped when ctx ended, and err otherwise, so
// that a call cut short by its context reports just that.
func ctxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
