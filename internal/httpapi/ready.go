package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
)

// Check is one dependency the readiness probe asks about.
type Check struct {
	Name string // "database", "redis", "mail": a key of the answer's checks
	// Check answers nil when the dependency works. It is called with a
	// context that ends after Readiness.Timeout.
	Check func(ctx context.Context) error
	// Optional checks report "degraded" when they fail but do not make
	// the instance unready: the hook for a mail worker that is behind
	// (its Degraded() signal) — codes are still stored, mail follows late.
	// An optional check whose error wraps ErrUnknown could not be made at
	// all and reports "unknown".
	Optional bool
}

// MailLag is what readiness shows of the mail lag: delivery.Worker.
type MailLag interface {
	Lag() time.Duration    // how long the oldest mail held up has waited
	Behind() time.Duration // how far that is over MAIL_MAX_LAG, 0 if not
}

// ErrUnknown is what an optional check's error wraps when the question
// could not be asked (Redis down: its eviction policy is not known, not
// bad).
var ErrUnknown = errors.New("could not be checked")

// Readiness is the state behind /api/v1/health/ready, kept apart from the
// liveness answer of /api/v1/health: an instance can be alive and not ready
// (its database not up yet, or shutting down).
//
// Until MarkStarted is called (cmd/authd calls it once the migrations have
// run), the auth endpoints answer 503: an instance whose database has never
// answered must not hand out codes it cannot later verify.
type Readiness struct {
	Checks  []Check
	Timeout time.Duration // per check; 0 means one second
	// Mail, when set, is shown in every answer: mail_lag_seconds, and the
	// check mail_lag, degraded while send-code is held back for it. It is
	// read from memory, never asked of a store, and never makes the
	// instance unready: verify-code still works, and every instance shares
	// the one queue, so pulling them all would only stop the verifies too.
	Mail MailLag
	// CacheFor is how long the checks' results answer every probe (0:
	// each probe runs them). The probe is public: uncached, every request
	// for it would ask each store something; cached, a flood of probes
	// costs the stores one round a CacheFor. Probes meanwhile wait for the
	// round under way rather than start their own. Start-up and draining
	// are never cached.
	CacheFor time.Duration

	started  atomic.Bool
	draining atomic.Bool

	mu      sync.Mutex // one round of checks at a time
	lastAt  time.Time
	lastOK  bool
	lastRes map[string]string
}

// MarkStarted records that start-up work (migrations) is done.
func (r *Readiness) MarkStarted() { r.started.Store(true) }

// Start runs the start-up work step (migrations) and marks the instance
// started once it succeeds. When step fails EUNAVAILABLE (a database not up
// yet: containers start in any order), Start returns at once and retries
// in the background, with backoff, until it succeeds or ctx ends; the auth
// endpoints answer 503 meanwhile. Any other failure is returned (retrying
// would not help) or, in the background, logged, the instance staying not
// ready. Each attempt is bounded to 10 s.
func (r *Readiness) Start(ctx context.Context, step func(context.Context) error, log *slog.Logger) error {
	try := func() error {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return step(actx)
	}
	err := try()
	if err == nil {
		r.MarkStarted()
		return nil
	}
	if authd.ErrorCode(err) != authd.EUNAVAILABLE {
		return err
	}
	log.Warn("database not reachable: starting not ready, migrations will run once it answers", "err", err)
	go func() {
		for backoff := 250 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			switch err := try(); {
			case err == nil:
				log.Info("database reachable: migrations applied, ready")
				r.MarkStarted()
				return
			case ctx.Err() != nil:
				return
			case authd.ErrorCode(err) != authd.EUNAVAILABLE:
				log.Error("migrations failed: staying not ready", "err", err)
				return
			default:
				log.Debug("database still not reachable", "err", err)
			}
		}
	}()
	return nil
}

// Started reports whether MarkStarted was called.
func (r *Readiness) Started() bool { return r.started.Load() }

// MarkDraining makes readiness answer 503 from now on, so a load balancer
// stops sending new requests while the ones in flight finish.
func (r *Readiness) MarkDraining() { r.draining.Store(true) }

// ReadyBody is the answer of /api/v1/health/ready: status is ready (200)
// or not_ready (503); checks gives each check's state: ok, down, degraded,
// starting, draining.
type ReadyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	// MailLagSeconds is the mail lag, rounded up to a tenth of a second,
	// so that a lag over MAIL_MAX_LAG never reads as at it (nil without
	// Readiness.Mail).
	MailLagSeconds *float64 `json:"mail_lag_seconds,omitempty"`
}

// evaluate runs every check concurrently, each bounded by the timeout, and
// reports whether the instance is ready. A check's error is not in the
// answer: it may name hosts; the log has it.
func (r *Readiness) evaluate(ctx context.Context, log *slog.Logger) (bool, ReadyBody) {
	ready, checks := r.check(ctx, log)
	body := ReadyBody{Status: "ready", Checks: maps.Clone(checks)}
	if body.Checks == nil {
		body.Checks = map[string]string{}
	}
	if r.Mail != nil {
		// Not a Check: its log line is the worker's, once a minute, not
		// one a probe.
		lag := math.Ceil(r.Mail.Lag().Seconds()*10) / 10
		body.MailLagSeconds = &lag
		body.Checks["mail_lag"] = "ok"
		if r.Mail.Behind() > 0 {
			body.Checks["mail_lag"] = "degraded"
		}
	}
	if !r.started.Load() {
		body.Checks["startup"] = "starting"
		ready = false
	}
	if r.draining.Load() {
		body.Checks["shutdown"] = "draining"
		ready = false
	}
	if !ready {
		body.Status = "not_ready"
	}
	return ready, body
}

// check runs every check concurrently, each bounded by the timeout, or
// returns the last round's results while they are younger than CacheFor.
func (r *Readiness) check(ctx context.Context, log *slog.Logger) (bool, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.CacheFor > 0 && !r.lastAt.IsZero() && time.Since(r.lastAt) < r.CacheFor {
		return r.lastOK, r.lastRes
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	res := make(map[string]string, len(r.Checks)+1)
	ready := true
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range r.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout) // a probe gone does not fail the round it started
			defer cancel()
			err := c.Check(cctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				res[c.Name] = "ok"
			case c.Optional && errors.Is(err, ErrUnknown):
				res[c.Name] = "unknown"
			case c.Optional:
				res[c.Name] = "degraded"
				log.Warn("readiness check degraded", "check", c.Name, "err", err)
			default:
				res[c.Name] = "down"
				ready = false
				log.Warn("readiness check failed", "check", c.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	r.lastAt, r.lastOK, r.lastRes = time.Now(), ready, res
	return ready, res
}

// handleReady answers the readiness probe; without a Readiness the
// instance is always ready.
func handleReady(ready *Readiness, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ready == nil {
			writeJSON(w, http.StatusOK, ReadyBody{Status: "ready", Checks: map[string]string{}})
			return
		}
		ok, body := ready.evaluate(r.Context(), log)
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
	})
}

// startupGate answers 503 on the auth endpoints until start-up is done,
// and while draining closes each connection after its answer.
//
// Why the close: a kept-alive connection that is idle when the server
// finally shuts down is closed under a client that may be writing its next
// request on it, and that request is lost. "Connection: close" on every
// answer during SHUTDOWN_DELAY moves busy clients to new connections,
// which the listener refuses cleanly once it is closed.
func startupGate(ready *Readiness, next http.Handler) http.Handler {
	if ready == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ready.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		if !ready.Started() && isAuthPath(r.URL.Path) {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"detail": msgUnavailable})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isAuthPath(p string) bool {
	return strings.HasPrefix(p, "/api/v1/auth/") || strings.HasPrefix(p, "/api/v2/auth/")
}

// AskReady asks the server listening at host:port for its readiness, as a
// container's HEALTHCHECK does (the image has no curl): the answer's body
// when ready; an error saying so, with the body, when not (503) or when
// nothing answers. An unspecified host (0.0.0.0, ::) is asked on loopback.
func AskReady(ctx context.Context, host string, port int) (string, error) {
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	u := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/api/v1/health/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("not ready (%d): %s", resp.StatusCode, text)
	}
	return text, nil
}
