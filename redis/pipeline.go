package redis

import (
	"context"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Pipelining of the commands made per request: the read of a record (a
// status poll, a result), the update of its record (the claim, then the
// outcome) and the settling of its lease. Each is a command of its own
// (HMGET, or a script call), whose cost is mostly per round trip (a pooled
// connection and two system calls in the client, a read and a write in the
// server, a wake-up on each side), so calls made while an earlier one is
// on the wire wait, and are then sent together in one pipeline: one write,
// one read, each call still its own command with its own reply, run by the
// server in the order they were sent. Unlike the creates' batch
// (batch.go), no call's outcome depends on another's.
//
// As there, there is no timer and no goroutine of its own: a call made
// while nothing is on the wire goes out at once, alone; when a pipeline's
// replies arrive, the call that sent it hands the calls queued meanwhile
// to the first of them, which sends them as the next pipeline, and only
// then answers the other calls of its own.

// maxPipeline bounds the calls of one pipeline.
const maxPipeline = 128

// pipedCall is one command and, once sent, the command with its reply.
type pipedCall struct {
	// send adds the command to c, a pipeline or (alone) the client, and
	// returns it.
	send func(ctx context.Context, c goredis.Cmdable, alone bool) goredis.Cmder
	cmd  goredis.Cmder

	state int           // guarded by pipeline.mu; the states of batch.go
	batch []*pipedCall  // set with state callLeading
	wake  chan struct{} // as createCall.wake
}

// pipeline is a Backend's pipelining of commands.
type pipeline struct {
	mu      sync.Mutex
	writing bool         // a pipeline is on the wire
	queue   []*pipedCall // calls waiting, in arrival order
}

// runScript runs script with keys and args, alone or in a pipeline with
// other calls (see piped), and returns its reply.
func (b *Backend) runScript(ctx context.Context, script *goredis.Script, keys []string, args ...any) (any, error) {
	cmd, err := b.piped(ctx, func(ctx context.Context, c goredis.Cmdable, alone bool) goredis.Cmder {
		if alone {
			// Run loads the script if the server does not have it.
			return script.Run(ctx, c, keys, args...)
		}
		return script.EvalSha(ctx, c, keys, args...)
	})
	if err != nil {
		return nil, err
	}
	return cmd.(*goredis.Cmd).Result()
}

// piped sends the command send makes, alone or in a pipeline with other
// calls, and returns it with its reply. If ctx ends while the call waits
// to be taken into a pipeline, it is not sent; if it ends while another
// call sends its pipeline, piped returns ctx.Err(), as any call cut short
// by its context.
func (b *Backend) piped(ctx context.Context, send func(ctx context.Context, c goredis.Cmdable, alone bool) goredis.Cmder) (goredis.Cmder, error) {
	c := &pipedCall{send: send}
	p := &b.pipe
	p.mu.Lock()
	if !p.writing {
		p.writing = true
		p.mu.Unlock()
		b.writePiped(ctx, []*pipedCall{c})
		return c.cmd, nil
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
		b.writePiped(ctx, c.batch)
	}
	return c.cmd, nil
}

// writePiped runs batch, whose first call is the caller's, hands the
// calls that queued meanwhile to the next pipeline, and then answers the
// other calls of batch.
func (b *Backend) writePiped(ctx context.Context, batch []*pipedCall) {
	if len(batch) == 1 {
		c := batch[0]
		c.cmd = c.send(ctx, b.rdb, true)
		if next := b.pipe.next(); next != nil {
			close(next.wake)
		}
		return
	}
	// Several callers wait for this round trip: no one caller's
	// cancellation may fail it for the others.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	// Each command's error is its own, read by its caller.
	_, _ = b.rdb.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		for _, c := range batch {
			c.cmd = c.send(ctx, pipe, false)
		}
		return nil
	})
	if next := b.pipe.next(); next != nil {
		close(next.wake)
	}
	for _, c := range batch {
		if err := c.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// A script the server does not have (a new or flushed
			// server): sent alone, it is loaded.
			c.cmd = c.send(ctx, b.rdb, true)
		}
	}
	for _, c := range batch[1:] {
		close(c.wake)
	}
}

// next ends the pipeline on the wire: it takes the calls queued meanwhile
// as the next pipeline and returns the call that is to send it, or nil
// when none wait.
func (p *pipeline) next() *pipedCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var batch []*pipedCall
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
