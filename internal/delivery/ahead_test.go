package delivery_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/delivery"
)

// gateSender holds every send until the gate opens.
type gateSender struct {
	gate     chan struct{}
	inFlight atomic.Int32
}

func (g *gateSender) Send(ctx context.Context, m authd.Message) error {
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	select {
	case <-g.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The worker claims as many jobs again as it has workers, ready for them
// when their sends end, and no more; every job is then sent and finished.
func TestWorkerClaimsAhead(t *testing.T) {
	r := newRig(t)
	var ids []string
	for range 7 {
		ids = append(ids, r.issue(t, newID()+"@example.com", "123456", time.Minute).DeliveryID)
	}
	g := &gateSender{gate: make(chan struct{})}
	w := r.workerWith(t, g, func(o *delivery.WorkerOptions) { o.Workers = 2 })
	for deadline := time.Now().Add(5 * time.Second); g.inFlight.Load() < 2 || w.Stats().Claimed < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sends in flight, %d jobs claimed; want 2 and 4", g.inFlight.Load(), w.Stats().Claimed)
		}
	}
	time.Sleep(50 * time.Millisecond) // five polls: nothing more is claimed
	if st := w.Stats(); st.Claimed != 4 || st.Held != 4 {
		t.Fatalf("with 2 workers busy: %d claimed, %d held; want 4 and 4", st.Claimed, st.Held)
	}
	close(g.gate)
	for _, id := range ids {
		r.wantStatus(t, id, authd.DeliverySent, 5*time.Second)
	}
}
