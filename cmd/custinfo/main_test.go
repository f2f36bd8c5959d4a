package main

import (
	"os"
	"testing"
)

// TestMain lets the tests run custinfo as a real process: the test binary
// started with CUSTINFO_TEST_EXEC=1 is the custinfo command.
func TestMain(m *testing.M) {
	if os.Getenv("CUSTINFO_TEST_EXEC") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
