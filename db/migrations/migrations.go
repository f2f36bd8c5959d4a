// Package migrations embeds the goose SQL migrations of the custinfo schema.
package migrations

import "embed"

// FS holds the migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
