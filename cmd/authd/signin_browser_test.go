package main

// The hosted sign-in in headless Chromium, as a user goes through it, in
// each language of the catalogue, with JavaScript off (the pages must not
// need it) and the mail read from a real SMTP server: the code typed; the
// link in the same browser after a mail scanner's GET and HEAD; the link
// on a second browser (another browser context: no shared cookies)
// approving the first with number matching, the first finishing by its
// own meta refresh; a used link. Each page is checked with axe-core (from
// its npm package, testdata/axe, which .ci/run installs with npm ci) and
// screenshotted: the artifacts are signin-<lang>-<page>.png under the
// test's artifact directory (go test -run TestSignInInBrowser -artifacts
// -outputdir out ./cmd/authd keeps them under out/).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/testenv"
)

// axeSource is axe-core's browser build from testdata/axe.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		testenv.Skip(t, "axe-core not installed (cd testdata/axe && npm ci): "+err.Error())
	}
	return string(b)
}

// relyingParty is a client's web server: its callback redeems the code
// and shows who signed in.
type relyingParty struct {
	srv *httptest.Server
	rp  *rp

	mu    sync.Mutex
	flows map[string]flow   // by state
	got   map[string]string // state → the signed-in address, or the error
}

func newRelyingParty(t *testing.T, issuer string) *relyingParty {
	t.Helper()
	p := &relyingParty{flows: map[string]flow{}, got: map[string]string{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state := r.URL.Query().Get("state")
		p.mu.Lock()
		f := p.flows[state]
		p.mu.Unlock()
		idt, _, err := p.rp.finish(t, "http://x"+r.URL.RequestURI(), f)
		out := ""
		if err != nil {
			out = "error: " + err.Error()
		} else {
			out = claimsOf(t, idt)["email"].(string)
		}
		p.mu.Lock()
		p.got[state] = out
		p.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><title>App</title><main><h1 id="done">Signed in</h1><p id="who">%s</p></main></html>`, out)
	}))
	t.Cleanup(p.srv.Close)
	p.rp = newRP(t, issuer, "app", rpSecret, p.srv.URL+"/callback")
	return p
}

func (p *relyingParty) start(lang string) (string, string) {
	f := newFlow()
	p.mu.Lock()
	p.flows[f.state] = f
	p.mu.Unlock()
	return p.rp.authURL(f, oauth2.SetAuthURLParam("ui_locales", lang)), f.state
}

func (p *relyingParty) result(state string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[state]
}

// tab is one browser tab of a test, JavaScript off.
type tab struct {
	t    *testing.T
	ctx  context.Context
	lang string
	axe  string
	dir  string
}

// check runs axe-core on the page (scripts on for that moment only) and
// saves its screenshot as signin-<lang>-<name>.png. skip names axe rules
// the page breaks on purpose.
func (b *tab) check(name string, skip ...string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, scripts(true)); err != nil {
		b.t.Fatalf("%s: %v", name, err)
	}
	res, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]byte](b.axe+`;
		axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
			rules: Object.fromEntries(`+jsList(skip)+`.map(id => [id, {enabled: false}]))})
			.then(r => r.violations.map(v => v.id + ": " + v.help + " (" + v.nodes.map(n => n.target.join(" ")).join(", ") + ")"))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: axe: %v", name, err)
	}
	var violations []string
	json.Unmarshal(res, &violations)
	for _, v := range violations {
		b.t.Errorf("%s (%s): accessibility: %s", name, b.lang, v)
	}
	if err := chromedp.Do(b.ctx, scripts(false)); err != nil {
		b.t.Fatalf("%s: %v", name, err)
	}
	shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", name, err)
	}
	path := filepath.Join(b.dir, "signin-"+b.lang+"-"+name+".png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// scripts turns the page's JavaScript on or off (Emulation).
func scripts(on bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !on})
		return err
	})
}

func jsList(ids []string) string {
	b, _ := json.Marshal(append([]string{}, ids...))
	return string(b)
}

func (b *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML("html"))
		b.t.Fatalf("at %s: %v\n%s", loc, err, html)
	}
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitLocation waits until the tab is at a URL starting with prefix.
func (b *tab) waitLocation(prefix string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		if strings.HasPrefix(loc, prefix) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the tab is at %s, not %s…", loc, prefix)
		}
		time.Sleep(100 * time.Millisecond) // the page's own meta refresh: nothing to wait on but the clock
	}
}

func TestSignInInBrowser(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	axe := axeSource(t)
	// Four languages, three sign-ins each, from one IP.
	e := startSignIn(t, map[string]string{"LIMIT_SEND_CODE_PER_IP": "0", "LIMIT_VERIFY_CODE_PER_IP": "0"})
	iss := e.inst.Env["AUTHD_ISSUER"]
	party := newRelyingParty(t, iss)
	dir := t.ArtifactDir()
	t.Logf("screenshots: %s", dir)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(900, 1000), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("chromium: %v", err)
	}

	for _, lang := range []string{"en", "de", "fr", "es"} {
		t.Run(lang, func(t *testing.T) {
			newTab := func(separate bool) *tab {
				var o []chromedp.ContextOption
				if separate {
					o = append(o, chromedp.WithNewBrowserContext())
				}
				ctx, cancel := chromedp.NewContext(bctx, o...)
				t.Cleanup(cancel)
				ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
				t.Cleanup(cancelT)
				b := &tab{t: t, ctx: ctx, lang: lang, axe: axe, dir: dir}
				b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
					if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
						return err
					}
					_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": lang}})
					return err
				}), scripts(false))
				return b
			}
			b := newTab(false)
			toCode := func(name string) (state, email, code, link string) {
				t.Helper()
				authURL, state := party.start(lang)
				email = uniqueEmail("browser-" + lang + "-" + name)
				n := len(e.smtp.Messages())
				b.do(chromedp.Navigate(authURL), chromedp.WaitVisible("#email"))
				if name == "code" {
					b.check("email")
				}
				b.do(chromedp.SendKeys("#email", email), chromedp.Click("button[type=submit]"), chromedp.WaitVisible("#code"))
				code, link = signInMail(t, e.smtp, email, n)
				if name == "code" {
					b.check("code")
				}
				return state, email, code, link
			}

			// 0. A redirect_uri the client has not registered: an error
			// page, and the browser stays on authd.
			bad, _ := party.start(lang)
			bad = strings.Replace(bad, url.QueryEscape(party.srv.URL+"/callback"), url.QueryEscape("https://evil.example/callback"), 1)
			b.do(chromedp.Navigate(bad), chromedp.WaitVisible(".error"))
			b.check("bad-redirect")
			if loc, _ := chromedp.Run(b.ctx, chromedp.Location()); !strings.HasPrefix(loc, iss+"/oauth2/authorize") {
				t.Fatalf("a wrong redirect_uri took the browser to %s", loc)
			}

			// 1. The code typed; a wrong one first, announced.
			state, email, code, _ := toCode("code")
			b.do(chromedp.SendKeys("#code", wrongCode(code, 1)), chromedp.Click("button[type=submit]"), chromedp.WaitVisible("#error"))
			b.check("code-wrong")
			b.do(chromedp.SendKeys("#code", code), chromedp.Click("button[type=submit]"), chromedp.WaitVisible("#done"))
			if got := party.result(state); got != email {
				t.Fatalf("typed code: the client got %q, want %q", got, email)
			}

			// 2. The link in the same browser, after a scanner's GET and
			// HEAD; then the used link.
			state, _, _, link := toCode("link")
			scanner := newBrowser(t, iss, "Mozilla/5.0 (compatible; scanner)")
			if p := scanner.do(http.MethodGet, link, nil); p.Status != 200 {
				t.Fatalf("scanner GET: %d", p.Status)
			}
			if p := scanner.do(http.MethodHead, link, nil); p.Status != 200 {
				t.Fatalf("scanner HEAD: %d", p.Status)
			}
			b.do(chromedp.Navigate(link), chromedp.WaitVisible("form button[type=submit]"))
			b.check("confirm")
			b.do(chromedp.Click("form button[type=submit]"), chromedp.WaitVisible("#done"))
			if got := party.result(state); got == "" || strings.HasPrefix(got, "error") {
				t.Fatalf("link: the client got %q", got)
			}
			b.do(chromedp.Navigate(link), chromedp.WaitVisible("h1"))
			b.check("link-used")
			if s := b.text(".error"); s == "" {
				t.Fatalf("the used link's page says nothing")
			}

			// 3. The link on another device: number matching.
			state, _, _, link = toCode("other")
			b.do(chromedp.Click(`a[href^="/signin/wait"]`), chromedp.WaitVisible(".number"))
			// The waiting page reloads itself (meta refresh: it must work
			// without script), which axe's meta-refresh rule refuses; it
			// offers to stop (checked below), as WCAG 2.2.1 asks.
			b.check("wait", "meta-refresh")
			number := strings.TrimSpace(b.text(".number"))
			phone := newTab(true)
			phone.do(chromedp.Navigate(link), chromedp.WaitVisible("button.choice"))
			phone.check("approve")
			phone.do(chromedp.Click(`button.choice[value="`+number+`"]`), chromedp.WaitVisible(`p[role="status"]`))
			phone.check("approved")
			if loc, _ := chromedp.Run(phone.ctx, chromedp.Location()); strings.Contains(loc, "code=") {
				t.Fatalf("the approving device got a code: %s", loc)
			}
			b.waitLocation(party.srv.URL+"/callback?", 3*httpapi.WaitRefresh*time.Second)
			b.do(chromedp.WaitVisible("#done"))
			if got := party.result(state); got == "" || strings.HasPrefix(got, "error") {
				t.Fatalf("other device: the client got %q", got)
			}

			// The waiting page, told to stop reloading: nothing for axe
			// to refuse, and "Check now" finishes by hand.
			state, _, _, link = toCode("still")
			b.do(chromedp.Click(`a[href^="/signin/wait"]`), chromedp.WaitVisible(".number"),
				chromedp.Click(`a[href$="still=1"]`), chromedp.WaitVisible(".number"))
			b.check("wait-still")
			number = strings.TrimSpace(b.text(".number"))
			phone.do(chromedp.Navigate(link), chromedp.WaitVisible("button.choice"),
				chromedp.Click(`button.choice[value="`+number+`"]`), chromedp.WaitVisible(`p[role="status"]`))
			b.do(chromedp.Click(`a[href$="still=1"]`))
			b.waitLocation(party.srv.URL+"/callback?", 10*time.Second)
			b.do(chromedp.WaitVisible("#done"))
			if got := party.result(state); got == "" || strings.HasPrefix(got, "error") {
				t.Fatalf("other device, checked by hand: the client got %q", got)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) < 4*10 {
		t.Errorf("%d screenshots in %s, want 10 per language", len(entries), dir)
	}
}
