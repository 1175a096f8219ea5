package httpapi

// The hosted sign-in's pages (issue 13): server-rendered, plain HTML forms
// that work with JavaScript off, each with its own anti-forgery token,
// under a strict Content-Security-Policy (no script at all; the style
// sheet from authd itself, the project's accent colour in one nonce'd
// style element), in the language of the request. The flow decides
// everything (signin.go of the root package); these handlers decode,
// call it and render.

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/locale"
)

// SignIn is what the HTTP layer needs of the hosted sign-in
// (*authd.Service).
type SignIn interface {
	Client(clientID, redirectURI string) (authd.Project, error)
	StartSignIn(ctx context.Context, req authd.AuthorizeRequest) (authd.SignInFlow, string, error)
	SignInFlow(ctx context.Context, id string) (authd.SignInFlow, error)
	SignInSend(ctx context.Context, id, secret, email, clientIP, lang string) (authd.SignInFlow, error)
	SignInCode(ctx context.Context, id, secret, code, clientIP string) (string, error)
	SignInLinkPage(ctx context.Context, id, secret string) (authd.LinkPage, error)
	SignInConfirm(ctx context.Context, id, secret, code, clientIP string, pick int) (string, error)
	SignInWait(ctx context.Context, id, secret string) (string, authd.SignInFlow, error)
	FormToken(f authd.SignInFlow, form string) string
	CheckFormToken(f authd.SignInFlow, form, tok string) bool
	Redeem(ctx context.Context, req authd.TokenRequest) (authd.TokenResponse, error)
	UserInfo(ctx context.Context, token string) (authd.UserInfo, error)
}

//go:embed signin/*.html signin/style.css
var signinFiles embed.FS

// pageNames are the pages, each signin/<name>.html inside layout.html.
var pageNames = []string{"email", "code", "confirm", "approve", "approved", "wait", "message"}

var pageTemplates = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		out[n] = template.Must(template.New("layout.html").Option("missingkey=error").ParseFS(signinFiles, "signin/layout.html", "signin/"+n+".html"))
	}
	return out
}()

// WaitRefresh is how often the waiting page reloads itself (meta
// refresh: no script) until another device has approved.
const WaitRefresh = 3

// page is what every page is rendered with.
type page struct {
	L        locale.Lang
	Lang     string
	Title    string
	Project  string
	Accent   string
	OnAccent string
	Nonce    string
	Refresh  int

	Flow, Token, Email, Code, Error string
	Number                          int
	Choices                         [3]int
	Agent, IP, When                 string
	Heading, Lead                   string
}

// pages renders the hosted sign-in's pages for one registry.
type pages struct {
	projects *authd.Registry
	issuer   string
	log      *slog.Logger
}

// cookieName is the flow cookie of sign-in id: one per sign-in, so that
// sign-ins in two tabs do not take each other's place.
func cookieName(id string) string { return "authd_signin_" + id[:16] }

func (p *pages) secure() bool { return strings.HasPrefix(p.issuer, "https://") }

// setFlowCookie binds sign-in f to this browser: HttpOnly, SameSite=Lax (sent
// when the mail's link is opened, not on a cross-site POST), Secure when
// authd is served over https.
func (p *pages) setFlowCookie(w http.ResponseWriter, f authd.SignInFlow, secret string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(f.ID), Value: secret, Path: "/signin", MaxAge: int(authd.SignInTTL / time.Second),
		HttpOnly: true, Secure: p.secure(), SameSite: http.SameSiteLaxMode,
	})
}

func flowSecret(r *http.Request, id string) string {
	if len(id) < 16 {
		return ""
	}
	c, err := r.Cookie(cookieName(id))
	if err != nil {
		return ""
	}
	return c.Value
}

// lang is the request's language: the sign-in's ui_locales first, then
// Accept-Language.
func lang(r *http.Request, uiLocales string) locale.Lang {
	return locale.Of(locale.Match(uiLocales, r.Header.Get("Accept-Language")))
}

// render writes page name with status. Its CSP allows no script, styles
// from authd and the nonce'd element only, and form posts to authd and,
// where a form ends in a redirect to the client, to that redirect's
// origin (browsers check a POST's redirects against form-action).
func (p *pages) render(w http.ResponseWriter, status int, name string, d page, formTo string) {
	var nonce [16]byte
	rand.Read(nonce[:])
	d.Nonce = base64.RawStdEncoding.EncodeToString(nonce[:])
	d.Lang = string(d.L)
	if d.Accent == "" {
		d.Accent = "#1d4ed8"
	}
	d.OnAccent = onAccent(d.Accent)
	if d.Title == "" {
		d.Title = d.L.T("page.title", "project", d.Project)
	}
	formAction := "'self'"
	if formTo != "" {
		formAction += " " + formTo
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'nonce-"+d.Nonce+"'; img-src 'self'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", d.Lang)
	h.Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	if err := pageTemplates[name].Execute(w, d); err != nil {
		p.log.Error("sign-in page not rendered", "page", name, "err", err)
	}
}

// onAccent is the text colour readable on accent: black or white, by
// the WCAG contrast ratio.
func onAccent(accent string) string {
	if len(accent) != 7 {
		return "#ffffff"
	}
	lin := func(h string) float64 {
		v, _ := strconv.ParseUint(h, 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			return c / 12.92
		}
		return math.Pow((c+0.055)/1.055, 2.4)
	}
	l := 0.2126*lin(accent[1:3]) + 0.7152*lin(accent[3:5]) + 0.0722*lin(accent[5:7])
	if (l+0.05)/0.05 > 1.05/(l+0.05) {
		return "#000000"
	}
	return "#ffffff"
}

// base is what a page of sign-in f starts from.
func (p *pages) base(r *http.Request, f authd.SignInFlow) page {
	proj, _ := p.projects.Lookup(f.Client)
	return page{L: lang(r, f.Lang), Project: proj.DisplayName, Accent: proj.Accent, Flow: f.ID, Email: f.Email, Number: f.Match}
}

// message renders a page that only says something: an error or an
// outcome.
func (p *pages) message(w http.ResponseWriter, r *http.Request, status int, l locale.Lang, project, heading, errText, lead string) {
	p.render(w, status, "message", page{L: l, Project: project, Title: heading, Heading: heading, Error: errText, Lead: lead}, "")
}

// failure renders err of a step of sign-in f: the limits' 429s and the
// outages' 503s as readable messages, each with its status.
func (p *pages) failure(w http.ResponseWriter, r *http.Request, l locale.Lang, project string, err error) {
	status, text := p.explain(l, project, err)
	setRetryAfter(w, status, err)
	p.message(w, r, status, l, project, l.T("error.title"), text, "")
}

// setRetryAfter tells when to come back from a 429 or a 503 of err.
func setRetryAfter(w http.ResponseWriter, status int, err error) {
	var e *authd.Error
	if errors.As(err, &e) && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.RetryAfter)))
	}
}

// explain is the status and the readable message of a step's error.
func (p *pages) explain(l locale.Lang, project string, err error) (int, string) {
	switch {
	case errors.Is(err, authd.ErrSignInGone):
		if project == "" {
			return http.StatusGone, l.T("error.gone_anon")
		}
		return http.StatusGone, l.T("error.gone", "project", project)
	case errors.Is(err, authd.ErrOtherBrowser):
		return http.StatusForbidden, l.T("error.browser")
	case errors.Is(err, authd.ErrWrongNumber):
		return http.StatusForbidden, l.T("error.number")
	}
	var e *authd.Error
	if !errors.As(err, &e) {
		p.log.Error("sign-in step failed", "err", redactAddresses(err))
		return http.StatusInternalServerError, l.T("error.unavailable")
	}
	switch e.Code {
	case authd.EINVALID:
		switch e.Field {
		case "email":
			return http.StatusBadRequest, l.T("error.email")
		case "code":
			return http.StatusBadRequest, l.T("error.code_format")
		}
		return http.StatusBadRequest, l.T("error.request", "detail", e.Message)
	case authd.ECODE:
		return http.StatusUnauthorized, l.T("error.code")
	case authd.ERATELIMITED:
		return http.StatusTooManyRequests, l.T("error.limited", "seconds", retryAfterSeconds(e.RetryAfter))
	case authd.EUNAVAILABLE:
		if e.Limit == "" {
			p.log.Warn("dependency unavailable", "what", e.Message, "err", redactAddresses(e.Err))
		}
		return http.StatusServiceUnavailable, l.T("error.unavailable")
	case authd.ENOTFOUND:
		return http.StatusGone, l.T("error.gone_anon")
	}
	p.log.Error("sign-in step failed", "err", redactAddresses(err))
	return http.StatusInternalServerError, l.T("error.unavailable")
}

// readForm parses a page's POST: a form of at most MaxBodyBytes, from a
// page of authd's own (net/http's CrossOriginProtection: Sec-Fetch-Site,
// or Origin against Host).
func readForm(w http.ResponseWriter, r *http.Request, cop *http.CrossOriginProtection) bool {
	if cop.Check(r) != nil {
		http.Error(w, "cross-origin form refused", http.StatusForbidden)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return false
	}
	return true
}

// handleSignInPage is the page of a sign-in in the browser that started
// it: the address form, or the code form once a code was sent.
func handleSignInPage(si SignIn, p *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("f")
		f, err := si.SignInFlow(r.Context(), id)
		if err == authd.ErrSignInGone {
			// Done already: the starting browser gets its redirect again
			// while the code lives (SignInWait), anyone else the failure.
			handleWait(si, p).ServeHTTP(w, r)
			return
		}
		if err == nil && !f.SameBrowser(flowSecret(r, id)) {
			err = authd.ErrOtherBrowser
		}
		if err != nil {
			p.failure(w, r, lang(r, f.Lang), p.projectName(f.Client), err)
			return
		}
		if f.Status != authd.SignInPending {
			// Approved (or refused) on another device meanwhile: the
			// page, reloaded, goes on as the waiting page does.
			handleWait(si, p).ServeHTTP(w, r)
			return
		}
		p.formPage(w, r, si, f, http.StatusOK, "", r.URL.Query().Get("change") != "")
	})
}

// formPage renders the step sign-in f is at, with errText when the last
// try failed.
func (p *pages) formPage(w http.ResponseWriter, r *http.Request, si SignIn, f authd.SignInFlow, status int, errText string, change bool) {
	d := p.base(r, f)
	d.Error = errText
	if f.Email == "" || change {
		d.Token = si.FormToken(f, "email")
		if d.Email == "" {
			d.Email = f.LoginHint
		}
		p.render(w, status, "email", d, "")
		return
	}
	d.Token = si.FormToken(f, "code")
	p.render(w, status, "code", d, authd.RedirectOrigin(f.RedirectURI))
}

func (p *pages) projectName(client string) string {
	proj, _ := p.projects.Lookup(client)
	return proj.DisplayName
}

// startingBrowserForm reads the POST of form ("email" or "code") of
// the browser that started the sign-in: the flow it names, that
// browser's secret, its language. It answers the failure itself (a
// cross-site or bad form, a sign-in gone or of another browser, a bad
// anti-forgery token) and then returns false.
func (p *pages) startingBrowserForm(w http.ResponseWriter, r *http.Request, si SignIn, cop *http.CrossOriginProtection, form string) (authd.SignInFlow, string, locale.Lang, bool) {
	if !readForm(w, r, cop) {
		return authd.SignInFlow{}, "", "", false
	}
	id := r.PostForm.Get("f")
	secret := flowSecret(r, id)
	f, err := si.SignInFlow(r.Context(), id)
	if err == nil && !f.SameBrowser(secret) {
		err = authd.ErrOtherBrowser
	}
	if err != nil {
		p.failure(w, r, lang(r, f.Lang), p.projectName(f.Client), err)
		return f, "", "", false
	}
	l := lang(r, f.Lang)
	if !si.CheckFormToken(f, form, r.PostForm.Get("csrf")) {
		p.formPage(w, r, si, f, http.StatusForbidden, l.T("error.form"), form == "email")
		return f, "", "", false
	}
	return f, secret, l, true
}

// handleSignInEmail mails the code and the link.
func handleSignInEmail(si SignIn, p *pages, cop *http.CrossOriginProtection) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, secret, l, ok := p.startingBrowserForm(w, r, si, cop, "email")
		if !ok {
			return
		}
		id := f.ID
		email := strings.TrimSpace(r.PostForm.Get("email"))
		noteEmail(r.Context(), email)
		nf, err := si.SignInSend(r.Context(), id, secret, email, clientIPFrom(r.Context()), string(l))
		// The metrics and the access line count it as a send-code.
		noteOutcome(r.Context(), "send", err)
		if err != nil {
			status, text := p.explain(l, p.projectName(f.Client), err)
			if errors.Is(err, authd.ErrSignInGone) || errors.Is(err, authd.ErrOtherBrowser) {
				p.failure(w, r, l, p.projectName(f.Client), err)
				return
			}
			setRetryAfter(w, status, err)
			f.Email = email
			d := p.base(r, f)
			d.Error, d.Token = text, si.FormToken(f, "email")
			p.render(w, status, "email", d, "")
			return
		}
		http.Redirect(w, r, "/signin?f="+nf.ID, http.StatusSeeOther)
	})
}

// handleSignInCode signs in with the typed code.
func handleSignInCode(si SignIn, p *pages, cop *http.CrossOriginProtection) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, secret, l, ok := p.startingBrowserForm(w, r, si, cop, "code")
		if !ok {
			return
		}
		id := f.ID
		code := strings.TrimSpace(r.PostForm.Get("code"))
		to, err := si.SignInCode(r.Context(), id, secret, code, clientIPFrom(r.Context()))
		noteOutcome(r.Context(), "verify", err)
		if err != nil {
			if errors.Is(err, authd.ErrSignInGone) || errors.Is(err, authd.ErrOtherBrowser) {
				p.failure(w, r, l, p.projectName(f.Client), err)
				return
			}
			status, text := p.explain(l, p.projectName(f.Client), err)
			setRetryAfter(w, status, err)
			p.formPage(w, r, si, f, status, text, false)
			return
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

// handleLinkPage is the mail's link. GET and HEAD change nothing: a mail
// scanner may fetch it any number of times. In the browser that started
// the sign-in it asks to continue; on another device it shows what is
// being approved and offers three numbers.
func handleLinkPage(si SignIn, p *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		id, code := q.Get("f"), q.Get("c")
		lp, err := si.SignInLinkPage(r.Context(), id, flowSecret(r, id))
		if err != nil {
			p.failure(w, r, lang(r, ""), "", err)
			return
		}
		p.linkPage(w, r, si, lp, code, http.StatusOK, "")
	})
}

func (p *pages) linkPage(w http.ResponseWriter, r *http.Request, si SignIn, lp authd.LinkPage, code string, status int, errText string) {
	f := lp.Flow
	d := p.base(r, f)
	d.Code, d.Error = code, errText
	if lp.SameBrowser {
		d.Token = si.FormToken(f, "confirm")
		p.render(w, status, "confirm", d, authd.RedirectOrigin(f.RedirectURI))
		return
	}
	d.Token = si.FormToken(f, "approve")
	d.Choices, d.Number = f.Choices, 0
	d.Agent, d.IP = f.Agent, f.IP
	if d.Agent == "" {
		d.Agent = "?"
	}
	d.When = time.Unix(f.Created, 0).UTC().Format("2006-01-02 15:04")
	d.Title = d.L.T("approve.title", "project", d.Project)
	p.render(w, status, "approve", d, "")
}

// handleLinkPost is the link page's POST: the only use of the link.
func handleLinkPost(si SignIn, p *pages, cop *http.CrossOriginProtection) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readForm(w, r, cop) {
			return
		}
		id, code := r.PostForm.Get("f"), r.PostForm.Get("c")
		secret := flowSecret(r, id)
		lp, err := si.SignInLinkPage(r.Context(), id, secret)
		if err != nil {
			p.failure(w, r, lang(r, ""), "", err)
			return
		}
		l := lang(r, lp.Flow.Lang)
		form := "approve"
		if lp.SameBrowser {
			form = "confirm"
		}
		if !si.CheckFormToken(lp.Flow, form, r.PostForm.Get("csrf")) {
			p.linkPage(w, r, si, lp, code, http.StatusForbidden, l.T("error.form"))
			return
		}
		pick, _ := strconv.Atoi(r.PostForm.Get("pick"))
		to, err := si.SignInConfirm(r.Context(), id, secret, code, clientIPFrom(r.Context()), pick)
		noteOutcome(r.Context(), "verify", err)
		if err != nil {
			p.failure(w, r, l, p.projectName(lp.Flow.Client), err)
			return
		}
		if to != "" {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		// Approved for the other browser: this device gets nothing it
		// could sign in with.
		p.render(w, http.StatusOK, "approved", page{L: l, Project: p.projectName(lp.Flow.Client), Title: l.T("approved.title")}, "")
	})
}

// handleWait is the starting browser's page while another device
// approves: it reloads itself every WaitRefresh seconds, and once the
// approval is in it redirects to the client.
func handleWait(si SignIn, p *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("f")
		to, f, err := si.SignInWait(r.Context(), id, flowSecret(r, id))
		if err != nil {
			p.failure(w, r, lang(r, f.Lang), p.projectName(f.Client), err)
			return
		}
		if to != "" {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		d := p.base(r, f)
		d.Title = d.L.T("wait.title")
		// The page reloads itself (no script needed) unless its reader
		// asked it to stop (WCAG 2.2.1: a timed change the user can turn
		// off); "Check now" then reloads it by hand.
		if r.URL.Query().Get("still") == "" {
			d.Refresh = WaitRefresh
		}
		p.render(w, http.StatusOK, "wait", d, "")
	})
}

// handleSignInStyle serves the pages' one style sheet.
func handleSignInStyle() http.Handler {
	css, err := signinFiles.ReadFile("signin/style.css")
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		w.Write(css)
	})
}
