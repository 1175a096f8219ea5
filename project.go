package authd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Project is one entry of the optional project registry (PROJECTS_FILE).
type Project struct {
	ID string
	// DisplayName is what mails show; never the raw project_id.
	DisplayName string
	// AllowedOrigins are the browser origins that may call authd for this
	// project (CORS). None by default.
	AllowedOrigins []string
	// Policy is the global policy with this project's own limits applied.
	Policy Policy

	// The project as an OpenID Connect client (client_id = ID), for the
	// hosted sign-in (signin.go). No RedirectURIs: not a client.

	// RedirectURIs are matched exactly, except that a loopback IP literal
	// (http://127.0.0.1, http://[::1]) matches on any port (RFC 8252 §7.3).
	RedirectURIs []string
	// PostLogoutRedirectURIs are where end_session may send the browser
	// back to (exact match).
	PostLogoutRedirectURIs []string
	// ClientSecretSHA256 is the hex SHA-256 of the client secret of a
	// confidential client; "" for a public one (PKCE only). The secret
	// itself is never stored.
	ClientSecretSHA256 string
	// IDTokenAlg is id_token_signed_response_alg: "RS256" or "EdDSA"
	// ("" is EdDSA).
	IDTokenAlg string
	// Accent is the hosted page's accent colour, #rrggbb ("" for the
	// default).
	Accent string
}

// Confidential reports whether the client authenticates with a secret.
func (p Project) Confidential() bool { return p.ClientSecretSHA256 != "" }

// MatchRedirectURI returns the registered redirect URI that uri matches,
// or false: exactly, or for a loopback IP literal on any port (RFC 8252
// §7.3).
func (p Project) MatchRedirectURI(uri string) bool {
	for _, r := range p.RedirectURIs {
		if r == uri {
			return true
		}
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !isLoopbackIP(u.Hostname()) || !validPort(u.Port()) {
		return false
	}
	for _, r := range p.RedirectURIs {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" || ru.Hostname() != u.Hostname() {
			continue
		}
		// The path as sent, not decoded: /%63allback is not /callback.
		if ru.EscapedPath() == u.EscapedPath() && ru.RawQuery == u.RawQuery && ru.Fragment == "" && u.Fragment == "" && u.User == nil {
			return true
		}
	}
	return false
}

func isLoopbackIP(host string) bool {
	return host == "127.0.0.1" || host == "::1"
}

// validPort reports whether port is none or a TCP port, 1 to 65535.
func validPort(port string) bool {
	if port == "" {
		return true
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535 && port[0] != '0'
}

// loopbackOrigin is the origin of a loopback IP literal without its port
// ("http://127.0.0.1", "http://[::1]"), or "" for any other origin or a
// port out of range.
func loopbackOrigin(origin string) string {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || !isLoopbackIP(u.Hostname()) || !validPort(u.Port()) {
		return ""
	}
	if u.Hostname() == "::1" {
		return "http://[::1]"
	}
	return "http://" + u.Hostname()
}

// checkRedirectURI refuses what may not be registered: a fragment, user
// information, plain http other than to the loopback interface, a scheme
// of neither http(s) nor a native app's private-use one (reverse domain,
// RFC 8252 §7.1).
func checkRedirectURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("%q is not an absolute URI", uri)
	}
	switch {
	case u.Fragment != "" || strings.Contains(uri, "#"):
		return fmt.Errorf("%q has a fragment (RFC 6749 §3.1.2)", uri)
	case u.User != nil:
		return fmt.Errorf("%q carries user information", uri)
	case !validPort(u.Port()):
		return fmt.Errorf("%q: the port must be 1 to 65535", uri)
	case u.Scheme == "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", uri)
		}
	case u.Scheme == "http":
		if h := u.Hostname(); !isLoopbackIP(h) && h != "localhost" {
			return fmt.Errorf("%q: plain http only to the loopback interface (127.0.0.1, [::1], localhost)", uri)
		}
	case strings.Contains(u.Scheme, "."):
		// A native app's private-use scheme: com.example.app:/callback.
	default:
		return fmt.Errorf("%q: want https, http to a loopback address, or a reverse-domain scheme of a native app", uri)
	}
	return nil
}

// RedirectOrigin is what a Content-Security-Policy form-action must allow
// for the browser to follow a redirect to uri: its origin, or its scheme
// for a private-use one.
func RedirectOrigin(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

// Registry is the set of known projects. A nil *Registry knows every valid
// project_id: each gets the global policy and the service's name.
type Registry struct {
	byID    map[string]Project
	origins map[string]bool
	// clientOrigins adds the redirect URIs' origins to origins: a single
	// page app calls the token endpoint from where it was redirected to.
	clientOrigins map[string]bool
	// loopbackOrigins are the loopback redirect URIs' origins without
	// port: such a redirect URI matches on any port (RFC 8252 §7.3), so
	// its app calls from any port too.
	loopbackOrigins map[string]bool
}

// NewRegistry checks projects and indexes them.
func NewRegistry(projects []Project) (*Registry, error) {
	r := &Registry{byID: map[string]Project{}, origins: map[string]bool{}, clientOrigins: map[string]bool{}, loopbackOrigins: map[string]bool{}}
	for i, p := range projects {
		if !ValidProjectID(p.ID) {
			return nil, fmt.Errorf("project %d: id must be 1-64 characters of A-Z a-z 0-9 . _ -", i+1)
		}
		if _, dup := r.byID[p.ID]; dup {
			return nil, fmt.Errorf("project %q: listed twice", p.ID)
		}
		p.DisplayName = strings.TrimSpace(p.DisplayName)
		if p.DisplayName == "" {
			return nil, fmt.Errorf("project %q: display_name is required", p.ID)
		}
		if len(p.DisplayName) > 100 || strings.ContainsFunc(p.DisplayName, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("project %q: display_name must be one line of at most 100 bytes", p.ID)
		}
		if err := checkClient(&p); err != nil {
			return nil, fmt.Errorf("project %q: %v", p.ID, err)
		}
		for _, o := range p.AllowedOrigins {
			norm, err := NormalizeOrigin(o)
			if err != nil {
				return nil, fmt.Errorf("project %q: allowed_origins: %v", p.ID, err)
			}
			r.origins[norm] = true
			r.clientOrigins[norm] = true
		}
		for _, u := range p.RedirectURIs {
			if norm, err := NormalizeOrigin(RedirectOrigin(u)); err == nil {
				r.clientOrigins[norm] = true
				if lo := loopbackOrigin(norm); lo != "" {
					r.loopbackOrigins[lo] = true
				}
			}
		}
		r.byID[p.ID] = p
	}
	return r, nil
}

// checkClient checks the OpenID Connect client settings of p.
func checkClient(p *Project) error {
	for _, u := range p.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return fmt.Errorf("redirect_uris: %v", err)
		}
	}
	for _, u := range p.PostLogoutRedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return fmt.Errorf("post_logout_redirect_uris: %v", err)
		}
	}
	if h := p.ClientSecretSHA256; h != "" {
		p.ClientSecretSHA256 = strings.ToLower(h)
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("client_secret_sha256: want the 64 hex digits of the secret's SHA-256")
		}
	}
	switch p.IDTokenAlg {
	case "", "EdDSA", "RS256":
	default:
		return fmt.Errorf("id_token_signed_response_alg: want RS256 or EdDSA, got %q", p.IDTokenAlg)
	}
	if a := p.Accent; a != "" && !validAccent(a) {
		return fmt.Errorf("accent_color: want #rrggbb, got %q", a)
	}
	return nil
}

func validAccent(a string) bool {
	if len(a) != 7 || a[0] != '#' {
		return false
	}
	_, err := hex.DecodeString(a[1:])
	return err == nil
}

// Lookup returns the project named id.
func (r *Registry) Lookup(id string) (Project, bool) {
	if r == nil {
		return Project{}, false
	}
	p, ok := r.byID[id]
	return p, ok
}

// All returns every project of the registry (none for a nil one).
func (r *Registry) All() []Project {
	if r == nil {
		return nil
	}
	out := make([]Project, 0, len(r.byID))
	for _, p := range r.byID {
		out = append(out, p)
	}
	return out
}

// AllowsOrigin reports whether any project lets origin call authd from a
// browser. CORS preflights do not say which project they are for, so the
// union of all projects' origins is allowed.
func (r *Registry) AllowsOrigin(origin string) bool {
	if r == nil {
		return false
	}
	norm, err := NormalizeOrigin(origin)
	return err == nil && r.origins[norm]
}

// AllowsClientOrigin reports whether origin may call the token and
// userinfo endpoints from a browser: a project's allowed origin, or the
// origin of one of its redirect URIs.
func (r *Registry) AllowsClientOrigin(origin string) bool {
	if r == nil {
		return false
	}
	norm, err := NormalizeOrigin(origin)
	if err != nil {
		return false
	}
	if r.clientOrigins[norm] {
		return true
	}
	lo := loopbackOrigin(norm)
	return lo != "" && r.loopbackOrigins[lo]
}

// NormalizeOrigin returns scheme://host[:port], lowercased, as browsers send
// it in the Origin header.
func NormalizeOrigin(o string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin like https://app.example.com", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}
