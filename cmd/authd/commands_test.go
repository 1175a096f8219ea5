package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// `authd users unlock EMAIL` is the operator's way out of a lock-out.
func TestUsersUnlock(t *testing.T) {
	env := newProduction(t)
	env.Env["OTP_RESEND_SECONDS"] = "0"
	env.Env["LIMIT_FAILURES_PER_ADDRESS"] = "3/h"
	env.Env["LIMIT_VERIFY_CODE_PER_IP"] = "0"
	inst := start(t, env.Env)
	email := uniqueEmail("locked")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	for i := range 3 {
		inst.verify(t, "v1", email, "shop", wrongCode(code, i))
	}
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 429 {
		t.Fatalf("after 3 wrong tries under 3/h: %d, want 429", r.Status)
	}
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return inst.Env[k] }
	if err := run(context.Background(), []string{"users", "unlock", strings.ToUpper(email)}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("users unlock: %v\n%s", err, errOut.String())
	}
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("after unlock: %d %s", r.Status, r.Body)
	}
	if err := run(context.Background(), []string{"users", "unlock", "not an address"}, getenv, nil, &out, &errOut); err == nil {
		t.Fatal("unlock of a bad address succeeded")
	}
}

func TestMigrateCommand(t *testing.T) {
	env := newProduction(t)
	getenv := func(k string) string { return env.Env[k] }
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "status"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(out.String()), "pending") {
		t.Fatalf("status of a fresh database: %s", out.String())
	}
	for range 2 {
		out.Reset()
		if err := run(context.Background(), []string{"migrate"}, getenv, nil, &out, &errOut); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "status"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(out.String()), "pending") {
		t.Fatalf("status after migrate: %s", out.String())
	}
}
