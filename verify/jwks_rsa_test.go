package verify_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/authd/authd/verify"
)

// authd publishes an RSA key beside the Ed25519 ones whenever its hosted
// sign-in is on (RS256 ID tokens, OIDC Discovery): the verifiers read the
// Ed25519 keys and ignore it.
func TestParseJWKSIgnoresRSA(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: pub, KeyID: "ed", Algorithm: "EdDSA", Use: "sig"},
		{Key: &rk.PublicKey, KeyID: "rs", Algorithm: "RS256", Use: "sig"},
	}})
	keys, err := verify.ParseJWKS(body)
	if err != nil || len(keys) != 1 || keys["ed"].Algorithm != verify.EdDSA {
		t.Fatalf("ParseJWKS: %v %v, want the Ed25519 key only", keys, err)
	}
}
