package delivery

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns the delivery worker's metrics, read at scrape time.
// Jobs queued are authd_codes_sent_total (the HTTP layer's): each issued
// code writes its mail job in the same atomic step.
func (w *Worker) Collector() prometheus.Collector { return collector{w: w} }

// observed is what the metrics read of a worker.
type observed interface {
	Stats() WorkerStats
	QueueAge(ctx context.Context) (time.Duration, error)
	Lag() time.Duration
	Degraded() bool
}

type collector struct{ w observed }

var (
	mailJobsDesc = prometheus.NewDesc("authd_mail_jobs_total", "Mail jobs by outcome: claimed, sent, retried, dropped_superseded, dropped_expired, failed_permanent, failed_attempts (given up after MAIL_RETRY_MAX_ATTEMPTS temporary refusals), failed_unreadable, left_unopened (sealed under a master key this instance lacks: left for another).", []string{"outcome"}, nil)
	mailHeldDesc = prometheus.NewDesc("authd_mail_jobs_held", "Mail jobs this instance holds: in flight or waiting to retry.", nil, nil)
	mailAgeDesc  = prometheus.NewDesc("authd_mail_queue_age_seconds", "How long the oldest mail job not yet delivered (waiting, in flight or waiting to retry) has been in the queue, at scrape time; 0 when the queue is empty. Absent from a scrape when the queue does not answer.", nil, nil)
	mailLagDesc  = prometheus.NewDesc("authd_mail_lag_seconds", "How long the oldest mail this instance holds up has waited since it was queued: in flight, or waiting for a retry after a session or code-store failure (a recipient's own refusal left out). Over MAIL_MAX_LAG, send-code answers 503.", nil, nil)
	mailAgeMax   = prometheus.NewDesc("authd_mail_queue_age_max_seconds", "The longest wait in the queue of a job claimed since start.", nil, nil)
	mailDegraded = prometheus.NewDesc("authd_mail_degraded", "1 while mail deliveries fail at the session level (connection, TLS, AUTH, MAIL FROM, DATA), 5 in a row by default, until one is sent; readiness then says mail: degraded.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mailJobsDesc, mailHeldDesc, mailAgeDesc, mailLagDesc, mailAgeMax, mailDegraded} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.w.Stats()
	for outcome, n := range map[string]int64{
		"claimed": st.Claimed, "sent": st.Sent, "retried": st.Retried,
		"dropped_superseded": st.DroppedSuperseded, "dropped_expired": st.DroppedExpired,
		"failed_permanent": st.FailedPermanent, "failed_attempts": st.FailedAttempts, "failed_unreadable": st.FailedUnreadable, "left_unopened": st.LeftUnopened,
	} {
		ch <- prometheus.MustNewConstMetric(mailJobsDesc, prometheus.CounterValue, float64(n), outcome)
	}
	ch <- prometheus.MustNewConstMetric(mailHeldDesc, prometheus.GaugeValue, float64(st.Held))
	// Asked of the queue at each scrape: it grows while nothing is claimed.
	// A queue that does not answer leaves the series out rather than
	// showing a made-up 0 (authd_mail_degraded and readiness say more).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if age, err := c.w.QueueAge(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(mailAgeDesc, prometheus.GaugeValue, age.Seconds())
	}
	cancel()
	ch <- prometheus.MustNewConstMetric(mailLagDesc, prometheus.GaugeValue, c.w.Lag().Seconds())
	ch <- prometheus.MustNewConstMetric(mailAgeMax, prometheus.GaugeValue, st.QueueAgeMax.Seconds())
	degraded := 0.0
	if c.w.Degraded() {
		degraded = 1
	}
	ch <- prometheus.MustNewConstMetric(mailDegraded, prometheus.GaugeValue, degraded)
}
