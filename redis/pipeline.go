package redis

import (
	"context"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Pipelining of the scripts a worker runs per request: the update of its
// record (the claim, then the outcome) and the settling of its lease. Each
// is a script call of its own, whose cost is mostly per round trip (a
// pooled connection and two system calls in the client, a read and a write
// in the server, a wake-up on each side), so calls made while an earlier
// one is on the wire wait, and are then sent together in one pipeline: one
// write, one read, each call still its own script run with its own reply,
// run by the server in the order they were sent. Unlike the creates'
// batch (batch.go), no call's outcome depends on another's.
//
// As there, there is no timer and no goroutine of its own: a call made
// while nothing is on the wire goes out at once, alone; when a pipeline's
// replies arrive, the call that sent it hands the calls queued meanwhile
// to the first of them, which sends them as the next pipeline, and only
// then answers the other calls of its own.

// maxPipeline bounds the calls of one pipeline.
const maxPipeline = 128

// scriptCall is one script run and, once run, its reply.
type scriptCall struct {
	script *goredis.Script
	keys   []string
	args   []any

	res any
	err error

	state int           // guarded by scriptPipe.mu; the states of batch.go
	batch []*scriptCall // set with state callLeading
	wake  chan struct{} // as createCall.wake
}

// scriptPipe is a Backend's pipelining of script calls.
type scriptPipe struct {
	mu      sync.Mutex
	writing bool          // a pipeline is on the wire
	queue   []*scriptCall // calls waiting, in arrival order
}

// runScript runs script with keys and args, alone or in a pipeline with
// other calls, and returns its reply. If ctx ends while the call waits to
// be taken into a pipeline, it is not run; if it ends while another call
// sends its pipeline, runScript returns ctx.Err() without its reply, as
// any call cut short by its context.
func (b *Backend) runScript(ctx context.Context, script *goredis.Script, keys []string, args ...any) (any, error) {
	c := &scriptCall{script: script, keys: keys, args: args}
	p := &b.scripts
	p.mu.Lock()
	if !p.writing {
		p.writing = true
		p.mu.Unlock()
		b.writeScripts(ctx, []*scriptCall{c})
		return c.res, c.err
	}
	c.wake = make(chan struct{})
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	select {
	case <-c.wake:
	case <-ctx.Done():
		p.mu.Lock()
		state := c.state
		if state == callWaiting {
			c.state = callAbandoned
		}
		p.mu.Unlock()
		if state != callLeading {
			return nil, ctx.Err()
		}
		// The pipeline is this call's to send, on behalf of the others.
	}
	if c.batch != nil {
		b.writeScripts(ctx, c.batch)
	}
	return c.res, c.err
}

// writeScripts runs batch, whose first call is the caller's, hands the
// calls that queued meanwhile to the next pipeline, and then answers the
// other calls of batch.
func (b *Backend) writeScripts(ctx context.Context, batch []*scriptCall) {
	if len(batch) == 1 {
		c := batch[0]
		c.res, c.err = c.script.Run(ctx, b.rdb, c.keys, c.args...).Result()
		if next := b.scripts.next(); next != nil {
			close(next.wake)
		}
		return
	}
	// Several callers wait for this round trip: no one caller's
	// cancellation may fail it for the others.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	cmds := make([]*goredis.Cmd, len(batch))
	// Each command's error is its own, read below.
	_, _ = b.rdb.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for i, c := range batch {
			cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		return nil
	})
	if next := b.scripts.next(); next != nil {
		close(next.wake)
	}
	for i, c := range batch {
		c.res, c.err = cmds[i].Result()
		if c.err != nil && strings.HasPrefix(c.err.Error(), "NOSCRIPT") {
			// Not loaded (a new or flushed server): Run loads it.
			c.res, c.err = c.script.Run(ctx, b.rdb, c.keys, c.args...).Result()
		}
	}
	for _, c := range batch[1:] {
		close(c.wake)
	}
}

// next ends the pipeline on the wire: it takes the calls queued meanwhile
// as the next pipeline and returns the call that is to send it, or nil
// when none wait.
func (p *scriptPipe) next() *scriptCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var batch []*scriptCall
	i := 0
	for ; i < len(p.queue) && len(batch) < maxPipeline; i++ {
		c := p.queue[i]
		if c.state == callAbandoned {
			continue
		}
		c.state = callTaken
		batch = append(batch, c)
	}
	n := copy(p.queue, p.queue[i:])
	clear(p.queue[n:])
	p.queue = p.queue[:n]
	if len(batch) == 0 {
		p.writing = false
		return nil
	}
	batch[0].state = callLeading
	batch[0].batch = batch
	return batch[0]
}
