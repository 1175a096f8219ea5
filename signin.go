package authd

// The hosted sign-in: OpenID Connect's authorization code flow with PKCE
// (OIDC Core, RFC 6749, RFC 7636) in front of the send/verify flow. A
// sign-in starts at the authorization endpoint, mails one code and one
// link (the link carries the code: they are one credential, burnt by
// either's use and counted in one failure budget), and ends with an
// authorization code the client redeems at the token endpoint for the
// identity token and an access token for the userinfo endpoint.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Lifetimes of the hosted sign-in.
const (
	// SignInTTL bounds a sign-in from the authorization request to the
	// authorization code: long enough to read a mail, type a code or
	// approve on a phone.
	SignInTTL = 15 * time.Minute
	// GrantTTL is an authorization code's lifetime (RFC 6749 §4.1.2
	// recommends at most 10 minutes; the issue asks at most 60 s).
	GrantTTL = 60 * time.Second
)

// Sign-in states.
const (
	SignInPending  = ""         // waiting for the address, the code or the link
	SignInApproved = "approved" // approved on another device: the starting browser collects it
	SignInDenied   = "denied"   // the wrong number was picked on another device
	SignInDone     = "done"     // the authorization code was issued
)

// SignInFlow is a hosted sign-in in progress. At rest it is sealed with
// Keys.SignIn, bound to its ID.
type SignInFlow struct {
	ID          string   `json:"-"`
	Client      string   `json:"c"`
	RedirectURI string   `json:"r"`
	State       string   `json:"s,omitempty"`
	Nonce       string   `json:"n,omitempty"`
	Challenge   string   `json:"pc"`
	Scope       string   `json:"sc"`
	Lang        string   `json:"l,omitempty"` // ui_locales, as asked
	LoginHint   string   `json:"h,omitempty"`
	Browser     string   `json:"b"` // hex SHA-256 of the flow cookie's secret
	Email       string   `json:"e,omitempty"`
	CodeID      string   `json:"ci,omitempty"` // the mailed code's, to tell a link whose code is spent
	Match       int      `json:"m"`            // the number the starting browser shows
	Choices     [3]int   `json:"mc"`           // what another device offers, Match among them: fixed, so a page fetched again tells nothing
	Agent       string   `json:"ua,omitempty"`
	IP          string   `json:"ip,omitempty"`
	Created     int64    `json:"t"`
	Expires     int64    `json:"x"`
	Status      string   `json:"st,omitempty"`
	Subject     string   `json:"sub,omitempty"`
	Verified    string   `json:"ve,omitempty"` // the address VerifyCode proved: the grant's email
	AMR         []string `json:"amr,omitempty"`
	AuthTime    int64    `json:"at,omitempty"`
	// Once done: the redirect that carries the authorization code, and
	// until when (the code's expiry) the starting browser gets it again.
	Redirect      string `json:"rd,omitempty"`
	RedirectUntil int64  `json:"rx,omitempty"`
	GrantKey      string `json:"gk,omitempty"` // the code's: once redeemed, the redirect is no more given
}

func (f SignInFlow) expired(now time.Time) bool { return now.Unix() >= f.Expires }

// SignInStore keeps sign-ins, authorization codes (grants) and access
// tokens, each an opaque sealed record under a key that names it without
// revealing it. Records carry their own expiry, which the flow checks; the
// store's TTL reclaims them. Implementations: internal/redis,
// internal/inmem.
type SignInStore interface {
	// PutSignIn stores rec under id for ttl, replacing any record.
	//
	// Errors: EUNAVAILABLE.
	PutSignIn(ctx context.Context, id string, rec []byte, ttl time.Duration) error
	// SignIn returns the record of id.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	SignIn(ctx context.Context, id string) ([]byte, error)
	// SwapSignIn stores next under id in place of prev, atomically, for
	// ttl.
	//
	// Errors: ENOTFOUND when id has no record, EINVALID when its record is
	// not prev (another request changed it first), EUNAVAILABLE.
	SwapSignIn(ctx context.Context, id string, prev, next []byte, ttl time.Duration) error

	// PutGrant stores an authorization code's grant under key for ttl.
	//
	// Errors: EUNAVAILABLE.
	PutGrant(ctx context.Context, key string, rec []byte, ttl time.Duration) error
	// Grant returns the grant under key, and whether it has been
	// redeemed, changing nothing: what the token endpoint checks a request
	// against before it redeems.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	Grant(ctx context.Context, key string) (rec []byte, redeemed bool, err error)
	// RedeemGrant returns the grant under key and marks it redeemed, in
	// one atomic step; replay reports that it had been redeemed before.
	// Of many concurrent calls, exactly one sees replay false.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	RedeemGrant(ctx context.Context, key string) (rec []byte, replay bool, err error)
	// GrantReplayed reports whether the grant under key has been redeemed
	// more than once: what the first redemption asks once its access token
	// is stored, so that a replay racing it revokes it all the same.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	GrantReplayed(ctx context.Context, key string) (bool, error)

	// PutAccess stores an access token's record under key for ttl.
	//
	// Errors: EUNAVAILABLE.
	PutAccess(ctx context.Context, key string, rec []byte, ttl time.Duration) error
	// Access returns the record under key.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	Access(ctx context.Context, key string) ([]byte, error)
	// DeleteAccess deletes the record under key; none is no error.
	//
	// Errors: EUNAVAILABLE.
	DeleteAccess(ctx context.Context, key string) error

	// TakeSignIn counts one new sign-in of clientIP against r (GCRA, as
	// the code store's other limits, shared by every instance); a refusal
	// counts nothing.
	//
	// Errors: ERATELIMITED (Limit "signin_per_ip"), EUNAVAILABLE.
	TakeSignIn(ctx context.Context, clientIP string, r Rate, now time.Time) error
}

// OAuthError is a refusal of the OAuth/OIDC endpoints, with its RFC 6749
// error code (§4.1.2.1 at the authorization endpoint, §5.2 at the token
// endpoint, RFC 6750 §3.1 at userinfo). Description is safe to show.
type OAuthError struct {
	Code        string // invalid_request, invalid_client, invalid_grant, ...
	Description string
}

func (e *OAuthError) Error() string { return "oauth: " + e.Code + ": " + e.Description }

func oauthErr(code, desc string) *OAuthError { return &OAuthError{Code: code, Description: desc} }

// ErrSignInGone is a sign-in that has expired, was used, or never was.
var ErrSignInGone = &Error{Code: ENOTFOUND, Message: "This sign-in has expired or was already used"}

// ErrOtherBrowser is a step of a sign-in tried from a browser that did not
// start it.
var ErrOtherBrowser = &Error{Code: EINVALID, Field: "browser", Message: "This sign-in was started in another browser"}

// ErrWrongNumber is another device's pick of the wrong number: the
// sign-in is refused.
var ErrWrongNumber = &Error{Code: EINVALID, Field: "pick", Message: "That was not the number shown: the sign-in is refused"}

// AuthorizeRequest is an authorization request's parameters, and who
// made it.
type AuthorizeRequest struct {
	ClientID, RedirectURI, ResponseType, Scope, State, Nonce string
	CodeChallenge, CodeChallengeMethod, Prompt, MaxAge       string
	LoginHint, UILocales                                     string
	ResponseMode                                             string
	// Request and RequestURI report that the request had a request or a
	// request_uri parameter (request objects, OIDC Core §6: not
	// supported).
	Request, RequestURI bool
	// Whether the request repeated a parameter (RFC 6749 §3.1: refused).
	Repeated string
	Agent    string // the requesting browser and OS, for another device's approval page
	ClientIP string
}

// Client returns the project that is clientID when redirectURI is one of
// its redirect URIs. Only then may an error be sent to the client's
// redirect URI; otherwise it is shown on a page (RFC 6749 §4.1.2.1).
//
// Errors: EINVALID naming client_id or redirect_uri.
func (s *Service) Client(clientID, redirectURI string) (Project, error) {
	p, ok := s.Projects.Lookup(clientID)
	if !ok || len(p.RedirectURIs) == 0 {
		return Project{}, &Error{Code: EINVALID, Field: "client_id", Message: "Unknown client_id: no project of authd's registry signs in with it"}
	}
	if redirectURI == "" || !p.MatchRedirectURI(redirectURI) {
		return Project{}, &Error{Code: EINVALID, Field: "redirect_uri", Message: "This redirect_uri is not registered for the client"}
	}
	return p, nil
}

// StartSignIn checks an authorization request of a known client and
// redirect URI (Client) and starts its sign-in. It returns the flow and
// the secret of the cookie that binds it to the browser.
//
// Errors: *OAuthError (to be sent to the redirect URI), EUNAVAILABLE.
func (s *Service) StartSignIn(ctx context.Context, req AuthorizeRequest) (SignInFlow, string, error) {
	if _, err := s.Client(req.ClientID, req.RedirectURI); err != nil {
		return SignInFlow{}, "", err
	}
	switch {
	case req.Repeated != "":
		return SignInFlow{}, "", oauthErr("invalid_request", req.Repeated+" is given more than once")
	case req.Request:
		return SignInFlow{}, "", oauthErr("request_not_supported", "request objects are not supported")
	case req.RequestURI:
		return SignInFlow{}, "", oauthErr("request_uri_not_supported", "request_uri is not supported")
	case req.ResponseMode != "" && req.ResponseMode != "query":
		return SignInFlow{}, "", oauthErr("invalid_request", "only response_mode=query is supported")
	case req.ResponseType == "":
		return SignInFlow{}, "", oauthErr("invalid_request", "response_type is required")
	case req.ResponseType != "code":
		return SignInFlow{}, "", oauthErr("unsupported_response_type", "only response_type=code is supported")
	}
	scopes := strings.Fields(req.Scope)
	if !slices.Contains(scopes, "openid") {
		return SignInFlow{}, "", oauthErr("invalid_scope", "scope must include openid")
	}
	// Unknown scopes are ignored, as OIDC Core §3.1.2.1 lets an OP do:
	// the granted scope (the token answer's) says what was granted.
	switch {
	case req.CodeChallenge == "":
		return SignInFlow{}, "", oauthErr("invalid_request", "code_challenge is required (PKCE, S256)")
	case req.CodeChallengeMethod != "S256":
		return SignInFlow{}, "", oauthErr("invalid_request", "code_challenge_method must be S256")
	case !validChallenge(req.CodeChallenge):
		return SignInFlow{}, "", oauthErr("invalid_request", "code_challenge must be 43 base64url characters (S256)")
	case len(req.State) > 1024 || len(req.Nonce) > 1024:
		return SignInFlow{}, "", oauthErr("invalid_request", "state and nonce are at most 1024 characters")
	case len(req.UILocales) > 200:
		return SignInFlow{}, "", oauthErr("invalid_request", "ui_locales is at most 200 characters")
	}
	if req.MaxAge != "" {
		if n, err := strconv.Atoi(req.MaxAge); err != nil || n < 0 {
			return SignInFlow{}, "", oauthErr("invalid_request", "max_age must be a number of seconds")
		}
		// authd keeps no session: every sign-in proves the mailbox now,
		// so any max_age is met.
	}
	prompts := strings.Fields(req.Prompt)
	if slices.Contains(prompts, "none") && len(prompts) > 1 {
		// OIDC Core §3.1.2.1: none with any other value is an error.
		return SignInFlow{}, "", oauthErr("invalid_request", "prompt=none cannot be combined with other values")
	}
	for _, p := range prompts {
		switch p {
		case "none":
			// No session, so none to reuse without the user (README,
			// "Sign in with authd": sessions).
			return SignInFlow{}, "", oauthErr("login_required", "authd keeps no session: the user must sign in")
		case "login", "consent", "select_account":
		default:
			return SignInFlow{}, "", oauthErr("invalid_request", "prompt has an unknown value")
		}
	}
	// Every sign-in is a record in the code store until it expires: a
	// client IP starts them at the verify-code rate, in a bucket of its
	// own.
	if err := s.SignIns.TakeSignIn(ctx, req.ClientIP, s.Policy.VerifyPerIP, s.now()); err != nil {
		return SignInFlow{}, "", err
	}
	granted := "openid"
	if slices.Contains(scopes, "email") {
		granted += " email"
	}
	id, err := NewID(s.rand())
	if err != nil {
		return SignInFlow{}, "", &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	secret, err := NewID(s.rand())
	if err != nil {
		return SignInFlow{}, "", &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	choices, err := numberChoices(s.rand())
	if err != nil {
		return SignInFlow{}, "", &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	now := s.now()
	hint := ""
	if e, err := NormalizeEmail(req.LoginHint); err == nil {
		hint = e
	}
	f := SignInFlow{
		ID: id, Client: req.ClientID, RedirectURI: req.RedirectURI, State: req.State, Nonce: req.Nonce,
		Challenge: req.CodeChallenge, Scope: granted, Lang: req.UILocales, LoginHint: hint,
		Browser: hashHex(secret), Match: choices[0], Agent: req.Agent, IP: req.ClientIP,
		Created: now.Unix(), Expires: now.Add(SignInTTL).Unix(),
	}
	f.Choices = shuffled(choices, s.rand())
	keys, err := s.Keys.Current()
	if err != nil {
		return SignInFlow{}, "", err
	}
	rec, err := sealJSON(keys.SignIn, "signin:"+id, f, s.rand())
	if err != nil {
		return SignInFlow{}, "", err
	}
	if err := s.SignIns.PutSignIn(ctx, id, rec, SignInTTL); err != nil {
		return SignInFlow{}, "", err
	}
	return f, secret, nil
}

// numberChoices returns three distinct numbers of 10 to 99, the first the
// one to match.
func numberChoices(r io.Reader) ([3]int, error) {
	var out [3]int
	for i := 0; i < 3; {
		n, err := rand.Int(r, big.NewInt(90))
		if err != nil {
			return out, err
		}
		v := int(n.Int64()) + 10
		if slices.Contains(out[:i], v) {
			continue
		}
		out[i] = v
		i++
	}
	return out, nil
}

func shuffled(c [3]int, r io.Reader) [3]int {
	for i := 2; i > 0; i-- {
		n, err := rand.Int(r, big.NewInt(int64(i+1)))
		if err != nil {
			return c
		}
		j := int(n.Int64())
		c[i], c[j] = c[j], c[i]
	}
	return c
}

func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil
}

// validVerifier is RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range []byte(v) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// SignInFlow returns the sign-in id, while it is pending or approved.
//
// Errors: ErrSignInGone, EUNAVAILABLE.
func (s *Service) SignInFlow(ctx context.Context, id string) (SignInFlow, error) {
	f, _, err := s.loadFlow(ctx, id)
	return f, err
}

func (s *Service) loadFlow(ctx context.Context, id string) (SignInFlow, []byte, error) {
	f, rec, err := s.loadAnyFlow(ctx, id)
	if err == nil && f.Status == SignInDone {
		return SignInFlow{}, nil, ErrSignInGone
	}
	return f, rec, err
}

// loadAnyFlow is loadFlow that returns a done sign-in too.
func (s *Service) loadAnyFlow(ctx context.Context, id string) (SignInFlow, []byte, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return SignInFlow{}, nil, ErrSignInGone
	}
	rec, err := s.SignIns.SignIn(ctx, id)
	if ErrorCode(err) == ENOTFOUND {
		return SignInFlow{}, nil, ErrSignInGone
	}
	if err != nil {
		return SignInFlow{}, nil, err
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return SignInFlow{}, nil, err
	}
	var f SignInFlow
	if err := openJSON(keys.SignIn, "signin:"+id, rec, &f); err != nil {
		return SignInFlow{}, nil, err
	}
	f.ID = id
	if f.expired(s.now()) {
		return SignInFlow{}, nil, ErrSignInGone
	}
	return f, rec, nil
}

// updateFlow applies change to the sign-in id and stores it, again on a
// fresh read when another request changed it meanwhile.
func (s *Service) updateFlow(ctx context.Context, id string, change func(*SignInFlow) error) (SignInFlow, error) {
	for range 5 {
		f, prev, err := s.loadFlow(ctx, id)
		if err != nil {
			return SignInFlow{}, err
		}
		if err := change(&f); err != nil {
			return f, err
		}
		keys, err := s.Keys.Current()
		if err != nil {
			return SignInFlow{}, err
		}
		next, err := sealJSON(keys.SignIn, "signin:"+id, f, s.rand())
		if err != nil {
			return SignInFlow{}, err
		}
		ttl := time.Unix(f.Expires, 0).Sub(s.now()) + time.Minute
		switch err := s.SignIns.SwapSignIn(ctx, id, prev, next, max(ttl, time.Minute)); ErrorCode(err) {
		case "":
			return f, nil
		case ENOTFOUND:
			return SignInFlow{}, ErrSignInGone
		case EINVALID:
			continue
		default:
			return SignInFlow{}, err
		}
	}
	return SignInFlow{}, Unavailable("sign-in store", errSwapContended)
}

var errSwapContended = &Error{Code: EUNAVAILABLE, Message: "sign-in changed under every try"}

// ownFlow is the sign-in id when secret is its browser's cookie.
func (s *Service) ownFlow(ctx context.Context, id, secret string) (SignInFlow, error) {
	f, err := s.SignInFlow(ctx, id)
	if err != nil {
		return f, err
	}
	if !f.SameBrowser(secret) {
		return f, ErrOtherBrowser
	}
	return f, nil
}

// SameBrowser reports whether secret is the cookie of the browser that
// started f.
func (f SignInFlow) SameBrowser(secret string) bool {
	return secret != "" && subtle.ConstantTimeCompare([]byte(hashHex(secret)), []byte(f.Browser)) == 1
}

// FormToken is the anti-forgery token of the form named form of sign-in
// f: bound to the sign-in, its browser and the form.
func (s *Service) FormToken(f SignInFlow, form string) string {
	keys, err := s.Keys.Current()
	if err != nil {
		return ""
	}
	m := hmac.New(sha256.New, keys.SignIn)
	io.WriteString(m, "form\x00"+form+"\x00"+f.ID+"\x00"+f.Browser)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckFormToken reports whether tok is FormToken(f, form).
func (s *Service) CheckFormToken(f SignInFlow, form, tok string) bool {
	want := s.FormToken(f, form)
	return want != "" && hmac.Equal([]byte(want), []byte(tok))
}

// SignInSend mails the code and the link of sign-in id to email. lang is
// the mail's language; linkBase + the code's query is the link.
//
// Errors: as SendCode's; ErrSignInGone, ErrOtherBrowser.
func (s *Service) SignInSend(ctx context.Context, id, secret, email, clientIP, lang string) (SignInFlow, error) {
	f, err := s.ownFlow(ctx, id, secret)
	if err != nil {
		return f, err
	}
	norm, err := NormalizeEmail(email)
	if err != nil {
		return f, err
	}
	if f.Status != SignInPending {
		return f, ErrSignInGone
	}
	res, err := s.SendCode(ctx, SendRequest{
		Email: norm, ProjectID: f.Client, ClientIP: clientIP, Lang: lang, SignIn: true,
		Link: func(code string) string { return s.SignInLink(id, code) },
	})
	if err != nil {
		return f, err
	}
	return s.updateFlow(ctx, id, func(f *SignInFlow) error {
		// On the fresh read: a sign-in whose code was verified meanwhile
		// keeps the address it verified.
		if f.Status != SignInPending || f.Subject != "" {
			return ErrSignInGone
		}
		f.Email, f.CodeID = norm, res.CodeID
		return nil
	})
}

// unchanged is the check every update after VerifyCode makes on the
// fresh read of the sign-in: still pending, for the address and the code
// that were verified, by nobody yet. An address sent to meanwhile (or a
// code replaced) refuses the update, so that what VerifyCode proved for
// one address is never recorded for another.
func unchanged(f *SignInFlow, read SignInFlow, res VerifyResult) error {
	if f.Status != SignInPending || f.Subject != "" || f.Email != read.Email || f.CodeID != read.CodeID || res.User.Email != read.Email {
		return ErrSignInGone
	}
	return nil
}

// SignInLink is the mail's link: built from AUTHD_ISSUER, never from a
// request.
func (s *Service) SignInLink(id, code string) string {
	return strings.TrimSuffix(s.Issuer, "/") + "/signin/link?" + url.Values{"f": {id}, "c": {code}}.Encode()
}

// SignInCode signs in with the code typed in the browser that started
// id, and returns where to send that browser: the client's redirect URI
// with the authorization code.
//
// Errors: as VerifyCode's; ErrSignInGone, ErrOtherBrowser.
func (s *Service) SignInCode(ctx context.Context, id, secret, code, clientIP string) (string, error) {
	f, err := s.ownFlow(ctx, id, secret)
	if err != nil {
		return "", err
	}
	return s.verifyAndFinish(ctx, f, code, clientIP, "otp")
}

func (s *Service) verifyAndFinish(ctx context.Context, f SignInFlow, code, clientIP, amr string) (string, error) {
	if f.Email == "" || f.Status != SignInPending {
		return "", ErrSignInGone
	}
	res, err := s.VerifyCode(ctx, VerifyRequest{Email: f.Email, ProjectID: f.Client, Code: code, ClientIP: clientIP, SignIn: true})
	if err != nil {
		return "", err
	}
	return s.finish(ctx, f.ID, func(g *SignInFlow) error {
		if err := unchanged(g, f, res); err != nil {
			return err
		}
		g.Subject, g.Verified, g.AMR, g.AuthTime = res.User.ID, res.User.Email, []string{amr}, s.now().Unix()
		return nil
	})
}

// LinkPage is what the link's page shows: the sign-in, and whether this
// browser started it.
type LinkPage struct {
	Flow        SignInFlow
	SameBrowser bool
}

// SignInLinkPage reads the sign-in a link names, changing nothing (a
// scanner may fetch the link any number of times).
//
// Errors: ErrSignInGone, EUNAVAILABLE.
func (s *Service) SignInLinkPage(ctx context.Context, id, secret string) (LinkPage, error) {
	f, err := s.SignInFlow(ctx, id)
	if err != nil {
		return LinkPage{}, err
	}
	if f.Email == "" || f.Status != SignInPending {
		return LinkPage{}, ErrSignInGone
	}
	// A link whose code has expired, was used or was replaced says so
	// before anyone confirms: a read, nothing counted.
	keys, err := s.Keys.Current()
	if err != nil {
		return LinkPage{}, err
	}
	live, err := s.Codes.IsCurrent(ctx, keys.AddressOf(f.Email), SignInProject(f.Client), f.CodeID, s.now())
	if err != nil {
		return LinkPage{}, err
	}
	if !live {
		return LinkPage{}, ErrSignInGone
	}
	return LinkPage{Flow: f, SameBrowser: f.SameBrowser(secret)}, nil
}

// SignInConfirm is the POST of the link's page. In the browser that
// started the sign-in it signs in and returns the redirect. On another
// device it approves only when pick is the number the starting browser
// shows: then that browser finishes (SignInWait) and this device gets
// nothing ("" and no error); a wrong pick refuses the sign-in for good.
//
// Errors: as VerifyCode's; ErrSignInGone, ErrWrongNumber.
func (s *Service) SignInConfirm(ctx context.Context, id, secret, code, clientIP string, pick int) (string, error) {
	f, err := s.SignInFlow(ctx, id)
	if err != nil {
		return "", err
	}
	if f.SameBrowser(secret) {
		return s.verifyAndFinish(ctx, f, code, clientIP, "link")
	}
	if f.Email == "" || f.Status != SignInPending {
		return "", ErrSignInGone
	}
	if pick != f.Match {
		// The sign-in dies: a scanner or a careless click that picks
		// wrong leaves nothing to try again with. The code stays unspent
		// (a wrong number is not a wrong code, and must not eat the
		// address's failure budget), but no sign-in takes it any more.
		if _, err := s.updateFlow(ctx, id, func(f *SignInFlow) error {
			if f.Status != SignInPending {
				return ErrSignInGone
			}
			f.Status = SignInDenied
			return nil
		}); err != nil && err != ErrSignInGone {
			return "", err
		}
		return "", ErrWrongNumber
	}
	res, err := s.VerifyCode(ctx, VerifyRequest{Email: f.Email, ProjectID: f.Client, Code: code, ClientIP: clientIP, SignIn: true})
	if err != nil {
		return "", err
	}
	_, err = s.updateFlow(ctx, id, func(g *SignInFlow) error {
		if err := unchanged(g, f, res); err != nil {
			return err
		}
		g.Status, g.Subject, g.Verified, g.AMR, g.AuthTime = SignInApproved, res.User.ID, res.User.Email, []string{"link"}, s.now().Unix()
		return nil
	})
	return "", err
}

// SignInWait is the starting browser's wait for another device: the
// redirect once approved, "" while pending. It is idempotent: once the
// sign-in is done, the same browser gets the same redirect again while
// its authorization code lives unredeemed (a page fetched twice, or a
// HEAD before the GET, issues one code, and a browser that lost the
// answer still gets it).
//
// Errors: ErrSignInGone, ErrOtherBrowser, ErrWrongNumber (refused on the
// other device), EUNAVAILABLE.
func (s *Service) SignInWait(ctx context.Context, id, secret string) (string, SignInFlow, error) {
	f, _, err := s.loadAnyFlow(ctx, id)
	if err != nil {
		return "", SignInFlow{}, err
	}
	if !f.SameBrowser(secret) {
		return "", f, ErrOtherBrowser
	}
	switch f.Status {
	case SignInDone:
		if f.Redirect == "" || s.now().Unix() >= f.RedirectUntil {
			return "", f, ErrSignInGone
		}
		// Not once the client has redeemed the code: the browser's back
		// button would bring it a replay, which revokes its token.
		_, redeemed, err := s.SignIns.Grant(ctx, f.GrantKey)
		if ErrorCode(err) == ENOTFOUND || err == nil && redeemed {
			return "", f, ErrSignInGone
		}
		if err != nil {
			return "", f, err
		}
		return f.Redirect, f, nil
	case SignInDenied:
		return "", f, ErrWrongNumber
	case SignInApproved:
		to, err := s.finish(ctx, id, func(g *SignInFlow) error {
			if g.Status != SignInApproved || g.Subject == "" || g.Verified == "" {
				return ErrSignInGone
			}
			return nil
		})
		return to, f, err
	}
	return "", f, nil
}

// grant is an authorization code at rest.
type grant struct {
	Client      string   `json:"c"`
	RedirectURI string   `json:"r"`
	Challenge   string   `json:"pc"`
	Nonce       string   `json:"n,omitempty"`
	Scope       string   `json:"sc"`
	Subject     string   `json:"sub"`
	Email       string   `json:"e"`
	AMR         []string `json:"amr"`
	AuthTime    int64    `json:"at"`
	Expires     int64    `json:"x"`
}

// access is an access token at rest.
type access struct {
	Client  string `json:"c"`
	Scope   string `json:"sc"`
	Subject string `json:"sub"`
	Email   string `json:"e"`
	Expires int64  `json:"x"`
}

// finish ends sign-in id: once (the flow is done after), it issues the
// authorization code and returns the redirect that carries it. set checks
// the fresh read of the sign-in and records who signed in.
func (s *Service) finish(ctx context.Context, id string, set func(*SignInFlow) error) (string, error) {
	var raw [32]byte
	if _, err := io.ReadFull(s.rand(), raw[:]); err != nil {
		return "", &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	code := base64.RawURLEncoding.EncodeToString(raw[:])
	keys, err := s.Keys.Current()
	if err != nil {
		return "", err
	}
	key := hashHex(code)
	f, err := s.updateFlow(ctx, id, func(f *SignInFlow) error {
		if f.Status != SignInPending && f.Status != SignInApproved {
			return ErrSignInGone
		}
		if err := set(f); err != nil {
			return err
		}
		// The grant is stored before the sign-in is done, so that the
		// redirect the sign-in keeps always names a stored code; one put
		// by a try that lost the swap names a code nobody was given.
		now := s.now()
		g := grant{
			Client: f.Client, RedirectURI: f.RedirectURI, Challenge: f.Challenge, Nonce: f.Nonce, Scope: f.Scope,
			Subject: f.Subject, Email: f.Verified, AMR: f.AMR, AuthTime: f.AuthTime, Expires: now.Add(GrantTTL).Unix(),
		}
		rec, err := sealJSON(keys.SignIn, "grant:"+key, g, s.rand())
		if err != nil {
			return err
		}
		// Kept as long as the access token it may issue lives: a replay
		// within that time still finds it, and revokes the token.
		if err := s.SignIns.PutGrant(ctx, key, rec, GrantTTL+s.accessTTL()); err != nil {
			return err
		}
		f.Status = SignInDone
		f.Redirect = AuthorizationRedirect(f.RedirectURI, url.Values{"code": {code}, "state": {f.State}, "iss": {s.Issuer}})
		f.RedirectUntil, f.GrantKey = g.Expires, key
		return nil
	})
	if err != nil {
		return "", err
	}
	return f.Redirect, nil
}

// AuthorizationRedirect is redirectURI with params added to its query
// (RFC 6749 §4.1.2: its own query is kept); empty values are left out.
func AuthorizationRedirect(redirectURI string, params url.Values) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	q := u.Query()
	for k, vs := range params {
		if len(vs) > 0 && vs[0] != "" {
			q.Set(k, vs[0])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Service) accessTTL() time.Duration {
	if s.AccessTTL > 0 {
		return s.AccessTTL
	}
	return time.Hour
}

// TokenRequest is a token endpoint request (RFC 6749 §4.1.3), with the
// client's credentials from the Authorization header or the body.
type TokenRequest struct {
	GrantType, Code, RedirectURI, CodeVerifier string
	ClientID, ClientSecret                     string
	// Basic reports that the credentials came in the Authorization header
	// (client_secret_basic): a refusal then answers 401 with
	// WWW-Authenticate.
	Basic bool
}

// TokenResponse is the token endpoint's answer (RFC 6749 §5.1, OIDC Core
// §3.1.3.3).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	IDToken     string `json:"id_token"`
	Scope       string `json:"scope"`
}

// Redeem exchanges an authorization code for the identity token and an
// access token. A code is redeemed once: a second try is refused and
// revokes the access token the first issued (RFC 6749 §4.1.2).
//
// Errors: *OAuthError (invalid_request, invalid_client, invalid_grant,
// unsupported_grant_type), EUNAVAILABLE.
func (s *Service) Redeem(ctx context.Context, req TokenRequest) (TokenResponse, error) {
	if req.GrantType == "" {
		return TokenResponse{}, oauthErr("invalid_request", "grant_type is required")
	}
	if req.GrantType != "authorization_code" {
		return TokenResponse{}, oauthErr("unsupported_grant_type", "only authorization_code is supported")
	}
	p, ok := s.Projects.Lookup(req.ClientID)
	if !ok || len(p.RedirectURIs) == 0 {
		return TokenResponse{}, oauthErr("invalid_client", "unknown client")
	}
	switch {
	case p.Confidential():
		got := sha256.Sum256([]byte(req.ClientSecret))
		want, _ := hex.DecodeString(p.ClientSecretSHA256)
		if req.ClientSecret == "" || subtle.ConstantTimeCompare(got[:], want) != 1 {
			return TokenResponse{}, oauthErr("invalid_client", "client authentication failed")
		}
	case req.ClientSecret != "":
		return TokenResponse{}, oauthErr("invalid_client", "a public client has no secret")
	}
	if req.Code == "" {
		return TokenResponse{}, oauthErr("invalid_request", "code is required")
	}
	if req.RedirectURI == "" {
		return TokenResponse{}, oauthErr("invalid_request", "redirect_uri is required")
	}
	key := hashHex(req.Code)
	// The request is checked against the grant before it is redeemed:
	// one with another client, redirect_uri or verifier burns nothing
	// (anyone who saw a code could otherwise spend it with a public
	// client's id), and the code stays the rightful client's.
	rec, _, err := s.SignIns.Grant(ctx, key)
	if ErrorCode(err) == ENOTFOUND {
		return TokenResponse{}, oauthErr("invalid_grant", "the code is invalid, expired or used")
	}
	if err != nil {
		return TokenResponse{}, err
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return TokenResponse{}, err
	}
	var g grant
	if err := openJSON(keys.SignIn, "grant:"+key, rec, &g); err != nil {
		return TokenResponse{}, oauthErr("invalid_grant", "the code is invalid, expired or used")
	}
	switch {
	case g.Client != req.ClientID:
		return TokenResponse{}, oauthErr("invalid_grant", "the code was issued to another client")
	case g.RedirectURI != req.RedirectURI:
		return TokenResponse{}, oauthErr("invalid_grant", "redirect_uri is not the authorization request's")
	case req.CodeVerifier == "" || !validVerifier(req.CodeVerifier):
		return TokenResponse{}, oauthErr("invalid_grant", "code_verifier is missing or malformed (RFC 7636)")
	}
	sum := sha256.Sum256([]byte(req.CodeVerifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.Challenge)) != 1 {
		return TokenResponse{}, oauthErr("invalid_grant", "code_verifier does not match the code_challenge")
	}
	if _, replay, err := s.SignIns.RedeemGrant(ctx, key); ErrorCode(err) == ENOTFOUND {
		return TokenResponse{}, oauthErr("invalid_grant", "the code is invalid, expired or used")
	} else if err != nil {
		return TokenResponse{}, err
	} else if replay {
		// The code has leaked, or the client is confused: what its first
		// use issued is not to be trusted either.
		if err := s.SignIns.DeleteAccess(ctx, hashHex(s.accessToken(keys, req.Code))); err != nil {
			s.logger().ErrorContext(ctx, "access token of a replayed code not revoked", "err", err)
		}
		return TokenResponse{}, oauthErr("invalid_grant", "the code is invalid, expired or used")
	}
	tok := s.accessToken(keys, req.Code)
	now := s.now()
	if now.Unix() >= g.Expires {
		return TokenResponse{}, oauthErr("invalid_grant", "the code is invalid, expired or used")
	}
	if s.Tokens == nil {
		return TokenResponse{}, Unavailable("token signer", nil)
	}
	idt, err := s.Tokens.IssueToken(ctx, TokenClaims{
		Subject: g.Subject, Audience: g.Client, Email: g.Email, Nonce: g.Nonce, IssuedAt: now,
		AuthTime: time.Unix(g.AuthTime, 0), AMR: g.AMR, Algorithm: p.IDTokenAlg,
	})
	if err != nil {
		return TokenResponse{}, unavailable("token signer", err)
	}
	ttl := s.accessTTL()
	arec, err := sealJSON(keys.SignIn, "access:"+hashHex(tok), access{
		Client: g.Client, Scope: g.Scope, Subject: g.Subject, Email: g.Email, Expires: now.Add(ttl).Unix(),
	}, s.rand())
	if err != nil {
		return TokenResponse{}, err
	}
	if err := s.SignIns.PutAccess(ctx, hashHex(tok), arec, ttl); err != nil {
		return TokenResponse{}, err
	}
	// A replay that came while this redemption ran deleted nothing yet:
	// its token is deleted here, and this answer refused too.
	if replayed, err := s.SignIns.GrantReplayed(ctx, key); err != nil || replayed {
		if derr := s.SignIns.DeleteAccess(ctx, hashHex(tok)); derr != nil {
			s.logger().ErrorContext(ctx, "access token of a replayed code not revoked", "err", derr)
		}
		if err != nil {
			return TokenResponse{}, err
		}
		return TokenResponse{}, oauthErr("invalid_grant", "the code is invalid, expired or used")
	}
	return TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), IDToken: idt.Raw, Scope: g.Scope}, nil
}

// accessToken is the access token a code issues: derived from it under a
// key of authd's, so that a replay of the code finds it to revoke.
func (s *Service) accessToken(keys Keys, code string) string {
	m := hmac.New(sha256.New, keys.SignIn)
	io.WriteString(m, "access\x00"+code)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// UserInfo is the userinfo endpoint's answer (OIDC Core §5.3).
type UserInfo struct {
	Subject       string `json:"sub"`
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
}

// UserInfo returns the claims an access token grants.
//
// Errors: *OAuthError invalid_token, EUNAVAILABLE.
func (s *Service) UserInfo(ctx context.Context, token string) (UserInfo, error) {
	bad := oauthErr("invalid_token", "the access token is invalid, expired or revoked")
	if token == "" || len(token) > 100 {
		return UserInfo{}, bad
	}
	key := hashHex(token)
	rec, err := s.SignIns.Access(ctx, key)
	if ErrorCode(err) == ENOTFOUND {
		return UserInfo{}, bad
	}
	if err != nil {
		return UserInfo{}, err
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return UserInfo{}, err
	}
	var a access
	if err := openJSON(keys.SignIn, "access:"+key, rec, &a); err != nil || s.now().Unix() >= a.Expires {
		return UserInfo{}, bad
	}
	out := UserInfo{Subject: a.Subject}
	if slices.Contains(strings.Fields(a.Scope), "email") {
		out.Email, out.EmailVerified = a.Email, true
	}
	return out, nil
}

// sealJSON encodes v and seals it under key, bound to ad.
func sealJSON(key []byte, ad string, v any, r io.Reader) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "cannot encode a record", Err: err}
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "cannot seal a record", Err: err}
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	return aead.Seal(nonce, nonce, plain, []byte(ad)), nil
}

// openJSON opens what sealJSON sealed under key and ad into v.
func openJSON(key []byte, ad string, sealed []byte, v any) error {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
		return &Error{Code: EINTERNAL, Message: "a stored record does not open"}
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(ad))
	if err != nil {
		return &Error{Code: EINTERNAL, Message: "a stored record does not open", Err: err}
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return &Error{Code: EINTERNAL, Message: "a stored record does not decode", Err: err}
	}
	return nil
}
