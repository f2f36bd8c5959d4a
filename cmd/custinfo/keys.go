package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custinfo/custinfo/internal/signature"
	"github.com/custinfo/custinfo/internal/store"
)

func runKeys(ctx context.Context, args []string, e *env) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: custinfo keys add|list|revoke [flags]")
		return exitError(2)
	}
	switch args[0] {
	case "add":
		return runKeysAdd(ctx, args[1:], e)
	case "list":
		return runKeysList(ctx, args[1:], e)
	case "revoke":
		return runKeysRevoke(ctx, args[1:], e)
	default:
		return fmt.Errorf("keys: unknown action %q (want add, list or revoke)", args[0])
	}
}

func runKeysAdd(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "keys add", "--lookup NAME [flags] < keyfile\n\nThe key is read from standard input (so it stays out of shell history), or generated with --generate.")
	dbURL := databaseFlag(fs, e)
	lookupName := fs.String("lookup", "", "lookup the key is for; required unless --all-lookups")
	all := fs.Bool("all-lookups", false, "the key is valid for every lookup, present and future. Prefer one key per lookup:\n"+
		"a leaked key then opens one lookup, not all, and with the body scheme a request signed for one lookup\n"+
		"can be replayed to another whose fields it does not ask for (serve refuses that within one instance only)")
	label := fs.String("label", "", "a note for admins, e.g. \"helpdesk 2026-11\"")
	schemes := fs.String("schemes", "body", "accepted signature schemes, comma-separated: body, uri_body")
	expiresIn := fs.Duration("expires-in", 0, "the key stops working after this long (0: never)")
	generate := fs.Bool("generate", false, "generate a strong random key and print it once")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if (*lookupName == "") == !*all {
		return fmt.Errorf("keys add: give either --lookup NAME or --all-lookups")
	}
	var secret string
	if *generate {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		secret = hex.EncodeToString(b[:])
	} else {
		b, err := io.ReadAll(io.LimitReader(e.stdin, 4096))
		if err != nil {
			return fmt.Errorf("read key from stdin: %w", err)
		}
		if secret, err = cleanSecret(string(b)); err != nil {
			return fmt.Errorf("keys add: %w (pipe the key in, or use --generate)", err)
		}
		if err := signature.CheckKeyStrength(secret); err != nil {
			return fmt.Errorf("keys add: %w (generate a new key in the helpdesk, or use --generate)", err)
		}
	}
	nk := store.NewKey{Lookup: *lookupName, Secret: secret, Label: *label}
	for _, s := range strings.Split(*schemes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if s != "body" && s != "uri_body" {
				return fmt.Errorf("keys add: unknown scheme %q (want body or uri_body)", s)
			}
			nk.Schemes = append(nk.Schemes, s)
		}
	}
	if *expiresIn > 0 {
		t := time.Now().Add(*expiresIn)
		nk.ExpiresAt = &t
	}
	pool, err := connect(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	id, err := store.New(pool).AddKey(ctx, nk)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("keys add: no lookup named %q (see custinfo lookups list)", *lookupName)
	}
	if err != nil {
		return fmt.Errorf("keys add: %w", err)
	}
	fmt.Fprintf(e.stdout, "added key %d (fingerprint %s)\n", id, fingerprint(secret))
	if *generate {
		fmt.Fprintf(e.stdout, "key: %s\n(shown once; paste it into the helpdesk's API settings)\n", secret)
	}
	return nil
}

func runKeysList(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "keys list", "[flags]")
	dbURL := databaseFlag(fs, e)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	pool, err := connect(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := store.New(pool)
	keys, err := st.Keys(ctx)
	if err != nil {
		return err
	}
	lastUsed, err := st.KeysLastUsed(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLOOKUP\tLABEL\tSCHEMES\tSTATE\tCREATED\tEXPIRES\tLAST USED\tFINGERPRINT")
	for _, k := range keys {
		lookupName := k.Lookup
		if lookupName == "" {
			lookupName = "(all)"
		}
		expires := "never"
		if k.ExpiresAt != nil {
			expires = k.ExpiresAt.UTC().Format(time.RFC3339)
		}
		used := "never"
		if t, ok := lastUsed[k.ID]; ok {
			used = t.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, lookupName, k.Label, strings.Join(k.Schemes, ","),
			k.State(now), k.CreatedAt.UTC().Format(time.RFC3339), expires, used, fingerprint(k.Secret))
	}
	return tw.Flush()
}

func runKeysRevoke(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "keys revoke", "ID [flags]")
	dbURL := databaseFlag(fs, e)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError(2)
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil {
		return fmt.Errorf("keys revoke: %q is not a key id", fs.Arg(0))
	}
	pool, err := connect(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := store.New(pool).RevokeKey(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("keys revoke: no active key %d", id)
		}
		return err
	}
	fmt.Fprintf(e.stdout, "revoked key %d\n", id)
	return nil
}

// publishedDemoKey is the demo's default key, printed in the README and the
// helpdesk's specification: anyone can sign requests with it.
const publishedDemoKey = "bf7769e5321448de88838cdb"

// warnKeys logs a warning for each active key that is the published demo key
// or weaker than the table now accepts (stored before the rule), by id and
// fingerprint only.
func warnKeys(ctx context.Context, st *store.Store, logger *slog.Logger) error {
	keys, err := st.Keys(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, k := range keys {
		if !k.Active(now) {
			continue
		}
		switch {
		case k.Secret == publishedDemoKey:
			logger.Warn("an active key is the published demo key: anyone can sign requests with it; revoke it (custinfo keys revoke ID) before the helpdesk's port is reachable from other machines",
				"key_id", k.ID, "fingerprint", fingerprint(k.Secret), "lookup", k.Lookup)
		case signature.CheckKeyStrength(k.Secret) != nil:
			logger.Warn("an active key is weaker than custinfo now accepts (fewer than 16 characters, or one character repeated); generate a new key in the helpdesk, add it and revoke this one",
				"key_id", k.ID, "fingerprint", fingerprint(k.Secret), "lookup", k.Lookup)
		}
	}
	return nil
}

// fingerprint identifies a key without revealing it: the first 8 hex digits
// of its SHA-256.
func fingerprint(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:4])
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
