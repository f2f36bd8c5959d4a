package main

import (
	"context"
	"fmt"
)

func runAccessLog(ctx context.Context, args []string, e *env) error {
	return fmt.Errorf("access-log: not implemented yet")
}
