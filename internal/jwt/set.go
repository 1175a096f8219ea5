// Package jwt signs authd's v2 identity tokens (JWT, compact JWS) with
// go-jose and keeps the signing keys: generated into the database (the
// private half sealed under the key derived from AUTHD_MASTER_KEY), loaded
// from PEM files, or an HS256 shared secret. A Set holds the current keys
// in memory, signs with the current one, serves the published ones (JWKS)
// and follows rotations by polling its source.
package jwt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/authd/authd"
	"github.com/authd/authd/verify"
)

// material is one usable key: opened, with what the Set needs to decide
// when it signs and when it is published.
type material struct {
	id         string
	alg        string             // verify.EdDSA or verify.HS256
	priv       ed25519.PrivateKey // EdDSA keys that may sign; nil for publish-only
	pub        ed25519.PublicKey  // EdDSA
	rsa        *rsa.PrivateKey    // RS256
	secret     []byte             // HS256
	createdAt  time.Time
	activeFrom time.Time
	// signs: the key may sign (its private half or secret is held, or, in
	// a listing, stored).
	signs bool
	// pinned keys are published for as long as the source lists them
	// (PEM files: the operator removes a retired key from the file).
	pinned bool
}

// Source lists the keys. Implementations: StoreSource (the database),
// FileSource (PEM files), Secret (HS256).
type Source interface {
	load(ctx context.Context) ([]material, error)
}

// Options configure a Set.
type Options struct {
	Issuer string        // AUTHD_ISSUER: the iss of every token
	Alg    string        // TOKEN_ALG: "EdDSA" or "HS256"
	TTL    time.Duration // TOKEN_TTL_SECONDS: exp - iat
	// Poll is how often the source is read again to follow rotations.
	// Zero means 2 s (every instance follows within 5 s).
	Poll time.Duration
	// CacheMaxAge is the JWKS answer's Cache-Control max-age.
	CacheMaxAge time.Duration
	Now         func() time.Time // nil: time.Now
	Rand        io.Reader        // nil: crypto/rand, for jti
	Logger      *slog.Logger
}

// Set is the keys in force, in memory: it signs tokens, serves the JWKS and
// finds verification keys without touching the database. It is safe for
// concurrent use.
type Set struct {
	opts   Options
	source Source
	state  atomic.Pointer[state]
}

// state is one immutable view of the keys, swapped whole on refresh.
type state struct {
	signer jose.Signer
	// rsSigner signs RS256 for the clients that ask (nil: no RS256 key).
	rsSigner jose.Signer
	signKID  string
	rsKID    string
	alg      string
	jwks     []byte
	keys     map[string]verify.Key // published keys, and the HS256 secret
	all      []material
}

var (
	_ authd.TokenIssuer = (*Set)(nil)
	_ verify.KeySource  = (*Set)(nil)
)

// New loads the keys from source (making the first one when the database
// has none) and returns a Set signing with the current key.
//
// Errors: EUNAVAILABLE when the source cannot be read, EINTERNAL when a key
// does not open or parse.
func New(ctx context.Context, source Source, opts Options) (*Set, error) {
	s := &Set{opts: opts.withDefaults(), source: source}
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Open is New for a server starting while its database may still be down:
// when the source is unavailable it returns an empty Set, which Run fills
// once the database answers (Ready says when). Other errors (a key that
// does not open) stop start-up as New's do.
func Open(ctx context.Context, source Source, opts Options) (*Set, error) {
	s, err := New(ctx, source, opts)
	if authd.ErrorCode(err) != authd.EUNAVAILABLE {
		return s, err
	}
	s = &Set{opts: opts.withDefaults(), source: source}
	s.opts.Logger.Warn("token keys not loaded yet: the database does not answer; retrying", "err", err)
	return s, nil
}

// Start is Open for a server: the Set then follows its source (Run) until
// stop is called. Loading the keys is bounded by ctx's deadline or 10 s;
// following them is not bounded by ctx.
func Start(ctx context.Context, source Source, opts Options) (_ *Set, stop func(), _ error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := Open(lctx, source, opts)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	rctx, end := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(rctx)
	}()
	return s, func() { end(); <-done }, nil
}

func (o Options) withDefaults() Options {
	if o.Poll == 0 {
		o.Poll = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Ready reports whether keys are loaded: an instance without them cannot
// answer /api/v2 verify-code.
//
// Errors: EUNAVAILABLE.
func (s *Set) Ready(context.Context) error {
	if s.state.Load() == nil {
		return &authd.Error{Code: authd.EUNAVAILABLE, Message: "token keys not loaded"}
	}
	return nil
}

func (s *Set) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// Refresh reads the source again and swaps the keys in. On failure the
// keys in force stay.
//
// Errors: EUNAVAILABLE, EINTERNAL.
func (s *Set) Refresh(ctx context.Context) error {
	ms, err := s.source.load(ctx)
	if err != nil {
		return err
	}
	st, err := build(ms, s.now(), s.opts.TTL)
	if err != nil {
		return err
	}
	s.state.Store(st)
	return nil
}

// Run refreshes every Poll until ctx is done: a rotation made by `authd keys
// rotate` (or a new PEM file) reaches this instance without a restart, and
// a delayed key starts signing on time.
func (s *Set) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			before := s.SigningKeyID()
			if err := s.Refresh(ctx); err != nil {
				if ctx.Err() == nil {
					s.opts.Logger.Warn("token keys not refreshed; signing with the keys in force", "err", err)
				}
				continue
			}
			if after := s.SigningKeyID(); after != before {
				s.opts.Logger.Info("token signing key switched", "kid", after, "previous_kid", before)
			}
		}
	}
}

// choose orders ms as they take over from each other and picks the one
// that signs at now: the last whose time has come; before any has come (a
// clock far behind), the first.
func choose(ms []material, now time.Time) ([]material, int, error) {
	ms = slices.Clone(ms)
	slices.SortStableFunc(ms, func(a, b material) int {
		if c := a.activeFrom.Compare(b.activeFrom); c != 0 {
			return c
		}
		// Same start: the key made last takes over, as its maker meant.
		if c := a.createdAt.Compare(b.createdAt); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.id), []byte(b.id))
	})
	sign := -1
	for i, m := range ms {
		if !m.signs {
			continue
		}
		if sign == -1 || !m.activeFrom.After(now) {
			sign = i
		}
	}
	if sign == -1 {
		return nil, 0, &authd.Error{Code: authd.EUNAVAILABLE, Message: "no token signing key"}
	}
	return ms, sign, nil
}

// families splits keys into the issuer's algorithm's (EdDSA or HS256) and
// the RS256 ones kept beside them: each family takes over within itself.
func families(all []material) (main, rs []material) {
	for _, m := range all {
		if m.alg == RS256 {
			rs = append(rs, m)
		} else {
			main = append(main, m)
		}
	}
	return main, rs
}

// build decides which key signs at now and which are published, in each
// family.
func build(all []material, now time.Time, ttl time.Duration) (*state, error) {
	ms, rs := families(all)
	ms, sign, err := choose(ms, now)
	if err != nil {
		return nil, err
	}
	cur := ms[sign]
	st := &state{signKID: cur.id, alg: cur.alg, keys: map[string]verify.Key{}, all: ms}
	var rsPublished []jose.JSONWebKey
	if len(rs) > 0 {
		rs, rsign, err := choose(rs, now)
		if err != nil {
			return nil, err
		}
		rcur := rs[rsign]
		for i, m := range rs {
			if i < rsign && !publishedAt(rs, i, now, ttl) {
				continue
			}
			rsPublished = append(rsPublished, jose.JSONWebKey{Key: &m.rsa.PublicKey, KeyID: m.id, Algorithm: RS256, Use: "sig"})
		}
		st.rsSigner, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rcur.rsa},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), rcur.id))
		if err != nil {
			return nil, &authd.Error{Code: authd.EINTERNAL, Message: "cannot make the RS256 signer", Err: err}
		}
		st.rsKID = rcur.id
		st.all = append(st.all, rs...)
	}
	var published []jose.JSONWebKey
	for i, m := range ms {
		if m.alg == verify.HS256 {
			// A shared secret is never published; it verifies its own
			// tokens only.
			st.keys[m.id] = verify.Key{ID: m.id, Algorithm: verify.HS256, Key: m.secret}
			continue
		}
		if !m.pinned && i < sign && !publishedAt(ms, i, now, ttl) {
			continue
		}
		st.keys[m.id] = verify.Key{ID: m.id, Algorithm: verify.EdDSA, Key: m.pub}
		published = append(published, jose.JSONWebKey{Key: m.pub, KeyID: m.id, Algorithm: verify.EdDSA, Use: "sig"})
	}
	// The signing key first: a consumer that takes the first key is right.
	slices.SortStableFunc(published, func(a, b jose.JSONWebKey) int {
		switch {
		case a.KeyID == cur.id:
			return -1
		case b.KeyID == cur.id:
			return 1
		}
		return 0
	})
	jwks, err := json.Marshal(struct {
		Keys []jose.JSONWebKey `json:"keys"`
	}{Keys: append(append([]jose.JSONWebKey{}, published...), rsPublished...)})
	if err != nil {
		return nil, &authd.Error{Code: authd.EINTERNAL, Message: "cannot encode the JWKS", Err: err}
	}
	st.jwks = jwks
	var key any = cur.secret
	if cur.alg == verify.EdDSA {
		key = cur.priv
	}
	st.signer, err = jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(cur.alg), Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), cur.id))
	if err != nil {
		return nil, &authd.Error{Code: authd.EINTERNAL, Message: "cannot make the token signer", Err: err}
	}
	return st, nil
}

// publishedAt reports whether the key at i, superseded by a later key, is
// still published at now: until the successor's start plus a token
// lifetime (and a minute for clocks that disagree), when the last token it
// signed has expired.
func publishedAt(ms []material, i int, now time.Time, ttl time.Duration) bool {
	return now.Before(retiresAt(ms, i, ttl))
}

// retiresAt is when the key at i stops being published; zero while no
// later key has taken over.
func retiresAt(ms []material, i int, ttl time.Duration) time.Time {
	for _, next := range ms[i+1:] {
		if next.signs {
			return next.activeFrom.Add(ttl + time.Minute)
		}
	}
	return time.Time{}.Add(1<<63 - 1)
}

// claims is the token's payload, in the order it is written.
type claims struct {
	Issuer        string `json:"iss"`
	Subject       string `json:"sub"`
	Audience      string `json:"aud"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	IssuedAt      int64  `json:"iat"`
	Expiry        int64  `json:"exp"`
	ID            string `json:"jti"`
	Nonce         string `json:"nonce,omitempty"`
	// The hosted sign-in's (OIDC Core §2); absent from the v2 API's.
	AuthTime int64    `json:"auth_time,omitempty"`
	AMR      []string `json:"amr,omitempty"`
}

func (c claims) withAuthTime(t time.Time) claims {
	if !t.IsZero() {
		c.AuthTime = t.Unix()
	}
	return c
}

// IssueToken signs c with the current key.
//
// Errors: EUNAVAILABLE when no key is loaded, EINTERNAL when the random
// source or the signer fails.
func (s *Set) IssueToken(ctx context.Context, c authd.TokenClaims) (authd.Token, error) {
	st := s.state.Load()
	if st == nil {
		return authd.Token{}, &authd.Error{Code: authd.EUNAVAILABLE, Message: "no token signing key"}
	}
	r := s.opts.Rand
	if r == nil {
		r = rand.Reader
	}
	var jti [16]byte
	if _, err := io.ReadFull(r, jti[:]); err != nil {
		return authd.Token{}, &authd.Error{Code: authd.EINTERNAL, Message: "random source failed", Err: err}
	}
	iat := c.IssuedAt.Unix()
	payload, err := json.Marshal(claims{
		Issuer: s.opts.Issuer, Subject: c.Subject, Audience: c.Audience, Email: c.Email,
		EmailVerified: true, IssuedAt: iat, Expiry: iat + int64(s.opts.TTL/time.Second),
		ID: hex.EncodeToString(jti[:]), Nonce: c.Nonce, AMR: c.AMR,
	}.withAuthTime(c.AuthTime))
	if err != nil {
		return authd.Token{}, &authd.Error{Code: authd.EINTERNAL, Message: "cannot encode the claims", Err: err}
	}
	signer, kid := st.signer, st.signKID
	if c.Algorithm == RS256 {
		if st.rsSigner == nil {
			return authd.Token{}, &authd.Error{Code: authd.EUNAVAILABLE, Message: "no RS256 signing key"}
		}
		signer, kid = st.rsSigner, st.rsKID
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return authd.Token{}, &authd.Error{Code: authd.EINTERNAL, Message: "cannot sign the token", Err: err}
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return authd.Token{}, &authd.Error{Code: authd.EINTERNAL, Message: "cannot serialise the token", Err: err}
	}
	return authd.Token{Raw: raw, KeyID: kid, ExpiresIn: s.opts.TTL}, nil
}

// Key returns the published key kid (or the HS256 secret), from memory.
//
// Errors (*verify.Error): ReasonUnknownKey.
func (s *Set) Key(_ context.Context, kid string) (verify.Key, error) {
	if st := s.state.Load(); st != nil {
		if k, ok := st.keys[kid]; ok {
			return k, nil
		}
	}
	return verify.Key{}, &verify.Error{Reason: verify.ReasonUnknownKey}
}

// JWKS returns the published keys as a JWK Set document. The bytes are
// shared: do not modify them.
func (s *Set) JWKS() []byte {
	if st := s.state.Load(); st != nil {
		return st.jwks
	}
	return []byte(`{"keys":[]}`)
}

// Algorithm returns the signing algorithm: "EdDSA" or "HS256".
func (s *Set) Algorithm() string {
	if st := s.state.Load(); st != nil {
		return st.alg
	}
	return s.opts.Alg
}

// SigningKeyID returns the kid of the key that signs now, "" before any
// key is loaded.
func (s *Set) SigningKeyID() string {
	if st := s.state.Load(); st != nil {
		return st.signKID
	}
	return ""
}

// SignsRS256 reports whether RS256 keys are held beside the EdDSA ones.
func (s *Set) SignsRS256() bool {
	st := s.state.Load()
	return st != nil && st.rsSigner != nil
}

// Issuer returns the iss of the tokens.
func (s *Set) Issuer() string { return s.opts.Issuer }

// TTL returns the tokens' lifetime.
func (s *Set) TTL() time.Duration { return s.opts.TTL }

// CacheMaxAge returns how long consumers may cache the JWKS.
func (s *Set) CacheMaxAge() time.Duration { return s.opts.CacheMaxAge }

// KeyInfo describes a key for `authd keys list`.
type KeyInfo struct {
	ID         string
	Algorithm  string
	CreatedAt  time.Time
	ActiveFrom time.Time
	// State is "signing", "next" (published, signs from ActiveFrom),
	// "retiring" (published until RetiresAt), "retired" (no longer
	// published: its tokens have expired; `keys rotate` deletes it) or,
	// for TOKEN_KEY_FILE's other keys, "published".
	State     string
	RetiresAt time.Time
}

// describe lists ms's keys and their states at now, each family's apart.
func describe(ms []material, now time.Time, ttl time.Duration) ([]KeyInfo, error) {
	main, rs := families(ms)
	out, err := describeFamily(main, now, ttl)
	if err != nil || len(rs) == 0 {
		return out, err
	}
	more, err := describeFamily(rs, now, ttl)
	return append(out, more...), err
}

func describeFamily(ms []material, now time.Time, ttl time.Duration) ([]KeyInfo, error) {
	all, sign, err := choose(ms, now)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(all))
	for i, m := range all {
		ki := KeyInfo{ID: m.id, Algorithm: m.alg, CreatedAt: m.createdAt, ActiveFrom: m.activeFrom}
		switch {
		case i == sign:
			ki.State = "signing"
		case m.pinned:
			ki.State = "published"
		case i > sign:
			ki.State = "next"
		case publishedAt(all, i, now, ttl):
			ki.State, ki.RetiresAt = "retiring", retiresAt(all, i, ttl)
		default:
			ki.State, ki.RetiresAt = "retired", retiresAt(all, i, ttl)
		}
		out = append(out, ki)
	}
	return out, nil
}

// List describes the source's keys at now.
//
// Errors: EUNAVAILABLE, EINTERNAL.
func List(ctx context.Context, source Source, now time.Time, ttl time.Duration) ([]KeyInfo, error) {
	ms, err := source.load(ctx)
	if err != nil {
		return nil, err
	}
	return describe(ms, now, ttl)
}

// ListStored describes the keys stored in the database at now without
// opening them: it needs no AUTHD_MASTER_KEY, so an operator can look at
// the keys whatever key they are sealed under.
//
// None is stored before authd's first start: an empty list.
//
// Errors: EUNAVAILABLE.
func ListStored(ctx context.Context, store authd.KeyStore, now time.Time, ttl time.Duration) ([]KeyInfo, error) {
	keys, err := store.SigningKeys(ctx)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	ms := make([]material, len(keys))
	for i, k := range keys {
		ms[i] = material{id: k.ID, alg: k.Algorithm, signs: true, createdAt: k.CreatedAt, activeFrom: k.ActiveFrom}
	}
	return describe(ms, now, ttl)
}

func wrapf(code string, err error, format string, args ...any) error {
	return &authd.Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// WriteKeys writes infos as `authd keys list` shows them: a table of kid,
// algorithm, state, and when each signs from and is published until (UTC).
func WriteKeys(w io.Writer, infos []KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tSIGNS FROM (UTC)\tPUBLISHED UNTIL (UTC)")
	for _, k := range infos {
		from, until := "-", "-"
		if !k.ActiveFrom.IsZero() && k.ActiveFrom.Unix() > 0 {
			from = k.ActiveFrom.UTC().Format(time.DateTime)
		}
		if !k.RetiresAt.IsZero() {
			until = k.RetiresAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.State, from, until)
	}
	return tw.Flush()
}
