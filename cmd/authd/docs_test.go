package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/authd/authd/internal/testenv"
)

// /docs in headless Chromium: the page loads with no failed request and
// nothing from another host, shows the auth endpoints, and "Try it out" of
// send-code answers 200. The screenshot is the test's artifact
// (a PNG; go test -artifacts keeps it, see README, Tests).
func TestDocsInBrowser(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	inst := start(t, map[string]string{})
	base, _ := url.Parse(inst.URL)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 2000),
		chromedp.UserDataDir(t.TempDir()),
	)
	var mu sync.Mutex
	var problems []string
	urls := map[network.RequestID]string{}
	// Runs in the tab's message loop: record only, return fast.
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			urls[e.RequestID] = e.Request.URL
			u, err := url.Parse(e.Request.URL)
			if err != nil || (u.Scheme != "data" && u.Host != base.Host) {
				problems = append(problems, "request to another host: "+e.Request.URL)
			}
		case *network.EventLoadingFailed:
			problems = append(problems, "failed: "+urls[e.RequestID]+": "+e.ErrorText)
		case *network.EventResponseReceived:
			if e.Response.Status >= 400 {
				problems = append(problems, fmt.Sprintf("status %d for %s", e.Response.Status, e.Response.URL))
			}
		}
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithListener(listen))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()

	const op = `#operations-auth_v1-send-code-v1`
	var text, status, responseBody string
	var shot []byte
	err := chromedp.Do(ctx,
		chromedp.Navigate(inst.URL+"/docs"),
		chromedp.WaitVisible(op),
	)
	if err == nil {
		text, err = chromedp.Run(ctx, chromedp.Text(`#swagger-ui`))
	}
	if err == nil {
		err = chromedp.Do(ctx,
			chromedp.Click(op+` .opblock-summary-control`),
			chromedp.WaitVisible(op+` .try-out__btn`),
			chromedp.Click(op+` .try-out__btn`),
			chromedp.WaitVisible(op+` button.execute`),
			chromedp.Click(op+` button.execute`),
			chromedp.WaitVisible(op+` .live-responses-table tbody .response-col_status`),
		)
	}
	if err == nil {
		status, err = chromedp.Run(ctx, chromedp.Text(op+` .live-responses-table tbody .response-col_status`))
	}
	if err == nil {
		responseBody, err = chromedp.Run(ctx, chromedp.Text(op+` .live-responses-table tbody .response-col_description`))
	}
	if s, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		shot = s
	}
	if len(shot) > 0 {
		p := filepath.Join(t.ArtifactDir(), "docs.png")
		if werr := os.WriteFile(p, shot, 0o644); werr != nil {
			t.Errorf("screenshot: %v", werr)
		} else {
			t.Logf("screenshot: %s", p)
		}
	}
	if err != nil {
		t.Fatalf("driving /docs: %v", err)
	}
	for _, want := range []string{"/api/v1/auth/send-code", "/api/v1/auth/verify-code", "/api/v2/auth/send-code", "/api/v2/auth/verify-code", "/api/v1/health/ready"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %s", want)
		}
	}
	if !strings.Contains(status, "200") || !strings.Contains(responseBody, "Verification code sent successfully") {
		t.Errorf("try it out of send-code: status %q, body %q", status, responseBody)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
}
