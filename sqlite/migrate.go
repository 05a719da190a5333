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
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("sqlite: migrations %s and %s have the same version", ms[i-1].name, ms[i].name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("sqlite: no migrations embedded")
	}
	return ms, nil
}

// SchemaVersion is the schema version this package creates and expects:
// the highest of its migrations. The versions applied to a database are
// kept in the table <TablePrefix>schema_version, one row each.
const SchemaVersion = 6

// migrate brings the tables of prefix up to SchemaVersion in one
// transaction: it applies, in version order, every migration not yet
// recorded as applied (so a version numbered below one already applied,
// as when two lines of work each added one, is applied too). A database
// whose schema is newer than this package knows is refused.
func migrate(ctx context.Context, e *engine, prefix string) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if last := ms[len(ms)-1].version; last != SchemaVersion {
		return fmt.Errorf("sqlite: the last migration embedded is version %d, SchemaVersion is %d", last, SchemaVersion)
	}
	table := prefix + "schema_version"
	return e.do(ctx, func(t *wtx) error {
		if err := t.execScript(`CREATE TABLE IF NOT EXISTS ` + table + ` (
			version    INTEGER PRIMARY KEY,
			applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
		)`); err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		applied, cur, err := appliedVersions(t, table)
		if err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		if cur > SchemaVersion {
			return fmt.Errorf("sqlite: database schema version %d is newer than this package's %d", cur, SchemaVersion)
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
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

// appliedVersions returns the versions recorded in table, and the highest.
func appliedVersions(t *wtx, table string) (map[int]bool, int, error) {
	rows, err := t.e.wconn.QueryContext(context.Background(), `SELECT version FROM `+table)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	applied := map[int]bool{}
	highest := 0
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, 0, err
		}
		applied[v] = true
		highest = max(highest, v)
	}
	return applied, highest, rows.Err()
}
