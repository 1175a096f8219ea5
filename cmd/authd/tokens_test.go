package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/backend"
	"github.com/authd/authd/internal/jwstest"
	"github.com/authd/authd/internal/jwt"
)

func get(t testing.TB, url string, header ...string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// v2Token runs send-code and v2 verify-code on a development instance and
// returns the answer.
func devV2Verify(t *testing.T, inst *instance, extra map[string]string) map[string]any {
	t.Helper()
	email := uniqueEmail("tok")
	if r := inst.send(t, "v2", email, "shop"); r.Status != 200 {
		t.Fatalf("send-code: %d %s", r.Status, r.Body)
	}
	body := map[string]string{"email": email, "project_id": "shop", "code": waitLogCode(t, inst, email)}
	for k, v := range extra {
		body[k] = v
	}
	r := postJSON(t, inst.URL+"/api/v2/auth/verify-code", body)
	if r.Status != 200 {
		t.Fatalf("v2 verify-code: %d %s", r.Status, r.Body)
	}
	return r.json(t)
}

func verifyProof(t *testing.T, inst *instance, body any) (int, map[string]any) {
	t.Helper()
	r := postJSON(t, inst.URL+"/api/v2/auth/verify-proof", body)
	var m map[string]any
	json.Unmarshal(r.Body, &m)
	return r.Status, m
}

// keyFile writes an Ed25519 key as TOKEN_KEY_FILE and returns it.
func keyFile(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	path := filepath.Join(t.TempDir(), "token.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, priv
}

// v2 verify-code carries a token whose signature and claims check out by
// hand against the published JWKS; v1's body is untouched (e2e_test.go);
// the discovery document names AUTHD_ISSUER whatever Host says.
func TestV2TokenAndPublishedKeys(t *testing.T) {
	inst := start(t, map[string]string{"AUTHD_ISSUER": "https://auth.example.com", "JWKS_CACHE_SECONDS": "120"})
	v := devV2Verify(t, inst, map[string]string{"nonce": "n-0S6_WzA2Mj"})
	if v["token_type"] != "Bearer" || v["expires_in"] != 900.0 {
		t.Fatalf("v2 answer: %v", v)
	}
	for _, f := range []string{"auth_user_id", "email", "project_id", "verified", "issued_at", "signature"} {
		if _, ok := v[f]; !ok {
			t.Errorf("v2 answer lacks the v1 field %s", f)
		}
	}
	raw := v["token"].(string)

	r := get(t, inst.URL+"/.well-known/jwks.json")
	if r.Status != 200 || r.Header.Get("Cache-Control") != "public, max-age=120" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("JWKS: %d %v %s", r.Status, r.Header, r.Body)
	}
	if bytes.Contains(r.Body, []byte(`"d"`)) {
		t.Fatalf("the JWKS holds a private key: %s", r.Body)
	}
	header, _, _ := jwstest.Parse(raw)
	pub, err := jwstest.JWKSKey(r.Body, header["kid"].(string))
	if err != nil {
		t.Fatalf("the token's kid is not published: %v", err)
	}
	_, claims, err := jwstest.VerifyEdDSA(raw, pub)
	if err != nil {
		t.Fatalf("hand-made check of the token: %v", err)
	}
	iat, _ := claims["iat"].(json.Number).Int64()
	exp, _ := claims["exp"].(json.Number).Int64()
	if claims["iss"] != "https://auth.example.com" || claims["sub"] != v["auth_user_id"] || claims["aud"] != "shop" ||
		claims["email"] != v["email"] || claims["email_verified"] != true || claims["nonce"] != "n-0S6_WzA2Mj" ||
		exp-iat != 900 || iat != int64(v["issued_at"].(float64)) || claims["jti"] == "" {
		t.Fatalf("claims = %v (answer %v)", claims, v)
	}

	r = get(t, inst.URL+"/.well-known/openid-configuration", "Host", "evil.example")
	d := r.json(t)
	algs, _ := d["id_token_signing_alg_values_supported"].([]any)
	if r.Status != 200 || d["issuer"] != "https://auth.example.com" || d["jwks_uri"] != "https://auth.example.com/.well-known/jwks.json" || len(algs) != 1 || algs[0] != "EdDSA" {
		t.Fatalf("discovery: %d %s", r.Status, r.Body)
	}
	if strings.Contains(inst.Logs.String(), raw) || strings.Contains(inst.Logs.String(), strings.Split(raw, ".")[2]) {
		t.Fatal("the token is in the log")
	}

	// verify-proof accepts the token and the v1 proof, with their claims.
	st, m := verifyProof(t, inst, map[string]any{"token": raw, "audience": "shop"})
	if st != 200 || m["valid"] != true || m["claims"].(map[string]any)["sub"] != v["auth_user_id"] {
		t.Fatalf("verify-proof(token): %d %v", st, m)
	}
	p := map[string]any{}
	for _, f := range []string{"auth_user_id", "email", "project_id", "verified", "issued_at", "signature"} {
		p[f] = v[f]
	}
	st, m = verifyProof(t, inst, map[string]any{"proof": p, "audience": "shop", "max_age_seconds": 60})
	if st != 200 || m["valid"] != true || m["claims"].(map[string]any)["email"] != v["email"] {
		t.Fatalf("verify-proof(proof): %d %v", st, m)
	}
	p["email"] = "eve@example.com"
	if st, m = verifyProof(t, inst, map[string]any{"proof": p, "audience": "*"}); st != 200 || m["valid"] != false || m["reason"] != "bad_signature" || m["claims"] != nil {
		t.Fatalf("verify-proof(tampered proof): %d %v", st, m)
	}
	p["email"] = v["email"]
	if st, m = verifyProof(t, inst, map[string]any{"proof": p, "audience": "other"}); m["reason"] != "wrong_audience" {
		t.Fatalf("verify-proof(proof, other audience): %d %v", st, m)
	}
}

// Every wrong token gets 200 valid:false with its reason from verify-proof.
// TOKEN_KEY_FILE gives the test authd's own key, so that it can sign the
// tokens authd would never make (expired, other issuer) by hand.
func TestVerifyProofRefusesForgeries(t *testing.T) {
	path, priv := keyFile(t)
	inst := start(t, map[string]string{"AUTHD_ISSUER": "https://auth.example.com", "TOKEN_KEY_FILE": path})
	v := devV2Verify(t, inst, nil)
	raw := v["token"].(string)
	header, claims, _ := jwstest.Parse(raw)
	kid := header["kid"].(string)
	with := func(k string, val any) map[string]any {
		c := map[string]any{}
		for kk, vv := range claims {
			c[kk] = vv
		}
		c[k] = val
		return c
	}
	hdr := func() map[string]any { return map[string]any{"kid": kid, "typ": "JWT"} }
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	cases := []struct {
		name, token, audience, reason string
	}{
		{"genuine", raw, "shop", ""},
		{"signed by hand with the key", jwstest.EdDSA(hdr(), claims, priv), "shop", ""},
		{"expired", jwstest.EdDSA(hdr(), with("exp", now.Add(-time.Minute).Unix()), priv), "shop", "expired"},
		{"wrong audience", raw, "another-project", "wrong_audience"},
		{"wrong issuer", jwstest.EdDSA(hdr(), with("iss", "https://evil.example"), priv), "shop", "wrong_issuer"},
		{"tampered", jwstest.Tamper(raw, with("sub", "00000000-0000-4000-8000-000000000000")), "shop", "bad_signature"},
		{"unknown kid", jwstest.EdDSA(map[string]any{"kid": "not-published"}, claims, other), "shop", "unknown_key"},
		{"alg none", jwstest.None(hdr(), claims), "shop", "unsupported_alg"},
		{"HS256 keyed with the public key", jwstest.HS256(hdr(), claims, priv.Public().(ed25519.PublicKey)), "shop", "alg_mismatch"},
		{"garbage", "abc", "*", "malformed"},
	}
	for _, tc := range cases {
		body := map[string]any{"token": tc.token}
		if tc.audience != "" {
			body["audience"] = tc.audience
		}
		st, m := verifyProof(t, inst, body)
		want := tc.reason == ""
		if st != 200 || m["valid"] != want || (tc.reason != "" && m["reason"] != tc.reason) {
			t.Errorf("%s: %d %v, want valid=%v reason %q", tc.name, st, m, want, tc.reason)
		}
		if !want && m["claims"] != nil {
			t.Errorf("%s: a refused token's claims were returned", tc.name)
		}
	}
}

// A malformed verify-proof request is 422, never 200 or 500.
func TestVerifyProofMalformed(t *testing.T) {
	inst := start(t, map[string]string{})
	goodProof := map[string]any{"auth_user_id": "u", "email": "a@example.com", "project_id": "shop", "verified": true, "issued_at": 1, "signature": "x"}
	bad := []any{
		map[string]any{},
		map[string]any{"token": ""},
		map[string]any{"token": 5},
		map[string]any{"token": "a.b.c", "proof": goodProof},
		map[string]any{"proof": map[string]any{"email": "a@example.com"}},
		map[string]any{"proof": "a proof"},
		map[string]any{"proof": map[string]any{"auth_user_id": "u", "email": "a@example.com", "project_id": "shop", "verified": "yes", "issued_at": 1, "signature": "x"}},
		map[string]any{"token": "a.b.c", "audience": "bad audience!"},
		// No audience: a token of any project would pass where one
		// project's was meant; "*" says so on purpose.
		map[string]any{"token": "a.b.c"},
		map[string]any{"proof": goodProof},
		map[string]any{"token": "a.b.c", "audience": nil},
		map[string]any{"token": "a.b.c", "audience": ""},
		map[string]any{"token": "a.b.c", "max_age_seconds": "60"},
		map[string]any{"token": "a.b.c", "max_age_seconds": 0},
		map[string]any{"token": "a.b.c", "max_age_seconds": 1.5},
		[]any{"token"},
	}
	for _, b := range bad {
		r := postJSON(t, inst.URL+"/api/v2/auth/verify-proof", b)
		if r.Status != 422 {
			t.Errorf("%v: %d %s, want 422", b, r.Status, r.Body)
		}
	}
	if r := post(t, inst.URL+"/api/v2/auth/verify-proof", "application/json", "{not json"); r.Status != 422 {
		t.Errorf("invalid JSON: %d", r.Status)
	}
	if r := post(t, inst.URL+"/api/v2/auth/verify-proof", "text/plain", `{"token":"a.b.c"}`); r.Status != 415 {
		t.Errorf("text/plain: %d", r.Status)
	}
	if st, m := verifyProof(t, inst, map[string]any{"proof": goodProof, "audience": "*"}); st != 200 || m["valid"] != false {
		t.Errorf("a well-formed proof that does not verify: %d %v", st, m)
	}
}

// HS256: the secret signs, the JWKS publishes nothing, discovery says HS256.
func TestHS256Tokens(t *testing.T) {
	secret := "hs256-e2e-secret-0123456789abcdef0123456789"
	inst := start(t, map[string]string{"TOKEN_ALG": "HS256", "TOKEN_HS256_SECRET": secret})
	v := devV2Verify(t, inst, nil)
	if _, _, err := jwstest.VerifyHS256(v["token"].(string), []byte(secret)); err != nil {
		t.Fatalf("hand-made HS256 check: %v", err)
	}
	if r := get(t, inst.URL+"/.well-known/jwks.json"); string(r.Body) != `{"keys":[]}` {
		t.Fatalf("JWKS in HS256 mode: %s", r.Body)
	}
	d := get(t, inst.URL+"/.well-known/openid-configuration").json(t)
	if algs := d["id_token_signing_alg_values_supported"].([]any); algs[0] != "HS256" || d["issuer"] != "http://localhost:"+inst.Env["PORT"] {
		t.Fatalf("discovery: %v", d)
	}
	if st, m := verifyProof(t, inst, map[string]any{"token": v["token"], "audience": "shop"}); st != 200 || m["valid"] != true {
		t.Fatalf("verify-proof of an HS256 token: %d %v", st, m)
	}
}

// Two instances starting together on one empty PostgreSQL database make one
// key and serve the same JWKS; `authd keys rotate` reaches both within 5 s
// without a restart; a token signed before the rotation still verifies;
// new tokens carry the new kid; `authd keys list` shows both.
func TestRotationAcrossInstances(t *testing.T) {
	prod := newProduction(t)
	var insts [2]*instance
	var wg sync.WaitGroup
	for i := range insts {
		env := cloneEnv(prod.Env)
		env["JWKS_CACHE_SECONDS"] = "60"
		wg.Go(func() { insts[i] = start(t, env) })
	}
	wg.Wait()
	if insts[0] == nil || insts[1] == nil {
		t.FailNow() // start reported why
	}
	jwks := func(i int) []byte { return get(t, insts[i].URL+"/.well-known/jwks.json").Body }
	first := jwks(0)
	var set struct{ Keys []map[string]any }
	json.Unmarshal(first, &set)
	if len(set.Keys) != 1 || !bytes.Equal(first, jwks(1)) {
		t.Fatalf("instances started together serve\n%s\nand\n%s\nwant one same key", first, jwks(1))
	}
	oldKID := set.Keys[0]["kid"].(string)

	email := uniqueEmail("rot")
	code := insts[0].sendAndRead(t, prod.SMTP, email, "shop")
	r := postJSON(t, insts[0].URL+"/api/v2/auth/verify-code", map[string]string{"email": email, "project_id": "shop", "code": code})
	if r.Status != 200 {
		t.Fatalf("v2 verify-code: %d %s", r.Status, r.Body)
	}
	before := r.json(t)["token"].(string)

	var out bytes.Buffer
	env := cloneEnv(prod.Env)
	if err := run(context.Background(), []string{"keys", "rotate", "--delay", "0"}, func(k string) string { return env[k] }, nil, &out, io.Discard); err != nil {
		t.Fatalf("authd keys rotate: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`new key (\S+) published`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("rotate output: %s", out.String())
	}
	newKID := m[1]
	if !strings.Contains(out.String(), oldKID) || !strings.Contains(out.String(), "retiring") || !strings.Contains(out.String(), "signing") {
		t.Fatalf("rotate's key list does not show both keys:\n%s", out.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := range insts {
		for !bytes.Contains(jwks(i), []byte(newKID)) || !bytes.Contains(jwks(i), []byte(oldKID)) {
			if time.Now().After(deadline) {
				t.Fatalf("instance %d did not publish the new key with the old within 5 s: %s", i, jwks(i))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Both sign with the new key now (within the same 5 s).
	for i, inst := range insts {
		for {
			email := uniqueEmail("rot")
			code := inst.sendAndRead(t, prod.SMTP, email, "shop")
			r := postJSON(t, inst.URL+"/api/v2/auth/verify-code", map[string]string{"email": email, "project_id": "shop", "code": code})
			h, _, _ := jwstest.Parse(r.json(t)["token"].(string))
			if h["kid"] == newKID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d still signs with %v", i, h["kid"])
			}
		}
	}
	for i, inst := range insts {
		if st, m := verifyProof(t, inst, map[string]any{"token": before, "audience": "shop"}); st != 200 || m["valid"] != true {
			t.Fatalf("instance %d: a token signed before the rotation: %d %v", i, st, m)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"keys", "list"}, func(k string) string { return env[k] }, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(newKID+`\s+EdDSA\s+signing`).MatchString(out.String()) || !regexp.MustCompile(regexp.QuoteMeta(oldKID)+`\s+EdDSA\s+retiring`).MatchString(out.String()) {
		t.Fatalf("keys list:\n%s", out.String())
	}
}

// The key rows are sealed: the database holds no private key in clear.
func TestKeysSealedInDatabase(t *testing.T) {
	dir := t.TempDir()
	inst := start(t, map[string]string{"AUTHD_DATA_DIR": dir})
	inst.stop()
	cfg, err := loadConfig(envOf(map[string]string{"AUTHD_DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	users, err := backend.OpenDatabase(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	keys, err := users.(authd.KeyStore).SigningKeys(t.Context())
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	k, _ := authd.DeriveKeys(cfg.MasterKey)
	// The sealed row opens with the master key's derived key only.
	if _, err := jwt.New(t.Context(), &jwt.StoreSource{Store: users.(authd.KeyStore), Key: k.Token}, jwt.Options{Issuer: "http://x", TTL: time.Minute}); err != nil {
		t.Fatalf("the stored key does not open with AUTHD_MASTER_KEY: %v", err)
	}
	wrong, _ := authd.DeriveKeys(bytes.Repeat([]byte{7}, 32))
	if _, err := jwt.New(t.Context(), &jwt.StoreSource{Store: users.(authd.KeyStore), Key: wrong.Token}, jwt.Options{Issuer: "http://x", TTL: time.Minute}); err == nil {
		t.Fatal("the stored key opened with another master key")
	}
}

func TestKeysCommandUsage(t *testing.T) {
	env := map[string]string{"AUTHD_DATA_DIR": t.TempDir()}
	for _, args := range [][]string{{"keys"}, {"keys", "spin"}, {"keys", "rotate", "--delay", "soon"}, {"keys", "rotate", "--delay", "-1s"}, {"keys", "list", "extra"}} {
		err := run(context.Background(), args, func(k string) string { return env[k] }, nil, io.Discard, io.Discard)
		if exitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want usage error", args, err, exitCode(err))
		}
	}
	env["TOKEN_ALG"], env["TOKEN_HS256_SECRET"] = "HS256", "hs256-e2e-secret-0123456789abcdef0123456789"
	if err := run(context.Background(), []string{"keys", "rotate"}, func(k string) string { return env[k] }, nil, io.Discard, io.Discard); err == nil || exitCode(err) != 1 {
		t.Errorf("rotate in HS256 mode: %v", err)
	}
}
