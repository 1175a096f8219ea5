package verify_test

import (
	"context"
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/jwstest"
	"github.com/authd/authd/verify"
)

// staticKeys is a KeySource holding one key: no network in a fuzz target.
type staticKeys map[string]verify.Key

func (s staticKeys) Key(_ context.Context, kid string) (verify.Key, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return verify.Key{}, &verify.Error{Reason: verify.ReasonUnknownKey}
}

// FuzzTokenVerify: whatever the token, Verify does not panic, refuses with
// a documented reason, and accepts only the claims the key's holder signed
// (a mutation may change a token's bytes — base64 padding bits — but
// never what it says).
func FuzzTokenVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	k := newKey("k1")
	c := claims(now)
	hdr := map[string]any{"kid": "k1", "typ": "JWT"}
	genuine := jwstest.EdDSA(hdr, c, k.priv)
	for _, s := range []string{
		genuine,
		jwstest.Tamper(genuine, claims(now, func(m map[string]any) { m["email"] = "eve@example.com" })),
		jwstest.None(hdr, c),
		jwstest.HS256(hdr, c, k.pub),
		jwstest.Unsigned(map[string]any{"alg": "EdDSA", "kid": "k1", "crit": []string{"x"}}, c) + ".AAAA",
		"a.b.c", "..", "", strings.Repeat("A", 300),
	} {
		f.Add(s)
	}
	v := verify.TokenVerifier{
		Keys:   staticKeys{"k1": {ID: "k1", Algorithm: verify.EdDSA, Key: ed25519.PublicKey(k.pub)}},
		Issuer: issuer, Audience: "shop", Now: func() time.Time { return now },
	}
	want, err := v.Verify(context.Background(), genuine)
	if err != nil {
		f.Fatalf("the genuine token is refused: %v", err)
	}
	reasons := map[string]bool{
		verify.ReasonMalformed: true, verify.ReasonUnsupportedAlg: true, verify.ReasonAlgMismatch: true,
		verify.ReasonUnknownKey: true, verify.ReasonBadSignature: true, verify.ReasonWrongIssuer: true,
		verify.ReasonWrongAudience: true, verify.ReasonExpired: true, verify.ReasonNotYetValid: true,
		verify.ReasonNotVerified: true,
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := v.Verify(context.Background(), raw)
		if err != nil {
			if r := verify.ReasonOf(err); !reasons[r] {
				t.Fatalf("refused with undocumented reason %q: %v", r, err)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("accepted claims nobody signed: %+v", got)
		}
	})
}
