package verify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/jwstest"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/verify"
)

const issuer = "https://auth.example.com"

// keyPair is a published Ed25519 key.
type keyPair struct {
	kid  string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(kid string) keyPair {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return keyPair{kid, pub, priv}
}

func (k keyPair) jwk() string {
	return `{"kty":"OKP","crv":"Ed25519","use":"sig","alg":"EdDSA","kid":"` + k.kid + `","x":"` + base64.RawURLEncoding.EncodeToString(k.pub) + `"}`
}

func claims(now time.Time, mods ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": issuer, "sub": "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", "aud": "shop",
		"email": "ana@example.com", "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "jti": "0123456789abcdef0123456789abcdef",
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

// jwksServer serves a JWKS whose keys the test changes, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	fetches atomic.Int32
	fail    atomic.Bool
}

func newJWKSServer(t *testing.T, keys ...keyPair) *jwksServer {
	s := &jwksServer{}
	s.set(keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write([]byte(s.body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...keyPair) {
	var b bytes.Buffer
	b.WriteString(`{"keys":[`)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k.jwk())
	}
	b.WriteString(`]}`)
	s.mu.Lock()
	s.body = b.String()
	s.mu.Unlock()
}

// Every forgery and every wrong token is refused with its reason; the
// genuine token passes.
func TestTokenVerifierRefusals(t *testing.T) {
	now := time.Now()
	good, other := newKey("k1"), newKey("k-unknown")
	srv := newJWKSServer(t, good)
	keys := verify.NewJWKS(srv.URL)
	hdr := func() map[string]any { return map[string]any{"kid": "k1", "typ": "JWT"} }
	signed := jwstest.EdDSA(hdr(), claims(now), good.priv)
	cases := []struct {
		name, token, audience, reason string
	}{
		{"genuine", signed, "shop", ""},
		{"expired", jwstest.EdDSA(hdr(), claims(now, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), good.priv), "shop", verify.ReasonExpired},
		{"wrong audience", signed, "other-project", verify.ReasonWrongAudience},
		{"wrong issuer", jwstest.EdDSA(hdr(), claims(now, func(c map[string]any) { c["iss"] = "https://evil.example" }), good.priv), "shop", verify.ReasonWrongIssuer},
		{"tampered", jwstest.Tamper(signed, claims(now, func(c map[string]any) { c["email"] = "eve@example.com" })), "shop", verify.ReasonBadSignature},
		{"unknown kid", jwstest.EdDSA(map[string]any{"kid": "k-unknown"}, claims(now), other.priv), "shop", verify.ReasonUnknownKey},
		{"signed by another key under a known kid", jwstest.EdDSA(hdr(), claims(now), other.priv), "shop", verify.ReasonBadSignature},
		{"alg none", jwstest.None(hdr(), claims(now)), "shop", verify.ReasonUnsupportedAlg},
		{"HS256 keyed with the public key", jwstest.HS256(hdr(), claims(now), good.pub), "shop", verify.ReasonAlgMismatch},
		{"HS256 keyed with the JWK text", jwstest.HS256(hdr(), claims(now), []byte(good.jwk())), "shop", verify.ReasonAlgMismatch},
		{"RS256", jwstest.Unsigned(map[string]any{"alg": "RS256", "kid": "k1"}, claims(now)) + ".AAAA", "shop", verify.ReasonUnsupportedAlg},
		{"not yet valid", jwstest.EdDSA(hdr(), claims(now, func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), good.priv), "shop", verify.ReasonNotYetValid},
		{"email not verified", jwstest.EdDSA(hdr(), claims(now, func(c map[string]any) { c["email_verified"] = false }), good.priv), "shop", verify.ReasonNotVerified},
		{"no exp", jwstest.EdDSA(hdr(), claims(now, func(c map[string]any) { delete(c, "exp") }), good.priv), "shop", verify.ReasonMalformed},
		{"garbage", "not.a.token", "shop", verify.ReasonMalformed},
		{"two segments", "abc.def", "shop", verify.ReasonMalformed},
		{"empty", "", "shop", verify.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verify.TokenVerifier{Keys: keys, Issuer: issuer, Audience: tc.audience}
			c, err := v.Verify(t.Context(), tc.token)
			if got := verify.ReasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if tc.reason == "" && (c.Subject != "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c" || c.Email != "ana@example.com" || !c.EmailVerified || c.Audience[0] != "shop") {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
}

// The other confusion: an EdDSA token presented where the key is an HS256
// secret; and an HS256 token with the right secret passes.
// A key holder's token is read as written: claims with their exact names
// ("EMAIL" is not "email"), and none given twice (two readers could each
// pick another).
func TestTokenClaimsReadStrictly(t *testing.T) {
	now := time.Now()
	good := newKey("k1")
	srv := newJWKSServer(t, good)
	v := &verify.TokenVerifier{Keys: verify.NewJWKS(srv.URL), Issuer: "https://auth.example.com", Audience: "shop"}
	base := fmt.Sprintf(`"iss":"https://auth.example.com","sub":"u1","aud":"shop","email_verified":true,"iat":%d,"exp":%d`, now.Unix(), now.Add(time.Minute).Unix())
	sign := func(payload string) string {
		return jwstest.EdDSARaw(map[string]any{"kid": "k1", "typ": "JWT"}, payload, good.priv)
	}
	c, err := v.Verify(t.Context(), sign(`{`+base+`,"email":"ana@example.com","EMAIL":"eve@example.com","Nonce":"x","nonce":"n1"}`))
	if err != nil || c.Email != "ana@example.com" || c.Nonce != "n1" {
		t.Fatalf("claims %+v, %v: want email and nonce by their exact names", c, err)
	}
	if c, err := v.Verify(t.Context(), sign(`{`+base+`,"EMAIL":"eve@example.com"}`)); err != nil || c.Email != "" {
		t.Fatalf("EMAIL alone read as email: %+v, %v", c, err)
	}
	for name, payload := range map[string]string{
		"email twice":    `{` + base + `,"email":"ana@example.com","email":"eve@example.com"}`,
		"aud twice":      `{` + base + `,"aud":"bank"}`,
		"sub twice":      `{"sub":"u2",` + base + `}`,
		"a list":         `[` + base + `]`,
		"email a number": `{` + base + `,"email":5}`,
	} {
		if _, err := v.Verify(t.Context(), sign(payload)); verify.ReasonOf(err) != verify.ReasonMalformed {
			t.Errorf("%s: %v, want %s", name, err, verify.ReasonMalformed)
		}
	}
}

func TestSharedSecret(t *testing.T) {
	now := time.Now()
	secret := []byte("shared-secret-0123456789abcdef0123456789")
	v := verify.TokenVerifier{Keys: verify.SharedSecret(secret), Issuer: issuer, Audience: "shop"}
	if _, err := v.Verify(t.Context(), jwstest.HS256(map[string]any{"kid": "x"}, claims(now), secret)); err != nil {
		t.Fatalf("HS256 token: %v", err)
	}
	if _, err := v.Verify(t.Context(), jwstest.HS256(map[string]any{"kid": "x"}, claims(now), []byte("another-secret-0123456789abcdef012345"))); verify.ReasonOf(err) != verify.ReasonBadSignature {
		t.Fatalf("HS256 with another secret: %v", err)
	}
	k := newKey("x")
	if _, err := v.Verify(t.Context(), jwstest.EdDSA(map[string]any{"kid": "x"}, claims(now), k.priv)); verify.ReasonOf(err) != verify.ReasonAlgMismatch {
		t.Fatalf("EdDSA token against an HS256 secret: %v", err)
	}
}

// A verifier that names no audience refuses to run rather than accept
// every project's tokens.
func TestTokenVerifierNeedsAudience(t *testing.T) {
	v := verify.TokenVerifier{Keys: verify.SharedSecret("s"), Issuer: issuer}
	if _, err := v.Verify(t.Context(), "a.b.c"); err == nil {
		t.Fatal("a verifier without Audience or AnyAudience ran")
	}
}

// The JWKS is fetched once and cached; a new kid (a rotation) makes it
// fetch again at once, but a stream of unknown kids does not.
func TestJWKSCacheAndRefresh(t *testing.T) {
	now := time.Now()
	var clk atomic.Int64
	clk.Store(now.UnixNano())
	k1, k2 := newKey("k1"), newKey("k2")
	srv := newJWKSServer(t, k1)
	j := verify.NewJWKS(srv.URL)
	j.Now = func() time.Time { return time.Unix(0, clk.Load()) }
	ctx := t.Context()
	for range 3 {
		if _, err := j.Key(ctx, "k1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for three lookups, want 1", n)
	}
	srv.set(k1, k2)
	clk.Add(int64(11 * time.Second)) // past MinRefresh, well within max-age
	if k, err := j.Key(ctx, "k2"); err != nil || !bytes.Equal(k.Key.(ed25519.PublicKey), k2.pub) {
		t.Fatalf("new kid after a rotation: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one refresh for the new kid)", n)
	}
	for range 5 {
		if _, err := j.Key(ctx, "forged"); verify.ReasonOf(err) != verify.ReasonUnknownKey {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("unknown kids caused %d fetches within MinRefresh, want none", n-2)
	}
	// Past the answer's max-age (300 s) the set is fetched again.
	clk.Add(int64(301 * time.Second))
	j.Key(ctx, "k1")
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches after max-age, want 3", n)
	}
	// authd down: known keys still work, unknown ones say so.
	srv.fail.Store(true)
	clk.Add(int64(301 * time.Second))
	if _, err := j.Key(ctx, "k1"); err != nil {
		t.Fatalf("a known key while the JWKS is down: %v", err)
	}
	clk.Add(int64(11 * time.Second))
	for range 2 { // the second within MinRefresh: no fetch, same answer
		if _, err := j.Key(ctx, "k3"); verify.ReasonOf(err) != verify.ReasonKeysUnavailable {
			t.Fatalf("an unknown key while the JWKS is down: %v", err)
		}
	}
}

// Only Ed25519 signing keys are taken from a JWKS: a symmetric key there
// would let anyone who reads the set forge HS256 tokens.
func TestParseJWKSKeepsEd25519Only(t *testing.T) {
	k := newKey("ed")
	body := `{"keys":[` + k.jwk() + `,{"kty":"oct","kid":"sym","k":"c2VjcmV0"},` +
		`{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"enc","x":"` + base64.RawURLEncoding.EncodeToString(k.pub) + `"}]}`
	keys, err := verify.ParseJWKS([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys["ed"].Algorithm != verify.EdDSA {
		t.Fatalf("keys = %v", keys)
	}
}

// v1 proofs: signature, verified, freshness and project.
func TestProofVerifier(t *testing.T) {
	const secret = "proof-secret-0123456789abcdef0123456789"
	now := time.Unix(1764412800, 0)
	h := proof.NewHMAC(secret)
	p := h.Sign(authd.Proof{AuthUserID: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", Email: "zoë@exämple.com", ProjectID: "shop", Verified: true, IssuedAt: now.Unix()})
	v := verify.NewProofVerifier(secret, 15*time.Minute)
	v.Now = func() time.Time { return now.Add(time.Minute) }
	tampered := p
	tampered.Email = "eve@example.com"
	stale := h.Sign(authd.Proof{AuthUserID: p.AuthUserID, Email: p.Email, ProjectID: "shop", Verified: true, IssuedAt: now.Unix() - 3600})
	future := h.Sign(authd.Proof{AuthUserID: p.AuthUserID, Email: p.Email, ProjectID: "shop", Verified: true, IssuedAt: now.Unix() + 3600})
	unverified := h.Sign(authd.Proof{AuthUserID: p.AuthUserID, Email: p.Email, ProjectID: "shop", Verified: false, IssuedAt: now.Unix()})
	cases := []struct {
		name     string
		p        authd.Proof
		audience string
		reason   string
	}{
		{"genuine", p, "shop", ""},
		{"any audience", p, "", ""},
		{"tampered", tampered, "", verify.ReasonBadSignature},
		{"another secret", proof.NewHMAC("another-secret-0123456789abcdef0123").Sign(p), "", verify.ReasonBadSignature},
		{"stale", stale, "", verify.ReasonExpired},
		{"future", future, "", verify.ReasonNotYetValid},
		{"not verified", unverified, "", verify.ReasonNotVerified},
		{"wrong audience", p, "other", verify.ReasonWrongAudience},
		{"missing fields", authd.Proof{Signature: p.Signature}, "", verify.ReasonMalformed},
	}
	for _, tc := range cases {
		if got := verify.ReasonOf(v.Verify(tc.p, tc.audience)); got != tc.reason {
			t.Errorf("%s: reason %q, want %q", tc.name, got, tc.reason)
		}
	}
	if err := v.VerifyMaxAge(stale, "", 2*time.Hour); err != nil {
		t.Errorf("stale proof with a 2 h max age: %v", err)
	}
}
