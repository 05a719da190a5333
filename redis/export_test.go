package redis

// HoldCreates makes b act as if a batch of Creates and Accepts were on the
// wire, so that those made meanwhile queue. Queued returns how many wait;
// release ends the pretended batch, so that the queued calls are written
// as one batch, in the order they queued.
func HoldCreates(b *Backend) (queued func() int, release func()) {
	return hold(&b.creates)
}

// HoldPipeline is HoldCreates for the pipelined calls (reads and updates
// of records, settling of leases).
func HoldPipeline(b *Backend) (queued func() int, release func()) {
	return hold(&b.pipe)
}

func hold[T caller[T]](h *handoff[T]) (queued func() int, release func()) {
	h.mu.Lock()
	h.writing = true
	h.mu.Unlock()
	return h.waiting, h.pass
}

// StreamKey is the key of b's stream.
func StreamKey(b *Backend) string { return b.streamKey }

// PollSubscriptions reports whether b's subscription to its records'
// changes is confirmed now, and how many times it was confirmed.
func PollSubscriptions(b *Backend) (up bool, n int) { return b.subscriptions() }
