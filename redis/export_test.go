package redis

// HoldCreates makes b act as if a batch of Creates and Accepts were on the
// wire, so that those made meanwhile queue. Queued returns how many wait;
// release ends the pretended batch, so that the queued calls are written
// as one batch, in the order they queued.
func HoldCreates(b *Backend) (queued func() int, release func()) {
	g := &b.creates
	g.mu.Lock()
	g.writing = true
	g.mu.Unlock()
	queued = func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		n := 0
		for _, c := range g.queue {
			if c.state == callWaiting {
				n++
			}
		}
		return n
	}
	release = func() {
		if next := g.next(); next != nil {
			close(next.wake)
		}
	}
	return queued, release
}

// HoldPipeline is HoldCreates for the pipelined calls (reads and updates
// of records, settling of leases).
func HoldPipeline(b *Backend) (queued func() int, release func()) {
	p := &b.pipe
	p.mu.Lock()
	p.writing = true
	p.mu.Unlock()
	queued = func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		n := 0
		for _, c := range p.queue {
			if c.state == callWaiting {
				n++
			}
		}
		return n
	}
	release = func() {
		if next := p.next(); next != nil {
			close(next.wake)
		}
	}
	return queued, release
}
