// Package storetest holds the contract suites that every implementation of
// a store interface runs (DESIGN.md §3: one suite per interface). Imported
// from tests only.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

// codeT0 is the suite's fake "now". Stores must use the requests' times, never
// their own clock, so any fixed time works; this one is far from the real
// one to catch a store that reads the wall clock.
var codeT0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

// codeHashKey stands in for the derived code-hash key.
var codeHashKey = []byte("storetest code-hash key, 32 byte")

const (
	codeTTL              = 5 * time.Minute
	codeClientIP         = "192.0.2.1"
	codeRateLimitMessage = "Too many requests. Please try again later."
)

// CodeStore runs the authd.CodeStore contract against the stores open
// returns; each subtest opens its own and may run in parallel with the
// others. Time is driven through the requests' Now only: nothing here
// sleeps.
func CodeStore(t *testing.T, open func(t *testing.T) authd.CodeStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s authd.CodeStore)
	}{
		{"IssueConsume", testCodesIssueConsume},
		{"NeverSent", testCodesNeverSent},
		{"WrongCodeAttempts", testCodesWrongCodeAttempts},
		{"Expired", testCodesExpired},
		{"Replaced", testCodesReplaced},
		{"IsCurrent", testCodesIsCurrent},
		{"Cooldown", testCodesCooldown},
		{"CodesPerAddress", testCodesCodesPerAddress},
		{"MailsPerProject", testCodesMailsPerProject},
		{"MailsTotal", testCodesMailsTotal},
		{"MailboxSharesBudgets", testCodesMailboxSharesBudgets},
		{"CheckOrder", testCodesCheckOrder},
		{"RefusalChangesNothing", testCodesRefusalChangesNothing},
		{"FailureBudget", testCodesFailureBudget},
		{"FailureBudgetOnlyLiveCodes", testCodesFailureBudgetOnlyLiveCodes},
		{"Unlock", testCodesUnlock},
		{"RejectedNotCounted", testCodesRejectedNotCounted},
		{"VerifyPerIP", testCodesVerifyPerIP},
		{"GCRAConcurrent", testCodesGCRAConcurrent},
		{"GCRAClockDisorder", testCodesGCRAClockDisorder},
		{"ConcurrentConsume", testCodesConcurrentConsume},
		{"ConcurrentWrongAndRight", testCodesConcurrentWrongAndRight},
		{"Restore", testCodesRestore},
		{"RestoreNotOverNewer", testCodesRestoreNotOverNewer},
		{"RestoreExpired", testCodesRestoreExpired},
		{"RestoreKeepsAttempts", testCodesRestoreKeepsAttempts},
		{"LimitsOff", testCodesLimitsOff},
		{"IPLimitState", testCodesIPLimitState},
		{"RefusalReasons", testCodesRefusalReasons},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// addr is the store's name of an address whose mailbox is its own (no
// +tag, no alias).
func addr(key string) authd.Address { return authd.Address{Key: key, Mailbox: key} }

// newCodeAddress returns a fresh address key, so that subtests sharing a
// backend never meet.
func newCodeAddress(t *testing.T) string {
	t.Helper()
	return rand.Text()
}

func newCodeID(t *testing.T) string {
	t.Helper()
	id, err := authd.NewID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func codeHash(address, project, code string) []byte {
	return authd.CodeHash(codeHashKey, project, address, code)
}

// issueCodeReq is a request for code with every limit off and no cooldown;
// testCodess switch on what they test.
func issueCodeReq(t *testing.T, address, project, code string, now time.Time) authd.IssueRequest {
	t.Helper()
	return authd.IssueRequest{
		Address:  addr(address),
		Project:  project,
		ClientIP: codeClientIP,
		Record: authd.CodeRecord{
			ID:        newCodeID(t),
			Hash:      codeHash(address, project, code),
			ExpiresAt: now.Add(codeTTL),
		},
		Now: now,
	}
}

// consumeCodeReq is a try of code with 5 attempts per code and no other limit.
func consumeCodeReq(address, project, code string, now time.Time) authd.ConsumeRequest {
	return authd.ConsumeRequest{
		Address:         addr(address),
		Project:         project,
		ClientIP:        codeClientIP,
		Hash:            codeHash(address, project, code),
		Now:             now,
		AttemptsPerCode: 5,
	}
}

func mustIssueCode(t *testing.T, s authd.CodeStore, req authd.IssueRequest) authd.IssueResult {
	t.Helper()
	res, err := s.IssueCode(context.Background(), req)
	if err != nil {
		t.Fatalf("IssueCode(%s): %v", req.Project, err)
	}
	return res
}

func mustConsumeCode(t *testing.T, s authd.CodeStore, req authd.ConsumeRequest) authd.ConsumeResult {
	t.Helper()
	res, err := s.ConsumeCode(context.Background(), req)
	if err != nil {
		t.Fatalf("ConsumeCode: %v, want success", err)
	}
	return res
}

// wantInvalidCode checks that err is the one answer for a failed verification.
func wantInvalidCode(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, authd.ErrInvalidCode) {
		t.Fatalf("err = %v, want ErrInvalidCode", err)
	}
}

func consumeInvalidCode(t *testing.T, s authd.CodeStore, req authd.ConsumeRequest) {
	t.Helper()
	_, err := s.ConsumeCode(context.Background(), req)
	wantInvalidCode(t, err)
}

// wantCodeLimited checks that err is a refusal by limit with the given
// Retry-After (0: any), and returns it.
func wantCodeLimited(t *testing.T, err error, limit string, retryAfter time.Duration) *authd.Error {
	t.Helper()
	var e *authd.Error
	if !errors.As(err, &e) || e.Code != authd.ERATELIMITED {
		t.Fatalf("err = %v, want %s by %s", err, authd.ERATELIMITED, limit)
	}
	if e.Limit != limit {
		t.Fatalf("Limit = %q, want %q", e.Limit, limit)
	}
	if e.Message != codeRateLimitMessage {
		t.Errorf("Message = %q, want %q", e.Message, codeRateLimitMessage)
	}
	if e.RetryAfter < time.Second || e.RetryAfter%time.Second != 0 {
		t.Errorf("RetryAfter = %v, want whole seconds, at least 1", e.RetryAfter)
	}
	if retryAfter != 0 && e.RetryAfter != retryAfter {
		t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, retryAfter)
	}
	return e
}

func wantCodeCurrent(t *testing.T, s authd.CodeStore, address, project, id string, now time.Time, want bool) {
	t.Helper()
	got, err := s.IsCurrent(context.Background(), addr(address), project, id, now)
	if err != nil {
		t.Fatalf("IsCurrent: %v", err)
	}
	if got != want {
		t.Fatalf("IsCurrent = %v, want %v", got, want)
	}
}

// codesConcurrently runs f(0..n-1) at once and returns how many succeeded; every
// failure must satisfy check.
func codesConcurrently(t *testing.T, n int, f func(i int) error, check func(err error) bool) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ok    int
		bad   error
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			err := f(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !check(err) && bad == nil:
				bad = err
			}
		})
	}
	close(start)
	wg.Wait()
	if bad != nil {
		t.Fatalf("unexpected error: %v", bad)
	}
	return ok
}

func isCodeLimited(limit string) func(error) bool {
	return func(err error) bool {
		var e *authd.Error
		return errors.As(err, &e) && e.Code == authd.ERATELIMITED && e.Limit == limit && e.RetryAfter >= time.Second
	}
}

func isInvalidCode(err error) bool { return errors.Is(err, authd.ErrInvalidCode) }

func testCodesIssueConsume(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	req := issueCodeReq(t, a, "shop", "123456", codeT0)
	if res := mustIssueCode(t, s, req); res.Replaced {
		t.Error("Replaced = true for the first code")
	}
	got := mustConsumeCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0.Add(time.Minute))).Record
	want := req.Record
	if got.ID != want.ID || string(got.Hash) != string(want.Hash) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Attempts != 0 {
		t.Errorf("Record = %+v, want %+v", got, want)
	}
	// Single use.
	consumeInvalidCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0.Add(time.Minute)))
}

func testCodesNeverSent(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	consumeInvalidCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0))
	// A code is bound to its project.
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "123456", codeT0))
	other := consumeCodeReq(a, "blog", "123456", codeT0)
	other.Hash = codeHash(a, "shop", "123456")
	consumeInvalidCode(t, s, other)
	mustConsumeCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0))
}

func testCodesWrongCodeAttempts(t *testing.T, s authd.CodeStore) {
	t.Run("right code after fewer wrong tries than the limit", func(t *testing.T) {
		a := newCodeAddress(t)
		mustIssueCode(t, s, issueCodeReq(t, a, "shop", "111111", codeT0))
		for range 2 {
			req := consumeCodeReq(a, "shop", "999999", codeT0)
			req.AttemptsPerCode = 3
			consumeInvalidCode(t, s, req)
		}
		req := consumeCodeReq(a, "shop", "111111", codeT0)
		req.AttemptsPerCode = 3
		if got := mustConsumeCode(t, s, req).Record.Attempts; got != 2 {
			t.Errorf("Attempts = %d, want 2", got)
		}
	})
	t.Run("the code dies at the limit", func(t *testing.T) {
		a := newCodeAddress(t)
		issue := issueCodeReq(t, a, "shop", "111111", codeT0)
		mustIssueCode(t, s, issue)
		for range 3 {
			req := consumeCodeReq(a, "shop", "999999", codeT0)
			req.AttemptsPerCode = 3
			consumeInvalidCode(t, s, req)
		}
		wantCodeCurrent(t, s, a, "shop", issue.Record.ID, codeT0, false)
		req := consumeCodeReq(a, "shop", "111111", codeT0)
		req.AttemptsPerCode = 3
		consumeInvalidCode(t, s, req)
	})
}

func testCodesExpired(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	req := issueCodeReq(t, a, "shop", "123456", codeT0)
	mustIssueCode(t, s, req)
	wantCodeCurrent(t, s, a, "shop", req.Record.ID, codeT0.Add(codeTTL-time.Second), true)
	wantCodeCurrent(t, s, a, "shop", req.Record.ID, codeT0.Add(codeTTL), false)
	consumeInvalidCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0.Add(codeTTL)))

	b := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, b, "shop", "123456", codeT0))
	mustConsumeCode(t, s, consumeCodeReq(b, "shop", "123456", codeT0.Add(codeTTL-time.Second)))
}

func testCodesReplaced(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	first := issueCodeReq(t, a, "shop", "111111", codeT0)
	first.ResendCooldown = time.Minute
	mustIssueCode(t, s, first)
	now := codeT0.Add(time.Minute)
	second := issueCodeReq(t, a, "shop", "222222", now)
	second.ResendCooldown = time.Minute
	if !mustIssueCode(t, s, second).Replaced {
		t.Error("Replaced = false, want true")
	}
	wantCodeCurrent(t, s, a, "shop", first.Record.ID, now, false)
	wantCodeCurrent(t, s, a, "shop", second.Record.ID, now, true)
	consumeInvalidCode(t, s, consumeCodeReq(a, "shop", "111111", now))
	got := mustConsumeCode(t, s, consumeCodeReq(a, "shop", "222222", now)).Record
	if got.ID != second.Record.ID {
		t.Errorf("consumed ID %q, want the new code's %q", got.ID, second.Record.ID)
	}

	// A code that has expired is not "replaced".
	b := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, b, "shop", "111111", codeT0))
	if mustIssueCode(t, s, issueCodeReq(t, b, "shop", "222222", codeT0.Add(codeTTL))).Replaced {
		t.Error("Replaced = true over an expired code")
	}
}

func testCodesIsCurrent(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	req := issueCodeReq(t, a, "shop", "123456", codeT0)
	mustIssueCode(t, s, req)
	id := req.Record.ID
	wantCodeCurrent(t, s, a, "shop", id, codeT0, true)
	wantCodeCurrent(t, s, a, "shop", newCodeID(t), codeT0, false)
	wantCodeCurrent(t, s, a, "blog", id, codeT0, false)
	wantCodeCurrent(t, s, newCodeAddress(t), "shop", id, codeT0, false)
	mustConsumeCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0))
	wantCodeCurrent(t, s, a, "shop", id, codeT0, false)
}

func testCodesCooldown(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	issue := func(project string, now time.Time) error {
		req := issueCodeReq(t, a, project, "123456", now)
		req.ResendCooldown = time.Minute
		_, err := s.IssueCode(context.Background(), req)
		return err
	}
	if err := issue("shop", codeT0); err != nil {
		t.Fatal(err)
	}
	wantCodeLimited(t, issue("shop", codeT0.Add(10*time.Second)), "cooldown", 50*time.Second)
	// Rounded up: waiting RetryAfter is always enough.
	wantCodeLimited(t, issue("shop", codeT0.Add(59500*time.Millisecond)), "cooldown", time.Second)
	// Per (project, address).
	if err := issue("blog", codeT0.Add(10*time.Second)); err != nil {
		t.Fatalf("another project: %v", err)
	}
	if err := issue("shop", codeT0.Add(time.Minute)); err != nil {
		t.Fatalf("after the cooldown: %v", err)
	}
}

func testCodesCodesPerAddress(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	issue := func(address string, project int, now time.Time) error {
		req := issueCodeReq(t, address, fmt.Sprintf("p%d", project), "123456", now)
		req.ResendCooldown = time.Minute
		req.CodesPerAddress = authd.Rate{N: 5, Period: time.Hour}
		_, err := s.IssueCode(context.Background(), req)
		return err
	}
	for p := range 5 {
		if err := issue(a, p, codeT0); err != nil {
			t.Fatalf("code %d: %v", p+1, err)
		}
	}
	// All projects together: a sixth project does not get a new budget.
	wantCodeLimited(t, issue(a, 5, codeT0), "codes_per_address", 12*time.Minute)
	if err := issue(newCodeAddress(t), 5, codeT0); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// GCRA: one code back every 12 minutes.
	if err := issue(a, 5, codeT0.Add(12*time.Minute)); err != nil {
		t.Fatalf("after 12 minutes: %v", err)
	}
	wantCodeLimited(t, issue(a, 6, codeT0.Add(12*time.Minute)), "codes_per_address", 12*time.Minute)
}

func testCodesMailsPerProject(t *testing.T, s authd.CodeStore) {
	project := "m" + newCodeID(t)[:16]
	issue := func(project string) error {
		req := issueCodeReq(t, newCodeAddress(t), project, "123456", codeT0)
		req.MailsPerProject = authd.Rate{N: 2, Period: time.Minute}
		_, err := s.IssueCode(context.Background(), req)
		return err
	}
	for i := range 2 {
		if err := issue(project); err != nil {
			t.Fatalf("mail %d: %v", i+1, err)
		}
	}
	wantCodeLimited(t, issue(project), "mails_per_project", 30*time.Second)
	if err := issue(project + "x"); err != nil {
		t.Fatalf("another project: %v", err)
	}
	// A hosted sign-in's code is kept under a project of its own
	// (authd.SignInProject) and its mail counts as its client's.
	own := "n" + newCodeID(t)[:16]
	req := issueCodeReq(t, newCodeAddress(t), authd.SignInProject(own), "123456", codeT0)
	req.MailsProject, req.MailsPerProject = own, authd.Rate{N: 1, Period: time.Minute}
	if _, err := s.IssueCode(context.Background(), req); err != nil {
		t.Fatalf("a sign-in's mail: %v", err)
	}
	req2 := issueCodeReq(t, newCodeAddress(t), own, "123456", codeT0)
	req2.MailsPerProject = req.MailsPerProject
	_, err := s.IssueCode(context.Background(), req2)
	wantCodeLimited(t, err, "mails_per_project", time.Minute)
}

// later moves a request d into the future, its code's lifetime with it.
func later(r *authd.IssueRequest, d time.Duration) {
	r.Now, r.Record.ExpiresAt = r.Now.Add(d), r.Record.ExpiresAt.Add(d)
}

// testCodesMailsTotal: the limit of mails in total counts every mail,
// whatever its project or address (project_id is the caller's choice), and
// reports what is left of it; a request another limit refuses does not
// count.
func testCodesMailsTotal(t *testing.T, s authd.CodeStore) {
	issue := func(project string, now time.Time) (authd.IssueResult, error) {
		req := issueCodeReq(t, newCodeAddress(t), project, "123456", now)
		req.MailsTotal = authd.Rate{N: 3, Period: time.Minute}
		return s.IssueCode(context.Background(), req)
	}
	for i, project := range []string{"a", "b", "c"} {
		res, err := issue(project, codeT0)
		if err != nil {
			t.Fatalf("mail %d: %v", i+1, err)
		}
		if want := (authd.LimitState{Limit: 3, Remaining: 2 - i, Reset: time.Duration(i+1) * 20 * time.Second}); res.Mails != want {
			t.Errorf("mail %d: Mails = %+v, want %+v", i+1, res.Mails, want)
		}
	}
	_, err := issue("d", codeT0)
	wantCodeLimited(t, err, "mails_total", 20*time.Second)
	// Refused elsewhere (the client IP): not counted against the total.
	req := issueCodeReq(t, newCodeAddress(t), "e", "123456", codeT0.Add(20*time.Second))
	req.MailsTotal = authd.Rate{N: 3, Period: time.Minute}
	req.SendPerIP, req.ClientIP = authd.Rate{N: 1, Period: time.Hour}, newCodeID(t)
	mustIssueCode(t, s, req)
	req.Address = addr(newCodeAddress(t))
	req.Now = codeT0.Add(40 * time.Second)
	_, err = s.IssueCode(context.Background(), req)
	wantCodeLimited(t, err, "send_per_ip", 0)
	if _, err := issue("f", codeT0.Add(40*time.Second)); err != nil {
		t.Fatalf("the IP's refusal counted against the total: %v", err)
	}
}

// testCodesMailboxSharesBudgets: two addresses of one mailbox (ana+1@,
// ana+2@) share the codes-per-address and failure budgets, and nothing
// else: each has its own codes and cooldowns.
func testCodesMailboxSharesBudgets(t *testing.T, s authd.CodeStore) {
	mailbox := newCodeAddress(t)
	a1, a2 := authd.Address{Key: newCodeAddress(t), Mailbox: mailbox}, authd.Address{Key: newCodeAddress(t), Mailbox: mailbox}
	issue := func(a authd.Address, code string, now time.Time) error {
		req := issueCodeReq(t, a.Key, "shop", code, now)
		req.Address = a
		req.ResendCooldown = time.Minute
		req.CodesPerAddress = authd.Rate{N: 3, Period: time.Hour}
		_, err := s.IssueCode(context.Background(), req)
		return err
	}
	if err := issue(a1, "111111", codeT0); err != nil {
		t.Fatal(err)
	}
	// a1's cooldown is not a2's.
	if err := issue(a2, "222222", codeT0); err != nil {
		t.Fatalf("another address of the mailbox, in a1's cooldown: %v", err)
	}
	if err := issue(a2, "222222", codeT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The budget is the mailbox's: 3 codes between them.
	wantCodeLimited(t, issue(a1, "111111", codeT0.Add(time.Minute)), "codes_per_address", 19*time.Minute)
	if err := issue(authd.Address{Key: newCodeAddress(t), Mailbox: newCodeAddress(t)}, "333333", codeT0.Add(time.Minute)); err != nil {
		t.Fatalf("another mailbox: %v", err)
	}
	// Each its own code: a1's does not verify for a2.
	consume := func(a authd.Address, code string) error {
		req := consumeCodeReq(a.Key, "shop", code, codeT0.Add(time.Minute))
		req.Address = a
		req.FailuresPerAddress = authd.Rate{N: 2, Period: time.Hour}
		_, err := s.ConsumeCode(context.Background(), req)
		return err
	}
	wantInvalidCode(t, consume(a2, "111111"))
	// Failures are the mailbox's too: one on a2, one on a1, and both are
	// locked out.
	wantInvalidCode(t, consume(a1, "999999"))
	wantCodeLimited(t, consume(a1, "111111"), "failures_per_address", 30*time.Minute)
	wantCodeLimited(t, consume(a2, "222222"), "failures_per_address", 30*time.Minute)
	// Unlocking the mailbox unlocks every address of it.
	if err := s.Unlock(context.Background(), mailbox); err != nil {
		t.Fatal(err)
	}
	if err := consume(a2, "222222"); err != nil {
		t.Fatalf("after unlocking the mailbox: %v", err)
	}
}

// testCodesCheckOrder: when several limits would refuse, the first in the
// documented order is the one reported.
func testCodesCheckOrder(t *testing.T, s authd.CodeStore) {
	tests := []struct {
		name string
		set  func(*authd.IssueRequest)
		want string
	}{
		{"IP before cooldown", func(r *authd.IssueRequest) { r.SendPerIP = authd.Rate{N: 1, Period: time.Minute} }, "send_per_ip"},
		// The total is every request's: each case that spends it does so
		// in an hour of its own.
		{"IP before total", func(r *authd.IssueRequest) {
			later(r, time.Hour)
			r.SendPerIP, r.MailsTotal = authd.Rate{N: 1, Period: time.Minute}, authd.Rate{N: 1, Period: time.Minute}
		}, "send_per_ip"},
		{"total before project", func(r *authd.IssueRequest) {
			later(r, 2*time.Hour)
			r.MailsTotal, r.MailsPerProject = authd.Rate{N: 1, Period: time.Minute}, authd.Rate{N: 1, Period: time.Minute}
		}, "mails_total"},
		{"project before cooldown", func(r *authd.IssueRequest) { r.MailsPerProject = authd.Rate{N: 1, Period: time.Minute} }, "mails_per_project"},
		{"cooldown before codes per address", func(r *authd.IssueRequest) { r.CodesPerAddress = authd.Rate{N: 1, Period: time.Hour} }, "cooldown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, project, ip := newCodeAddress(t), "o"+newCodeID(t)[:16], newCodeID(t)
			issue := func() error {
				req := issueCodeReq(t, a, project, "123456", codeT0)
				req.ClientIP = ip
				req.ResendCooldown = time.Minute
				req.CodesPerAddress = authd.Rate{N: 1, Period: time.Hour}
				tt.set(&req)
				_, err := s.IssueCode(context.Background(), req)
				return err
			}
			if err := issue(); err != nil {
				t.Fatal(err)
			}
			wantCodeLimited(t, issue(), tt.want, 0)
		})
	}
}

// testCodesRefusalChangesNothing: a refused IssueCode neither stores its code
// nor counts against any limit.
func testCodesRefusalChangesNothing(t *testing.T, s authd.CodeStore) {
	a, ip := newCodeAddress(t), newCodeID(t)
	issue := func(address, project, code, ip string) (authd.IssueRequest, error) {
		req := issueCodeReq(t, address, project, code, codeT0)
		req.ClientIP = ip
		req.ResendCooldown = time.Minute
		req.SendPerIP = authd.Rate{N: 2, Period: time.Minute}
		req.CodesPerAddress = authd.Rate{N: 2, Period: time.Hour}
		req.MailsPerProject = authd.Rate{N: 4, Period: time.Minute}
		_, err := s.IssueCode(context.Background(), req)
		return req, err
	}
	first, err := issue(a, "shop", "111111", ip)
	if err != nil {
		t.Fatal(err)
	}
	refused, err := issue(a, "shop", "222222", ip)
	wantCodeLimited(t, err, "cooldown", time.Minute)
	wantCodeCurrent(t, s, a, "shop", first.Record.ID, codeT0, true)
	wantCodeCurrent(t, s, a, "shop", refused.Record.ID, codeT0, false)
	// The refusal did not count against the IP: this is its second code.
	if _, err := issue(newCodeAddress(t), "shop", "333333", ip); err != nil {
		t.Fatalf("second code from the IP: %v", err)
	}
	_, err = issue(newCodeAddress(t), "shop", "333333", ip)
	wantCodeLimited(t, err, "send_per_ip", 30*time.Second)
	// Nor against the address: this is its second code.
	if _, err := issue(a, "blog", "444444", newCodeID(t)); err != nil {
		t.Fatalf("second code for the address: %v", err)
	}
	_, err = issue(a, "news", "555555", newCodeID(t))
	wantCodeLimited(t, err, "codes_per_address", 0)
	// Nor against the project: two of its four mails are left.
	for i := range 2 {
		if _, err := issue(newCodeAddress(t), "shop", "666666", newCodeID(t)); err != nil {
			t.Fatalf("project mail %d: %v", i+3, err)
		}
	}
	_, err = issue(newCodeAddress(t), "shop", "666666", newCodeID(t))
	wantCodeLimited(t, err, "mails_per_project", 0)
	mustConsumeCode(t, s, consumeCodeReq(a, "shop", "111111", codeT0))
}

func failingCodeReq(address, project, code string, now time.Time) authd.ConsumeRequest {
	req := consumeCodeReq(address, project, code, now)
	req.FailuresPerAddress = authd.Rate{N: 3, Period: time.Hour}
	return req
}

func testCodesFailureBudget(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	issue := func(project, code string) {
		t.Helper()
		req := issueCodeReq(t, a, project, code, codeT0)
		req.Record.ExpiresAt = codeT0.Add(2 * time.Hour)
		mustIssueCode(t, s, req)
	}
	issue("shop", "111111")
	issue("blog", "222222")
	// Three wrong tries, across two codes in two projects.
	consumeInvalidCode(t, s, failingCodeReq(a, "shop", "999999", codeT0))
	consumeInvalidCode(t, s, failingCodeReq(a, "shop", "999999", codeT0))
	consumeInvalidCode(t, s, failingCodeReq(a, "blog", "999999", codeT0))
	// Exhausted: even the right code is refused, in every project.
	_, err := s.ConsumeCode(context.Background(), failingCodeReq(a, "shop", "111111", codeT0))
	wantCodeLimited(t, err, "failures_per_address", 20*time.Minute)
	_, err = s.ConsumeCode(context.Background(), failingCodeReq(a, "blog", "222222", codeT0))
	wantCodeLimited(t, err, "failures_per_address", 20*time.Minute)
	// A new code does not reset the budget.
	issue("shop", "333333")
	_, err = s.ConsumeCode(context.Background(), failingCodeReq(a, "shop", "333333", codeT0.Add(time.Minute)))
	wantCodeLimited(t, err, "failures_per_address", 19*time.Minute)
	// Other addresses are not affected.
	b := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, b, "shop", "111111", codeT0))
	mustConsumeCode(t, s, failingCodeReq(b, "shop", "111111", codeT0))
	// GCRA: one try back every 20 minutes.
	later := codeT0.Add(20 * time.Minute)
	mustConsumeCode(t, s, failingCodeReq(a, "shop", "333333", later))
	consumeInvalidCode(t, s, failingCodeReq(a, "blog", "999999", later))
	_, err = s.ConsumeCode(context.Background(), failingCodeReq(a, "blog", "222222", later))
	wantCodeLimited(t, err, "failures_per_address", 20*time.Minute)
}

// testCodesFailureBudgetOnlyLiveCodes: tries when there is no live code cost
// the address nothing (they cost the IP).
func testCodesFailureBudgetOnlyLiveCodes(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	for range 10 {
		consumeInvalidCode(t, s, failingCodeReq(a, "shop", "999999", codeT0))
	}
	mustIssueCode(t, s, issueCodeReq(t, a, "old", "111111", codeT0))
	for range 10 {
		consumeInvalidCode(t, s, failingCodeReq(a, "old", "999999", codeT0.Add(codeTTL))) // expired
	}
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "111111", codeT0.Add(codeTTL)))
	for range 3 {
		consumeInvalidCode(t, s, failingCodeReq(a, "shop", "999999", codeT0.Add(codeTTL)))
	}
	_, err := s.ConsumeCode(context.Background(), failingCodeReq(a, "shop", "111111", codeT0.Add(codeTTL)))
	wantCodeLimited(t, err, "failures_per_address", 0)
}

func testCodesUnlock(t *testing.T, s authd.CodeStore) {
	ctx := context.Background()
	a := newCodeAddress(t)
	issue := func(project string) error {
		req := issueCodeReq(t, a, project, "111111", codeT0)
		req.CodesPerAddress = authd.Rate{N: 2, Period: time.Hour}
		_, err := s.IssueCode(ctx, req)
		return err
	}
	for _, p := range []string{"shop", "blog"} {
		if err := issue(p); err != nil {
			t.Fatal(err)
		}
	}
	wantCodeLimited(t, issue("news"), "codes_per_address", 0)
	for range 3 {
		consumeInvalidCode(t, s, failingCodeReq(a, "shop", "999999", codeT0))
	}
	_, err := s.ConsumeCode(ctx, failingCodeReq(a, "blog", "111111", codeT0))
	wantCodeLimited(t, err, "failures_per_address", 0)

	if err := s.Unlock(ctx, a); err != nil {
		t.Fatal(err)
	}
	mustConsumeCode(t, s, failingCodeReq(a, "blog", "111111", codeT0))
	if err := issue("news"); err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	// Unlocking an address with nothing to clear is fine.
	if err := s.Unlock(ctx, newCodeAddress(t)); err != nil {
		t.Fatal(err)
	}
}

// testCodesRejectedNotCounted: a burst far over a GCRA limit lets exactly the
// burst through, and the refused requests do not delay the next one.
func testCodesRejectedNotCounted(t *testing.T, s authd.CodeStore) {
	ip := newCodeID(t)
	hammer := func(now time.Time) int {
		n := 0
		for range 100 {
			req := issueCodeReq(t, newCodeAddress(t), "shop", "123456", now)
			req.ClientIP = ip
			req.SendPerIP = authd.Rate{N: 10, Period: time.Minute}
			_, err := s.IssueCode(context.Background(), req)
			switch {
			case err == nil:
				n++
			case !isCodeLimited("send_per_ip")(err):
				t.Fatalf("unexpected error: %v", err)
			}
		}
		return n
	}
	if n := hammer(codeT0); n != 10 {
		t.Errorf("at codeT0: %d passed, want 10", n)
	}
	if n := hammer(codeT0.Add(6 * time.Second)); n != 1 {
		t.Errorf("at codeT0+6s: %d passed, want 1", n)
	}
	if n := hammer(codeT0.Add(30 * time.Second)); n != 4 {
		t.Errorf("at codeT0+30s: %d passed, want 4", n)
	}
	if n := hammer(codeT0.Add(10 * time.Minute)); n != 10 {
		t.Errorf("at codeT0+10m: %d passed, want 10", n)
	}
}

func testCodesVerifyPerIP(t *testing.T, s authd.CodeStore) {
	a, ip := newCodeAddress(t), newCodeID(t)
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "111111", codeT0))
	try := func(code string) error {
		req := consumeCodeReq(a, "shop", code, codeT0)
		req.ClientIP = ip
		req.VerifyPerIP = authd.Rate{N: 3, Period: time.Minute}
		_, err := s.ConsumeCode(context.Background(), req)
		return err
	}
	// Every try the IP is allowed counts, whatever its outcome.
	wantInvalidCode(t, try("999999"))
	wantInvalidCode(t, try("999999"))
	wantInvalidCode(t, try("999999"))
	wantCodeLimited(t, try("111111"), "verify_per_ip", 20*time.Second)
	// The refused try did not count against the code.
	mustConsumeCode(t, s, consumeCodeReq(a, "shop", "111111", codeT0))
}

func testCodesGCRAConcurrent(t *testing.T, s authd.CodeStore) {
	ip := newCodeID(t)
	n := codesConcurrently(t, 200, func(int) error {
		req := issueCodeReq(t, newCodeAddress(t), "shop", "123456", codeT0)
		req.ClientIP = ip
		req.SendPerIP = authd.Rate{N: 10, Period: time.Minute}
		_, err := s.IssueCode(context.Background(), req)
		return err
	}, isCodeLimited("send_per_ip"))
	if n != 10 {
		t.Errorf("%d of 200 passed, want 10", n)
	}
}

// testCodesGCRAClockDisorder: requests are stamped before they reach the
// store, by several instances, so they arrive a little out of order. The
// last place of a burst goes to a request stamped 200 ms before one
// already counted; one more at the same instant is refused: exactly N.
func testCodesGCRAClockDisorder(t *testing.T, s authd.CodeStore) {
	ip := newCodeID(t)
	issue := func(now time.Time) error {
		req := issueCodeReq(t, newCodeAddress(t), "shop", "123456", now)
		req.ClientIP, req.SendPerIP = ip, authd.Rate{N: 3, Period: time.Hour}
		_, err := s.IssueCode(context.Background(), req)
		return err
	}
	for i, at := range []time.Duration{0, 0, -200 * time.Millisecond} {
		if err := issue(codeT0.Add(at)); err != nil {
			t.Fatalf("request %d of a burst of 3, stamped %v: %v", i+1, at, err)
		}
	}
	for _, next := range []struct{ at, retryAfter time.Duration }{
		{0, 20 * time.Minute},
		{-200 * time.Millisecond, 20*time.Minute + time.Second}, // 20m0.2s, in whole seconds up
		{time.Second, 20*time.Minute - time.Second},
	} {
		wantCodeLimited(t, issue(codeT0.Add(next.at)), "send_per_ip", next.retryAfter)
	}
}

func testCodesConcurrentConsume(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "123456", codeT0))
	n := codesConcurrently(t, 100, func(int) error {
		_, err := s.ConsumeCode(context.Background(), consumeCodeReq(a, "shop", "123456", codeT0))
		return err
	}, isInvalidCode)
	if n != 1 {
		t.Errorf("%d of 100 tries of the right code succeeded, want exactly 1", n)
	}
}

// testCodesConcurrentWrongAndRight races wrong guesses with the right code: at
// most AttemptsPerCode wrong guesses may count, and the right code wins
// only if it came before the code died. The failure budget is the witness
// of how many wrong guesses counted.
func testCodesConcurrentWrongAndRight(t *testing.T, s authd.CodeStore) {
	const (
		attempts = 5
		wrong    = 20
		budget   = 40
	)
	budgetRate := authd.Rate{N: budget, Period: budget * 24 * time.Hour} // no refill at codeT0
	for round := range 5 {
		a := newCodeAddress(t)
		mustIssueCode(t, s, issueCodeReq(t, a, "shop", "123456", codeT0))
		var rightErr error
		codesConcurrently(t, wrong+1, func(i int) error {
			code := "999999"
			if i == wrong/2 {
				code = "123456"
			}
			req := consumeCodeReq(a, "shop", code, codeT0)
			req.AttemptsPerCode = attempts
			req.FailuresPerAddress = budgetRate
			_, err := s.ConsumeCode(context.Background(), req)
			if code == "123456" {
				rightErr = err
				return nil
			}
			if err == nil {
				return errors.New("a wrong code succeeded")
			}
			return err
		}, isInvalidCode)
		if rightErr != nil && !isInvalidCode(rightErr) {
			t.Fatalf("right code: %v", rightErr)
		}

		// Count the failures left, one fresh code at a time.
		left := 0
		for {
			mustIssueCode(t, s, issueCodeReq(t, a, "probe", "123456", codeT0))
			req := consumeCodeReq(a, "probe", "999999", codeT0)
			req.AttemptsPerCode = 1
			req.FailuresPerAddress = budgetRate
			_, err := s.ConsumeCode(context.Background(), req)
			if isCodeLimited("failures_per_address")(err) {
				break
			}
			wantInvalidCode(t, err)
			if left++; left > budget {
				t.Fatal("the failure budget never ran out")
			}
		}
		counted := budget - left
		if rightErr == nil && counted >= attempts {
			t.Errorf("round %d: the right code won after %d wrong guesses counted, want < %d", round, counted, attempts)
		}
		if rightErr != nil && counted != attempts {
			t.Errorf("round %d: the right code lost with %d wrong guesses counted, want %d", round, counted, attempts)
		}
	}
}

func testCodesRestore(t *testing.T, s authd.CodeStore) {
	ctx := context.Background()
	a := newCodeAddress(t)
	req := issueCodeReq(t, a, "shop", "123456", codeT0)
	mustIssueCode(t, s, req)
	rec := mustConsumeCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0)).Record
	wantCodeCurrent(t, s, a, "shop", req.Record.ID, codeT0, false)
	if err := s.RestoreCode(ctx, addr(a), "shop", rec, codeT0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCodeCurrent(t, s, a, "shop", req.Record.ID, codeT0.Add(time.Second), true)
	got := mustConsumeCode(t, s, consumeCodeReq(a, "shop", "123456", codeT0.Add(2*time.Second))).Record
	if got.ID != req.Record.ID || !got.ExpiresAt.Equal(req.Record.ExpiresAt) {
		t.Errorf("restored %+v, want %+v", got, req.Record)
	}
}

func testCodesRestoreNotOverNewer(t *testing.T, s authd.CodeStore) {
	ctx := context.Background()
	a := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "111111", codeT0))
	rec := mustConsumeCode(t, s, consumeCodeReq(a, "shop", "111111", codeT0)).Record
	newer := issueCodeReq(t, a, "shop", "222222", codeT0)
	mustIssueCode(t, s, newer)
	if err := s.RestoreCode(ctx, addr(a), "shop", rec, codeT0); err != nil {
		t.Fatal(err)
	}
	wantCodeCurrent(t, s, a, "shop", rec.ID, codeT0, false)
	wantCodeCurrent(t, s, a, "shop", newer.Record.ID, codeT0, true)
	consumeInvalidCode(t, s, consumeCodeReq(a, "shop", "111111", codeT0))
	mustConsumeCode(t, s, consumeCodeReq(a, "shop", "222222", codeT0))
}

func testCodesRestoreExpired(t *testing.T, s authd.CodeStore) {
	ctx := context.Background()
	a := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "111111", codeT0))
	rec := mustConsumeCode(t, s, consumeCodeReq(a, "shop", "111111", codeT0)).Record
	if err := s.RestoreCode(ctx, addr(a), "shop", rec, codeT0.Add(codeTTL)); err != nil {
		t.Fatal(err)
	}
	// Asked about an earlier time, the store shows whether it stored it.
	wantCodeCurrent(t, s, a, "shop", rec.ID, codeT0, false)
}

func testCodesRestoreKeepsAttempts(t *testing.T, s authd.CodeStore) {
	ctx := context.Background()
	a := newCodeAddress(t)
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "111111", codeT0))
	try := func(code string) (authd.ConsumeResult, error) {
		req := consumeCodeReq(a, "shop", code, codeT0)
		req.AttemptsPerCode = 3
		return s.ConsumeCode(ctx, req)
	}
	for range 2 {
		_, err := try("999999")
		wantInvalidCode(t, err)
	}
	res, err := try("111111")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RestoreCode(ctx, addr(a), "shop", res.Record, codeT0); err != nil {
		t.Fatal(err)
	}
	_, err = try("999999")
	wantInvalidCode(t, err)
	// That was the third wrong try: the restored code is dead.
	_, err = try("111111")
	wantInvalidCode(t, err)
}

func testCodesLimitsOff(t *testing.T, s authd.CodeStore) {
	a := newCodeAddress(t)
	for i := range 50 {
		req := issueCodeReq(t, a, "shop", "123456", codeT0)
		req.ClientIP = "198.51.100.7"
		res, err := s.IssueCode(context.Background(), req)
		if err != nil {
			t.Fatalf("code %d: %v", i+1, err)
		}
		if res.IP != (authd.LimitState{}) {
			t.Fatalf("IP = %+v with the limit off, want zero", res.IP)
		}
	}
	for range 50 {
		req := consumeCodeReq(a, "shop", "999999", codeT0)
		req.AttemptsPerCode = 0 // no limit per code
		consumeInvalidCode(t, s, req)
	}
	req := consumeCodeReq(a, "shop", "123456", codeT0)
	req.AttemptsPerCode = 0
	if got := mustConsumeCode(t, s, req).Record.Attempts; got != 50 {
		t.Errorf("Attempts = %d, want 50", got)
	}
}

func testCodesIPLimitState(t *testing.T, s authd.CodeStore) {
	ip := newCodeID(t)
	issue := func(now time.Time) authd.LimitState {
		t.Helper()
		req := issueCodeReq(t, newCodeAddress(t), "shop", "123456", now)
		req.ClientIP = ip
		req.SendPerIP = authd.Rate{N: 10, Period: time.Minute}
		return mustIssueCode(t, s, req).IP
	}
	steps := []struct {
		at   time.Duration
		want authd.LimitState
	}{
		{0, authd.LimitState{Limit: 10, Remaining: 9, Reset: 6 * time.Second}},
		{0, authd.LimitState{Limit: 10, Remaining: 8, Reset: 12 * time.Second}},
		{6 * time.Second, authd.LimitState{Limit: 10, Remaining: 8, Reset: 12 * time.Second}},
		{9 * time.Second, authd.LimitState{Limit: 10, Remaining: 7, Reset: 15 * time.Second}},
		{time.Hour, authd.LimitState{Limit: 10, Remaining: 9, Reset: 6 * time.Second}},
	}
	for i, st := range steps {
		if got := issue(codeT0.Add(st.at)); got != st.want {
			t.Errorf("step %d (codeT0+%v): IP = %+v, want %+v", i, st.at, got, st.want)
		}
	}

	// The verify limit's state comes with every answer the IP was allowed,
	// a failed comparison included.
	a, vip := newCodeAddress(t), newCodeID(t)
	mustIssueCode(t, s, issueCodeReq(t, a, "shop", "123456", codeT0))
	verify := func(code string) (authd.ConsumeResult, error) {
		req := consumeCodeReq(a, "shop", code, codeT0)
		req.ClientIP = vip
		req.VerifyPerIP = authd.Rate{N: 60, Period: time.Minute}
		return s.ConsumeCode(context.Background(), req)
	}
	res, err := verify("999999")
	wantInvalidCode(t, err)
	if want := (authd.LimitState{Limit: 60, Remaining: 59, Reset: time.Second}); res.IP != want {
		t.Errorf("verify IP after a wrong code = %+v, want %+v", res.IP, want)
	}
	if res, err = verify("123456"); err != nil {
		t.Fatal(err)
	}
	if want := (authd.LimitState{Limit: 60, Remaining: 58, Reset: 2 * time.Second}); res.IP != want {
		t.Errorf("verify IP = %+v, want %+v", res.IP, want)
	}
}
