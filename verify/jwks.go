package verify

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWKS is a KeySource reading authd's published keys
// (https://authd.example/.well-known/jwks.json). Keys are cached for the
// answer's Cache-Control max-age (MaxAge when it has none); a token naming
// a kid the cache lacks makes it fetch again at once (a rotation published
// a new key), at most once per MinRefresh. When a fetch fails, keys already
// known are still used. It is safe for concurrent use.
type JWKS struct {
	URL string
	// Client makes the requests; nil means a client with a 10 s timeout.
	Client *http.Client
	// MaxAge is how long keys are kept when the answer has no
	// Cache-Control max-age. Zero means 5 minutes.
	MaxAge time.Duration
	// MinRefresh spaces the fetches an unknown kid causes, so a stream of
	// forged kids cannot make the service hammer authd. Zero means 10 s.
	MinRefresh time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.RWMutex
	keys    map[string]Key
	fetched time.Time // when the last fetch was tried
	failed  bool      // whether it failed
	expires time.Time // when the keys become stale
}

// NewJWKS returns a KeySource for the JWKS at url.
func NewJWKS(url string) *JWKS { return &JWKS{URL: url} }

func (j *JWKS) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

// Key returns the published key kid, fetching the set when the cache is
// stale or lacks kid.
//
// Errors (*Error): ReasonUnknownKey, ReasonKeysUnavailable.
func (j *JWKS) Key(ctx context.Context, kid string) (Key, error) {
	now := j.now()
	j.mu.RLock()
	k, ok := j.keys[kid]
	fresh := now.Before(j.expires)
	last, failed := j.fetched, j.failed
	j.mu.RUnlock()
	if ok && fresh {
		return k, nil
	}
	minRefresh := j.MinRefresh
	if minRefresh == 0 {
		minRefresh = 10 * time.Second
	}
	if !ok && !last.IsZero() && now.Sub(last) < minRefresh {
		if failed {
			return Key{}, refuse(ReasonKeysUnavailable, nil)
		}
		return Key{}, refuse(ReasonUnknownKey, nil)
	}
	if err := j.refresh(ctx, last); err != nil {
		if ok {
			return k, nil // stale but known: better than refusing every token
		}
		return Key{}, refuse(ReasonKeysUnavailable, err)
	}
	j.mu.RLock()
	k, ok = j.keys[kid]
	j.mu.RUnlock()
	if !ok {
		return Key{}, refuse(ReasonUnknownKey, nil)
	}
	return k, nil
}

// refresh fetches the set unless another caller fetched it since seen.
func (j *JWKS) refresh(ctx context.Context, seen time.Time) error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	j.mu.RLock()
	done := j.fetched.After(seen)
	j.mu.RUnlock()
	if done {
		return nil
	}
	now := j.now()
	keys, maxAge, err := j.fetch(ctx)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fetched, j.failed = now, err != nil
	if err != nil {
		return err
	}
	j.keys = keys
	j.expires = now.Add(maxAge)
	return nil
}

func (j *JWKS) fetch(ctx context.Context) (map[string]Key, time.Duration, error) {
	client := j.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.URL, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: %s", j.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, err
	}
	keys, err := ParseJWKS(body)
	if err != nil {
		return nil, 0, err
	}
	maxAge := j.MaxAge
	if maxAge == 0 {
		maxAge = 5 * time.Minute
	}
	if s, ok := cacheMaxAge(resp.Header.Get("Cache-Control")); ok {
		maxAge = min(s, 24*time.Hour)
	}
	return keys, maxAge, nil
}

// ParseJWKS reads a JWK Set and keeps its Ed25519 signing keys, by kid.
// Anything else (a symmetric "oct" key above all, which would let a token
// pass off a published value as its HMAC secret) is ignored.
func ParseJWKS(body []byte) (map[string]Key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	out := make(map[string]Key, len(set.Keys))
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // a key of a kind go-jose cannot read is not one of ours
		}
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || k.KeyID == "" || (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != EdDSA) {
			continue
		}
		out[k.KeyID] = Key{ID: k.KeyID, Algorithm: EdDSA, Key: pub}
	}
	return out, nil
}

// cacheMaxAge reads max-age from a Cache-Control header.
func cacheMaxAge(h string) (time.Duration, bool) {
	for _, d := range strings.Split(h, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
		if !ok || !strings.EqualFold(name, "max-age") {
			continue
		}
		n, err := strconv.Atoi(strings.Trim(val, `"`))
		if err != nil || n < 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	return 0, false
}
