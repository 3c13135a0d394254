// Package adaptertest holds what the adapters' and simulators' tests
// share: waiting on a condition, and reading a classified failure.
package adaptertest

import (
	"errors"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// Timeout is how long Eventually waits: generous, for a busy 2-core
// machine; it only matters when the condition never holds.
const Timeout = 10 * time.Second

// Eventually polls cond every 5 ms until it holds, and fails the test
// saying what it waited for once Timeout has passed.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FailureOf returns err as a *failure.Error of provider, failing the test
// when it is not one.
func FailureOf(t testing.TB, err error, provider string) *failure.Error {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *failure.Error", err, err)
	}
	if fe.Provider != provider {
		t.Errorf("provider %q, want %q", fe.Provider, provider)
	}
	return fe
}
