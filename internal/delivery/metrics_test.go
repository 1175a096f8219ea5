package delivery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ageWorker is a worker whose queue age is set by the test.
type ageWorker struct {
	age time.Duration
	err error
}

func (a *ageWorker) Stats() WorkerStats                              { return WorkerStats{} }
func (a *ageWorker) Degraded() bool                                  { return false }
func (a *ageWorker) Lag() time.Duration                              { return 0 }
func (a *ageWorker) QueueAge(context.Context) (time.Duration, error) { return a.age, a.err }

// TestMailQueueAgeMetric: authd_mail_queue_age_seconds is the worker's
// QueueAge at scrape time (the oldest job still waiting), and is left out
// when the queue does not answer.
func TestMailQueueAgeMetric(t *testing.T) {
	w := &ageWorker{age: 42 * time.Second}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{w: w})
	// scrape returns the gauge's samples and its help text.
	scrape := func() ([]float64, string) {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "authd_mail_queue_age_seconds" {
				var v []float64
				for _, m := range f.GetMetric() {
					v = append(v, m.GetGauge().GetValue())
				}
				return v, f.GetHelp()
			}
		}
		return nil, ""
	}
	v, help := scrape()
	if len(v) != 1 || v[0] != 42 {
		t.Fatalf("samples %v, want [42]", v)
	}
	if !strings.Contains(help, "oldest mail job not yet delivered") {
		t.Errorf("help %q does not say what the gauge measures", help)
	}
	w.age = 90 * time.Second // asked again at each scrape
	if v, _ := scrape(); len(v) != 1 || v[0] != 90 {
		t.Fatalf("samples %v, want [90]", v)
	}
	w.age, w.err = 0, errors.New("queue down")
	if v, _ := scrape(); len(v) != 0 {
		t.Fatalf("with the queue down: samples %v, want none", v)
	}
}
