package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server runs authd's handler on a listener until it is told to stop, then
// drains it without dropping the requests in flight.
type Server struct {
	Handler   http.Handler
	Readiness *Readiness
	Logger    *slog.Logger
	// ShutdownDelay keeps the listener open after readiness has turned
	// 503, so that a load balancer stops sending first (SHUTDOWN_DELAY).
	ShutdownDelay time.Duration
	// ShutdownTimeout then bounds the requests in flight
	// (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
}

// Serve answers on ln until ctx ends. Then readiness answers 503 at once,
// the listener stays open ShutdownDelay more (every answer meanwhile
// closing its connection: startupGate), and the requests in flight get
// ShutdownTimeout to finish. drained runs last, with a context bounded by
// what is left of ShutdownTimeout: the mail worker finishes its sends in
// it. Serve returns nil after a clean stop, the server's error otherwise
// (drained has run then too).
func (s Server) Serve(ctx context.Context, ln net.Listener, drained func(context.Context)) error {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second, // slow clients are cut
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		drained(context.Background())
		return err
	case <-ctx.Done():
	}
	s.Logger.Info("shutting down", "delay", s.ShutdownDelay.String(), "timeout", s.ShutdownTimeout.String())
	s.Readiness.MarkDraining()
	time.Sleep(s.ShutdownDelay)
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	drained(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeMetrics serves m's /metrics on its own listener at addr
// (METRICS_ADDR), apart from the API, until stop is called.
func ServeMetrics(addr string, m *Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	log.Info("metrics listening", "addr", "http://"+ln.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}
