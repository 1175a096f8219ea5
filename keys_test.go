package authd_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/authd/authd"
)

// Every digit equally likely at every position: a chi-squared test over
// 60,000 codes (9 degrees of freedom; 27.9 is p = 0.001).
func TestNewCodeUniform(t *testing.T) {
	const n = 10000
	var counts [6][10]int
	for range n {
		c, err := authd.NewCode(rand.Reader, 6)
		if err != nil || !authd.ValidCode(c, 6) {
			t.Fatalf("NewCode = %q, %v", c, err)
		}
		for i := range 6 {
			counts[i][c[i]-'0']++
		}
	}
	for pos := range 6 {
		chi := 0.0
		for d := range 10 {
			diff := float64(counts[pos][d]) - n/10.0
			chi += diff * diff / (n / 10.0)
		}
		if chi > 27.9 || math.IsNaN(chi) {
			t.Errorf("position %d: chi-squared %.1f, digits not uniform: %v", pos, chi, counts[pos])
		}
	}
}

// Bytes 250-255 would bias digits 0-5: they are skipped, not folded.
func TestNewCodeRejectsBiasedBytes(t *testing.T) {
	src := append(bytes.Repeat([]byte{255}, 31), 7)
	src = append(src, bytes.Repeat([]byte{13}, 32)...)
	c, err := authd.NewCode(bytes.NewReader(src), 6)
	if err != nil || c != "733333" {
		t.Fatalf("NewCode = %q, %v; want 733333", c, err)
	}
}

func TestCodeHashBindsProjectAndAddress(t *testing.T) {
	key := []byte("k")
	base := authd.CodeHash(key, "shop", "ana@example.com", "123456")
	for _, other := range [][]byte{
		authd.CodeHash(key, "shop2", "ana@example.com", "123456"),
		authd.CodeHash(key, "shop", "bob@example.com", "123456"),
		authd.CodeHash(key, "shop", "ana@example.com", "123457"),
		authd.CodeHash([]byte("k2"), "shop", "ana@example.com", "123456"),
		authd.CodeHash(key, "sho", "pana@example.com", "123456"),
	} {
		if bytes.Equal(base, other) {
			t.Fatal("two different inputs share a code hash")
		}
	}
}

// The hashes of the codes live in Redis across upgrades: CodeHash is
// HMAC-SHA256 over "%d:%s" of each field, byte for byte.
func TestCodeHashBytes(t *testing.T) {
	key := []byte("k")
	for _, f := range [][3]string{{"shop", "ana@example.com", "123456"}, {"", "", ""}, {strings.Repeat("p", 64), strings.Repeat("a", 254), "000000"}} {
		m := hmac.New(sha256.New, key)
		for _, s := range f {
			fmt.Fprintf(m, "%d:%s", len(s), s)
		}
		if got := authd.CodeHash(key, f[0], f[1], f[2]); !bytes.Equal(got, m.Sum(nil)) {
			t.Errorf("CodeHash%q = %x, want %x", f, got, m.Sum(nil))
		}
	}
}

// Address keys name what Redis holds across upgrades, and the same key
// serves many addresses in turn (its state is reused): each is
// hex(HMAC-SHA256(key, address)[:16]).
func TestAddressKeyBytes(t *testing.T) {
	for _, key := range [][]byte{[]byte("k"), bytes.Repeat([]byte{7}, 32)} {
		for _, a := range []string{"ana@example.com", "", strings.Repeat("b", 300) + "@example.com", "ana@example.com"} {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(a))
			if got, want := authd.AddressKey(key, a), hex.EncodeToString(m.Sum(nil)[:16]); got != want {
				t.Errorf("AddressKey(%q) = %s, want %s", a, got, want)
			}
		}
	}
}

func TestDeriveKeys(t *testing.T) {
	if _, err := authd.DeriveKeys(make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte master key accepted")
	}
	k, err := authd.DeriveKeys(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	all := [][]byte{k.Code, k.Address, k.Mail, k.Token}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if bytes.Equal(all[i], all[j]) {
				t.Fatal("two purposes share a key")
			}
		}
	}
}
