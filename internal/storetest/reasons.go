package storetest

import (
	"testing"
	"time"

	"github.com/authd/authd"
)

// testCodesRefusalReasons: a refusal says why, for metrics only: wrong
// while the code lives, burnt on the try that kills it, expired for a
// code that is gone. Every one is still ErrInvalidCode.
func testCodesRefusalReasons(t *testing.T, s authd.CodeStore) {
	now := time.Unix(1_800_000_000, 0)
	addr := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, addr, "shop", "111111", now))
	want := func(code string, reason string) {
		t.Helper()
		_, err := s.ConsumeCode(t.Context(), consumeCodeReq(addr, "shop", code, now))
		wantInvalidCode(t, err)
		if got := authd.CodeFailureReason(err); got != reason {
			t.Fatalf("reason %q, want %q", got, reason)
		}
	}
	for range 4 {
		want("222222", authd.CodeWrong)
	}
	want("222222", authd.CodeBurnt) // the fifth of 5 attempts kills it
	want("111111", authd.CodeExpired)

	other := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, other, "shop", "333333", now))
	now = now.Add(codeTTL + time.Second)
	_, err := s.ConsumeCode(t.Context(), consumeCodeReq(other, "shop", "333333", now))
	wantInvalidCode(t, err)
	if got := authd.CodeFailureReason(err); got != authd.CodeExpired {
		t.Fatalf("expired code: reason %q", got)
	}
}
