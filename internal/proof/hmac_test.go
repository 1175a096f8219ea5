package proof

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/authd/authd"
)

func TestSignatureVector(t *testing.T) {
	h := NewHMAC(vectorKey)
	if got := h.Signature(vectorProof); got != vectorSignature {
		t.Fatalf("Signature(vector) = %s, want %s", got, vectorSignature)
	}
	signed := h.Sign(vectorProof)
	if signed.Signature != vectorSignature {
		t.Fatalf("Sign(vector).Signature = %s", signed.Signature)
	}
	want := vectorProof
	want.Signature = vectorSignature
	if signed != want {
		t.Fatalf("Sign changed other fields: %+v", signed)
	}
	if !h.Verify(signed) {
		t.Fatal("Verify(vector) = false")
	}
}

func TestVerifyRejects(t *testing.T) {
	h := NewHMAC(vectorKey)
	good := h.Sign(vectorProof)
	tests := []struct {
		name   string
		change func(p *authd.Proof)
	}{
		{"auth_user_id", func(p *authd.Proof) { p.AuthUserID = "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7d" }},
		{"email", func(p *authd.Proof) { p.Email = "ana@example.org" }},
		{"project_id", func(p *authd.Proof) { p.ProjectID = "shop2" }},
		{"verified", func(p *authd.Proof) { p.Verified = false }},
		{"issued_at", func(p *authd.Proof) { p.IssuedAt++ }},
		{"signature digit", func(p *authd.Proof) { p.Signature = flipHex(p.Signature) }},
		{"uppercase signature", func(p *authd.Proof) { p.Signature = strings.ToUpper(p.Signature) }},
		{"short signature", func(p *authd.Proof) { p.Signature = p.Signature[:63] }},
		{"long signature", func(p *authd.Proof) { p.Signature += "0" }},
		{"empty signature", func(p *authd.Proof) { p.Signature = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.change(&p)
			if h.Verify(p) {
				t.Errorf("Verify accepted %+v", p)
			}
		})
	}
	t.Run("other key", func(t *testing.T) {
		if NewHMAC(vectorKey + "x").Verify(good) {
			t.Error("a proof signed with another key verifies")
		}
	})
}

// TestSignatureKeys covers keys the HMAC treats differently: empty, longer
// than SHA-256's 64-byte block (hashed first), and non-ASCII (UTF-8 bytes,
// as SECRET_KEY.encode()). The expected values come from python3's
// hmac.new(key.encode(), msg, hashlib.sha256).hexdigest().
func TestSignatureKeys(t *testing.T) {
	tests := []struct {
		key, want string
	}{
		{"", "47a8f241cb1f3b322850ab93d36621d68bc59ed9e52b67bcdc189f5f8ce04661"},
		{strings.Repeat("k", 100), "20c1cbc32abf0aae3a779279f224af0d5b7cd42c4a84a1f170c21203014d0e8c"},
		{"clé-secrète-😀", "0a0ad576820d6c4e1c1ad214953f748f0f2c22dad1c22f8c56d48a3ce9e670ba"},
	}
	for _, tt := range tests {
		if got := NewHMAC(tt.key).Signature(vectorProof); got != tt.want {
			t.Errorf("key %+q: Signature = %s, want %s", tt.key, got, tt.want)
		}
	}
}

// TestConcurrent shares one signer between goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	h := NewHMAC(vectorKey)
	long := vectorProof
	long.Email = strings.Repeat("é", 2*maxPooledMessage) // exercises the pool's cap
	wantLong := NewHMAC(vectorKey).Signature(long)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p, want := vectorProof, vectorSignature
				if (g+i)%7 == 0 {
					p, want = long, wantLong
				}
				if got := h.Signature(p); got != want {
					t.Errorf("goroutine %d: Signature = %s, want %s", g, got, want)
					return
				}
				p.Signature = want
				if !h.Verify(p) {
					t.Errorf("goroutine %d: Verify = false", g)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestSignAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	h := NewHMAC(vectorKey)
	signed := h.Sign(vectorProof)
	if n := testing.AllocsPerRun(100, func() { h.Sign(vectorProof) }); n > 1 {
		t.Errorf("Sign allocates %v times, want at most 1 (the string)", n)
	}
	if n := testing.AllocsPerRun(100, func() { h.Verify(signed) }); n != 0 {
		t.Errorf("Verify allocates %v times, want 0", n)
	}
}

func BenchmarkSign(b *testing.B) {
	h := NewHMAC(vectorKey)
	b.ReportAllocs()
	for b.Loop() {
		h.Sign(vectorProof)
	}
}

func BenchmarkSignEscaped(b *testing.B) {
	h := NewHMAC(vectorKey)
	p := vectorProof
	p.Email = "zoë.ñandú@exämple.com"
	b.ReportAllocs()
	for b.Loop() {
		h.Sign(p)
	}
}

func BenchmarkSignParallel(b *testing.B) {
	h := NewHMAC(vectorKey)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Sign(vectorProof)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	h := NewHMAC(vectorKey)
	signed := h.Sign(vectorProof)
	b.ReportAllocs()
	for b.Loop() {
		if !h.Verify(signed) {
			b.Fatal("Verify = false")
		}
	}
}

func BenchmarkMessage(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Message(vectorProof)
	}
}

// FuzzVerify: a proof taken apart and put back from any JSON verifies only
// when its signature is the one Sign gives; nothing panics.
func FuzzVerify(f *testing.F) {
	h := NewHMAC("change-me-to-32-random-bytes-0123456789")
	good := h.Sign(authd.Proof{AuthUserID: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", Email: "ana@example.com", ProjectID: "shop", Verified: true, IssuedAt: 1764412800})
	b, _ := json.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{"signature":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte(`{"email":"zo\u00eb@ex\u00e4mple.com","verified":false,"issued_at":-1,"signature":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p authd.Proof
		if json.Unmarshal(data, &p) != nil {
			return
		}
		want := h.Sign(p).Signature
		if got := h.Verify(p); got != (p.Signature == want) {
			t.Fatalf("Verify = %v for signature %q (Sign gives %q)", got, p.Signature, want)
		}
	})
}
