package sqlite

// SetCommitHook makes the writer of b's file call f before each COMMIT with
// the number of writes in the transaction; an error from f fails the
// commit. It must be set before the writes it is to see are made.
func SetCommitHook(b *Backend, f func(writes int) error) { b.eng.commitHook = f }

// SharesEngine reports whether a and b share this process's engine of
// their file (connections, writer and watches), as every Open of one
// absolute path in a process does.
func SharesEngine(a, b *Backend) bool { return a.eng == b.eng }

// Reads returns how many records the Gets of b's file have read from it
// in this process (the others were answered from a poll cache).
func Reads(b *Backend) int64 { return b.eng.reads.Load() }

// WriterReads returns how many records the writer of b's file read in
// this process to update them (the others were the poll caches' records).
func WriterReads(b *Backend) int64 { return b.eng.wreads.Load() }
