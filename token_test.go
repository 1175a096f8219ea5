package authd_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/proof"
)

// oneUser is a UserStore with one user, enough for the flow.
type oneUser struct{}

func (oneUser) UpsertVerified(_ context.Context, email string, at time.Time) (authd.User, error) {
	return authd.User{ID: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", Email: email, CreatedAt: at, LastVerifiedAt: at}, nil
}
func (oneUser) FindByEmail(context.Context, string) (authd.User, error) {
	return authd.User{}, authd.Errorf(authd.ENOTFOUND, "no")
}
func (oneUser) CaseDuplicates(context.Context) ([][]authd.User, error) { return nil, nil }
func (oneUser) Ping(context.Context) error                             { return nil }

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

// issueCode stores code for (shop, email) as SendCode would.
func issueCode(t *testing.T, s *authd.Service, email, code string, now time.Time) {
	t.Helper()
	id, _ := authd.NewID(rand.Reader)
	_, err := s.Codes.IssueCode(t.Context(), authd.IssueRequest{
		Address: authd.AddressKey(s.Keys.Address, email), Project: "shop", Now: now,
		Record: authd.CodeRecord{ID: id, Hash: authd.CodeHash(s.Keys.Code, "shop", email, code), ExpiresAt: now.Add(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func tokenService(t *testing.T, iss *issuer, now time.Time) *authd.Service {
	keys, _ := authd.DeriveKeys(make([]byte, 32))
	p := authd.DefaultPolicy()
	p.VerifyPerIP, p.FailuresPerAddress = authd.Rate{}, authd.Rate{}
	return &authd.Service{Codes: inmem.NewCodeStore(), Users: oneUser{}, Signer: proof.NewHMAC("k"), Policy: p, Keys: keys, Tokens: iss, Now: func() time.Time { return now }}
}

// v2 asks for a token with the flow's claims; v1 never gets one.
func TestVerifyCodeIssuesToken(t *testing.T) {
	now := time.Unix(1764412800, 0)
	iss := &issuer{}
	s := tokenService(t, iss, now)
	issueCode(t, s, "ana@example.com", "123456", now)
	res, err := s.VerifyCode(t.Context(), authd.VerifyRequest{Email: "Ana@Example.com", ProjectID: "shop", Code: "123456", WantToken: true, Nonce: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	want := authd.TokenClaims{Subject: res.User.ID, Audience: "shop", Email: "ana@example.com", Nonce: "n1", IssuedAt: now}
	if len(iss.got) != 1 || iss.got[0] != want || res.Token.Raw != "a.b.c" {
		t.Fatalf("claims %+v, token %+v; want %+v", iss.got, res.Token, want)
	}
	issueCode(t, s, "ana@example.com", "654321", now)
	res, err = s.VerifyCode(t.Context(), authd.VerifyRequest{Email: "ana@example.com", ProjectID: "shop", Code: "654321"})
	if err != nil || res.Token.Raw != "" || len(iss.got) != 1 {
		t.Fatalf("v1 verification signed a token: %+v %v", res.Token, err)
	}
}

// A signer that fails gives the code back and answers 503: the user
// retries with the same code.
func TestVerifyCodeTokenFailureRestoresCode(t *testing.T) {
	now := time.Unix(1764412800, 0)
	iss := &issuer{err: &authd.Error{Code: authd.EUNAVAILABLE, Message: "no token signing key"}}
	s := tokenService(t, iss, now)
	issueCode(t, s, "ana@example.com", "123456", now)
	req := authd.VerifyRequest{Email: "ana@example.com", ProjectID: "shop", Code: "123456", WantToken: true}
	if _, err := s.VerifyCode(t.Context(), req); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("VerifyCode with a failing signer = %v, want EUNAVAILABLE", err)
	}
	iss.err = nil
	if res, err := s.VerifyCode(t.Context(), req); err != nil || res.Token.Raw == "" {
		t.Fatalf("the same code after the signer recovered: %v", err)
	}
}
