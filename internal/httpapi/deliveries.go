package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/authd/authd"
)

// deliveryResponse is a mail's delivery status. It names no address: the
// id alone (122 random bits) is the caller's handle.
type deliveryResponse struct {
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// maxDeliveryID bounds the path's id, in characters.
const maxDeliveryID = 64

// handleDelivery answers GET /api/v2/auth/deliveries/{delivery_id}.
func handleDelivery(flow Flow, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("delivery_id")
		if utf8.RuneCountInString(id) > maxDeliveryID {
			// The body huma's parameter check gave, kept as it was.
			writeError(w, validationError(FieldError{Loc: []any{"path.delivery_id"}, Msg: fmt.Sprintf("expected length <= %d", maxDeliveryID), Type: "value_error"}))
			return
		}
		d, err := flow.Delivery(r.Context(), id)
		if err != nil {
			writeError(w, fromDomain(log, err))
			return
		}
		body := deliveryResponse{Status: d.Status, Attempts: d.Attempts}
		if d.Status == authd.DeliveryRetrying && !d.NextAttempt.IsZero() {
			t := d.NextAttempt.UTC().Truncate(time.Millisecond)
			body.NextAttemptAt = &t
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, body)
	})
}
