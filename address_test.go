package authd_test

import (
	"strings"
	"testing"

	"github.com/authd/authd"
)

func TestNormalizeEmail(t *testing.T) {
	ok := []struct{ in, want string }{
		{"ana@example.com", "ana@example.com"},
		{"Ana@Example.COM", "ana@example.com"},
		{"ana@exämple.com", "ana@exämple.com"},
		{"ana@xn--exmple-cua.com", "ana@exämple.com"},
		{"ana@EXÄMPLE.com", "ana@exämple.com"},
		{"ana@exa\u0308mple.com", "ana@exämple.com"}, // decomposed ä: NFC
		{"o'brien+tag@example.com", "o'brien+tag@example.com"},
		{"a.b.c@sub.example.co.uk", "a.b.c@sub.example.co.uk"},
		{"x!#$%&*/=?^_`{|}~-@example.com", "x!#$%&*/=?^_`{|}~-@example.com"},
		{strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
	}
	for _, tc := range ok {
		got, err := authd.NormalizeEmail(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []string{
		"", "ana", "@example.com", "ana@", "ana@@example.com", "ana@example", "ana@example.com.",
		"a b@example.com", "ana@exa mple.com", "ana@example.com\r\nBcc: x@y.z", "\"quoted\"@example.com",
		"Ana <ana@example.com>", "ana(comment)@example.com", "zoë@example.com", ".ana@example.com",
		"ana.@example.com", "an..a@example.com", strings.Repeat("a", 65) + "@example.com",
		"a@" + strings.Repeat("b", 64) + ".com", "a@" + strings.Repeat(strings.Repeat("b", 60)+".", 5) + "com",
		"ana@-example.com", "ana@exa_mple.com", "ana@example.com\x00", "ana@[127.0.0.1]",
	}
	for _, in := range bad {
		if got, err := authd.NormalizeEmail(in); err == nil {
			t.Errorf("NormalizeEmail(%q) = %q, want an error", in, got)
		} else if e, ok := err.(*authd.Error); !ok || e.Code != authd.EINVALID || e.Field != "email" || (len(in) > 3 && strings.Contains(e.Message, in)) {
			t.Errorf("NormalizeEmail(%q): error %v", in, err)
		}
	}
}

func TestASCIIEmail(t *testing.T) {
	got, err := authd.ASCIIEmail("ana@exämple.com")
	if err != nil || got != "ana@xn--exmple-cua.com" {
		t.Fatalf("ASCIIEmail = %q, %v", got, err)
	}
}

func TestValidProjectID(t *testing.T) {
	for _, id := range []string{"shop", "a", "A.b_c-9", strings.Repeat("x", 64)} {
		if !authd.ValidProjectID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"", " ", "shop\r\n", "a b", "ä", "a/b", strings.Repeat("x", 65), "a{b}"} {
		if authd.ValidProjectID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]authd.Rate{
		"10/m": {N: 10, Period: 60e9}, "5/h": {N: 5, Period: 3600e9}, "3/s": {N: 3, Period: 1e9}, "0": {}, "0/h": {},
	} {
		got, err := authd.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "10", "x/m", "-1/m", "10/w", "10/"} {
		if _, err := authd.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

// FuzzNormalizeEmail: whatever comes in, an accepted address is in stored
// form (normalising it again changes nothing), holds no control character
// or space, and fits SMTP once punycoded.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"ana@example.com", "Ana@EXÄMPLE.com", "a@xn--exmple-cua.com", "\"q\"@x.com", "a b@c.d", "a@b@c.d", "a@example.com\r\n", "x@𝄞.example", "a@.com", "a@exa\u0308mple.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := authd.NormalizeEmail(in)
		if err != nil {
			if e, ok := err.(*authd.Error); !ok || e.Code != authd.EINVALID {
				t.Fatalf("error %v is not an EINVALID *Error", err)
			}
			return
		}
		again, err := authd.NormalizeEmail(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeEmail(%q) = %q, which normalises to %q, %v", in, got, again, err)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("accepted address %q holds a space or control character", got)
		}
		ascii, err := authd.ASCIIEmail(got)
		if err != nil || len(ascii) > authd.MaxEmailLength {
			t.Fatalf("accepted %q but its SMTP form is %q, %v", got, ascii, err)
		}
	})
}

func TestMaskEmail(t *testing.T) {
	for in, want := range map[string]string{
		"ana@example.com": "a***@example.com", "a@example.com": "a***@example.com", "a@b": "a***@b",
		"ana@exämple.com": "a***@exämple.com", "zoë@exämple.com": "z***@exämple.com", "é@x.com": "****@x.com",
		"@x.com": "***", "ana@": "***", "not an address": "***", "": "***",
	} {
		if got := authd.MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	got := authd.Redact("550 5.1.1 <ana@example.com>: no such user; code 123456", "123456", "ana@example.com")
	if want := "550 5.1.1 <a***@example.com>: no such user; code [code]"; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}

// Aliases of one inbox share a mailbox: the +tag goes, and where the
// provider ignores dots (gmail.com, googlemail.com, which is gmail.com),
// the dots go too.
func TestMailbox(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ana@example.com", "ana@example.com"},
		{"ana+shop@example.com", "ana@example.com"},
		{"ana+a+b@example.com", "ana@example.com"},
		{"a.na@example.com", "a.na@example.com"}, // dots matter elsewhere
		{"a.na+x@gmail.com", "ana@gmail.com"},
		{"a.n.a@googlemail.com", "ana@gmail.com"},
		{"ana@gmail.com", "ana@gmail.com"},
		{"+tag@example.com", "+tag@example.com"}, // nothing before the tag: kept whole
		{"...@gmail.com", "...@gmail.com"},
		{"ana@exämple.com", "ana@exämple.com"},
	} {
		if got := authd.Mailbox(tc.in); got != tc.want {
			t.Errorf("Mailbox(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNormalizeEmailCached: the domains NormalizeEmail remembers give the
// same answers as the first time, message for message, whatever local
// part comes with them (the length check counts both).
func TestNormalizeEmailCached(t *testing.T) {
	long := strings.Repeat("d", 63) + "." + strings.Repeat("e", 63) + "." + strings.Repeat("f", 63) + ".com" // 195
	inputs := []string{
		"ana@example.com", "Ana@EXAMPLE.com", "ana@exämple.com", "ana@xn--exmple-cua.com", "ana@exa\u0308mple.com",
		"ana@example", "ana@example.com.", "ana@-example.com", "ana@exa_mple.com", "ana@[127.0.0.1]", "ana@xn--a.com",
		"a@" + long, strings.Repeat("a", 64) + "@" + long, strings.Repeat("a", 20) + "@" + long,
	}
	type answer struct{ out, err string }
	ask := func(in string) answer {
		out, err := authd.NormalizeEmail(in)
		if err != nil {
			return answer{out, err.Error()}
		}
		return answer{out, ""}
	}
	first := map[string]answer{}
	for _, in := range inputs {
		first[in] = ask(in)
	}
	if first["a@"+long].err != "" || first[strings.Repeat("a", 64)+"@"+long].err == "" {
		t.Fatalf("the length check: %+v, %+v", first["a@"+long], first[strings.Repeat("a", 64)+"@"+long])
	}
	for range 2 {
		for _, in := range inputs {
			if got := ask(in); got != first[in] {
				t.Errorf("NormalizeEmail(%q) = %+v, then %+v", in, first[in], got)
			}
		}
	}
}
