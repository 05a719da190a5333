package backend

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/asyncreq/asyncreq/redis"
)

// redisPoolSize is the smallest connection pool openRedis gives its
// client: enough for the HTTP handlers (32 clients in the load program),
// the workers (32), their heartbeats and the blocking reads at once, so
// that no call waits for a free connection. go-redis's default, 10 per
// CPU, made a 2-core machine queue for connections. With more workers the
// pool is the workers plus 32.
const redisPoolSize = 64

// openRedis keeps every endpoint on one Redis, each with a queue (and so a
// hash slot) of its own.
func openRedis(ctx context.Context, cfg Config) (*Backend, error) {
	opt, err := goredis.ParseURL(cfg.Redis)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	opt.PoolSize = max(opt.PoolSize, redisPoolSize, cfg.Concurrency+32)
	c := goredis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	b := &Backend{}
	b.onClose(func() { _ = c.Close() })
	perEndpoint(b, func(ctx context.Context, name string) (*redis.Backend, error) {
		return redis.New(ctx, c, &redis.Options{Prefix: cfg.RedisPrefix, Queue: name})
	})
	return b, nil
}
