// Package jwstest makes and checks compact JWS tokens by hand, with the
// standard library only, for tests: it is the independent second opinion on
// what internal/jwt signs with go-jose, and it forges the tokens a
// verifier must refuse (alg none, HS256 over a public key, tampered ...).
// Only tests import it.
package jwstest

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

var b64 = base64.RawURLEncoding

func segment(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b64.EncodeToString(b)
}

// Unsigned returns header.payload, ready for a signature.
func Unsigned(header, claims map[string]any) string {
	return segment(header) + "." + segment(claims)
}

// EdDSA signs header and claims with priv; header's alg is set to EdDSA
// unless given.
func EdDSA(header, claims map[string]any, priv ed25519.PrivateKey) string {
	if _, ok := header["alg"]; !ok {
		header["alg"] = "EdDSA"
	}
	in := Unsigned(header, claims)
	return in + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(in)))
}

// EdDSARaw signs payload, a claims object written out as it is (a key
// given twice, a key's letter case: what a map cannot hold), under header.
func EdDSARaw(header map[string]any, payload string, priv ed25519.PrivateKey) string {
	header["alg"] = "EdDSA"
	in := segment(header) + "." + b64.EncodeToString([]byte(payload))
	return in + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(in)))
}

// HS256 signs header and claims with secret under alg HS256.
func HS256(header, claims map[string]any, secret []byte) string {
	header["alg"] = "HS256"
	in := Unsigned(header, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + b64.EncodeToString(m.Sum(nil))
}

// None is an unsigned token with alg "none".
func None(header, claims map[string]any) string {
	header["alg"] = "none"
	return Unsigned(header, claims) + "."
}

// Parse splits a compact JWS into its decoded header and claims, without
// checking anything.
func Parse(token string) (header, claims map[string]any, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("not three segments")
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			return nil, nil, err
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			return nil, nil, err
		}
	}
	return header, claims, nil
}

// VerifyEdDSA checks an EdDSA compact JWS with pub by hand (RFC 8037) and
// returns its header and claims.
func VerifyEdDSA(token string, pub ed25519.PublicKey) (header, claims map[string]any, err error) {
	header, claims, err = Parse(token)
	if err != nil {
		return nil, nil, err
	}
	if header["alg"] != "EdDSA" {
		return nil, nil, errors.New("alg is not EdDSA")
	}
	i := strings.LastIndexByte(token, '.')
	sig, err := b64.DecodeString(token[i+1:])
	if err != nil {
		return nil, nil, err
	}
	if !ed25519.Verify(pub, []byte(token[:i]), sig) {
		return nil, nil, errors.New("bad signature")
	}
	return header, claims, nil
}

// VerifyHS256 checks an HS256 compact JWS with secret by hand.
func VerifyHS256(token string, secret []byte) (header, claims map[string]any, err error) {
	header, claims, err = Parse(token)
	if err != nil {
		return nil, nil, err
	}
	if header["alg"] != "HS256" {
		return nil, nil, errors.New("alg is not HS256")
	}
	i := strings.LastIndexByte(token, '.')
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(token[:i]))
	if b64.EncodeToString(m.Sum(nil)) != token[i+1:] {
		return nil, nil, errors.New("bad signature")
	}
	return header, claims, nil
}

// Tamper returns token with its claims replaced by claims, the signature
// kept.
func Tamper(token string, claims map[string]any) string {
	parts := strings.Split(token, ".")
	return parts[0] + "." + segment(claims) + "." + parts[2]
}

// JWKSKey returns the raw public key of the JWK with kid in a JWK Set
// document, read by hand.
func JWKSKey(jwks []byte, kid string) (ed25519.PublicKey, error) {
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, err
	}
	for _, k := range set.Keys {
		if k["kid"] == kid {
			if k["kty"] != "OKP" || k["crv"] != "Ed25519" {
				return nil, errors.New("not an Ed25519 key")
			}
			x, err := b64.DecodeString(k["x"])
			if err != nil || len(x) != ed25519.PublicKeySize {
				return nil, errors.New("bad x")
			}
			return ed25519.PublicKey(x), nil
		}
	}
	return nil, errors.New("no key " + kid)
}
