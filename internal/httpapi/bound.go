package httpapi

import (
	"context"
	"net/http"
	"time"
)

// bounds holds the auth endpoints' requests to a deadline (REQUEST_TIMEOUT).
// routes.go wraps exactly the routes that reach Redis or PostgreSQL; the
// probes, the metrics, the keys and the docs are never held to it.
type bounds struct {
	timeout time.Duration // 0: no deadline
}

func newBounds(o Options) *bounds {
	return &bounds{timeout: max(o.RequestTimeout, 0)}
}

// wrap bounds next. A request gets a context that ends after timeout:
// whatever it waits on that honours it (a pooled connection, a PostgreSQL
// query) gives up, and the flow answers 503, having given back what it
// took (a consumed code is restored with a context of its own).
func (b *bounds) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), b.timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
