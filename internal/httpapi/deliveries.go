package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/authd/authd"
)

// deliveryFlow is what the delivery status route needs of the service.
// Kept apart from Flow so that a Flow without it (a test's) still serves
// the rest; the route is registered only when the flow has it.
type deliveryFlow interface {
	Delivery(ctx context.Context, id string) (authd.Delivery, error)
}

// DeliveryResponse is a mail's delivery status. It names no address: the
// id alone (128 random bits) is the caller's handle.
type DeliveryResponse struct {
	Status        string     `json:"status" enum:"queued,retrying,sent,failed,superseded" doc:"queued: waiting or being sent; retrying: a temporary failure, see next_attempt_at; sent: accepted by the mail server; failed: refused for good, or the code expired first; superseded: a newer code replaced this one"`
	Attempts      int        `json:"attempts" doc:"Send attempts made so far"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty" doc:"When the next attempt is made (retrying only)"`
}

type deliveryInput struct {
	DeliveryID string `path:"delivery_id" maxLength:"64" doc:"The delivery_id of a v2 send-code answer"`
}

type deliveryOutput struct {
	CacheControl string `header:"Cache-Control"`
	Body         DeliveryResponse
}

// registerDeliveries adds GET /api/v2/auth/deliveries/{delivery_id} when
// the flow can answer it.
func (s *server) registerDeliveries(api huma.API) {
	flow, ok := s.Flow.(deliveryFlow)
	if !ok {
		return
	}
	huma.Register(api, huma.Operation{
		OperationID: "delivery-v2", Method: http.MethodGet, Path: "/api/v2/auth/deliveries/{delivery_id}",
		Summary:     "Status of a verification mail",
		Description: "Answers for as long as the code lives; 404 for an unknown id or once the code has expired.",
		Tags:        []string{"auth v2"},
		Errors:      []int{http.StatusNotFound, http.StatusServiceUnavailable},
	}, func(ctx context.Context, in *deliveryInput) (*deliveryOutput, error) {
		d, err := flow.Delivery(ctx, in.DeliveryID)
		if err != nil {
			return nil, fromDomain(s.log, err)
		}
		out := &deliveryOutput{CacheControl: "no-store"}
		out.Body = DeliveryResponse{Status: d.Status, Attempts: d.Attempts}
		if d.Status == authd.DeliveryRetrying && !d.NextAttempt.IsZero() {
			t := d.NextAttempt.UTC().Truncate(time.Millisecond)
			out.Body.NextAttemptAt = &t
		}
		return out, nil
	})
}
