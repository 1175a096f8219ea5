package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
)

// Observer is what the HTTP layer records about each request: one access
// line in Log and the request metrics in Metrics. Either may be nil.
type Observer struct {
	Log     *slog.Logger
	Metrics *Metrics
	Now     func() time.Time // nil: time.Now
	Rand    io.Reader        // request ids; nil: crypto/rand
}

const requestIDKey ctxKey = 100 // far from clientip.go's keys

// RequestIDHeader is taken from the request when it is sane, made up
// otherwise, and echoed in the answer, so a client's report names the log
// line.
const RequestIDHeader = "X-Request-ID"

// reqInfo is what the handlers tell the access line and the metrics about a
// request: filled in as the request goes, read once it is answered.
type reqInfo struct {
	id      string
	email   string // masked
	outcome string // "sent", "success", "invalid", "limited", "unavailable", "shed", ...
	limit   string // the limit that refused it, or why it was shed
}

// RequestID returns the request's id ("" outside a request).
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(requestIDKey).(*reqInfo); ok {
		return ri.id
	}
	return ""
}

// noteEmail puts the request's address, masked, on its access line.
func noteEmail(ctx context.Context, email string) {
	if ri, ok := ctx.Value(requestIDKey).(*reqInfo); ok {
		ri.email = authd.MaskEmail(strings.ToLower(email))
	}
}

// noteOutcome records how the flow answered, for the access line and the
// metrics; err nil is a success.
func noteOutcome(ctx context.Context, op string, err error) {
	ri, ok := ctx.Value(requestIDKey).(*reqInfo)
	if !ok {
		return
	}
	var e *authd.Error
	switch {
	case err == nil && op == "send":
		ri.outcome = "sent"
	case err == nil:
		ri.outcome = "success"
	case errors.As(err, &e):
		switch e.Code {
		case authd.ERATELIMITED:
			ri.outcome, ri.limit = "limited", e.Limit
		case authd.ECODE:
			ri.outcome = authd.CodeFailureReason(err)
		case authd.EINVALID:
			ri.outcome = "invalid_input"
		case authd.EUNAVAILABLE:
			ri.outcome = "unavailable"
			if e.Limit != "" { // nothing down: authd held the request back
				ri.outcome, ri.limit = "shed", e.Limit
			}
		default:
			ri.outcome = "error"
		}
	default:
		ri.outcome = "error"
	}
}

// noteShed records that the request was refused to spare authd (reason:
// max_inflight, mail_lag), for the access line and the metrics.
func noteShed(ctx context.Context, reason string) {
	if ri, ok := ctx.Value(requestIDKey).(*reqInfo); ok {
		ri.outcome, ri.limit = "shed", reason
	}
}

// validRequestID accepts what a proxy or a client would send (a UUID, a
// hex or base64 id) and nothing that could forge a log line or carry a
// payload.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// statusRecorder keeps the status and size of an answer.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe gives each request its id, then writes its access line and
// metrics. The route is the mux pattern ("POST /api/v1/auth/send-code"),
// never the raw path: the path is the caller's text and unbounded.
func observe(o *Observer, next http.Handler) http.Handler {
	if o == nil {
		return next
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	ids := newIDSource(rnd)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := now()
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = ids.next()
		}
		w.Header().Set(RequestIDHeader, id)
		ri := &reqInfo{id: id}
		rec := &statusRecorder{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, ri))
		defer func() {
			// A panic is answered by the recoverer outside: record it as
			// the 500 it becomes, then let it go on.
			v := recover()
			status := rec.status
			if v != nil && v != http.ErrAbortHandler {
				status = http.StatusInternalServerError
			}
			if status == 0 {
				status = http.StatusOK
			}
			// The mux wrote the pattern it chose into the request: no
			// second lookup.
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			d := now().Sub(start)
			if o.Metrics != nil {
				o.Metrics.observeRequest(route, status, d, ri)
			}
			if o.Log != nil {
				attrs := []slog.Attr{
					slog.String("request_id", id),
					slog.String("method", r.Method),
					slog.String("route", route),
					slog.Int("status", status),
					slog.Float64("duration_ms", float64(d.Microseconds())/1000),
					slog.Int64("bytes", rec.bytes),
					slog.String("ip", clientIPFrom(r.Context())),
				}
				if ri.email != "" {
					attrs = append(attrs, slog.String("email", ri.email))
				}
				if ri.outcome != "" {
					attrs = append(attrs, slog.String("outcome", ri.outcome))
				}
				if ri.limit != "" {
					attrs = append(attrs, slog.String("limit", ri.limit))
				}
				// Not the request's context: its id is already here, and
				// WithRequestID would add it twice.
				o.Log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
			}
			if v != nil {
				panic(v)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// idSource makes request ids: 64 random bits chosen at start, then a
// counter — unique across instances and restarts, and no system call per
// request (reading crypto/rand for each was a measurable share of a
// request's cost).
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource(r io.Reader) *idSource {
	var b [8]byte
	io.ReadFull(r, b[:])
	return &idSource{prefix: hex.EncodeToString(b[:])}
}

func (s *idSource) next() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[8:], s.n.Add(1))
	return s.prefix + hex.EncodeToString(b[8:])
}

// NewLogger is authd's logger: JSON (one object a line) or text, at level,
// to w. Lines logged inside a request carry its X-Request-ID
// (WithRequestID); durations are written as Go writes them ("1.5s"), not
// as nanoseconds.
func NewLogger(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		switch {
		case a.Value.Kind() == slog.KindDuration:
			return slog.String(a.Key, a.Value.Duration().String())
		case len(groups) == 0 && a.Key == slog.LevelKey:
			// With a ReplaceAttr the line's level comes as an Any, which
			// the JSON handler writes through encoding/json (Level's
			// MarshalJSON, an encoder a line): the same text, written as a
			// string.
			if l, ok := a.Value.Any().(slog.Level); ok {
				return slog.String(a.Key, l.String())
			}
		}
		return a
	}}
	if json {
		return slog.New(WithRequestID(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(WithRequestID(slog.NewTextHandler(w, opts)))
}

// WithRequestID wraps a log handler so that every record logged with a
// request's context carries the request's id: a warning from the flow is
// found beside its access line.
func WithRequestID(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
