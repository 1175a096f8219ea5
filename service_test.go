package authd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/internal/sqlite"
)

// The flow's behaviours, on the embedded backends (codes in memory, users
// in SQLite) and a fake clock: nothing to install, nothing to wait for.

// flow is a Service on the embedded backends, with the clock in hand.
type flow struct {
	*authd.Service
	codes  *inmem.CodeStore
	users  *failingUsers
	sealer *delivery.Sealer
	keys   authd.Keys
	now    time.Time
}

// failingUsers is the SQLite user store, made to fail on demand: the
// user store going down in the middle of a verification.
type failingUsers struct {
	authd.UserStore
	down atomic.Bool
}

func (u *failingUsers) UpsertVerified(ctx context.Context, email string, at time.Time) (authd.User, error) {
	if u.down.Load() {
		return authd.User{}, authd.Unavailable("user store", errors.New("connection refused"))
	}
	return u.UserStore.UpsertVerified(ctx, email, at)
}

func newFlow(t *testing.T, edit func(p *authd.Policy)) *flow {
	t.Helper()
	users, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(users.Close)
	if err := users.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	keys, err := authd.DeriveKeys(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := delivery.NewSealer(keys.Mail, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := config.DefaultPolicy()
	if edit != nil {
		edit(&p)
	}
	f := &flow{codes: inmem.NewCodeStore(), users: &failingUsers{UserStore: users}, sealer: sealer, keys: keys, now: time.Unix(1764412800, 0)}
	f.Service = &authd.Service{
		Codes: f.codes, Users: f.users, Sealer: sealer, Signer: proof.NewHMAC("k"),
		Policy: p, Keys: keys, Now: func() time.Time { return f.now },
	}
	return f
}

func (f *flow) advance(d time.Duration) { f.now = f.now.Add(d) }

// send asks for a code and returns it, read from its queued mail.
func (f *flow) send(t *testing.T, email, project string) (string, authd.SendResult) {
	t.Helper()
	res, err := f.SendCode(t.Context(), authd.SendRequest{Email: email, ProjectID: project, ClientIP: "192.0.2.1"})
	if err != nil {
		t.Fatalf("SendCode(%s, %s): %v", email, project, err)
	}
	jobs, err := f.codes.Claim(t.Context(), "test", 100, time.Minute, f.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.DeliveryID != res.DeliveryID {
			continue
		}
		m, err := f.sealer.Open(j.DeliveryID, j.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.codes.Finish(t.Context(), j, authd.DeliverySent, 1, f.now); err != nil {
			t.Fatal(err)
		}
		return m.Code, res
	}
	t.Fatalf("no mail job queued for delivery %s", res.DeliveryID)
	return "", res
}

func (f *flow) verify(t *testing.T, email, project, code string) (authd.VerifyResult, error) {
	t.Helper()
	return f.VerifyCode(t.Context(), authd.VerifyRequest{Email: email, ProjectID: project, Code: code, ClientIP: "192.0.2.1"})
}

func wantLimited(t *testing.T, err error, limit string, retryAfter time.Duration) {
	t.Helper()
	var e *authd.Error
	if !errors.As(err, &e) || e.Code != authd.ERATELIMITED || e.Limit != limit || e.RetryAfter != retryAfter {
		t.Fatalf("got %v, want %s refusal with RetryAfter %v", err, limit, retryAfter)
	}
}

func otherCode(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

func TestFlowSendThenVerify(t *testing.T) {
	f := newFlow(t, nil)
	code, sent := f.send(t, "Ana@Example.com", "shop")
	if sent.ExpiresIn != 5*time.Minute || sent.ResendAfter != time.Minute {
		t.Fatalf("SendResult %+v: want the default lifetime and cooldown", sent)
	}
	res, err := f.verify(t, "ana@example.com", "shop", code)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Proof
	if p.Email != "ana@example.com" || p.ProjectID != "shop" || !p.Verified || p.IssuedAt != f.now.Unix() || p.AuthUserID != res.User.ID {
		t.Fatalf("proof %+v for user %+v", p, res.User)
	}
	if !proof.NewHMAC("k").Verify(p) {
		t.Fatal("the proof's signature does not verify")
	}
	// Single use.
	if _, err := f.verify(t, "ana@example.com", "shop", code); !errors.Is(err, authd.ErrInvalidCode) {
		t.Fatalf("the same code twice: %v, want ErrInvalidCode", err)
	}
	u, err := f.User(t.Context(), "ANA@example.com")
	if err != nil || u.ID != res.User.ID {
		t.Fatalf("User = %+v, %v; want %s", u, err, res.User.ID)
	}
}

// A user store failure gives the code back and answers 503: the user
// retries with the same code once the store is back.
func TestFlowUserStoreFailureRestoresCode(t *testing.T) {
	f := newFlow(t, nil)
	code, _ := f.send(t, "ana@example.com", "shop")
	f.users.down.Store(true)
	if _, err := f.verify(t, "ana@example.com", "shop", code); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("verify with the user store down: %v, want EUNAVAILABLE", err)
	}
	f.users.down.Store(false)
	f.advance(time.Second)
	if _, err := f.verify(t, "ana@example.com", "shop", code); err != nil {
		t.Fatalf("the same code once the store is back: %v", err)
	}
}

func TestFlowResendCooldown(t *testing.T) {
	f := newFlow(t, nil)
	f.send(t, "ana@example.com", "shop")
	f.advance(20 * time.Second)
	_, err := f.SendCode(t.Context(), authd.SendRequest{Email: "ana@example.com", ProjectID: "shop", ClientIP: "192.0.2.1"})
	wantLimited(t, err, "cooldown", 40*time.Second)
	// Another project has a cooldown of its own.
	f.send(t, "ana@example.com", "blog")
	f.advance(40 * time.Second)
	f.send(t, "ana@example.com", "shop")
}

// A new code replaces the live one: the old one no longer verifies, and its
// mail, had it not gone yet, is dropped unsent.
func TestFlowNewCodeReplacesOld(t *testing.T) {
	f := newFlow(t, func(p *authd.Policy) { p.ResendCooldown = 0 })
	old, first := f.send(t, "ana@example.com", "shop")
	code, _ := f.send(t, "ana@example.com", "shop")
	addr := f.keys.AddressOf("ana@example.com")
	if cur, err := f.codes.IsCurrent(t.Context(), addr, "shop", first.CodeID, f.now); err != nil || cur {
		t.Fatalf("the replaced code is current: %v, %v", cur, err)
	}
	if old != code {
		if _, err := f.verify(t, "ana@example.com", "shop", old); !errors.Is(err, authd.ErrInvalidCode) {
			t.Fatalf("the replaced code: %v, want ErrInvalidCode", err)
		}
	}
	if _, err := f.verify(t, "ana@example.com", "shop", code); err != nil {
		t.Fatalf("the new code: %v", err)
	}
}

// The codes per address are counted over every project: the caller chooses
// project_id, and must not multiply the budget with it.
func TestFlowCodesPerAddressAllProjects(t *testing.T) {
	f := newFlow(t, nil)
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		f.send(t, "ana@example.com", p)
	}
	_, err := f.SendCode(t.Context(), authd.SendRequest{Email: "ana@example.com", ProjectID: "f", ClientIP: "192.0.2.2"})
	wantLimited(t, err, "codes_per_address", 12*time.Minute)
	f.advance(12 * time.Minute)
	f.send(t, "ana@example.com", "f")
}

// The budgets are the mailbox's: ana+1@ and a.na@gmail.com are one inbox
// and share them, while each keeps its own identity.
func TestFlowAliasesShareBudgets(t *testing.T) {
	f := newFlow(t, nil)
	for _, e := range []string{"ana@gmail.com", "ana+1@gmail.com", "a.na@gmail.com", "ana+2@googlemail.com", "a.n.a+3@gmail.com"} {
		code, _ := f.send(t, e, "shop")
		res, err := f.verify(t, e, "shop", code)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		if res.Proof.Email != e {
			t.Fatalf("the proof names %s, want the address as given, %s", res.Proof.Email, e)
		}
	}
	_, err := f.SendCode(t.Context(), authd.SendRequest{Email: "an.a+4@gmail.com", ProjectID: "shop", ClientIP: "192.0.2.1"})
	wantLimited(t, err, "codes_per_address", 12*time.Minute)
	// Another inbox is not touched.
	f.send(t, "ana+1@example.com", "shop")
}

// Wrong tries are counted per address across codes: a new code does not
// reset the budget, and a success does not either.
func TestFlowFailureBudgetAcrossCodes(t *testing.T) {
	f := newFlow(t, func(p *authd.Policy) { p.ResendCooldown, p.CodesPerAddress = 0, authd.Rate{} })
	for i := range 10 {
		if i%4 == 0 {
			f.send(t, "ana@example.com", "shop") // a new code every four tries
		}
		if _, err := f.verify(t, "ana@example.com", "shop", "999999"); !errors.Is(err, authd.ErrInvalidCode) {
			t.Fatalf("wrong try %d: %v", i+1, err)
		}
	}
	code, _ := f.send(t, "ana@example.com", "shop")
	_, err := f.verify(t, "ana@example.com", "shop", code)
	wantLimited(t, err, "failures_per_address", 6*time.Minute)
	// The operator's way out.
	if err := f.Unlock(t.Context(), "Ana@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify(t, "ana@example.com", "shop", code); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// A code dies after OTP_ATTEMPTS_LIMIT wrong tries, the right one included.
func TestFlowAttemptsPerCode(t *testing.T) {
	f := newFlow(t, nil)
	code, _ := f.send(t, "ana@example.com", "shop")
	for range 5 {
		if _, err := f.verify(t, "ana@example.com", "shop", otherCode(code)); !errors.Is(err, authd.ErrInvalidCode) {
			t.Fatal(err)
		}
	}
	if _, err := f.verify(t, "ana@example.com", "shop", code); !errors.Is(err, authd.ErrInvalidCode) {
		t.Fatalf("the right code after five wrong tries: %v, want ErrInvalidCode", err)
	}
}

func TestFlowCodeExpires(t *testing.T) {
	f := newFlow(t, nil)
	code, _ := f.send(t, "ana@example.com", "shop")
	f.advance(5 * time.Minute)
	if _, err := f.verify(t, "ana@example.com", "shop", code); !errors.Is(err, authd.ErrInvalidCode) {
		t.Fatalf("an expired code: %v, want ErrInvalidCode", err)
	}
}

// Bad input is refused before the store: nothing is counted.
func TestFlowBadInputChangesNothing(t *testing.T) {
	f := newFlow(t, func(p *authd.Policy) { p.SendPerIP = authd.Rate{N: 1, Period: time.Minute} })
	for _, req := range []authd.SendRequest{
		{Email: "not an address", ProjectID: "shop"},
		{Email: "ana@example.com", ProjectID: "no spaces"},
	} {
		req.ClientIP = "192.0.2.1"
		_, err := f.SendCode(t.Context(), req)
		if authd.ErrorCode(err) != authd.EINVALID {
			t.Fatalf("SendCode(%+v) = %v, want EINVALID", req, err)
		}
	}
	if f.codes.Len() != 0 || f.codes.QueueLen() != 0 {
		t.Fatalf("bad input left %d entries and %d jobs", f.codes.Len(), f.codes.QueueLen())
	}
	f.send(t, "ana@example.com", "shop") // the IP's one send is still there
}

func TestFlowRegistry(t *testing.T) {
	f := newFlow(t, nil)
	p := f.Policy
	p.CodeTTL = time.Minute
	reg, err := authd.NewRegistry([]authd.Project{{ID: "shop", DisplayName: "Example Shop", Policy: p}})
	if err != nil {
		t.Fatal(err)
	}
	f.Projects = reg
	_, err = f.SendCode(t.Context(), authd.SendRequest{Email: "ana@example.com", ProjectID: "blog", ClientIP: "192.0.2.1"})
	if e, ok := err.(*authd.Error); !ok || e.Code != authd.EINVALID || e.Field != "project_id" {
		t.Fatalf("an unknown project: %v, want EINVALID project_id", err)
	}
	if f.codes.QueueLen() != 0 {
		t.Fatal("an unknown project queued a mail")
	}
	_, sent := f.send(t, "ana@example.com", "shop")
	if sent.ExpiresIn != time.Minute {
		t.Fatalf("the project's own lifetime not applied: %v", sent.ExpiresIn)
	}
}

// Erasure removes the user, the live codes of every project and the mails
// still queued, whose statuses go too.
func TestFlowEraseAddress(t *testing.T) {
	f := newFlow(t, nil)
	code, _ := f.send(t, "ana@example.com", "shop")
	if _, err := f.verify(t, "ana@example.com", "shop", code); err != nil {
		t.Fatal(err)
	}
	res, err := f.SendCode(t.Context(), authd.SendRequest{Email: "ana@example.com", ProjectID: "blog", ClientIP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	er, err := f.EraseAddress(t.Context(), "ANA@example.com")
	if err != nil || er.Users != 1 || er.Codes == 0 || er.Email != "ana@example.com" {
		t.Fatalf("EraseAddress = %+v, %v", er, err)
	}
	if _, err := f.User(t.Context(), "ana@example.com"); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("the user after erasure: %v", err)
	}
	if f.codes.QueueLen() != 0 {
		t.Fatal("the queued mail survived the erasure")
	}
	if _, err := f.Delivery(t.Context(), res.DeliveryID); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("the erased mail's status: %v", err)
	}
}

func TestFlowDeliveryStatus(t *testing.T) {
	f := newFlow(t, nil)
	res, err := f.SendCode(t.Context(), authd.SendRequest{Email: "ana@example.com", ProjectID: "shop", ClientIP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := authd.DeliveryPartition(res.DeliveryID); !ok || p != f.keys.AddressOf("ana@example.com").Partition() {
		t.Fatalf("delivery id %s names partition %d, %v", res.DeliveryID, p, ok)
	}
	if d, err := f.Delivery(t.Context(), res.DeliveryID); err != nil || d.Status != authd.DeliveryQueued {
		t.Fatalf("Delivery = %+v, %v; want queued", d, err)
	}
	for _, id := range []string{"", "nothex", res.DeliveryID[:31] + "G", res.DeliveryID + "0"} {
		if _, err := f.Delivery(t.Context(), id); authd.ErrorCode(err) != authd.ENOTFOUND {
			t.Fatalf("Delivery(%q) = %v, want ENOTFOUND", id, err)
		}
	}
	f.advance(5 * time.Minute)
	if _, err := f.Delivery(t.Context(), res.DeliveryID); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("a status after its code expired: %v", err)
	}
}

// issuer records the claims it is asked to sign, or fails with err.
type issuer struct {
	got []authd.TokenClaims
	err error
}

func (i *issuer) IssueToken(_ context.Context, c authd.TokenClaims) (authd.Token, error) {
	i.got = append(i.got, c)
	if i.err != nil {
		return authd.Token{}, i.err
	}
	return authd.Token{Raw: "a.b.c", KeyID: "k", ExpiresIn: 15 * time.Minute}, nil
}

// v2 asks for a token with the flow's claims; v1 never gets one.
func TestFlowVerifyIssuesToken(t *testing.T) {
	f := newFlow(t, func(p *authd.Policy) { p.ResendCooldown = 0 })
	iss := &issuer{}
	f.Tokens = iss
	code, _ := f.send(t, "ana@example.com", "shop")
	res, err := f.VerifyCode(t.Context(), authd.VerifyRequest{Email: "Ana@Example.com", ProjectID: "shop", Code: code, WantToken: true, Nonce: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	want := authd.TokenClaims{Subject: res.User.ID, Audience: "shop", Email: "ana@example.com", Nonce: "n1", IssuedAt: f.now}
	if len(iss.got) != 1 || !reflect.DeepEqual(iss.got[0], want) || res.Token.Raw != "a.b.c" {
		t.Fatalf("claims %+v, token %+v; want %+v", iss.got, res.Token, want)
	}
	code, _ = f.send(t, "ana@example.com", "shop")
	res, err = f.verify(t, "ana@example.com", "shop", code)
	if err != nil || res.Token.Raw != "" || len(iss.got) != 1 {
		t.Fatalf("v1 verification signed a token: %+v %v", res.Token, err)
	}
}

// A signer that fails gives the code back and answers 503: the user
// retries with the same code.
func TestFlowTokenFailureRestoresCode(t *testing.T) {
	f := newFlow(t, nil)
	iss := &issuer{err: &authd.Error{Code: authd.EUNAVAILABLE, Message: "no token signing key"}}
	f.Tokens = iss
	code, _ := f.send(t, "ana@example.com", "shop")
	req := authd.VerifyRequest{Email: "ana@example.com", ProjectID: "shop", Code: code, WantToken: true}
	if _, err := f.VerifyCode(t.Context(), req); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("VerifyCode with a failing signer = %v, want EUNAVAILABLE", err)
	}
	iss.err = nil
	if res, err := f.VerifyCode(t.Context(), req); err != nil || res.Token.Raw == "" {
		t.Fatalf("the same code after the signer recovered: %v", err)
	}
}

// The limit of mails in total counts every project and address; when it is
// spent, send-code is refused for everyone until it refills, and the
// operator is told (once a minute at most) at 80 % and when spent.
func TestFlowMailsTotal(t *testing.T) {
	f := newFlow(t, func(p *authd.Policy) { p.MailsTotal = authd.Rate{N: 10, Period: time.Minute} })
	var logs syncBuffer
	f.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if rem, lim := f.MailBudget(); rem != 10 || lim != 10 {
		t.Fatalf("MailBudget before any send = %d of %d", rem, lim)
	}
	for i := range 10 {
		f.send(t, fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("project%d", i))
	}
	if rem, _ := f.MailBudget(); rem != 0 {
		t.Fatalf("MailBudget after 10 sends = %d, want 0", rem)
	}
	_, err := f.SendCode(t.Context(), authd.SendRequest{Email: "late@example.com", ProjectID: "other", ClientIP: "192.0.2.9"})
	wantLimited(t, err, "mails_total", 6*time.Second)
	if n := strings.Count(logs.String(), "mail budget more than 80% spent"); n != 1 {
		t.Errorf("%d warnings at 80%%, want 1 (one a minute at most):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "mail budget spent") || !strings.Contains(logs.String(), "LIMIT_MAILS_TOTAL=10/m") {
		t.Errorf("no warning naming LIMIT_MAILS_TOTAL when spent:\n%s", logs.String())
	}
	f.advance(30 * time.Second)
	if rem, _ := f.MailBudget(); rem != 5 {
		t.Fatalf("MailBudget 30 s later = %d, want 5 (refilled at the limit's rate)", rem)
	}
	f.send(t, "late@example.com", "other")
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// behind is a mail backlog whose lag over MAIL_MAX_LAG the test sets.
type behind struct{ over atomic.Int64 }

func (b *behind) Behind() time.Duration { return time.Duration(b.over.Load()) }

// While mail delivery is behind, send-code is refused before anything is
// stored or counted (no code, no job, no cooldown, no limit's token), with
// a Retry-After of how far behind, and verify-code is not concerned; once
// it catches up, send-code works at once.
func TestFlowSendRefusedWhileMailIsBehind(t *testing.T) {
	f := newFlow(t, func(p *authd.Policy) { p.SendPerIP = authd.Rate{N: 1, Period: time.Minute} })
	mail := &behind{}
	f.Mail = mail
	code, _ := f.send(t, "ana@example.com", "shop")
	mail.over.Store(int64(3200 * time.Millisecond))
	_, err := f.SendCode(t.Context(), authd.SendRequest{Email: "bo@example.com", ProjectID: "shop", ClientIP: "192.0.2.2"})
	var e *authd.Error
	if !errors.As(err, &e) || e.Code != authd.EUNAVAILABLE || e.Limit != "mail_lag" || e.RetryAfter != 4*time.Second {
		t.Fatalf("send-code while mail is 3.2 s behind: %v, want EUNAVAILABLE mail_lag with RetryAfter 4s", err)
	}
	if n := f.codes.QueueLen(); n != 0 {
		t.Errorf("%d mail jobs queued by a refused send-code", n)
	}
	if _, err := f.verify(t, "ana@example.com", "shop", code); err != nil {
		t.Fatalf("verify-code while mail is behind: %v", err)
	}
	mail.over.Store(int64(time.Hour))
	if _, err := f.SendCode(t.Context(), authd.SendRequest{Email: "bo@example.com", ProjectID: "shop", ClientIP: "192.0.2.2"}); !errors.As(err, &e) || e.RetryAfter != time.Minute {
		t.Fatalf("an hour behind: %v, want RetryAfter capped at a minute", err)
	}
	mail.over.Store(0)
	// Same address, same IP (1 a minute): neither the cooldown nor the
	// limit saw the refused ones.
	if _, err := f.SendCode(t.Context(), authd.SendRequest{Email: "bo@example.com", ProjectID: "shop", ClientIP: "192.0.2.2"}); err != nil {
		t.Fatalf("send-code once mail caught up: %v", err)
	}
}
