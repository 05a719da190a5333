package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// TrackedOperation is one operation a TrackerStore keeps: the key the
// Tracker knows it by and its resume token.
type TrackedOperation struct {
	Key   string `json:"key"`
	Token string `json:"token"`
}

// TrackerStore keeps the resume tokens of a Tracker's pending operations, so
// that a Tracker started later (in another process) picks them up.
//
// Methods may be called concurrently. They return ctx.Err() unwrapped when
// ctx ends first. A store belongs to one Tracker at a time.
type TrackerStore interface {
	// Put records the operation, replacing any with the same key. When Put
	// returns nil the operation is as durable as the store can make it.
	Put(ctx context.Context, op TrackedOperation) error
	// Delete forgets the operation with the given key. Deleting a key that
	// is not there is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every operation the store holds, in no particular
	// order. The slice belongs to the caller.
	List(ctx context.Context) ([]TrackedOperation, error)
}

// MemoryTrackerStore is a TrackerStore that keeps operations in memory:
// they are tracked until the process ends.
type MemoryTrackerStore struct {
	mu  sync.Mutex
	ops map[string]string
}

var _ TrackerStore = (*MemoryTrackerStore)(nil)

// NewMemoryTrackerStore returns an empty MemoryTrackerStore.
func NewMemoryTrackerStore() *MemoryTrackerStore {
	return &MemoryTrackerStore{ops: make(map[string]string)}
}

// Put implements TrackerStore.
func (s *MemoryTrackerStore) Put(ctx context.Context, op TrackedOperation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops[op.Key] = op.Token
	return nil
}

// Delete implements TrackerStore.
func (s *MemoryTrackerStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ops, key)
	return nil
}

// List implements TrackerStore.
func (s *MemoryTrackerStore) List(ctx context.Context) ([]TrackedOperation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return listOf(s.ops), nil
}

func listOf(m map[string]string) []TrackedOperation {
	out := make([]TrackedOperation, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, TrackedOperation{Key: k, Token: m[k]})
	}
	return out
}

// FileTrackerStore is a durable TrackerStore kept in one JSON file. Every
// change rewrites the file atomically: the new content goes to a temporary
// file in the same directory, which is synced to disk and renamed over the
// old one, and the directory is synced, so after a crash the file holds
// either the old or the new set, never a mix. It suits up to a few
// thousand pending operations; one process at a time may use a file.
type FileTrackerStore struct {
	path string
	mu   sync.Mutex
	ops  map[string]string
}

var _ TrackerStore = (*FileTrackerStore)(nil)

// fileFormat is the content of a FileTrackerStore's file.
type fileFormat struct {
	Version    int                `json:"version"`
	Operations []TrackedOperation `json:"operations"`
}

// OpenFileTrackerStore opens the FileTrackerStore kept at path, reading the
// operations it holds. A missing file is an empty store (it is created on
// the first change); a file that is not a store's returns an error.
func OpenFileTrackerStore(path string) (*FileTrackerStore, error) {
	if path == "" {
		return nil, errors.New("client: OpenFileTrackerStore: empty path")
	}
	s := &FileTrackerStore{path: path, ops: make(map[string]string)}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: reading tracker store: %w", err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("client: tracker store %s is corrupt: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("client: tracker store %s has unknown version %d", path, f.Version)
	}
	for _, op := range f.Operations {
		s.ops[op.Key] = op.Token
	}
	return s, nil
}

// Put implements TrackerStore.
func (s *FileTrackerStore) Put(ctx context.Context, op TrackedOperation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.ops[op.Key]; ok && old == op.Token {
		return nil
	}
	next := maps.Clone(s.ops)
	next[op.Key] = op.Token
	if err := s.write(next); err != nil {
		return err
	}
	s.ops = next
	return nil
}

// Delete implements TrackerStore.
func (s *FileTrackerStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ops[key]; !ok {
		return nil
	}
	next := maps.Clone(s.ops)
	delete(next, key)
	if err := s.write(next); err != nil {
		return err
	}
	s.ops = next
	return nil
}

// List implements TrackerStore.
func (s *FileTrackerStore) List(ctx context.Context) ([]TrackedOperation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return listOf(s.ops), nil
}

// write replaces the file with ops, atomically and durably.
func (s *FileTrackerStore) write(ops map[string]string) (err error) {
	data, err := json.MarshalIndent(fileFormat{Version: 1, Operations: listOf(ops)}, "", "  ")
	if err != nil {
		return fmt.Errorf("client: encoding tracker store: %w", err)
	}
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("client: writing tracker store: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("client: writing tracker store: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("client: syncing tracker store: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("client: writing tracker store: %w", err)
	}
	if err = os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("client: replacing tracker store: %w", err)
	}
	// Sync the directory so the rename itself survives a crash. Some
	// systems cannot sync a directory; the rename is still atomic there.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
