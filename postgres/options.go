package postgres

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Options configures a Backend and Migrate. A nil *Options means all
// defaults; a zero field means that field's default.
type Options struct {
	// Schema is the PostgreSQL schema that holds the tables, so they can
	// live in an application's own database beside its tables. Migrate
	// creates it if it does not exist. The default is "asyncreq".
	Schema string

	// Queue names the endpoint this Backend serves. Backends with different
	// Queue names share the schema's tables without seeing each other's
	// records or jobs. The default is "default".
	Queue string

	// MigrateOnStart makes New run Migrate before it returns. Otherwise New
	// only checks that the schema is at the version this code needs, and
	// Migrate is a deployment step. The default is false.
	MigrateOnStart bool

	// PollInterval is how often an idle Dequeue looks for work when no
	// notification wakes it: the fallback for a lost LISTEN connection or
	// notification. The default is 1s.
	PollInterval time.Duration

	// MaxBatch is the largest number of accepts, or of updates, written in
	// one transaction, and of acks settled in one statement. The default
	// is 256.
	MaxBatch int

	// Committers is the number of group-commit transactions that may be
	// in flight at once, for accepts, updates and acks each. Calls that
	// arrive while all of them are busy are written together by the next
	// free one. The default is 1: a lone call is still written at once,
	// and under load one transaction in flight gathers larger batches, so
	// PostgreSQL commits fewer and does less work for each request. Raise
	// it when the database's round trip, not its CPU, is what a batch
	// waits for (a distant server with many cores).
	Committers int

	// Readers is the number of reads of records by id (Get, which serves
	// each status and result GET) that may be in flight at once. Gets
	// that arrive while all of them are busy are read together, in one
	// statement, by the next free one: a read never waits for company,
	// but many clients polling at once cost the database far fewer
	// statements. The default is 4.
	Readers int

	// PollCacheAge is how long a Get may be answered from the record as a
	// Get of this Backend read it, or as its Update, Complete or
	// DequeueClaim wrote it,
	// for as long as no notification says it changed: clients polling the
	// status of running requests then cost a read of each record every
	// PollCacheAge, not one per poll, and the outcome a worker of this
	// Backend wrote is read by the handler beside it without a round trip.
	// Every write notifies the Backends of the schema on commit
	// (LISTEN/NOTIFY), so a poll sees a change as soon as its notification
	// arrives; a notification lost on the way delays it by PollCacheAge at
	// most. Nothing is cached while the LISTEN connection is down (or with
	// DisableListen). The default is 500ms; a negative value turns the
	// cache off, so that every Get reads the database. A client that
	// waits the Retry-After a Handler sends (1s by default) between two
	// polls of a request finds the record read last older than 500ms, so
	// each of its polls is a read: to serve such clients from the cache,
	// set PollCacheAge above the interval they poll at, which is also how
	// late a lost notification can make a change be seen.
	PollCacheAge time.Duration

	// VacuumJobsAfter is how many jobs a Backend claims between the
	// VACUUMs it runs on the jobs table. The table holds a dead row
	// version for every lease taken and every job settled until it is
	// vacuumed, claims step over them, and autovacuum comes by once a
	// minute at most (or never, when it is off). VACUUM (SKIP_LOCKED) of
	// the small table takes milliseconds and blocks no claim, ack or
	// insert. The default is 10,000; a negative value leaves the table to
	// autovacuum.
	VacuumJobsAfter int

	// DisableListen turns off the LISTEN connection. Dequeue then finds
	// work by polling every PollInterval, and Watch only sees changes made
	// through this Backend. Use it where LISTEN is unavailable (a connection
	// pooler in transaction mode). The default is false.
	DisableListen bool

	// Logger receives the Backend's background errors (a lost LISTEN
	// connection). The default discards them, except the one warning New
	// gives about a pool too small for the Backend (see MinPoolSize),
	// which goes to slog.Default.
	Logger *slog.Logger
}

// The defaults of Options.
const (
	defaultSchema       = "asyncreq"
	defaultQueue        = "default"
	defaultPollInterval = time.Second
	defaultMaxBatch     = 256
	defaultCommitters   = 1
	defaultReaders      = 4
	defaultPollCacheAge = 500 * time.Millisecond
	defaultVacuumAfter  = 10000
)

// withDefaults returns a copy of o with the defaults filled in, or an error
// naming the first invalid field.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Schema == "" {
		c.Schema = defaultSchema
	}
	if c.Queue == "" {
		c.Queue = defaultQueue
	}
	if c.PollInterval == 0 {
		c.PollInterval = defaultPollInterval
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = defaultMaxBatch
	}
	if c.Committers == 0 {
		c.Committers = defaultCommitters
	}
	if c.Readers == 0 {
		c.Readers = defaultReaders
	}
	if c.PollCacheAge == 0 {
		c.PollCacheAge = defaultPollCacheAge
	}
	if c.VacuumJobsAfter == 0 {
		c.VacuumJobsAfter = defaultVacuumAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case len(c.Schema) > 63:
		return c, fmt.Errorf("postgres: Options.Schema %q is longer than 63 bytes", c.Schema)
	case c.PollInterval < 0:
		return c, fmt.Errorf("postgres: Options.PollInterval %s is negative", c.PollInterval)
	case c.MaxBatch < 0:
		return c, fmt.Errorf("postgres: Options.MaxBatch %d is negative", c.MaxBatch)
	case c.Committers < 0:
		return c, fmt.Errorf("postgres: Options.Committers %d is negative", c.Committers)
	case c.Readers < 0:
		return c, fmt.Errorf("postgres: Options.Readers %d is negative", c.Readers)
	}
	return c, nil
}

// MinPoolSize is the smallest pgxpool MaxConns with which a Backend opened
// with opts (nil for the defaults) does not wait for connections of its
// own making: one for each group-commit writer (accepts, updates and acks,
// Committers each, 3 by default), one for each reader of records
// (Readers, 4 by default), one for the notifications a write sends and one
// for a Worker's claims (the LISTEN connection is not the pool's): 9 at
// the defaults. On top of it, size the pool for the other calls that
// arrive at once, such as each heartbeat of a running request; a few more
// connections than MinPoolSize serve a Worker of the default Concurrency.
// pgxpool's default, the larger of 4 and the number of CPUs, is below
// MinPoolSize, and New warns of it.
func MinPoolSize(opts *Options) int32 {
	o, err := opts.withDefaults()
	if err != nil {
		o, _ = (*Options)(nil).withDefaults()
	}
	return int32(3*o.Committers + o.Readers + 2)
}

// logger returns the Logger opts sets, or slog.Default: for the warnings a
// user must see even without a Logger.
func (o *Options) logger() *slog.Logger {
	if o != nil && o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}
