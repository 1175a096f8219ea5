package main

// The spec is a test fixture: the end-to-end tests' shared client
// (harness_test.go) sends everything through specTransport, which
// validates each request and each answer against the OpenAPI document
// authd serves, and fails the request — hence the test that made it — on
// any difference.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/testenv"
)

// specTransport is an http.RoundTripper that holds every exchange to the
// OpenAPI document:
//
//   - A request the document routes is validated (parameters, body,
//     Content-Type). When the document accepts it, the answer must be one
//     the operation lists. When it refuses it — the tests send bad input on
//     purpose — the answer must refuse it too: a 4xx (or a 503) the
//     operation lists, never a 2xx.
//   - A path the document does not list must answer its NotFound response;
//     a method a listed path does not have, its MethodNotAllowed response.
//   - HEAD is held to the GET operation, with an empty body.
//   - An answer must have a status the operation lists, a documented
//     Content-Type, every header the response marks required (and every
//     documented header it sends must match its schema), and a body that
//     matches the schema. Bodies of types kin-openapi cannot decode (HTML,
//     CSS, scripts) are checked for their type only; the document types
//     them as strings.
//
// A violation is returned as the request's error, so the test that sent it
// fails where it sent it, with the reason.
type specTransport struct {
	next http.RoundTripper
	spec func() (*spec, error)

	mu      sync.Mutex
	checked map[string]int // "operationId status" → exchanges validated
}

// validating wraps next; the document is the one authd serves.
func validating(next http.RoundTripper) *specTransport {
	return &specTransport{
		next:    next,
		spec:    sync.OnceValues(func() (*spec, error) { return loadSpec(httpapi.OpenAPI()) }),
		checked: map[string]int{},
	}
}

// CloseIdleConnections reaches the wrapped transport: the harness closes
// idle connections before stopping an instance.
func (t *specTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// validated returns how many exchanges were validated as key
// ("operationId status", or "unrouted 404" / "unrouted 405").
func (t *specTransport) validated(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checked[key]
}

func (t *specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sp, err := t.spec()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("openapi: the document does not load: %w", err)
	}
	var body []byte
	out := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))

	key, err := sp.check(req, body, resp, respBody)
	if err != nil {
		return nil, fmt.Errorf("openapi: %s %s answered %d against the document: %w", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	t.mu.Lock()
	t.checked[key]++
	t.mu.Unlock()
	return resp, nil
}

// spec is the loaded document, its router, and the answers it gives every
// request it does not route.
type spec struct {
	doc              *openapi3.T
	router           routers.Router
	notFound         *openapi3.ResponseRef
	methodNotAllowed *openapi3.ResponseRef
}

func loadSpec(raw []byte) (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("invalid document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	sp := &spec{doc: doc, router: router}
	if doc.Components != nil {
		sp.notFound = doc.Components.Responses["NotFound"]
		sp.methodNotAllowed = doc.Components.Responses["MethodNotAllowed"]
	}
	if sp.notFound == nil || sp.methodNotAllowed == nil {
		return nil, errors.New("components.responses lacks NotFound or MethodNotAllowed: the answers to unrouted requests")
	}
	return sp, nil
}

// check validates one exchange and names it for the counts.
func (sp *spec) check(req *http.Request, body []byte, resp *http.Response, respBody []byte) (string, error) {
	ctx := context.Background()
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	vreq.GetBody = nil
	head := req.Method == http.MethodHead
	if head {
		vreq.Method = http.MethodGet
	}
	opts := &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true, SkipSettingDefaults: true,
		// The OAuth endpoints' credentials: present in the scheme the
		// document names (authd itself judges whether they are right).
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			h := in.RequestValidationInput.Request.Header.Get("Authorization")
			if scheme := in.SecurityScheme.Scheme; !strings.HasPrefix(strings.ToLower(h), strings.ToLower(scheme)+" ") {
				return errors.New("no " + scheme + " credentials")
			}
			return nil
		}}

	route, params, err := sp.router.FindRoute(vreq)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return "unrouted 404", sp.checkUnrouted(ctx, vreq, opts, resp, respBody, head, http.StatusNotFound, sp.notFound)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return "unrouted 405", sp.checkUnrouted(ctx, vreq, opts, resp, respBody, head, http.StatusMethodNotAllowed, sp.methodNotAllowed)
	case err != nil:
		return "", fmt.Errorf("routing: %w", err)
	}
	key := route.Operation.OperationID + " " + strconv.Itoa(resp.StatusCode)
	if route.Operation.RequestBody != nil {
		readAsJSON(vreq.Header)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if reqErr := openapi3filter.ValidateRequest(ctx, in); reqErr != nil {
		// Outside the document, on purpose or not: the answer must refuse.
		if st := resp.StatusCode; st/100 != 4 && st != http.StatusServiceUnavailable {
			return key, fmt.Errorf("the document refuses the request, authd did not: %w", reqErr)
		}
	}
	return key, validateResponse(ctx, in, resp, respBody, head)
}

// readAsJSON applies the document's rule for request bodies (info's
// "Requests"): a missing Content-Type and any +json type are read as
// JSON, so they are validated as application/json.
func readAsJSON(h http.Header) {
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err == nil && strings.HasSuffix(mt, "+json") {
		h.Set("Content-Type", "application/json")
	}
}

// checkUnrouted holds the answer to a request the document does not route
// to the one response the document gives such requests.
func (sp *spec) checkUnrouted(ctx context.Context, vreq *http.Request, opts *openapi3filter.Options, resp *http.Response, body []byte, head bool, want int, answer *openapi3.ResponseRef) error {
	if resp.StatusCode != want {
		return fmt.Errorf("the document has no such operation, so the answer must be %d", want)
	}
	route := &routers.Route{
		Spec: sp.doc, Path: vreq.URL.Path, PathItem: &openapi3.PathItem{}, Method: vreq.Method,
		Operation: &openapi3.Operation{OperationID: "unrouted", Responses: openapi3.NewResponses(openapi3.WithStatus(want, answer))},
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, Route: route, Options: opts}
	return validateResponse(ctx, in, resp, body, head)
}

// validateResponse holds an answer to the operation's responses. It checks
// itself what kin-openapi's ValidateResponse leaves out: undocumented
// redirect statuses, HEAD, required headers on those, and Content-Types
// it has no decoder for.
func validateResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, resp *http.Response, body []byte, head bool) error {
	responses := in.Route.Operation.Responses
	ref := responses.Status(resp.StatusCode)
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("status %d is not documented", resp.StatusCode)
	}
	r := ref.Value
	status := strconv.Itoa(resp.StatusCode)
	if responses.Value(status) == nil {
		status += " (as " + status[:1] + "XX)"
	}
	for name, h := range r.Headers {
		if h.Value != nil && h.Value.Required && resp.Header.Get(name) == "" {
			return fmt.Errorf("required header %s is missing", name)
		}
	}
	opts := *in.Options
	ct := resp.Header.Get("Content-Type")
	switch {
	case head:
		if len(body) != 0 {
			return fmt.Errorf("HEAD answered with a body of %d bytes", len(body))
		}
		opts.ExcludeResponseBody = true
	case len(r.Content) == 0:
		if len(body) != 0 {
			return fmt.Errorf("the document gives %s no body; the answer has %d bytes (%s)", status, len(body), ct)
		}
	default:
		if r.Content.Get(ct) == nil {
			return fmt.Errorf("Content-Type %q is not documented for %s", ct, status)
		}
		mt, _, _ := mime.ParseMediaType(ct)
		if openapi3filter.RegisteredBodyDecoder(mt) == nil && !strings.HasSuffix(mt, "+json") {
			// HTML, CSS, a script, an image: the document says only
			// that it is there.
			opts.ExcludeResponseBody = true
		}
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: &opts}
	rin.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(ctx, rin)
}

// The validator itself: what it must let pass, and what it must catch.
func TestSpecValidator(t *testing.T) {
	sp, err := loadSpec(httpapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	const (
		js   = "application/json"
		sent = `{"message":"Verification code sent successfully"}`
	)
	limits := []string{"RateLimit-Limit", "10", "RateLimit-Remaining", "9", "RateLimit-Reset", "6"}
	cases := []struct {
		name                 string
		method, path, ct, in string
		status               int
		header               []string // the answer's, name value ...
		out                  string
		want                 string // in the error; "" for none
	}{
		{"liveness", "GET", "/api/v1/health", "", "", 200, []string{"Content-Type", js}, `{"status":"ok"}`, ""},
		{"liveness, wrong value", "GET", "/api/v1/health", "", "", 200, []string{"Content-Type", js}, `{"status":"fine"}`, "doesn't match schema"},
		{"liveness, undocumented status", "GET", "/api/v1/health", "", "", 418, []string{"Content-Type", js}, `{"detail":"x"}`, `Content-Type "application/json" is not documented for 418 (as 4XX)`},
		{"liveness as HTML", "GET", "/api/v1/health", "", "", 200, []string{"Content-Type", "text/html"}, `<p>ok`, `Content-Type "text/html" is not documented`},
		{"HEAD", "HEAD", "/api/v1/health", "", "", 200, []string{"Content-Type", js}, ``, ""},
		{"HEAD with a body", "HEAD", "/api/v1/health", "", "", 200, []string{"Content-Type", js}, `{"status":"ok"}`, "HEAD answered with a body"},
		{"HEAD, undocumented status", "HEAD", "/api/v1/health", "", "", 204, nil, ``, "status 204 is not documented"},
		{"send-code", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com","project_id":"shop","extra":{"x":[1]}}`, 200, append([]string{"Content-Type", js}, limits...), sent, ""},
		{"send-code read as JSON without a type", "POST", "/api/v1/auth/send-code", "", `{"email":"a@example.com","project_id":"shop"}`, 200, []string{"Content-Type", js}, sent, ""},
		{"send-code taking a form body", "POST", "/api/v1/auth/send-code", "application/x-www-form-urlencoded", `{"email":"a@example.com","project_id":"shop"}`, 200, []string{"Content-Type", js}, sent, "the document refuses the request"},
		{"a field added to the frozen v1 body", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com","project_id":"shop"}`, 200, []string{"Content-Type", js}, `{"message":"Verification code sent successfully","debug":true}`, "additional properties"},
		{"another message", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com","project_id":"shop"}`, 200, []string{"Content-Type", js}, `{"message":"Sent"}`, "doesn't match schema"},
		{"a RateLimit header that is no number", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com","project_id":"shop"}`, 200, []string{"Content-Type", js, "RateLimit-Remaining", "many"}, sent, `"RateLimit-Remaining"`},
		{"429 without Retry-After", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com","project_id":"shop"}`, 429, []string{"Content-Type", js}, `{"detail":"Too many requests. Please try again later."}`, "Retry-After is missing"},
		{"429", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com","project_id":"shop"}`, 429, append([]string{"Content-Type", js, "Retry-After", "60"}, limits...), `{"detail":"Too many requests. Please try again later."}`, ""},
		{"accepted what the document refuses", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com"}`, 200, []string{"Content-Type", js}, sent, "the document refuses the request, authd did not"},
		{"refused what the document refuses", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com"}`, 422, []string{"Content-Type", js}, `{"detail":[{"loc":["body","project_id"],"msg":"Field required","type":"missing"}]}`, ""},
		{"a 422 not in FastAPI's shape", "POST", "/api/v1/auth/send-code", js, `{"email":"a@example.com"}`, 422, []string{"Content-Type", js}, `{"detail":"project_id is missing"}`, "doesn't match schema"},
		{"a JSON syntax error's offset", "POST", "/api/v1/auth/send-code", js, `{"email":`, 422, []string{"Content-Type", js}, `{"detail":[{"loc":["body",9],"msg":"JSON decode error","type":"json_invalid"}]}`, ""},
		{"text/plain is 415", "POST", "/api/v1/auth/send-code", "text/plain", `{}`, 415, []string{"Content-Type", js}, `{"detail":"Unsupported Media Type: send application/json"}`, ""},
		{"401", "POST", "/api/v1/auth/verify-code", js, `{"email":"a@example.com","project_id":"shop","code":"123456"}`, 401, []string{"Content-Type", js}, `{"detail":"Invalid or expired verification code"}`, ""},
		{"401 that says why", "POST", "/api/v1/auth/verify-code", js, `{"email":"a@example.com","project_id":"shop","code":"123456"}`, 401, []string{"Content-Type", js}, `{"detail":"Code expired"}`, "doesn't match schema"},
		{"delivery", "GET", "/api/v2/auth/deliveries/0123abcd", "", "", 200, []string{"Content-Type", js, "Cache-Control", "no-store"}, `{"status":"retrying","attempts":1,"next_attempt_at":"2026-01-02T03:04:05.678Z"}`, ""},
		{"delivery that may be cached", "GET", "/api/v2/auth/deliveries/0123abcd", "", "", 200, []string{"Content-Type", js, "Cache-Control", "max-age=60"}, `{"status":"sent","attempts":1}`, `"Cache-Control"`},
		{"delivery, not a date", "GET", "/api/v2/auth/deliveries/0123abcd", "", "", 200, []string{"Content-Type", js, "Cache-Control", "no-store"}, `{"status":"retrying","attempts":1,"next_attempt_at":"soon"}`, "date-time"},
		{"unknown path", "GET", "/nope", "", "", 404, []string{"Content-Type", js}, `{"detail":"Not Found"}`, ""},
		{"unknown path answered", "GET", "/nope", "", "", 200, []string{"Content-Type", js}, `{}`, "the answer must be 404"},
		{"unknown path, net/http's text", "GET", "/nope", "", "", 404, []string{"Content-Type", "text/plain; charset=utf-8"}, "404 page not found\n", `Content-Type "text/plain; charset=utf-8" is not documented`},
		{"unknown method", "PUT", "/api/v1/health", "", "", 405, []string{"Content-Type", js, "Allow", "GET, HEAD"}, `{"detail":"Method Not Allowed"}`, ""},
		{"unknown method, no Allow", "PUT", "/api/v1/health", "", "", 405, []string{"Content-Type", js}, `{"detail":"Method Not Allowed"}`, "Allow is missing"},
		{"unknown method answered", "DELETE", "/api/v1/auth/send-code", "", "", 200, []string{"Content-Type", js}, `{}`, "the answer must be 405"},
		{"preflight", "OPTIONS", "/api/v1/auth/send-code", "", "", 204, []string{"Access-Control-Allow-Origin", "https://shop.example.com", "Access-Control-Allow-Methods", "GET, POST", "Access-Control-Allow-Headers", "Content-Type, X-Request-ID", "Access-Control-Max-Age", "600"}, "", ""},
		{"preflight with a body", "OPTIONS", "/api/v1/auth/send-code", "", "", 204, []string{"Access-Control-Allow-Origin", "https://shop.example.com", "Access-Control-Allow-Methods", "GET, POST", "Access-Control-Allow-Headers", "Content-Type, X-Request-ID", "Access-Control-Max-Age", "600"}, "{}", "no body"},
		{"docs page", "GET", "/docs", "", "", 200, []string{"Content-Type", "text/html; charset=utf-8"}, "<!doctype html>", ""},
		{"metrics", "GET", "/metrics", "", "", 200, []string{"Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"}, "go_goroutines 7\n", ""},
		{"the document", "GET", "/api/v1/openapi.json", "", "", 200, []string{"Content-Type", "application/openapi+json"}, `{"openapi":"3.1.0"}`, ""},
		{"the document, not an object", "GET", "/api/v1/openapi.json", "", "", 200, []string{"Content-Type", "application/openapi+json"}, `"openapi"`, "doesn't match schema"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://127.0.0.1:8013"+tc.path, strings.NewReader(tc.in))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.method == http.MethodOptions {
				req.Header.Set("Origin", "https://shop.example.com")
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
			for i := 0; i+1 < len(tc.header); i += 2 {
				resp.Header.Set(tc.header[i], tc.header[i+1])
			}
			_, err := sp.check(req, []byte(tc.in), resp, []byte(tc.out))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("a true exchange was refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("not caught; want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want one with %q", err, tc.want)
			}
		})
	}
}

// The transport fails the request whose answer is wrong, passes a right
// one with its body intact, and forwards the request's body unchanged.
func TestSpecTransport(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/auth/send-code" {
			w.Write([]byte(`{"message":"Verification code sent successfully"}`))
			return
		}
		w.Write([]byte(`{"status":"fine"}`))
	}))
	defer srv.Close()
	c := &http.Client{Transport: validating(http.DefaultTransport)}
	body := `{"email":"a@example.com","project_id":"shop"}`
	resp, err := c.Post(srv.URL+"/api/v1/auth/send-code", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("a right answer failed: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body || string(b) != `{"message":"Verification code sent successfully"}` {
		t.Fatalf("sent %q, got %q", got, b)
	}
	resp, err = c.Get(srv.URL + "/api/v1/health")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a wrong answer passed")
	}
	if !strings.Contains(err.Error(), "openapi: GET /api/v1/health answered 200") {
		t.Fatalf("error %v does not say what failed", err)
	}
}

// The end-to-end tests' client is the validating one, it validates real
// answers, and the document it holds them to is the one authd serves.
func TestSharedClientValidates(t *testing.T) {
	st, ok := client.Transport.(*specTransport)
	if !ok {
		t.Fatalf("the shared client's transport is %T: the end-to-end traffic is not validated", client.Transport)
	}
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"fine"}`))
	}))
	defer liar.Close()
	if resp, err := client.Get(liar.URL + "/api/v1/health"); err == nil {
		resp.Body.Close()
		t.Fatal("a wrong answer passed the shared client")
	}

	inst := start(t, map[string]string{})
	for key, path := range map[string]string{"health 200": "/api/v1/health", "unrouted 404": "/nope", "openapi 200": "/api/v1/openapi.json"} {
		before := st.validated(key)
		r := get(t, inst.URL+path)
		if st.validated(key) <= before {
			t.Errorf("GET %s (%d) was not counted as %q", path, r.Status, key)
		}
		if key == "openapi 200" && !bytes.Equal(r.Body, httpapi.OpenAPI()) {
			t.Error("the served document is not the one the client validates against")
		}
	}
}

// Swagger UI renders no Content-Type input for the JSON bodies (the old
// document listed it as a header parameter, and the page showed a box for
// it); the body it prefills from the document's examples is one authd
// accepts. The delivery route's path parameter is the control: the same
// selector finds Swagger UI's parameter rows.
func TestDocsShowNoContentTypeInput(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	inst := start(t, map[string]string{})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(inst.URL+"/docs"), chromedp.WaitVisible(`#operations-auth_v1-send-code-v1`)); err != nil {
		t.Fatalf("loading /docs: %v", err)
	}
	// open expands an operation and presses "Try it out".
	open := func(op string) error {
		return chromedp.Do(ctx,
			chromedp.Click(op+` .opblock-summary-control`),
			chromedp.WaitVisible(op+` .try-out__btn`),
			chromedp.Click(op+` .try-out__btn`),
			chromedp.WaitVisible(op+` button.execute`),
		)
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		if err != nil {
			t.Fatalf("counting %s: %v", sel, err)
		}
		return n
	}
	for _, op := range []string{"auth_v1-send-code-v1", "auth_v1-verify-code-v1", "auth_v2-send-code-v2", "auth_v2-verify-code-v2", "auth_v2-verify-proof-v2"} {
		op = "#operations-" + op
		if err := open(op); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if n := count(op + ` tr[data-param-name], ` + op + ` input[placeholder="Content-Type"]`); n != 0 {
			t.Errorf("%s shows %d parameter inputs; a JSON body needs none (Content-Type comes from the body's media type)", op, n)
		}
		body, err := chromedp.Run(ctx, chromedp.Value(op+` textarea.body-param__text`))
		if err != nil {
			t.Fatalf("%s: the request body: %v", op, err)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(body), &v); err != nil || strings.Contains(body, "additionalProp") {
			t.Errorf("%s prefills %q", op, body)
		}
	}
	const control = "#operations-auth_v2-delivery-v2"
	if err := open(control); err != nil {
		t.Fatalf("%s: %v", control, err)
	}
	if n := count(control + ` tr[data-param-name="delivery_id"]`); n != 1 {
		t.Fatalf("the delivery route's path parameter: %d rows; the selector no longer finds Swagger UI's parameters", n)
	}
}
