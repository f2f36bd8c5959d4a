// Command custinfo answers a helpdesk's signed customer lookups from PostgreSQL.
//
// Subcommands: serve, migrate, keys, lookups, sign, demo, access-log. Run
// "custinfo help" for the list and "custinfo SUBCOMMAND -h" for flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "custinfo:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a status and no further message.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, env *env) error
}

// env is what every subcommand reads and writes besides its flags.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() []command {
	return []command{
		{"serve", "answer signed lookups over HTTP(S)", runServe},
		{"migrate", "apply or roll back the custinfo schema (up, down, status)", runMigrate},
		{"keys", "manage the helpdesk's security keys (add, list, revoke)", runKeys},
		{"lookups", "list, check and try lookups", runLookups},
		{"sign", "sign and send a request exactly as the helpdesk does", runSign},
		{"demo", "create demo customers, lookups and a key", runDemo},
		{"access-log", "maintain the access log (partitions, prune, hash)", runAccessLog},
	}
}

// run is main without the process: testable with its own arguments and streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return exitError(2)
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], e)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: custinfo SUBCOMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run custinfo SUBCOMMAND -h for its flags. DATABASE_URL names the database.")
}
