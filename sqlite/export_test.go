package sqlite

// SetCommitHook makes the writer of b's file call f before each COMMIT with
// the number of writes in the transaction; an error from f fails the
// commit. It must be set before the writes it is to see are made.
func SetCommitHook(b *Backend, f func(writes int) error) { b.eng.commitHook = f }
