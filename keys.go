package authd

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Keys are the keys authd derives from AUTHD_MASTER_KEY, each with its own
// HKDF label. None of them is ever derived from SECRET_KEY, which every
// consumer of the v1 proof holds.
type Keys struct {
	Code    []byte // hashes codes at rest
	Address []byte // names addresses in the code store
	Mail    []byte // encrypts queued mail jobs
	Token   []byte // encrypts JWT private keys at rest
}

// DeriveKeys derives the Keys from the master key.
func DeriveKeys(master []byte) (Keys, error) {
	if len(master) < 32 {
		return Keys{}, fmt.Errorf("master key: want at least 32 bytes, got %d", len(master))
	}
	derive := func(label string) ([]byte, error) {
		return hkdf.Key(sha256.New, master, nil, "authd/v1/"+label, 32)
	}
	var k Keys
	var err error
	for _, d := range []struct {
		dst   *[]byte
		label string
	}{{&k.Code, "code-hash"}, {&k.Address, "address-key"}, {&k.Mail, "mail-job"}, {&k.Token, "token-key"}} {
		if *d.dst, err = derive(d.label); err != nil {
			return Keys{}, err
		}
	}
	return k, nil
}

// CodeHash binds a code to its project and address: a hash taken for one
// (project, address) never matches another's.
func CodeHash(key []byte, project, address, code string) []byte {
	m := hmac.New(sha256.New, key)
	// Length-prefixed fields: no two (project, address, code) triples share
	// an input.
	for _, f := range []string{project, address, code} {
		fmt.Fprintf(m, "%d:%s", len(f), f)
	}
	return m.Sum(nil)
}

// AddressKey names a normalised address in the code store without revealing
// it: a leaked store dump shows neither codes nor addresses.
func AddressKey(key []byte, address string) string {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, address)
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// NewCode returns n uniform decimal digits read from r (crypto/rand in
// production). Rejection sampling: no modulo bias.
func NewCode(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 250 { // 250 = 25 * 10: keeps every digit equally likely
				out = append(out, '0'+b%10)
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}

// NewID returns 128 random bits from r, hex-encoded.
func NewID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
