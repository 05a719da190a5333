package redis

import (
	"context"
	"strings"

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
// Calls queue and are sent in pipelines as a handoff (handoff.go) groups
// them.

// maxPipeline bounds the calls of one pipeline.
const maxPipeline = 128

// pipedCall is one command and, once sent, the command with its reply.
type pipedCall struct {
	// send adds the command to c, a pipeline or (alone) the client, and
	// returns it.
	send func(ctx context.Context, c goredis.Cmdable, alone bool) goredis.Cmder
	cmd  goredis.Cmder

	t turn[*pipedCall] // its place in Backend.pipe
}

func (c *pipedCall) turn() *turn[*pipedCall] { return &c.t }

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
	batch, err := b.pipe.join(ctx, c)
	if err != nil {
		return nil, err
	}
	if batch != nil {
		b.writePiped(ctx, batch)
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
		b.pipe.pass()
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
	b.pipe.pass()
	for _, c := range batch {
		if err := c.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// A script the server does not have (a new or flushed
			// server): sent alone, it is loaded.
			c.cmd = c.send(ctx, b.rdb, true)
		}
	}
	b.pipe.answer(batch)
}
