package httpapi

import (
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the Prometheus series the HTTP layer keeps. Labels are only
// ever route patterns, statuses, outcomes and limit names: never a path,
// an address or a project_id (caller-chosen, unbounded).
type Metrics struct {
	// MergeFailures counts every refused code as "invalid": set when the
	// metrics are on the public port, where a split (a wrong try on a live
	// code against one on none) would tell an observer more than the one
	// 401 every failure answers. On the private listener the split stays:
	// it is how an operator sees a guessing attack.
	MergeFailures bool

	gatherer      prometheus.Gatherer
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	codesSent     prometheus.Counter
	verifications *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	shed          *prometheus.CounterVec
	inflight      prometheus.Gauge
}

// NewMetrics registers the HTTP and flow series in reg; g is what the
// /metrics handler serves (reg's own registry, with the collectors others
// registered there: pools, mail, build info).
func NewMetrics(reg prometheus.Registerer, g prometheus.Gatherer) *Metrics {
	m := &Metrics{
		gatherer: g,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_http_requests_total", Help: "HTTP requests answered, by route pattern and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authd_http_request_duration_seconds", Help: "Time to answer HTTP requests, by route pattern and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "status"}),
		codesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authd_codes_sent_total", Help: "Codes issued and handed to the mail queue.",
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_verifications_total", Help: "Verify-code answers by outcome: success, wrong, expired, burnt, invalid (a store that does not say why), limited.",
		}, []string{"outcome"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_rate_limit_rejections_total", Help: "Requests refused by a rate limit, by limit.",
		}, []string{"limit"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_requests_shed_total", Help: "Requests answered 503 at once to spare authd, by reason: max_inflight (MAX_INFLIGHT auth requests were in flight), mail_lag (send-code while mail delivery is behind MAIL_MAX_LAG).",
		}, []string{"reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authd_http_requests_in_flight", Help: "Auth requests being served now (the ones MAX_INFLIGHT bounds; the shed ones not counted).",
		}),
	}
	for _, o := range []string{"success", "wrong", "expired", "burnt", "invalid", "limited"} {
		m.verifications.WithLabelValues(o)
	}
	for _, r := range []string{"max_inflight", "mail_lag"} {
		m.shed.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.duration, m.codesSent, m.verifications, m.rejections, m.shed, m.inflight)
	return m
}

// NewRegistry is authd's Prometheus registry and its Metrics: the HTTP and
// flow series, authd_build_info (version), Go's runtime and process
// collectors, and cs, the backends' own.
func NewRegistry(version string, cs ...prometheus.Collector) *Metrics {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authd_build_info", Help: "1, labelled with the build's version and Go version.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(version, runtime.Version()).Set(1)
	cs = append(cs, info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cs...)
	return NewMetrics(reg, reg)
}

// Handler serves the Prometheus text exposition.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

func (m *Metrics) observeRequest(route string, status int, d time.Duration, ri *reqInfo) {
	st := strconv.Itoa(status)
	m.requests.WithLabelValues(route, st).Inc()
	m.duration.WithLabelValues(route, st).Observe(d.Seconds())
	switch ri.outcome {
	case "":
	case "sent":
		m.codesSent.Inc()
	case "limited":
		m.rejections.WithLabelValues(ri.limit).Inc()
		if isVerifyRoute(route) {
			m.verifications.WithLabelValues("limited").Inc()
		}
	case "shed":
		m.shed.WithLabelValues(ri.limit).Inc()
	case "success":
		m.verifications.WithLabelValues(ri.outcome).Inc()
	case "wrong", "expired", "burnt", "invalid":
		if m.MergeFailures {
			m.verifications.WithLabelValues("invalid").Inc()
		} else {
			m.verifications.WithLabelValues(ri.outcome).Inc()
		}
	}
}

func isVerifyRoute(route string) bool {
	return route == "POST /api/v1/auth/verify-code" || route == "POST /api/v2/auth/verify-code"
}
