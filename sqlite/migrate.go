package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// migrationFiles holds the schema, one numbered file per version
// (NNNN_name.sql). {{prefix}} in them stands for Options.TablePrefix.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema version.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in version order.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	var ms []migration
	for _, ent := range entries {
		name := ent.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlite: migration file %q is not named NNNN_name.sql", name)
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlite: migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this package creates and expects.
// The version of a database is kept in the table <TablePrefix>schema_version.
const SchemaVersion = 2

// migrate brings the tables of prefix up to SchemaVersion in one
// transaction. A database whose schema is newer than this package knows is
// refused.
func migrate(ctx context.Context, e *engine, prefix string) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if len(ms) != SchemaVersion {
		return fmt.Errorf("sqlite: %d migrations embedded, SchemaVersion is %d", len(ms), SchemaVersion)
	}
	table := prefix + "schema_version"
	return e.do(ctx, func(t *wtx) error {
		if err := t.execScript(`CREATE TABLE IF NOT EXISTS ` + table + ` (
			version    INTEGER PRIMARY KEY,
			applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
		)`); err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		var cur int
		if err := t.e.wconn.QueryRowContext(context.Background(),
			`SELECT coalesce(max(version), 0) FROM `+table).Scan(&cur); err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		if cur > SchemaVersion {
			return fmt.Errorf("sqlite: database schema version %d is newer than this package's %d", cur, SchemaVersion)
		}
		for _, m := range ms[cur:] {
			script := strings.ReplaceAll(m.sql, "{{prefix}}", prefix)
			if err := t.execScript(script); err != nil {
				return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
			}
			if err := t.execScript(`INSERT INTO ` + table + ` (version) VALUES (` + strconv.Itoa(m.version) + `)`); err != nil {
				return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
			}
		}
		return nil
	}, nil)
}
