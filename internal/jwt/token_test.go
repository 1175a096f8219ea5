package jwt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/jwstest"
	"github.com/authd/authd/verify"
)

// memKeys is an authd.KeyStore in memory for these tests (the real stores
// run the contract suite in internal/storetest). down makes every call fail
// as a database that does not answer.
type memKeys struct {
	mu   sync.Mutex
	keys []authd.SigningKey
	down bool
}

func (m *memKeys) SigningKeys(context.Context) ([]authd.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, authd.Unavailable("key store", errors.New("down"))
	}
	out := slices.Clone(m.keys)
	slices.SortStableFunc(out, func(a, b authd.SigningKey) int { return a.ActiveFrom.Compare(b.ActiveFrom) })
	return out, nil
}

func (m *memKeys) EnsureSigningKey(ctx context.Context, gen func() (authd.SigningKey, error)) ([]authd.SigningKey, error) {
	m.mu.Lock()
	if len(m.keys) == 0 && !m.down {
		k, err := gen()
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		m.keys = append(m.keys, k)
	}
	m.mu.Unlock()
	return m.SigningKeys(ctx)
}

func (m *memKeys) AddSigningKey(_ context.Context, k authd.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, k)
	return nil
}

func (m *memKeys) DeleteSigningKey(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range m.keys {
		if k.ID == id {
			m.keys = slices.Delete(m.keys, i, i+1)
			return nil
		}
	}
	return authd.Errorf(authd.ENOTFOUND, "no key")
}

func (m *memKeys) ResealSigningKey(_ context.Context, id string, prev, next []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range m.keys {
		if k.ID == id {
			if !bytes.Equal(k.SealedPrivateKey, prev) {
				return authd.Errorf(authd.EINVALID, "changed")
			}
			m.keys[i].SealedPrivateKey = next
			return nil
		}
	}
	return authd.Errorf(authd.ENOTFOUND, "no key")
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testIssuer = "https://auth.example.com"

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func masterKey(t testing.TB) []byte {
	k, err := authd.DeriveKeys(bytes.Repeat([]byte("m"), 32))
	if err != nil {
		t.Fatal(err)
	}
	return k.Token
}

func newStoreSet(t testing.TB, store authd.KeyStore, c *clock) (*Set, *StoreSource) {
	t.Helper()
	src := &StoreSource{Store: store, Key: masterKey(t), Now: c.Now}
	s, err := New(context.Background(), src, Options{Issuer: testIssuer, Alg: verify.EdDSA, TTL: 15 * time.Minute, Now: c.Now, CacheMaxAge: 5 * time.Minute})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, src
}

func claimsFor(c *clock) authd.TokenClaims {
	return authd.TokenClaims{Subject: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", Audience: "shop", Email: "zoë@exämple.com", IssuedAt: c.Now()}
}

// The token's signature and claims, checked by hand (crypto/ed25519 over
// the compact JWS, the key read from the JWKS by hand): not by go-jose,
// which signed it.
func TestTokenCheckedIndependently(t *testing.T) {
	c := &clock{t: t0}
	s, _ := newStoreSet(t, &memKeys{}, c)
	cl := claimsFor(c)
	cl.Nonce = "n-0S6_WzA2Mj"
	tok, err := s.IssueToken(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresIn != 15*time.Minute || tok.KeyID == "" || tok.KeyID != s.SigningKeyID() {
		t.Fatalf("token = %+v", tok)
	}
	pub, err := jwstest.JWKSKey(s.JWKS(), tok.KeyID)
	if err != nil {
		t.Fatalf("the signing key is not in the JWKS: %v\n%s", err, s.JWKS())
	}
	header, claims, err := jwstest.VerifyEdDSA(tok.Raw, pub)
	if err != nil {
		t.Fatalf("hand-made EdDSA check: %v", err)
	}
	if header["kid"] != tok.KeyID || header["typ"] != "JWT" {
		t.Errorf("header = %v", header)
	}
	want := map[string]string{
		"iss": testIssuer, "sub": cl.Subject, "aud": "shop", "email": "zoë@exämple.com",
		"iat": "1795953600", "exp": "1795954500", "nonce": cl.Nonce,
	}
	for k, v := range want {
		if got := jsonString(claims[k]); got != v {
			t.Errorf("claim %s = %q, want %q", k, got, v)
		}
	}
	if claims["email_verified"] != true {
		t.Errorf("email_verified = %v", claims["email_verified"])
	}
	if jti, _ := claims["jti"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(jti) {
		t.Errorf("jti = %v", claims["jti"])
	}
	// Another token has another jti, and no nonce when none was asked for.
	tok2, _ := s.IssueToken(t.Context(), claimsFor(c))
	_, claims2, _ := jwstest.Parse(tok2.Raw)
	if claims2["jti"] == claims["jti"] {
		t.Error("two tokens share a jti")
	}
	if _, ok := claims2["nonce"]; ok {
		t.Error("nonce present without one asked for")
	}
}

func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

// The private key is stored sealed: the row holds neither the seed nor the
// key, and another AUTHD_MASTER_KEY cannot open it.
func TestKeySealedAtRest(t *testing.T) {
	c := &clock{t: t0}
	store := &memKeys{}
	s, _ := newStoreSet(t, store, c)
	keys, _ := store.SigningKeys(t.Context())
	if len(keys) != 1 || keys[0].ID != s.SigningKeyID() {
		t.Fatalf("stored keys: %+v", keys)
	}
	priv, _, err := open([][]byte{masterKey(t)}, keys[0].ID, keys[0].SealedPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(keys[0].SealedPrivateKey, priv.Seed()) {
		t.Fatal("the seed is stored in clear")
	}
	other, _ := authd.DeriveKeys(bytes.Repeat([]byte("x"), 32))
	_, err = New(t.Context(), &StoreSource{Store: store, Key: other.Token}, Options{Issuer: testIssuer, TTL: time.Minute})
	if !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
		t.Fatalf("New with another master key = %v, want ErrMasterKeyOpensNothing", err)
	}
	// A sealed key moved to another kid does not open either.
	if _, _, err := open([][]byte{masterKey(t)}, "another-kid", keys[0].SealedPrivateKey); err == nil {
		t.Fatal("a sealed key opened under another kid")
	}
}

// Rotation: the new key is published at once and signs after the delay; a
// token signed before still verifies until it expires; the old key leaves
// the JWKS once every token it signed has expired, and Prune deletes it.
func TestRotation(t *testing.T) {
	c := &clock{t: t0}
	store := &memKeys{}
	s, src := newStoreSet(t, store, c)
	old := s.SigningKeyID()
	before, _ := s.IssueToken(t.Context(), claimsFor(c))
	v := verify.TokenVerifier{Keys: s, Issuer: testIssuer, Audience: "shop", Now: c.Now}

	k, err := src.Rotate(t.Context(), time.Minute, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.SigningKeyID() != old {
		t.Fatal("switched before the delay")
	}
	if _, err := jwstest.JWKSKey(s.JWKS(), k.ID); err != nil {
		t.Fatalf("the new key is not published at once: %v", err)
	}

	c.Add(time.Minute)
	s.Refresh(t.Context())
	after, _ := s.IssueToken(t.Context(), claimsFor(c))
	if after.KeyID != k.ID || s.SigningKeyID() != k.ID {
		t.Fatalf("after the delay tokens carry kid %s, want %s", after.KeyID, k.ID)
	}
	for _, tok := range []authd.Token{before, after} {
		if _, err := v.Verify(t.Context(), tok.Raw); err != nil {
			t.Errorf("token of kid %s: %v", tok.KeyID, err)
		}
	}
	// Just before the old key's last token expires (+ a minute of skew):
	// still published, still verifying.
	c.Add(15*time.Minute + 30*time.Second)
	s.Refresh(t.Context())
	if _, err := jwstest.JWKSKey(s.JWKS(), old); err != nil {
		t.Fatalf("the old key left the JWKS while its tokens may live: %v", err)
	}
	c.Add(time.Minute)
	s.Refresh(t.Context())
	if _, err := jwstest.JWKSKey(s.JWKS(), old); err == nil {
		t.Fatal("the old key is still published after its tokens expired")
	}
	if _, err := v.Verify(t.Context(), before.Raw); verify.ReasonOf(err) != verify.ReasonUnknownKey && verify.ReasonOf(err) != verify.ReasonExpired {
		t.Fatalf("old token after retirement: %v", err)
	}
	if err := src.Prune(t.Context(), c.Now(), 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	keys, _ := store.SigningKeys(t.Context())
	if len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("after Prune: %+v, want the new key alone", keys)
	}
}

// --delay 0 switches at once; List shows the states.
func TestRotateNowAndList(t *testing.T) {
	c := &clock{t: t0}
	store := &memKeys{}
	s, src := newStoreSet(t, store, c)
	old := s.SigningKeyID()
	c.Add(time.Second)
	k, err := src.Rotate(t.Context(), 0, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.Refresh(t.Context())
	if s.SigningKeyID() != k.ID {
		t.Fatalf("--delay 0 did not switch at once")
	}
	later, _ := src.Rotate(t.Context(), time.Hour, 15*time.Minute)
	infos, err := List(t.Context(), src, c.Now(), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, ki := range infos {
		got[ki.ID] = ki.State
	}
	want := map[string]string{old: "retiring", k.ID: "signing", later.ID: "next"}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("key %s: state %q, want %q (all: %v)", id, got[id], st, got)
		}
	}
	// The same states from the stored rows alone, without the key that
	// seals them.
	stored, err := ListStored(t.Context(), store, c.Now(), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, ki := range stored {
		if want[ki.ID] != ki.State {
			t.Errorf("ListStored: key %s: state %q, want %q", ki.ID, ki.State, want[ki.ID])
		}
	}
	if len(stored) != len(want) {
		t.Errorf("ListStored: %d keys, want %d", len(stored), len(want))
	}
}

// Instances polling one store follow a rotation without a restart, and
// publish the same set.
func TestRunFollowsRotation(t *testing.T) {
	store := &memKeys{}
	var sets []*Set
	for range 2 {
		s, err := New(t.Context(), &StoreSource{Store: store, Key: masterKey(t)}, Options{Issuer: testIssuer, TTL: time.Minute, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go s.Run(ctx)
		sets = append(sets, s)
	}
	if sets[0].SigningKeyID() != sets[1].SigningKeyID() {
		t.Fatal("two instances made two first keys")
	}
	k, err := (&StoreSource{Store: store, Key: masterKey(t)}).Rotate(t.Context(), 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range sets {
		for s.SigningKeyID() != k.ID {
			if time.Now().After(deadline) {
				t.Fatal("an instance did not follow the rotation within 5 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !bytes.Equal(sets[0].JWKS(), sets[1].JWKS()) {
		t.Fatalf("JWKS differ:\n%s\n%s", sets[0].JWKS(), sets[1].JWKS())
	}
}

// HS256: the shared secret signs, and is never published.
func TestHS256NeverPublished(t *testing.T) {
	secret := []byte("hs256-secret-0123456789abcdef0123456789")
	s, err := New(t.Context(), Secret(secret), Options{Issuer: testIssuer, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.JWKS()) != `{"keys":[]}` || s.Algorithm() != verify.HS256 {
		t.Fatalf("JWKS %s, alg %s", s.JWKS(), s.Algorithm())
	}
	if bytes.Contains(s.JWKS(), secret) {
		t.Fatal("secret in JWKS")
	}
	tok, err := s.IssueToken(t.Context(), authd.TokenClaims{Subject: "u", Audience: "shop", Email: "a@example.com", IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := jwstest.VerifyHS256(tok.Raw, secret); err != nil {
		t.Fatalf("hand-made HS256 check: %v", err)
	}
	v := verify.TokenVerifier{Keys: verify.SharedSecret(secret), Issuer: testIssuer, Audience: "shop"}
	if _, err := v.Verify(t.Context(), tok.Raw); err != nil {
		t.Fatal(err)
	}
}

// TOKEN_KEY_FILE: the first private key signs, every key is published.
func TestFileSource(t *testing.T) {
	a, _ := GenerateKeyPEM(rand.Reader)
	b, _ := GenerateKeyPEM(rand.Reader)
	path := filepath.Join(t.TempDir(), "keys.pem")
	os.WriteFile(path, append(a, b...), 0o600)
	s, err := New(t.Context(), FileSource{Path: path}, Options{Issuer: testIssuer, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []map[string]any }
	json.Unmarshal(s.JWKS(), &set)
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != s.SigningKeyID() {
		t.Fatalf("JWKS = %s, signing %s", s.JWKS(), s.SigningKeyID())
	}
	for _, k := range set.Keys {
		if _, ok := k["d"]; ok {
			t.Fatal("a private key is published")
		}
	}
	infos, err := List(t.Context(), FileSource{Path: path}, time.Now(), time.Minute)
	if err != nil || len(infos) != 2 {
		t.Fatalf("List: %v %v", infos, err)
	}
	for _, ki := range infos {
		want := "published"
		if ki.ID == s.SigningKeyID() {
			want = "signing"
		}
		if ki.State != want {
			t.Errorf("key %s: state %q, want %q", ki.ID, ki.State, want)
		}
	}
	// Swapping the file's order switches the signer at the next refresh.
	os.WriteFile(path, append(b, a...), 0o600)
	first := s.SigningKeyID()
	s.Refresh(t.Context())
	if s.SigningKeyID() == first {
		t.Fatal("the signer did not follow the file")
	}
	for _, bad := range [][]byte{nil, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if err := CheckPEM(bad); err == nil {
			t.Errorf("CheckPEM(%q) accepted", bad)
		}
	}
}

// A database down at start leaves the set empty and not ready; it fills at
// the next refresh once the database answers.
func TestOpenWhileDatabaseDown(t *testing.T) {
	store := &memKeys{down: true}
	s, err := Open(t.Context(), &StoreSource{Store: store, Key: masterKey(t)}, Options{Issuer: testIssuer, Alg: verify.EdDSA, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready(t.Context()) == nil {
		t.Fatal("ready without keys")
	}
	if _, err := s.IssueToken(t.Context(), authd.TokenClaims{IssuedAt: time.Now()}); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("IssueToken without keys = %v, want EUNAVAILABLE", err)
	}
	if string(s.JWKS()) != `{"keys":[]}` || s.Algorithm() != verify.EdDSA {
		t.Fatalf("JWKS %s alg %s", s.JWKS(), s.Algorithm())
	}
	store.mu.Lock()
	store.down = false
	store.mu.Unlock()
	if err := s.Refresh(t.Context()); err != nil || s.Ready(t.Context()) != nil {
		t.Fatalf("after the database came back: %v", err)
	}
}

// BenchmarkIssueToken is what signing adds to a v2 verify-code.
func BenchmarkIssueToken(b *testing.B) {
	c := &clock{t: t0}
	s, _ := newStoreSet(b, &memKeys{}, c)
	cl := claimsFor(c)
	b.ReportAllocs()
	var took []time.Duration
	for b.Loop() {
		t := time.Now()
		if _, err := s.IssueToken(context.Background(), cl); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds())/1000, "p99-µs")
}
