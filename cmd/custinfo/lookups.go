package main

import (
	"context"
	"fmt"
)

func runLookups(ctx context.Context, args []string, e *env) error {
	return fmt.Errorf("lookups: not implemented yet")
}
