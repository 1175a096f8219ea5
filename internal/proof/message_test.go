package proof

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/authd/authd"
)

// The test vector of DESIGN.md §1.
const (
	vectorKey       = "change-me-to-32-random-bytes-0123456789"
	vectorMessage   = `{"auth_user_id": "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", "email": "ana@example.com", "issued_at": 1764412800, "project_id": "shop", "verified": true}`
	vectorSignature = "b7c421b4a534b9ee026e35d56656f333d5001937801d3c86f0dcb279c1060996"
)

var vectorProof = authd.Proof{
	AuthUserID: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c",
	Email:      "ana@example.com",
	ProjectID:  "shop",
	Verified:   true,
	IssuedAt:   1764412800,
}

func TestMessageVector(t *testing.T) {
	if got := string(Message(vectorProof)); got != vectorMessage {
		t.Fatalf("Message(vector)\n got %s\nwant %s", got, vectorMessage)
	}
	// The signature field is not part of the message.
	p := vectorProof
	p.Signature = "anything"
	if got := string(Message(p)); got != vectorMessage {
		t.Fatalf("Message depends on Signature: %s", got)
	}
}

func TestMessageFields(t *testing.T) {
	tests := []struct {
		name string
		p    authd.Proof
		want string
	}{
		{"zero", authd.Proof{}, `{"auth_user_id": "", "email": "", "issued_at": 0, "project_id": "", "verified": false}`},
		{"negative", authd.Proof{IssuedAt: -5, Verified: true}, `{"auth_user_id": "", "email": "", "issued_at": -5, "project_id": "", "verified": true}`},
		{"max", authd.Proof{IssuedAt: math.MaxInt64}, `{"auth_user_id": "", "email": "", "issued_at": 9223372036854775807, "project_id": "", "verified": false}`},
		{"min", authd.Proof{IssuedAt: math.MinInt64}, `{"auth_user_id": "", "email": "", "issued_at": -9223372036854775808, "project_id": "", "verified": false}`},
		{"design example", authd.Proof{AuthUserID: "u", Email: "zoë<x>@exämple.com", ProjectID: "p.1_-", IssuedAt: 1},
			`{"auth_user_id": "u", "email": "zo\u00eb<x>@ex\u00e4mple.com", "issued_at": 1, "project_id": "p.1_-", "verified": false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Message(tt.p)); got != tt.want {
				t.Errorf("Message\n got %s\nwant %s", got, tt.want)
			}
			// AppendMessage appends, leaving dst's contents alone.
			if got := string(AppendMessage([]byte("x"), tt.p)); got != "x"+tt.want {
				t.Errorf("AppendMessage = %s", got)
			}
		})
	}
}

// TestAppendPyString pins each escape to what Python 3's json.dumps writes
// (ensure_ascii=True); TestPythonCompatible checks the same against python3.
func TestAppendPyString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"plain ASCII ~ 0-9", `"plain ASCII ~ 0-9"`},
		{"zoë<x>@exämple.com", `"zo\u00eb<x>@ex\u00e4mple.com"`}, // DESIGN.md §1
		{`<>&/'`, `"<>&/'"`}, // no HTML-safe escaping
		{`"`, `"\""`},
		{`\`, `"\\"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"\x00", `"\u0000"`},
		{"\x01\x0b\x1f", `"\u0001\u000b\u001f"`},
		{"\x7f", `"\u007f"`}, // DEL is outside ' '..'~': escaped
		{"\u0080\u00ff", `"\u0080\u00ff"`},
		{"\u0100\u0abc\u2028\u2029", `"\u0100\u0abc\u2028\u2029"`},
		{"\ufeff\ufffd\uffff", `"\ufeff\ufffd\uffff"`},
		{"\U00010000", `"\ud800\udc00"`},
		{"\U0001D11E", `"\ud834\udd1e"`}, // musical symbol G clef
		{"😀", `"\ud83d\ude00"`},
		{"\U0010FFFF", `"\udbff\udfff"`},
		{"a😀b€c", `"a\ud83d\ude00b\u20acc"`},
		// Invalid UTF-8: one \ufffd per bad byte, never a panic.
		{"\xff", `"\ufffd"`},
		{"a\xc3", `"a\ufffd"`},
		{"\xc3(", `"\ufffd("`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // an encoded surrogate
		{"\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`},
	}
	for _, tt := range tests {
		if got := string(appendPyString(nil, tt.in)); got != tt.want {
			t.Errorf("appendPyString(%+q) = %s, want %s", tt.in, got, tt.want)
		}
		if got := pyStringLen(tt.in); got != len(tt.want) {
			t.Errorf("pyStringLen(%+q) = %d, want %d", tt.in, got, len(tt.want))
		}
	}
}

func TestMessageAllocs(t *testing.T) {
	p := vectorProof
	p.Email = "zoë<x>@exämple.com😀"
	if n := testing.AllocsPerRun(100, func() { Message(p) }); n != 1 {
		t.Errorf("Message allocates %v times, want 1", n)
	}
}

// FuzzMessage checks the properties consumers depend on: the message is
// printable ASCII JSON holding exactly the five fields, in sorted order, with
// the values given (invalid UTF-8 read as U+FFFD per byte), and the signature
// over it verifies and breaks when any field changes.
func FuzzMessage(f *testing.F) {
	v := vectorProof
	f.Add(v.AuthUserID, v.Email, v.ProjectID, v.Verified, v.IssuedAt)
	f.Add("u", "zoë<x>@exämple.com", "p", false, int64(0))
	f.Add("\x00\x7f\"\\/", "😀\U0001D11E\u2028", "\xff\xc3", true, int64(-1))
	f.Add("", "", "", false, int64(math.MaxInt64))
	signer := NewHMAC(vectorKey)
	f.Fuzz(func(t *testing.T, authUserID, email, projectID string, verified bool, issuedAt int64) {
		p := authd.Proof{AuthUserID: authUserID, Email: email, ProjectID: projectID, Verified: verified, IssuedAt: issuedAt}
		msg := Message(p)
		if n := messageLen(p); len(msg) != n {
			t.Fatalf("messageLen = %d, but the message has %d bytes: %q", n, len(msg), msg)
		}
		for i, c := range msg {
			if c < ' ' || c > '~' {
				t.Fatalf("byte %d of the message is %#x, not printable ASCII: %q", i, c, msg)
			}
		}
		checkKeys(t, msg)

		var got struct {
			AuthUserID string `json:"auth_user_id"`
			Email      string `json:"email"`
			IssuedAt   int64  `json:"issued_at"`
			ProjectID  string `json:"project_id"`
			Verified   bool   `json:"verified"`
		}
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("message %q does not decode: %v", msg, err)
		}
		// string([]rune(s)) turns each invalid byte into U+FFFD, as the encoder.
		if got.AuthUserID != string([]rune(authUserID)) || got.Email != string([]rune(email)) ||
			got.ProjectID != string([]rune(projectID)) || got.Verified != verified || got.IssuedAt != issuedAt {
			t.Fatalf("message %q decodes to %+v, want %+v", msg, got, p)
		}

		signed := signer.Sign(p)
		if !signer.Verify(signed) {
			t.Fatalf("Verify(Sign(p)) = false for %+v", p)
		}
		tampered := []authd.Proof{signed, signed, signed, signed, signed, signed, signed}
		tampered[0].AuthUserID += "x"
		tampered[1].Email += "x"
		tampered[2].ProjectID += "x"
		tampered[3].Verified = !verified
		tampered[4].IssuedAt++
		tampered[5].Signature = flipHex(signed.Signature)
		tampered[6].Signature = strings.ToUpper(signed.Signature[:1]) + signed.Signature[1:]
		for i, tp := range tampered {
			if tp.Signature == signed.Signature && i >= 5 {
				continue // ToUpper of a digit changes nothing
			}
			if signer.Verify(tp) {
				t.Errorf("tampered proof %d verifies: %+v", i, tp)
			}
		}
	})
}

// checkKeys checks that msg is one JSON object of the five payload keys, in
// sorted order, each with a scalar value, and nothing after it.
func checkKeys(t *testing.T, msg []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	next := func() json.Token {
		t.Helper()
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("message %q: %v", msg, err)
		}
		return tok
	}
	if tok := next(); tok != json.Delim('{') {
		t.Fatalf("message %q starts with %v", msg, tok)
	}
	for _, key := range []string{"auth_user_id", "email", "issued_at", "project_id", "verified"} {
		if tok := next(); tok != key {
			t.Fatalf("message %q: key %v, want %q", msg, tok, key)
		}
		if _, ok := next().(json.Delim); ok {
			t.Fatalf("message %q: %q is not a scalar", msg, key)
		}
	}
	if tok := next(); tok != json.Delim('}') {
		t.Fatalf("message %q: %v after the last key", msg, tok)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("message %q: data after the object (%v)", msg, err)
	}
}

// flipHex changes the last hex digit of sig.
func flipHex(sig string) string {
	last := sig[len(sig)-1]
	if last == '0' {
		last = '1'
	} else {
		last = '0'
	}
	return sig[:len(sig)-1] + string(last)
}
