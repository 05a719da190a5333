package sqlite

// SharesEngine reports whether a and b share this process's engine of
// their file (connections, writer and watches), as every Open of one
// absolute path in a process does.
func SharesEngine(a, b *Backend) bool { return a.eng == b.eng }
