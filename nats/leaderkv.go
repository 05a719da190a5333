package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaderKV is a key-value bucket whose reads ask the leader of the
// bucket's stream instead of making a direct get.
//
// A bucket of more than one replica answers a direct get from any replica,
// and a follower that is behind answers with an older revision: NATS does
// not promise read-your-writes for direct gets, and a follower catching up
// after a restart or a leader change can be seconds behind. The backend
// decides on what it reads (a worker whose outcome write reads a record
// without its own lease token takes the request to be someone else's and
// acknowledges its delivery), so an old revision loses requests; the stream
// leader has applied every write it acknowledged. Writes are unchanged:
// they always go to the leader, and their compare-and-set is checked there.
type leaderKV struct {
	jetstream.KeyValue
	nc      *natsgo.Conn
	subject string // the message-get API subject of the bucket's stream
	prefix  string // "$KV.<bucket>.", the subject prefix of the keys
	timeout time.Duration
}

// newLeaderKV returns kv with its reads sent to the stream leader.
func newLeaderKV(js jetstream.JetStream, kv jetstream.KeyValue) *leaderKV {
	o := js.Options()
	api := jetstream.DefaultAPIPrefix
	switch {
	case o.Domain != "":
		api = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		api = o.APIPrefix
		if !strings.HasSuffix(api, ".") {
			api += "."
		}
	}
	timeout := o.DefaultTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &leaderKV{
		KeyValue: kv,
		nc:       js.Conn(),
		subject:  api + "STREAM.MSG.GET.KV_" + kv.Bucket(),
		prefix:   "$KV." + kv.Bucket() + ".",
		timeout:  timeout,
	}
}

// msgGetResponse is the stream leader's answer to a message get.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs"`
		Data     []byte    `json:"data"`
		Time     time.Time `json:"time"`
	} `json:"message"`
}

// Get returns the latest revision of key as the stream leader has it, with
// the errors of jetstream.KeyValue.Get: ErrKeyNotFound for a key never
// written, and the entry with ErrKeyDeleted for a deleted or purged one.
func (kv *leaderKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, kv.timeout)
		defer cancel()
	}
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{kv.prefix + key})
	if err != nil {
		return nil, err
	}
	msg, err := kv.nc.RequestWithContext(ctx, kv.subject, req)
	if err != nil {
		return nil, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("decode message get response: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil || resp.Message.Subject != kv.prefix+key:
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	m := resp.Message
	e := &leaderEntry{bucket: kv.Bucket(), key: key, value: m.Data, rev: m.Sequence, created: m.Time, op: jetstream.KeyValuePut}
	if len(m.Header) > 0 {
		h, err := natsgo.DecodeHeadersMsg(m.Header)
		if err != nil {
			return nil, fmt.Errorf("decode message headers: %w", err)
		}
		switch h.Get("KV-Operation") {
		case "DEL":
			e.op = jetstream.KeyValueDelete
		case "PURGE":
			e.op = jetstream.KeyValuePurge
		}
		switch h.Get(jetstream.MarkerReasonHeader) {
		case "MaxAge", "Purge":
			e.op = jetstream.KeyValuePurge
		case "Remove":
			e.op = jetstream.KeyValueDelete
		}
		if e.op != jetstream.KeyValuePut {
			return e, jetstream.ErrKeyDeleted
		}
	}
	return e, nil
}

// Create writes key if it does not exist, or exists as deleted, as
// jetstream.KeyValue.Create does, but looks for a deleted key with Get:
// the embedded Create makes a direct get for it.
func (kv *leaderKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if len(opts) > 0 {
		return 0, errors.New("nats: leaderKV.Create takes no options")
	}
	rev, err := kv.KeyValue.Update(ctx, key, value, 0)
	if err == nil {
		return rev, nil
	}
	if e, gerr := kv.Get(ctx, key); errors.Is(gerr, jetstream.ErrKeyDeleted) {
		return kv.KeyValue.Update(ctx, key, value, e.Revision())
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("%w: %w", err, jetstream.ErrKeyExists)
	}
	return 0, err
}

// writtenOnceKV is a bucket read for keys that are written once and never
// changed, the body chunks: a direct get, from whichever replica answers,
// returns the one value such a key has, if it returns one; a replica that
// does not have the key yet is behind, and the leader is asked. A direct
// get returns the bytes as they are, without the JSON and base64 of the
// leader's answer, which costs several times as much for a chunk.
type writtenOnceKV struct {
	jetstream.KeyValue
	leader *leaderKV
}

func (kv *writtenOnceKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := kv.KeyValue.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return kv.leader.Get(ctx, key)
	}
	return e, err
}

// leaderEntry is a jetstream.KeyValueEntry read by leaderKV.
type leaderEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e *leaderEntry) Bucket() string                  { return e.bucket }
func (e *leaderEntry) Key() string                     { return e.key }
func (e *leaderEntry) Value() []byte                   { return e.value }
func (e *leaderEntry) Revision() uint64                { return e.rev }
func (e *leaderEntry) Created() time.Time              { return e.created }
func (e *leaderEntry) Delta() uint64                   { return 0 }
func (e *leaderEntry) Operation() jetstream.KeyValueOp { return e.op }
