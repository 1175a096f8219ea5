package jwt

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

// rsaJWK reads the RSA key kid from a JWKS document, by hand.
func rsaJWK(t *testing.T, jwks []byte, kid string) *rsa.PublicKey {
	t.Helper()
	var set struct {
		Keys []struct{ Kty, Kid, Alg, N, E string }
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid == kid {
			if k.Kty != "RSA" || k.Alg != RS256 {
				t.Fatalf("key %s: kty %s alg %s", kid, k.Kty, k.Alg)
			}
			n, _ := base64.RawURLEncoding.DecodeString(k.N)
			e, _ := base64.RawURLEncoding.DecodeString(k.E)
			return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		}
	}
	t.Fatalf("kid %s not published: %s", kid, jwks)
	return nil
}

// checkRS256 checks raw's RS256 signature with crypto/rsa (not go-jose)
// and returns its header's kid.
func checkRS256(t *testing.T, jwks []byte, raw string) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h struct{ Alg, Kid string }
	json.Unmarshal(hb, &h)
	if h.Alg != RS256 {
		t.Fatalf("alg %q", h.Alg)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(rsaJWK(t, jwks, h.Kid), crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("RS256 signature: %v", err)
	}
	return h.Kid
}

// With RS256 asked for, an RSA key is made once, sealed, published beside
// the Ed25519 one (which stays first and signs the v2 tokens), signs the
// tokens that ask for RS256, rotates with the EdDSA key, and reseals
// under a new master key.
func TestRS256Keys(t *testing.T) {
	c := &clock{t: t0}
	store := &memKeys{}
	src := &StoreSource{Store: store, Key: masterKey(t), Now: c.Now, RS256: true}
	opts := Options{Issuer: testIssuer, Alg: "EdDSA", TTL: 15 * time.Minute, Now: c.Now}
	s, err := New(t.Context(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !s.SignsRS256() {
		t.Fatal("no RS256 signer")
	}
	var rsaKeys int
	for _, k := range store.keys {
		if k.Algorithm == RS256 {
			rsaKeys++
			// Sealed: another master key opens nothing.
			other, _ := authd.DeriveKeys([]byte(strings.Repeat("o", 32)))
			if _, _, err := openRaw([][]byte{other.Token}, k.ID, k.SealedPrivateKey); err == nil {
				t.Fatal("the RSA key opens under another master key")
			}
		}
	}
	if rsaKeys != 1 {
		t.Fatalf("%d RSA keys stored", rsaKeys)
	}
	if err := s.Refresh(t.Context()); err != nil || len(store.keys) != 2 {
		t.Fatalf("a second load made another key: %d keys, %v", len(store.keys), err)
	}
	cl := claimsFor(c)
	v2, err := s.IssueToken(t.Context(), cl)
	if err != nil || !strings.HasPrefix(v2.Raw, "eyJhbGciOiJFZERTQSI") {
		t.Fatalf("the v2 token is not EdDSA: %v", err)
	}
	cl.Algorithm = RS256
	tok, err := s.IssueToken(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	first := checkRS256(t, s.JWKS(), tok.Raw)
	if !strings.Contains(string(s.JWKS()), `"kty":"OKP"`) || strings.Index(string(s.JWKS()), `"OKP"`) > strings.Index(string(s.JWKS()), `"RSA"`) {
		t.Fatalf("the Ed25519 key is not first: %s", s.JWKS())
	}

	// Rotation: both families get a new key; the old RSA key stays
	// published while its tokens live.
	c.Add(time.Second)
	if _, err := src.Rotate(t.Context(), 0, opts.TTL); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok, _ = s.IssueToken(t.Context(), cl)
	if second := checkRS256(t, s.JWKS(), tok.Raw); second == first {
		t.Fatal("the RSA key did not rotate")
	}
	rsaJWK(t, s.JWKS(), first)
	infos, err := List(t.Context(), src, c.Now(), opts.TTL)
	if err != nil || len(infos) != 4 {
		t.Fatalf("keys list: %+v %v", infos, err)
	}
	states := map[string]int{}
	for _, ki := range infos {
		states[ki.Algorithm+" "+ki.State]++
	}
	if states["RS256 signing"] != 1 || states["EdDSA signing"] != 1 || states["RS256 retiring"] != 1 {
		t.Fatalf("states %v", states)
	}

	// A master-key rotation reseals the RSA keys too.
	next, _ := authd.DeriveKeys([]byte(strings.Repeat("n", 32)))
	resealed, _, err := (&StoreSource{Store: store, Key: next.Token, Old: [][]byte{masterKey(t)}}).Reseal(t.Context())
	if err != nil || resealed != 4 {
		t.Fatalf("resealed %d: %v", resealed, err)
	}
	if _, err := New(t.Context(), &StoreSource{Store: store, Key: next.Token, Now: c.Now, RS256: true}, opts); err != nil {
		t.Fatalf("after reseal: %v", err)
	}
}
