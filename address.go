package authd

import (
	"strings"
	"sync"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// MaxEmailLength is the longest address accepted, in characters of its
// ASCII (punycode) form.
const MaxEmailLength = 254

// idnaProfile maps and validates domains as a browser's address bar would
// (UTS #46 with the registration rules' strict label checks).
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

// NormalizeEmail checks an address against DESIGN.md §2 and returns its
// stored form: lowercased, the domain in Unicode NFC. The error, an EINVALID
// *Error with Field "email", says why without repeating the address.
func NormalizeEmail(s string) (string, error) {
	fail := func(msg string) (string, error) {
		return "", &Error{Code: EINVALID, Field: "email", Message: "value is not a valid email address: " + msg}
	}
	if s == "" {
		return fail("An email address cannot be empty.")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return fail("An email address must have an @-sign.")
	}
	local, domain := s[:at], s[at+1:]
	if local == "" {
		return fail("There must be something before the @-sign.")
	}
	if domain == "" {
		return fail("There must be something after the @-sign.")
	}
	if len(local) > 64 {
		return fail("The part before the @-sign is too long.")
	}
	if err := checkDotAtom(local); err != "" {
		return fail(err)
	}
	d := domainOf(domain)
	if d.invalid != "" {
		return fail(d.invalid)
	}
	if len(local)+1+d.asciiLen > MaxEmailLength {
		return fail("The email address is too long.")
	}
	if d.noUnicode {
		return fail("The domain name is not valid.")
	}
	return strings.ToLower(local) + "@" + d.stored, nil
}

// normDomain is what NormalizeEmail makes of a domain as given.
type normDomain struct {
	invalid   string // why it is refused before the length check; "" if not
	asciiLen  int    // its punycode form's length
	noUnicode bool   // refused after the length check: no Unicode form
	stored    string // lowercased Unicode NFC
}

// domains caches normalizeDomain: the IDNA and NFC passes are most of an
// address's check, and a service sees few domains many times. Bounded:
// once full, further domains are worked out every time.
var domains struct {
	sync.RWMutex
	m map[string]normDomain
}

const maxCachedDomains = 4096

func domainOf(domain string) normDomain {
	domains.RLock()
	d, ok := domains.m[domain]
	domains.RUnlock()
	if ok {
		return d
	}
	d = normalizeDomain(domain)
	domains.Lock()
	if domains.m == nil {
		domains.m = make(map[string]normDomain)
	}
	if len(domains.m) < maxCachedDomains {
		domains.m[strings.Clone(domain)] = d
	}
	domains.Unlock()
	return d
}

func normalizeDomain(domain string) normDomain {
	ascii, err := idnaProfile.ToASCII(norm.NFC.String(domain))
	if err != nil || ascii == "" {
		return normDomain{invalid: "The domain name is not valid."}
	}
	if !strings.Contains(ascii, ".") || strings.HasSuffix(ascii, ".") {
		return normDomain{invalid: "The domain name must contain a dot and not end with one."}
	}
	for _, label := range strings.Split(ascii, ".") {
		if label == "" || len(label) > 63 {
			return normDomain{invalid: "The domain name is not valid."}
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return normDomain{invalid: "The domain name contains invalid characters."}
			}
		}
	}
	uni, err := idnaProfile.ToUnicode(ascii)
	if err != nil {
		return normDomain{asciiLen: len(ascii), noUnicode: true}
	}
	return normDomain{asciiLen: len(ascii), stored: norm.NFC.String(strings.ToLower(uni))}
}

// checkDotAtom returns why local is not an RFC 5322 dot-atom of ASCII atext,
// or "" when it is.
func checkDotAtom(local string) string {
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "The part before the @-sign cannot start or end with a period or have two periods in a row."
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c >= 0x80:
			return "The part before the @-sign must be ASCII."
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return "The part before the @-sign contains invalid characters."
		}
	}
	return ""
}

// ASCIIEmail returns a normalised address with its domain in punycode, the
// form SMTP gets.
func ASCIIEmail(email string) (string, error) {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return "", Errorf(EINVALID, "not an address")
	}
	d, err := idnaProfile.ToASCII(email[at+1:])
	if err != nil {
		return "", Errorf(EINVALID, "not an address")
	}
	return email[:at+1] + d, nil
}

// MaxProjectIDLength is the longest project_id accepted.
const MaxProjectIDLength = 64

// ValidProjectID reports whether id is 1–64 of [A-Za-z0-9._-].
func ValidProjectID(id string) bool {
	if len(id) == 0 || len(id) > MaxProjectIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// MaskEmail hides an address for logs: "a***@example.com". Anything that is
// not an address becomes "***". A first byte that is not printable ASCII
// (a multi-byte letter, a control character) is shown as "*".
func MaskEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "***"
	}
	first := addr[:1]
	if addr[0] >= 0x80 || addr[0] < 0x21 {
		first = "*"
	}
	return first + "***@" + addr[at+1:]
}

// Redact returns s with each of addrs masked (MaskEmail) and code replaced
// by "[code]": for a dependency's error text, which may quote them (SMTP
// servers echo recipients), before it is logged.
func Redact(s, code string, addrs ...string) string {
	for _, a := range addrs {
		if a != "" {
			s = strings.ReplaceAll(s, a, MaskEmail(a))
		}
	}
	if code != "" {
		s = strings.ReplaceAll(s, code, "[code]")
	}
	return s
}

// dotlessDomains are the mail providers whose local parts ignore dots
// (a.na@ and ana@ are one inbox), with the one domain each is known by:
// googlemail.com is gmail.com.
var dotlessDomains = map[string]string{"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}

// Mailbox returns the inbox a normalised address delivers to, as the
// budgets count it: the address without its +tag (ana+shop@ is ana@), and
// for the providers that ignore dots (gmail.com, googlemail.com, which is
// gmail.com) without dots either. It is never the identity: users, proofs
// and tokens keep the address as given, normalised.
func Mailbox(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return email
	}
	local, domain := email[:at], email[at+1:]
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	if d, ok := dotlessDomains[domain]; ok {
		if l := strings.ReplaceAll(local, ".", ""); l != "" {
			local = l
		}
		domain = d
	}
	return local + "@" + domain
}
