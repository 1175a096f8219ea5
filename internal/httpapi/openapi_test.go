package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/authd/authd"
	"github.com/authd/authd/verify"
)

// recorder keeps the patterns routes registers, and registers them.
type recorder struct {
	*http.ServeMux
	patterns []string
}

func (r *recorder) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.Handle(pattern, h)
}

// fullFlow is every route's flow.
type fullFlow struct{ opsFlow }

type fakeTokens struct{ verify.SharedSecret }

func (fakeTokens) JWKS() []byte               { return []byte(`{"keys":[]}`) }
func (fakeTokens) Algorithm() string          { return "EdDSA" }
func (fakeTokens) Issuer() string             { return "https://auth.example.com" }
func (fakeTokens) CacheMaxAge() time.Duration { return time.Minute }
func (fakeTokens) SignsRS256() bool           { return false }

const allowedOrigin = "https://shop.example.com"

// everything is the Options under which every route exists.
func everything(t *testing.T) Options {
	t.Helper()
	reg := prometheus.NewRegistry()
	projects, err := authd.NewRegistry([]authd.Project{{ID: "shop", DisplayName: "Shop", AllowedOrigins: []string{allowedOrigin}}})
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		ProjectName: "P", Flow: &fullFlow{}, Logger: slog.New(slog.DiscardHandler),
		Observe: &Observer{Metrics: NewMetrics(reg, reg)}, ServeMetrics: true, Projects: projects,
		Tokens: fakeTokens{verify.SharedSecret("0123456789abcdef0123456789abcdef")},
		Proofs: verify.NewProofVerifier("0123456789abcdef0123456789abcdef", DefaultProofMaxAge),
		SignIn: &authd.Service{},
	}
}

// document is the part of the OpenAPI document these tests read.
type document struct {
	OpenAPI    string                                `json:"openapi"`
	Servers    []map[string]any                      `json:"servers"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Parameters    map[string]parameter       `json:"parameters"`
		RequestBodies map[string]json.RawMessage `json:"requestBodies"`
		Schemas       map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

type parameter struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type operation struct {
	OperationID string           `json:"operationId"`
	Security    *[]any           `json:"security"`
	Parameters  []parameter      `json:"parameters"`
	Responses   map[string]any   `json:"responses"`
	RequestBody *json.RawMessage `json:"requestBody"`
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadDocument(t *testing.T) (document, map[string]operation) {
	t.Helper()
	var doc document
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("the served document: %v", err)
	}
	ops := map[string]operation{} // "METHOD /path"
	for path, item := range doc.Paths {
		for key, raw := range item {
			if !slices.Contains(methods, key) {
				continue
			}
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			ops[strings.ToUpper(key)+" "+path] = op
		}
	}
	return doc, ops
}

// Every route routes.go registers is in the document, and every operation
// of the document is served: the mux routes each documented path and
// method to a pattern of the same method, and the CORS preflights are
// answered.
func TestRoutesAreDocumented(t *testing.T) {
	opts := everything(t)
	rec := &recorder{ServeMux: http.NewServeMux()}
	routes(rec, opts)
	h := New(opts)
	_, ops := loadDocument(t)

	// Registered, but not a path of the document: Redocly's recommended
	// rules refuse a path with a trailing slash; /docs's description says
	// that /docs/ redirects there.
	undocumented := map[string]bool{"GET /docs/{$}": true}
	// The hosted sign-in's pages are for people, not an API: the "sign
	// in" tag's description says where they are.
	for _, p := range []string{"GET /signin", "POST /signin/email", "POST /signin/code", "GET /signin/link",
		"POST /signin/link", "GET /signin/wait", "GET /signin/style.css"} {
		undocumented[p] = true
	}

	param := regexp.MustCompile(`\{[^}]+\}`)
	served := map[string]bool{}
	for key := range ops {
		method, path, _ := strings.Cut(key, " ")
		path = param.ReplaceAllString(path, "x1")
		if method == http.MethodOptions {
			// Answered by the CORS middleware, before the mux.
			w := doReq(t, h, method, path, "", "Origin", allowedOrigin, "Access-Control-Request-Method", "POST")
			if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != allowedOrigin {
				t.Errorf("%s: preflight answered %d %v", key, w.Code, w.Header())
			}
			continue
		}
		_, pattern := rec.Handler(httptest.NewRequest(method, path, nil))
		if !strings.HasPrefix(pattern, method+" ") {
			t.Errorf("%s is documented but routes to %q", key, pattern)
			continue
		}
		served[pattern] = true
	}
	for _, p := range rec.patterns {
		switch {
		case undocumented[p]:
		case !served[p]:
			t.Errorf("route %q is not in the document", p)
		}
	}
	for p := range undocumented {
		if !slices.Contains(rec.patterns, p) {
			t.Errorf("%q is listed as undocumented but is not a route", p)
		}
	}
}

// What the document promises about itself: 3.1, a server, no credentials
// anywhere, no Content-Type parameter, request bodies that allow unknown
// properties, the old document's operation ids, the error statuses of
// every body-taking operation, and JSON that is the embedded YAML.
func TestOpenAPIDocumentHolds(t *testing.T) {
	want, err := yaml.YAMLToJSON(openapiYAML)
	if err != nil || string(want) != string(OpenAPI()) {
		t.Fatalf("the served JSON is not the embedded YAML (%v)", err)
	}
	doc, ops := loadDocument(t)
	if doc.OpenAPI != "3.1.0" || len(doc.Servers) == 0 {
		t.Fatalf("openapi %q, servers %v", doc.OpenAPI, doc.Servers)
	}
	ids := map[string]string{}
	for key, op := range ops {
		if op.OperationID == "" {
			t.Errorf("%s has no operationId", key)
		} else if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %s", key, other, op.OperationID)
		}
		ids[op.OperationID] = key
		// Only the OAuth endpoints take credentials: the client's at the
		// token endpoint, the access token at userinfo.
		credentials := strings.HasPrefix(key, "POST /oauth2/token") || strings.Contains(key, " /oauth2/userinfo")
		if op.Security == nil || (len(*op.Security) != 0) != credentials {
			t.Errorf("%s: security is not [] (none of authd's routes but the token and userinfo endpoints takes credentials)", key)
		}
		for _, p := range op.Parameters {
			if p.Ref != "" {
				p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
			}
			if p.In == "header" && strings.EqualFold(p.Name, "Content-Type") {
				t.Errorf("%s has a Content-Type parameter: the body's media type says it", key)
			}
		}
		if strings.HasPrefix(key, "POST ") {
			if op.RequestBody == nil {
				t.Errorf("%s has no request body", key)
			}
			want := []string{"413", "415", "422", "503"}
			switch {
			case key == "POST /oauth2/userinfo":
				// RFC 6750: a missing or bad token is 401; the body is not read.
				want = []string{"401"}
			case strings.HasPrefix(key, "POST /oauth2/"):
				// RFC 6749's errors: a 400 with {"error"}, no 422.
				want = []string{"400"}
			}
			for _, st := range want {
				if op.Responses[st] == nil {
					t.Errorf("%s does not document %s", key, st)
				}
			}
		}
	}
	for _, id := range []string{"health", "ready", "send-code-v1", "verify-code-v1", "send-code-v2", "verify-code-v2", "delivery-v2", "verify-proof-v2"} {
		if ids[id] == "" {
			t.Errorf("operationId %s of the previous document is gone", id)
		}
	}
	for name, body := range doc.Components.RequestBodies {
		var rb struct {
			Content map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				} `json:"schema"`
			} `json:"content"`
		}
		json.Unmarshal(body, &rb)
		for mt, c := range rb.Content {
			schema := doc.Components.Schemas[strings.TrimPrefix(c.Schema.Ref, "#/components/schemas/")]
			var s map[string]any
			if json.Unmarshal(schema, &s) != nil || s["additionalProperties"] != nil {
				t.Errorf("request body %s (%s): unknown properties are ignored, the schema must allow them: %s", name, mt, schema)
			}
		}
	}
	var sorted []string
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	t.Logf("operations: %s", strings.Join(sorted, " "))
}

// /docs/ is /docs.
func TestDocsSlashRedirects(t *testing.T) {
	h := New(Options{ProjectName: "P", Flow: &opsFlow{}, Logger: slog.New(slog.DiscardHandler)})
	w := doReq(t, h, "GET", "/docs/", "")
	if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != "/docs" {
		t.Fatalf("/docs/: %d, Location %q", w.Code, w.Header().Get("Location"))
	}
}

// The document is served with its media type, as huma served it.
func TestOpenAPIServed(t *testing.T) {
	h := New(Options{ProjectName: "P", Flow: &opsFlow{}, Logger: slog.New(slog.DiscardHandler)})
	w := doReq(t, h, "GET", "/api/v1/openapi.json", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/openapi+json" || w.Body.String() != string(OpenAPI()) {
		t.Fatalf("/api/v1/openapi.json: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}
