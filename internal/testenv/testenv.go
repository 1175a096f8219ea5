// Package testenv tells tests where the real components are (DESIGN.md §5)
// and applies the skip rule: a test whose component is absent skips with one
// line saying so, and fails instead under AUTHD_TEST_REQUIRE_ALL=1.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireAll reports whether AUTHD_TEST_REQUIRE_ALL=1: no test may skip.
func RequireAll() bool { return os.Getenv("AUTHD_TEST_REQUIRE_ALL") == "1" }

// Skip skips t with reason, or fails it when every component is required.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("AUTHD_TEST_REQUIRE_ALL=1 but %s", reason)
	}
	t.Skip(reason)
}

// DatabaseURL returns AUTHD_TEST_DATABASE_URL, a PostgreSQL database the
// tests may write to, or skips.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AUTHD_TEST_DATABASE_URL")
	if u == "" {
		Skip(t, "AUTHD_TEST_DATABASE_URL is not set: skipping the PostgreSQL test")
	}
	return u
}

// RedisURL returns AUTHD_TEST_REDIS_URL, a Redis the tests may write to, or
// skips.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AUTHD_TEST_REDIS_URL")
	if u == "" {
		Skip(t, "AUTHD_TEST_REDIS_URL is not set: skipping the Redis test")
	}
	return u
}

// LookPath returns the path of a program on PATH, or skips.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, name+" is not on PATH: skipping")
	}
	return p
}
