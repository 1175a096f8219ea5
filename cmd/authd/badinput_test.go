package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/testenv"
)

// Bad input: a clear 4xx, nothing stored, nothing sent, the submitted value
// never echoed.
func TestBadInput(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + ".com"
	cases := []struct {
		name, path, contentType, body string
		status                        int
		want                          string // in the body
	}{
		{"malformed JSON", "send-code", "application/json", `{"email": "a@example.com",`, 422, `"json_invalid"`},
		{"not an object", "send-code", "application/json", `["a@example.com"]`, 422, `"model_attributes_type"`},
		{"empty body", "send-code", "application/json", ``, 422, `"missing"`},
		{"missing email", "send-code", "application/json", `{"project_id":"shop"}`, 422, `"loc":["body","email"],"msg":"Field required","type":"missing"`},
		{"missing project", "send-code", "application/json", `{"email":"a@example.com"}`, 422, `"loc":["body","project_id"]`},
		{"empty email", "send-code", "application/json", `{"email":"","project_id":"shop"}`, 422, `"value_error"`},
		{"email not a string", "send-code", "application/json", `{"email":42,"project_id":"shop"}`, 422, `"string_type"`},
		{"project not a string", "send-code", "application/json", `{"email":"a@example.com","project_id":["x"]}`, 422, `"string_type"`},
		{"email without @", "send-code", "application/json", `{"email":"secretvalue.example.com","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"email with space", "send-code", "application/json", `{"email":"secret value@example.com","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"email with CRLF", "send-code", "application/json", `{"email":"secretvalue@example.com\r\nBcc: x@evil.com","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"email too long", "send-code", "application/json", `{"email":"` + long + `","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"display name", "send-code", "application/json", `{"email":"Secret Value <secretvalue@example.com>","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"quoted local part", "send-code", "application/json", `{"email":"\"secret value\"@example.com","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"non-ASCII local part", "send-code", "application/json", `{"email":"sécretvalue@example.com","project_id":"shop"}`, 422, `"loc":["body","email"]`},
		{"project with space", "send-code", "application/json", `{"email":"a@example.com","project_id":"secret value"}`, 422, `"string_pattern_mismatch"`},
		{"project too long", "send-code", "application/json", `{"email":"a@example.com","project_id":"` + strings.Repeat("p", 65) + `"}`, 422, `"loc":["body","project_id"]`},
		{"project with CRLF", "send-code", "application/json", `{"email":"a@example.com","project_id":"shop\r\nX-Evil: 1"}`, 422, `"loc":["body","project_id"]`},
		{"code of 5 digits", "verify-code", "application/json", `{"email":"a@example.com","project_id":"shop","code":"12345"}`, 422, `"loc":["body","code"]`},
		{"code with letters", "verify-code", "application/json", `{"email":"a@example.com","project_id":"shop","code":"12345a"}`, 422, `"loc":["body","code"]`},
		{"code as a number", "verify-code", "application/json", `{"email":"a@example.com","project_id":"shop","code":123456}`, 422, `"string_type"`},
		{"missing code", "verify-code", "application/json", `{"email":"a@example.com","project_id":"shop"}`, 422, `"loc":["body","code"]`},
		{"body over 16 KiB", "send-code", "application/json", `{"email":"a@example.com","project_id":"shop","pad":"` + strings.Repeat("x", 17<<10) + `"}`, 413, `"detail"`},
		{"wrong content type", "send-code", "text/plain", `{"email":"a@example.com","project_id":"shop"}`, 415, `"detail"`},
		{"XML", "verify-code", "application/xml", `<x/>`, 415, `"detail"`},
		{"never sent a code", "verify-code", "application/json", `{"email":"never-` + randHex(4) + `@example.com","project_id":"shop","code":"123456"}`, 401, `{"detail":"Invalid or expired verification code"}`},
	}
	for _, v := range []string{"v1", "v2"} {
		for _, tc := range cases {
			t.Run(v+"/"+tc.name, func(t *testing.T) {
				r := post(t, inst.URL+"/api/"+v+"/auth/"+tc.path, tc.contentType, tc.body)
				if r.Status != tc.status || !strings.Contains(string(r.Body), tc.want) {
					t.Fatalf("%d %s; want %d with %s", r.Status, r.Body, tc.status, tc.want)
				}
				if strings.Contains(string(r.Body), "secret") || strings.Contains(string(r.Body), "evil") {
					t.Fatalf("the body echoes the submitted value: %s", r.Body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type %q", ct)
				}
			})
		}
	}
	if n := len(env.SMTP.Messages()); n != 0 {
		t.Fatalf("%d mails sent for bad input", n)
	}
	// Nothing stored: no code, no cooldown, no budget. Only the client-IP
	// verify limit of the well-formed never-sent verify may exist.
	opt, _ := goredis.ParseURL(testenv.RedisURL(t))
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), env.Env["REDIS_KEY_PREFIX"]+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		// The mail queue's streams exist from start-up (the workers'
		// consumer group needs them); bad input must leave them empty.
		if strings.HasSuffix(k, ":mail") && rdb.Type(context.Background(), k).Val() == "stream" &&
			rdb.XLen(context.Background(), k).Val() == 0 {
			continue
		}
		if !strings.Contains(k, "{ip:") || !strings.HasSuffix(k, ":verify") {
			t.Errorf("bad input left a key behind: %s", k)
		}
	}
}

// A missing Content-Type is read as JSON, as FastAPI did, for the
// original's server-side clients; a form type is 415, not JSON (it is what
// a web page can make a browser send cross-site without asking: `curl
// --json` is the README's way).
func TestCurlContentTypes(t *testing.T) {
	inst := start(t, map[string]string{})
	for ct, want := range map[string]int{"": 200, "application/json; charset=utf-8": 200, "application/x-www-form-urlencoded": 415} {
		r := post(t, inst.URL+"/api/v1/auth/send-code", ct, `{"email":"`+uniqueEmail("curl")+`","project_id":"shop"}`)
		if r.Status != want {
			t.Fatalf("Content-Type %q: %d %s, want %d", ct, r.Status, r.Body, want)
		}
	}
}

// pydantic ignored unknown fields; so does authd.
func TestUnknownFieldsIgnored(t *testing.T) {
	inst := start(t, map[string]string{})
	r := post(t, inst.URL+"/api/v1/auth/send-code", "application/json",
		`{"email":"`+uniqueEmail("extra")+`","project_id":"shop","extra":{"nested":[1,2]},"code":"x"}`)
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

// The OpenAPI document describes both versions, with the original's error
// shape and no huma-specific fields in the answers.
func TestOpenAPIDocument(t *testing.T) {
	inst := start(t, map[string]string{})
	resp, err := http.Get(inst.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("openapi.json: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	for _, p := range []string{"/api/v1/auth/send-code", "/api/v1/auth/verify-code", "/api/v2/auth/send-code", "/api/v2/auth/verify-code"} {
		op := doc.Paths[p]["post"]
		if op == nil || op["requestBody"] == nil {
			t.Errorf("%s: no POST with a request body", p)
		}
	}
	// The answers carry no $schema field (v1 bodies are frozen).
	r := post(t, inst.URL+"/api/v2/auth/send-code", "", `{"email":"`+uniqueEmail("schema")+`","project_id":"shop"}`)
	if strings.Contains(string(r.Body), "$schema") || r.Header.Get("Link") != "" {
		t.Fatalf("huma's schema link leaked into an answer: %s", r.Body)
	}
}
