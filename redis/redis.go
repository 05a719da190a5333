package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
	goredis "github.com/redis/go-redis/v9"
)

// The interfaces Backend implements.
var (
	_ asyncreq.Store            = (*Backend)(nil)
	_ asyncreq.Queue            = (*Backend)(nil)
	_ asyncreq.Accepter         = (*Backend)(nil)
	_ asyncreq.BatchDequeuer    = (*Backend)(nil)
	_ asyncreq.Completer        = (*Backend)(nil)
	_ asyncreq.UnenqueuedLister = (*Backend)(nil)
)

// Options configure a Backend. The zero value (or a nil *Options) gives the
// defaults.
type Options struct {
	// Prefix starts every key the Backend writes, so that applications (or
	// tests) sharing one Redis stay apart. Default "asyncreq:".
	Prefix string
	// Queue names the queue. All keys of a Backend carry the hash tag
	// {Queue}, so on Redis Cluster one queue, its records included, lives in
	// one slot. Records are visible only through Backends with the same
	// Prefix and Queue. Default "default".
	Queue string
	// Group is the stream's consumer group. Default "asyncreq".
	Group string
	// Consumer is this Backend's consumer name in the group. It must be
	// unique among the Backends that dequeue from the queue at the same
	// time. Default: host name, process id and a random suffix.
	Consumer string
	// MaxBlock bounds how long one blocking stream read waits, so that due
	// delayed entries and run-out leases are noticed and a canceled context
	// (without deadline) ends Dequeue within this time. A context deadline
	// is always honoured exactly. Default 1s.
	MaxBlock time.Duration
	// TombstoneTTL is how long a tombstone lasts when a record with a zero
	// TombstoneTTL is deleted with a tombstone. Default 7 days.
	TombstoneTTL time.Duration
	// ConsumerIdleTTL is how long a consumer of the group may be idle while
	// it holds no entry before a Dequeue of another Backend removes it, so
	// that restarted processes do not leave consumers behind. Default 1h;
	// negative disables the cleanup.
	ConsumerIdleTTL time.Duration
	// BlockingClient, if set, runs the blocking stream reads of Dequeue on
	// connections of its own, so that canceling a blocked Dequeue ends it at
	// once (CLIENT UNBLOCK). Set it when the client given to New is not a
	// *goredis.Client but, for example, go-redis's AutoPipeliner over one:
	// pass that *goredis.Client here. It must reach the same Redis server.
	// Default: the client given to New when it is a *goredis.Client;
	// otherwise a canceled Dequeue returns when its bounded block ends.
	BlockingClient *goredis.Client
	// PollCacheAge is how long a Get may be answered from the record as a
	// Get of this Backend read it, or as its Create, Accept, Update or
	// Complete wrote it, for as long as no change of it was announced: clients polling the
	// status of running requests then cost a read of each record every
	// PollCacheAge, not one per poll, and the outcome a worker of this
	// Backend wrote is read by the handler beside it without a round trip.
	// Every write publishes to the record's channel, and the Backend
	// subscribes to its queue's channels (one PSUBSCRIBE on a pub/sub
	// connection of its own, made by the first Get), so a poll sees
	// another process's change as soon as its message arrives. Nothing is
	// cached while that connection is down. The default is 500ms; a
	// negative value turns the cache off, so that every Get reads Redis.
	// A client that waits the Retry-After a Handler sends (1s by default)
	// between two polls of a request finds the record read last older
	// than 500ms, so each of its polls is a read: to serve such clients
	// from the cache, set PollCacheAge above the interval they poll at,
	// which is also how late a change can be seen when its message is
	// lost with a connection not yet found broken.
	PollCacheAge time.Duration
}

// withDefaults returns a validated copy of o with the defaults applied.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Prefix == "" {
		c.Prefix = "asyncreq:"
	}
	if c.Queue == "" {
		c.Queue = "default"
	}
	if strings.ContainsAny(c.Queue, "{}") {
		return c, errors.New("redis: Options.Queue must not contain { or }")
	}
	if c.Group == "" {
		c.Group = "asyncreq"
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.MaxBlock == 0 {
		c.MaxBlock = time.Second
	}
	if c.MaxBlock < time.Millisecond {
		return c, fmt.Errorf("redis: Options.MaxBlock %s is below 1ms", c.MaxBlock)
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = 7 * 24 * time.Hour
	}
	if c.TombstoneTTL < time.Millisecond {
		return c, fmt.Errorf("redis: Options.TombstoneTTL %s is below 1ms", c.TombstoneTTL)
	}
	if c.ConsumerIdleTTL == 0 {
		c.ConsumerIdleTTL = time.Hour
	}
	if c.PollCacheAge == 0 {
		c.PollCacheAge = defaultPollCacheAge
	}
	return c, nil
}

// Backend is an asyncreq Store, Queue, Accepter, Watcher, BatchDequeuer
// and UnenqueuedLister on Redis, and for operators a Lister,
// FinishedPurger and Requeuer: records are hashes with a TTL once final,
// the queue is a stream with a consumer group, delayed entries wait in a
// sorted set, and sorted sets index the records for listing. See the
// package documentation.
//
// All methods may be called concurrently. The Backend does not own the
// client: close the client after the Backend.
type Backend struct {
	rdb  goredis.UniversalClient
	opts Options

	base          string // prefix + "{" + queue + "}:"
	streamKey     string
	delayedKey    string
	unenqueuedKey string

	closed   atomic.Bool
	hub      hub
	cache    *reccache.Cache[stored]
	polls    *reccache.PollCache[stored]
	listener pollListener
	// origin names this Backend in the change messages its writes
	// publish, so that its poll cache ignores its own.
	origin  string
	creates handoff[*createCall]
	pipe    handoff[*pipedCall]

	mu          sync.Mutex
	cursor      string     // XAUTOCLAIM cursor
	lastClaim   time.Time  // last reclaim scan asked for
	blockers    []*blocker // idle connections for blocking reads
	lastCleanup time.Time  // last consumer cleanup asked for
}

// New returns a Backend using client, which may be a *goredis.Client, a
// *goredis.ClusterClient or any UniversalClient; nil opts means the
// defaults. New creates the queue's stream and consumer group if they do
// not exist yet (a Dequeue creates them again if they are removed later),
// so an unreachable server, a refused password or a key of another type
// under the prefix fails here rather than at the first request. ctx bounds
// that round trip and nothing after it; when ctx ends first, New returns
// ctx.Err(). The client stays the caller's: close it after the Backend.
func New(ctx context.Context, client goredis.UniversalClient, opts *Options) (*Backend, error) {
	if client == nil {
		return nil, errors.New("redis: nil client")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	base := o.Prefix + "{" + o.Queue + "}:"
	b := &Backend{
		rdb:           client,
		opts:          o,
		base:          base,
		streamKey:     base + "q",
		delayedKey:    base + "d",
		unenqueuedKey: base + "u",
		cursor:        "0-0",
		cache:         newRecCache(),
		polls:         reccache.NewPollCache(o.PollCacheAge, stored.size, func(st stored) time.Time { return st.expires }),
		origin:        nonce(),
	}
	b.creates.maxCalls, b.creates.maxBytes = maxBatchRecords, maxBatchBytes
	b.pipe.maxCalls = maxPipeline
	if err := b.createGroup(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Close marks the Backend closed: later calls return asyncreq.ErrClosed.
// It releases every watch, closes the Backend's pub/sub connections and
// waits for the goroutines that read them, and gives the connections it
// kept for blocking reads back to the client's pool. It does not close the
// client. Close is idempotent.
func (b *Backend) Close() error {
	b.closed.Store(true)
	b.hub.close()
	b.closePolls()
	b.mu.Lock()
	idle := b.blockers
	b.blockers = nil
	b.mu.Unlock()
	for _, bl := range idle {
		_ = bl.conn.Close()
	}
	return nil
}

// Consumer returns the Backend's consumer name in the group.
func (b *Backend) Consumer() string { return b.opts.Consumer }

func (b *Backend) recordKey(id string) string    { return b.base + "r:" + id }
func (b *Backend) tombstoneKey(id string) string { return b.base + "t:" + id }

// idemKey is the key that maps an owner's idempotency key to a record id.
// The owner's length comes first so that no two (owner, key) pairs share a
// name.
func (b *Backend) idemKey(owner, key string) string {
	return b.base + "k:" + strconv.Itoa(len(owner)) + ":" + owner + ":" + key
}

// check returns ctx.Err() or ErrClosed when the call must not start.
func (b *Backend) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return asyncreq.ErrClosed
	}
	return nil
}

// wrap maps an error of the client: ctx.Err() unwrapped when ctx ended,
// otherwise the error with the operation named.
func wrap(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// ms converts d to whole milliseconds, rounding up.
func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// unixMS returns t in Unix milliseconds, 0 for the zero time.
func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	v := t.UnixMilli()
	if v <= 0 {
		v = 1 // a time before 1970 has long passed: expire at once
	}
	return v
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
