package proof

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/testenv"
)

// pythonSigner reads one JSON object per line, {"key": hex, "payload": {...}},
// and writes json.dumps(payload, sort_keys=True) and the HMAC-SHA256 of it, as
// the original service computed them, separated by a tab (the message holds
// no raw tab or newline: ensure_ascii escapes them).
const pythonSigner = `
import hashlib, hmac, json, sys
for line in sys.stdin.buffer:
    item = json.loads(line)
    msg = json.dumps(item["payload"], sort_keys=True)
    sig = hmac.new(bytes.fromhex(item["key"]), msg.encode(), hashlib.sha256).hexdigest()
    sys.stdout.write(msg + "\t" + sig + "\n")
`

// TestPythonCompatible checks Message and Signature byte for byte against
// python3's json and hmac modules on random payloads.
func TestPythonCompatible(t *testing.T) {
	python := testenv.LookPath(t, "python3")
	rng := rand.New(rand.NewSource(20251129))
	keys := []string{vectorKey, "", strings.Repeat("k", 100), "clé-secrète-😀"}

	type payload struct {
		AuthUserID string `json:"auth_user_id"`
		Email      string `json:"email"`
		IssuedAt   int64  `json:"issued_at"`
		ProjectID  string `json:"project_id"`
		Verified   bool   `json:"verified"`
	}
	const n = 500
	proofs := make([]authd.Proof, 0, n+1)
	proofs = append(proofs, vectorProof)
	for len(proofs) < cap(proofs) {
		proofs = append(proofs, authd.Proof{
			AuthUserID: randomString(rng),
			Email:      randomString(rng),
			ProjectID:  randomString(rng),
			Verified:   rng.Intn(2) == 0,
			IssuedAt:   randomInt(rng),
		})
	}

	// Python gets the strings through Go's encoding/json, which escapes
	// differently but decodes to the same strings (invalid bytes become
	// U+FFFD there, as in Message).
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for i, p := range proofs {
		err := enc.Encode(struct {
			Key     string  `json:"key"`
			Payload payload `json:"payload"`
		}{hex.EncodeToString([]byte(keys[i%len(keys)])), payload{p.AuthUserID, p.Email, p.IssuedAt, p.ProjectID, p.Verified}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(python, "-c", pythonSigner)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.Bytes())
	}

	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	i := 0
	for ; sc.Scan(); i++ {
		if i >= len(proofs) {
			t.Fatalf("python3 wrote more than %d lines", len(proofs))
		}
		wantMsg, wantSig, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("line %d from python3 has no tab: %q", i, sc.Text())
		}
		p := proofs[i]
		if got := string(Message(p)); got != wantMsg {
			t.Errorf("payload %d (%+v):\n Go     %s\n Python %s", i, p, got, wantMsg)
			continue
		}
		if got := NewHMAC(keys[i%len(keys)]).Signature(p); got != wantSig {
			t.Errorf("payload %d: Go signature %s, Python %s", i, got, wantSig)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(proofs) {
		t.Fatalf("python3 answered %d of %d payloads", i, len(proofs))
	}
}

// randomString returns a string mixing every class of character the encoder
// treats differently; one in 20 is a few KB long.
func randomString(rng *rand.Rand) string {
	n := rng.Intn(40)
	switch rng.Intn(20) {
	case 0:
		n = 1000 + rng.Intn(3000)
	case 1:
		n = 0
	}
	var b strings.Builder
	for range n {
		switch k := rng.Intn(100); {
		case k < 40: // printable ASCII
			b.WriteByte(byte(' ' + rng.Intn('~'-' '+1)))
		case k < 50:
			b.WriteByte(`<>&/"\'`[rng.Intn(7)])
		case k < 58: // control characters and DEL
			if rng.Intn(8) == 0 {
				b.WriteByte(0x7f)
			} else {
				b.WriteByte(byte(rng.Intn(0x20)))
			}
		case k < 66: // Latin-1
			b.WriteRune(rune(0x80 + rng.Intn(0x80)))
		case k < 80: // the rest of the BMP, surrogates excluded
			r := rune(0x100 + rng.Intn(0x10000-0x100))
			if !utf8.ValidRune(r) {
				r = 0x2028
			}
			b.WriteRune(r)
		case k < 84:
			b.WriteRune([]rune{0x2028, 0x2029, 0xfeff, 0xfffd, 0xffff, 0xd7ff, 0xe000}[rng.Intn(7)])
		case k < 92: // emoji and the musical symbols
			b.WriteRune([]rune{0x1F600, 0x1F44D, 0x1F1EB, 0x1D11E, 0x10000}[rng.Intn(5)] + rune(rng.Intn(16)))
		case k < 98: // anywhere above the BMP
			b.WriteRune(rune(0x10000 + rng.Intn(0x110000-0x10000)))
		default: // invalid UTF-8: U+FFFD on both sides
			b.WriteString([]string{"\xff", "\xc3", "\xed\xa0\x80", "\x80\x80"}[rng.Intn(4)])
		}
	}
	return b.String()
}

func randomInt(rng *rand.Rand) int64 {
	switch rng.Intn(8) {
	case 0:
		return 0
	case 1:
		return []int64{math.MaxInt64, math.MinInt64, -1, 1}[rng.Intn(4)]
	case 2:
		return rng.Int63()
	case 3:
		return -rng.Int63n(1 << 40)
	default:
		return 1_700_000_000 + rng.Int63n(1<<30)
	}
}
