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

// AddressKey names a normalised address in the code store without revealing
// it: a leaked store dump shows neither codes nor addresses.
func AddressKey(key []byte, address string) string {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, address)
	return hex.EncodeToString(m.Sum(nil)[:16])
}
