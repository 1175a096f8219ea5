package authd_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/jwt"
)

// The hosted sign-in's rules on the embedded backends and a fake clock.

const testRedirect = "https://app.example.com/cb"

type signIn struct {
	*flow
	store *inmem.SignInStore
}

func newSignIn(t *testing.T) *signIn {
	t.Helper()
	f := newFlow(t, nil)
	reg, err := authd.NewRegistry([]authd.Project{{ID: "app", DisplayName: "App", RedirectURIs: []string{testRedirect}, Policy: f.Policy}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwt.New(t.Context(), jwt.Secret("0123456789abcdef0123456789abcdef"), jwt.Options{Issuer: "https://auth.example.com", Alg: "HS256", TTL: time.Hour,
		Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	s := &signIn{flow: f, store: inmem.NewSignInStore(f.codes)}
	f.Projects, f.SignIns, f.Issuer, f.Tokens = reg, s.store, "https://auth.example.com", set
	return s
}

// start begins a sign-in with a fresh PKCE pair: the flow, the browser's
// cookie, the verifier.
func (s *signIn) start(t *testing.T) (authd.SignInFlow, string, string) {
	t.Helper()
	verifier := strings.Repeat("v", 43) + randomSuffix()
	sum := sha256.Sum256([]byte(verifier))
	f, secret, err := s.StartSignIn(t.Context(), authd.AuthorizeRequest{
		ClientID: "app", RedirectURI: testRedirect, ResponseType: "code", Scope: "openid email", State: "st",
		Nonce: "n1", CodeChallenge: base64.RawURLEncoding.EncodeToString(sum[:]), CodeChallengeMethod: "S256",
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, secret, verifier
}

var suffix int

func randomSuffix() string { suffix++; return strings.Repeat("x", suffix%10) }

// mail sends the sign-in's mail and returns its code and link.
func (s *signIn) mail(t *testing.T, f authd.SignInFlow, secret, email string) (string, string) {
	t.Helper()
	if _, err := s.SignInSend(t.Context(), f.ID, secret, email, "192.0.2.1", "en"); err != nil {
		t.Fatal(err)
	}
	jobs, err := s.codes.Claim(t.Context(), "test", 100, time.Minute, s.now)
	if err != nil || len(jobs) == 0 {
		t.Fatalf("no mail queued: %v", err)
	}
	j := jobs[len(jobs)-1]
	m, err := s.sealer.Open(j.DeliveryID, j.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	s.codes.Finish(t.Context(), j, authd.DeliverySent, 1, s.now)
	if m.Link == "" || !strings.Contains(m.Link, "c="+m.Code) {
		t.Fatalf("the mail's link %q does not carry its code", m.Link)
	}
	return m.Code, m.Link
}

func codeOf(t *testing.T, redirect string) string {
	t.Helper()
	u, err := url.Parse(redirect)
	if err != nil || u.Query().Get("code") == "" {
		t.Fatalf("redirect %q has no code", redirect)
	}
	if u.Query().Get("iss") != "https://auth.example.com" || u.Query().Get("state") != "st" {
		t.Fatalf("redirect %q lacks iss or state", redirect)
	}
	return u.Query().Get("code")
}

func oauthCode(err error) string {
	var oe *authd.OAuthError
	if errors.As(err, &oe) {
		return oe.Code
	}
	return ""
}

// A sign-in lives SignInTTL; an authorization code GrantTTL (60 s).
func TestSignInLifetimes(t *testing.T) {
	s := newSignIn(t)
	f, secret, _ := s.start(t)
	code, _ := s.mail(t, f, secret, "ana@example.com")
	s.advance(authd.SignInTTL)
	if _, err := s.SignInCode(t.Context(), f.ID, secret, code, "192.0.2.1"); !errors.Is(err, authd.ErrSignInGone) {
		t.Fatalf("after SignInTTL: %v", err)
	}

	f, secret, verifier := s.start(t)
	s.advance(time.Minute) // past the resend cooldown
	code, _ = s.mail(t, f, secret, "ana@example.com")
	to, err := s.SignInCode(t.Context(), f.ID, secret, code, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	s.advance(authd.GrantTTL)
	_, err = s.Redeem(t.Context(), authd.TokenRequest{GrantType: "authorization_code", Code: codeOf(t, to), RedirectURI: testRedirect, CodeVerifier: verifier, ClientID: "app"})
	if oauthCode(err) != "invalid_grant" {
		t.Fatalf("a code past 60 s: %v", err)
	}
}

// The link and the code are one credential with one budget: wrong codes
// through the link count against the code's tries, until the typed right
// code is refused too.
func TestLinkAndCodeShareTries(t *testing.T) {
	s := newSignIn(t)
	f, secret, _ := s.start(t)
	code, _ := s.mail(t, f, secret, "bo@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := range s.Policy.AttemptsPerCode {
		if _, err := s.SignInConfirm(t.Context(), f.ID, secret, wrong, "192.0.2.1", 0); authd.ErrorCode(err) != authd.ECODE {
			t.Fatalf("wrong link try %d: %v", i, err)
		}
	}
	if _, err := s.SignInCode(t.Context(), f.ID, secret, code, "192.0.2.1"); authd.ErrorCode(err) != authd.ECODE {
		t.Fatalf("the right code after the link's tries burnt it: %v", err)
	}
}

// Reading the link's page changes nothing stored, however often.
func TestLinkPageChangesNothing(t *testing.T) {
	s := newSignIn(t)
	f, secret, _ := s.start(t)
	s.mail(t, f, secret, "cy@example.com")
	before, _ := s.store.SignIn(context.Background(), f.ID)
	for range 10 {
		if _, err := s.SignInLinkPage(t.Context(), f.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := s.store.SignIn(context.Background(), f.ID)
	if string(before) != string(after) {
		t.Fatal("reading the link's page changed the sign-in")
	}
}

// Number matching: the choices are fixed per sign-in (a page fetched again
// tells nothing), a wrong pick refuses the sign-in for good, and the
// approving device gets no redirect.
func TestNumberMatching(t *testing.T) {
	s := newSignIn(t)
	f, secret, _ := s.start(t)
	code, _ := s.mail(t, f, secret, "di@example.com")
	p1, _ := s.SignInLinkPage(t.Context(), f.ID, "")
	p2, _ := s.SignInLinkPage(t.Context(), f.ID, "")
	if p1.Flow.Choices != p2.Flow.Choices || p1.SameBrowser {
		t.Fatalf("choices %v then %v", p1.Flow.Choices, p2.Flow.Choices)
	}
	wrong := 0
	for _, c := range p1.Flow.Choices {
		if c != f.Match {
			wrong = c
		}
	}
	if _, err := s.SignInConfirm(t.Context(), f.ID, "", code, "192.0.2.9", wrong); !errors.Is(err, authd.ErrWrongNumber) {
		t.Fatalf("wrong pick: %v", err)
	}
	if _, err := s.SignInConfirm(t.Context(), f.ID, "", code, "192.0.2.9", f.Match); !errors.Is(err, authd.ErrSignInGone) {
		t.Fatalf("right pick after a wrong one: %v", err)
	}
	if _, _, err := s.SignInWait(t.Context(), f.ID, secret); !errors.Is(err, authd.ErrWrongNumber) {
		t.Fatalf("the waiting browser: %v", err)
	}

	s.advance(time.Minute)
	f, secret, verifier := s.start(t)
	code, _ = s.mail(t, f, secret, "di@example.com")
	to, err := s.SignInConfirm(t.Context(), f.ID, "", code, "192.0.2.9", f.Match)
	if err != nil || to != "" {
		t.Fatalf("right pick: %q %v", to, err)
	}
	if to, _, err = s.SignInWait(t.Context(), f.ID, "not-the-cookie"); !errors.Is(err, authd.ErrOtherBrowser) {
		t.Fatalf("another browser collecting the approval: %q %v", to, err)
	}
	to, _, err = s.SignInWait(t.Context(), f.ID, secret)
	if err != nil {
		t.Fatal(err)
	}
	// Collecting is idempotent until the code is redeemed: a page fetched
	// again (a HEAD, a reload before the redirect was followed) gets the
	// same redirect and issues no second code; another browser nothing.
	for range 2 {
		if again, _, err := s.SignInWait(t.Context(), f.ID, secret); err != nil || again != to {
			t.Fatalf("a repeated collection: %q %v, want %q", again, err, to)
		}
	}
	if again, _, err := s.SignInWait(t.Context(), f.ID, "not-the-cookie"); !errors.Is(err, authd.ErrOtherBrowser) || again != "" {
		t.Fatalf("another browser after the collection: %q %v", again, err)
	}
	res, err := s.Redeem(t.Context(), authd.TokenRequest{GrantType: "authorization_code", Code: codeOf(t, to), RedirectURI: testRedirect, CodeVerifier: verifier, ClientID: "app"})
	if err != nil || res.IDToken == "" {
		t.Fatalf("redeem: %v", err)
	}
	if _, _, err := s.SignInWait(t.Context(), f.ID, secret); !errors.Is(err, authd.ErrSignInGone) {
		t.Fatalf("a second collection: %v", err)
	}
}

// The registry refuses what may not be a client's redirect URI, and
// matches loopback IP literals on any port only.
func TestRedirectURIs(t *testing.T) {
	for _, bad := range []string{"http://app.example.com/cb", "https://app.example.com/cb#x", "javascript:alert(1)", "/cb", "https://u:p@app.example.com/cb"} {
		if _, err := authd.NewRegistry([]authd.Project{{ID: "a", DisplayName: "A", RedirectURIs: []string{bad}}}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	p := authd.Project{RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]/cb", "http://localhost:8080/cb", "com.example.app:/cb"}}
	for uri, want := range map[string]bool{
		"http://127.0.0.1/cb": true, "http://127.0.0.1:51234/cb": true, "http://[::1]:7/cb": true,
		"http://127.0.0.1:5/cb/x": false, "http://127.0.0.1:5/cb?x=1": false, "http://localhost:9/cb": false,
		"http://localhost:8080/cb": true, "com.example.app:/cb": true, "https://127.0.0.1/cb": false,
	} {
		if got := p.MatchRedirectURI(uri); got != want {
			t.Errorf("MatchRedirectURI(%q) = %v, want %v", uri, got, want)
		}
	}
}

// A loopback redirect URI matches on any port, but only a TCP port (1 to
// 65535), and on its path as sent: an escaped spelling of the registered
// path is another path.
func TestLoopbackRedirectStrict(t *testing.T) {
	p := authd.Project{RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"}}
	for uri, want := range map[string]bool{
		"http://127.0.0.1:5555/callback": true, "http://127.0.0.1:65535/callback": true, "http://[::1]:1/callback": true,
		"http://127.0.0.1/%63allback": false, "http://127.0.0.1:5555/%63allback": false, "http://127.0.0.1:5555/callback%2F": false,
		"http://127.0.0.1:0/callback": false, "http://127.0.0.1:99999/callback": false, "http://127.0.0.1:080/callback": false,
		"http://[::1]:0/callback": false, "http://127.0.0.1:/callback": true,
	} {
		if got := p.MatchRedirectURI(uri); got != want {
			t.Errorf("MatchRedirectURI(%q) = %v, want %v", uri, got, want)
		}
	}
	for _, bad := range []string{"http://127.0.0.1:0/cb", "http://127.0.0.1:99999/cb", "https://app.example.com:70000/cb"} {
		if _, err := authd.NewRegistry([]authd.Project{{ID: "a", DisplayName: "A", RedirectURIs: []string{bad}}}); err == nil {
			t.Errorf("%q registered", bad)
		}
	}
}

// The token and userinfo endpoints answer a loopback app's origin on any
// port, as its redirect URI matches on any port; not another host's, nor
// a port out of range, nor the https one.
func TestLoopbackClientOrigin(t *testing.T) {
	reg, err := authd.NewRegistry([]authd.Project{
		{ID: "native", DisplayName: "Native", RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]/cb"}},
		{ID: "spa", DisplayName: "SPA", RedirectURIs: []string{"https://spa.example.com/cb", "http://localhost:3000/cb"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"http://127.0.0.1": true, "http://127.0.0.1:5555": true, "http://[::1]:8080": true, "https://spa.example.com": true,
		"http://localhost:3000": true, "http://localhost:3001": false, "https://127.0.0.1:5555": false,
		"http://127.0.0.2:5555": false, "http://127.0.0.1:0": false, "http://127.0.0.1:99999": false, "https://spa.example.com:444": false,
	} {
		if got := reg.AllowsClientOrigin(origin); got != want {
			t.Errorf("AllowsClientOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
}

// A client's registry entry: a bad secret hash, algorithm or accent stops
// start-up with a line naming the field.
func TestClientRegistry(t *testing.T) {
	for _, tc := range []struct {
		p    authd.Project
		want string
	}{
		{authd.Project{ClientSecretSHA256: "abc"}, "client_secret_sha256"},
		{authd.Project{IDTokenAlg: "HS256"}, "id_token_signed_response_alg"},
		{authd.Project{IDTokenAlg: "none"}, "id_token_signed_response_alg"},
		{authd.Project{Accent: "red"}, "accent_color"},
		{authd.Project{PostLogoutRedirectURIs: []string{"http://evil.example/"}}, "post_logout_redirect_uris"},
	} {
		tc.p.ID, tc.p.DisplayName = "a", "A"
		if _, err := authd.NewRegistry([]authd.Project{tc.p}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.p, err, tc.want)
		}
	}
	sum := sha256.Sum256([]byte("s"))
	reg, err := authd.NewRegistry([]authd.Project{{ID: "a", DisplayName: "A", RedirectURIs: []string{"https://a.example/cb"},
		ClientSecretSHA256: strings.ToUpper(hexOf(sum[:])), IDTokenAlg: "RS256", Accent: "#0f766e"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := reg.Lookup("a"); !p.Confidential() || p.ClientSecretSHA256 != hexOf(sum[:]) {
		t.Fatalf("the secret's hash is not kept lowercased: %+v", p)
	}
	if !reg.AllowsClientOrigin("https://a.example") || reg.AllowsOrigin("https://a.example") {
		t.Fatal("a redirect URI's origin is for the token endpoint only, not the API")
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// A code redeemed by many at once: at most one gets tokens, and since
// the others are replays, no access token it issued works afterwards,
// however the redemptions interleaved.
func TestConcurrentReplayRevokes(t *testing.T) {
	for range 20 {
		s := newSignIn(t)
		f, secret, verifier := s.start(t)
		code, _ := s.mail(t, f, secret, "eve@example.com")
		to, err := s.SignInCode(t.Context(), f.ID, secret, code, "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		req := authd.TokenRequest{GrantType: "authorization_code", Code: codeOf(t, to), RedirectURI: testRedirect, CodeVerifier: verifier, ClientID: "app"}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var issued []string
		for range 8 {
			wg.Go(func() {
				res, err := s.Redeem(context.Background(), req)
				if err == nil {
					mu.Lock()
					issued = append(issued, res.AccessToken)
					mu.Unlock()
				} else if oauthCode(err) != "invalid_grant" {
					t.Errorf("redeem: %v", err)
				}
			})
		}
		wg.Wait()
		if len(issued) > 1 {
			t.Fatalf("%d redemptions got tokens", len(issued))
		}
		for _, at := range issued {
			if _, err := s.UserInfo(t.Context(), at); oauthCode(err) != "invalid_token" {
				t.Fatalf("the access token of a replayed code still works: %v", err)
			}
		}
	}
}

// A code redeems only for the client, redirect_uri and verifier it was
// issued with, and an attempt with another (say a public client's id, by
// someone who saw the code) leaves it redeemable by its own; userinfo gives the address only with the email scope.
func TestRedeemBindings(t *testing.T) {
	s := newSignIn(t)
	reg, err := authd.NewRegistry([]authd.Project{
		{ID: "app", DisplayName: "App", RedirectURIs: []string{testRedirect, "https://app.example.com/other"}, Policy: s.Policy},
		{ID: "spa", DisplayName: "SPA", RedirectURIs: []string{"https://spa.example.com/cb"}, Policy: s.Policy},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Projects = reg
	issue := func(scope string) (string, string) {
		t.Helper()
		s.advance(time.Minute)
		verifier := strings.Repeat("w", 43) + randomSuffix()
		sum := sha256.Sum256([]byte(verifier))
		f, secret, err := s.StartSignIn(t.Context(), authd.AuthorizeRequest{
			ClientID: "app", RedirectURI: testRedirect, ResponseType: "code", Scope: scope, State: "st",
			CodeChallenge: base64.RawURLEncoding.EncodeToString(sum[:]), CodeChallengeMethod: "S256",
		})
		if err != nil {
			t.Fatal(err)
		}
		code, _ := s.mail(t, f, secret, "fe@example.com")
		to, err := s.SignInCode(t.Context(), f.ID, secret, code, "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		return codeOf(t, to), verifier
	}
	for name, edit := range map[string]func(*authd.TokenRequest){
		"another client":       func(r *authd.TokenRequest) { r.ClientID, r.RedirectURI = "spa", "https://spa.example.com/cb" },
		"another redirect_uri": func(r *authd.TokenRequest) { r.RedirectURI = "https://app.example.com/other" },
		"short verifier":       func(r *authd.TokenRequest) { r.CodeVerifier = "short" },
	} {
		code, verifier := issue("openid email")
		right := authd.TokenRequest{GrantType: "authorization_code", Code: code, RedirectURI: testRedirect, CodeVerifier: verifier, ClientID: "app"}
		req := right
		edit(&req)
		if _, err := s.Redeem(t.Context(), req); oauthCode(err) != "invalid_grant" {
			t.Errorf("%s: %v, want invalid_grant", name, err)
		}
		// The refused attempt burnt nothing: the rightful client redeems.
		res, err := s.Redeem(t.Context(), right)
		if err != nil {
			t.Fatalf("%s: the code no longer redeems for its client: %v", name, err)
		}
		if _, err := s.UserInfo(t.Context(), res.AccessToken); err != nil {
			t.Fatalf("%s: userinfo: %v", name, err)
		}
	}
	code, verifier := issue("openid")
	res, err := s.Redeem(t.Context(), authd.TokenRequest{GrantType: "authorization_code", Code: code, RedirectURI: testRedirect, CodeVerifier: verifier, ClientID: "app"})
	if err != nil || res.Scope != "openid" {
		t.Fatalf("redeem: %+v %v", res, err)
	}
	info, err := s.UserInfo(t.Context(), res.AccessToken)
	if err != nil || info.Subject == "" || info.Email != "" {
		t.Fatalf("userinfo without the email scope: %+v %v", info, err)
	}
	s.advance(s.AccessTTL + time.Hour)
	if _, err := s.UserInfo(t.Context(), res.AccessToken); oauthCode(err) != "invalid_token" {
		t.Fatalf("an expired access token: %v", err)
	}
}

// hookedSignIns runs before once, on the next SwapSignIn: another
// request's change landing between a read of the sign-in and its update.
type hookedSignIns struct {
	*inmem.SignInStore
	mu     sync.Mutex
	before func()
}

func (h *hookedSignIns) SwapSignIn(ctx context.Context, id string, prev, next []byte, ttl time.Duration) error {
	h.mu.Lock()
	fn := h.before
	h.before = nil
	h.mu.Unlock()
	if fn != nil {
		fn()
	}
	return h.SignInStore.SwapSignIn(ctx, id, prev, next, ttl)
}

// An attacker verifies their own address while the same sign-in is sent
// to the victim's: the update that records the verification finds the
// address changed and refuses, and no grant ever names the victim. Both
// orders are tried: the victim's address sent while the code is
// verified (typed, and approved on another device), and sent after.
func TestSignInAddressSwapRace(t *testing.T) {
	for _, how := range []string{"code", "link on another device"} {
		t.Run(how, func(t *testing.T) {
			s := newSignIn(t)
			h := &hookedSignIns{SignInStore: s.store}
			s.SignIns = h
			f, secret, _ := s.start(t)
			code, _ := s.mail(t, f, secret, "attacker@example.com")
			var sendErr error
			h.before = func() {
				_, sendErr = s.SignInSend(t.Context(), f.ID, secret, "victim@example.com", "192.0.2.1", "en")
			}
			var err error
			if how == "code" {
				_, err = s.SignInCode(t.Context(), f.ID, secret, code, "192.0.2.1")
			} else {
				var g authd.SignInFlow
				g, _ = s.SignInFlow(t.Context(), f.ID)
				_, err = s.SignInConfirm(t.Context(), f.ID, "", code, "192.0.2.1", g.Match)
			}
			if sendErr != nil {
				t.Fatalf("the racing send: %v", sendErr)
			}
			if err != authd.ErrSignInGone {
				t.Fatalf("verification raced by a change of address: %v, want ErrSignInGone", err)
			}
			if _, _, err := s.SignInWait(t.Context(), f.ID, secret); err != nil {
				t.Fatalf("wait: %v", err)
			}
			if to, _, _ := s.SignInWait(t.Context(), f.ID, secret); to != "" {
				t.Fatalf("the sign-in finished for the victim: %s", to)
			}
		})
	}
	t.Run("send after the verification", func(t *testing.T) {
		s := newSignIn(t)
		f, secret, verifier := s.start(t)
		code, _ := s.mail(t, f, secret, "attacker@example.com")
		g, _ := s.SignInFlow(t.Context(), f.ID)
		if _, err := s.SignInConfirm(t.Context(), f.ID, "", code, "192.0.2.1", g.Match); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SignInSend(t.Context(), f.ID, secret, "victim@example.com", "192.0.2.1", "en"); err != authd.ErrSignInGone {
			t.Fatalf("an address sent to after the approval: %v, want ErrSignInGone", err)
		}
		to, _, err := s.SignInWait(t.Context(), f.ID, secret)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Redeem(t.Context(), authd.TokenRequest{GrantType: "authorization_code", Code: codeOf(t, to), RedirectURI: testRedirect, CodeVerifier: verifier, ClientID: "app"})
		if err != nil {
			t.Fatal(err)
		}
		if info, err := s.UserInfo(t.Context(), res.AccessToken); err != nil || info.Email != "attacker@example.com" {
			t.Fatalf("userinfo: %+v %v, want the verified address", info, err)
		}
	})
}
