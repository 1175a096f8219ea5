package httpapi

import (
	"context"
	"net/http"
	"reflect"
	"strconv"

	"github.com/authd/authd"
)

// Request bodies, for the OpenAPI document (handlers decode by hand).
type SendCodeRequest struct {
	Email     string `json:"email" format:"email" maxLength:"254" example:"ana@example.com"`
	ProjectID string `json:"project_id" pattern:"^[A-Za-z0-9._-]{1,64}$" example:"shop"`
}

type VerifyCodeRequest struct {
	Email     string `json:"email" format:"email" maxLength:"254" example:"ana@example.com"`
	ProjectID string `json:"project_id" pattern:"^[A-Za-z0-9._-]{1,64}$" example:"shop"`
	Code      string `json:"code" pattern:"^[0-9]{6}$" example:"123456"`
}

type VerifyCodeV2Request struct {
	Email     string `json:"email" format:"email" maxLength:"254" example:"ana@example.com"`
	ProjectID string `json:"project_id" pattern:"^[A-Za-z0-9._-]{1,64}$" example:"shop"`
	Code      string `json:"code" pattern:"^[0-9]{6}$" example:"123456"`
	Nonce     string `json:"nonce,omitempty" required:"false" maxLength:"256" doc:"Optional value of the client's, bound into the token"`
}

// Response bodies.
type MessageResponse struct {
	Message string `json:"message" example:"Verification code sent successfully"`
}

type SendCodeV2Response struct {
	Message     string `json:"message" example:"Verification code sent successfully"`
	ExpiresIn   int64  `json:"expires_in" doc:"Seconds the code stays valid"`
	ResendAfter int64  `json:"resend_after" doc:"Seconds before another code may be sent to this address for this project"`
	DeliveryID  string `json:"delivery_id" doc:"The mail's handle for GET /api/v2/auth/deliveries/{delivery_id}"`
}

// ProofResponse is the original's proof; field order is frozen.
type ProofResponse = authd.Proof

var (
	sendRequestSchema     = reflect.TypeFor[SendCodeRequest]()
	verifyRequestSchema   = reflect.TypeFor[VerifyCodeRequest]()
	verifyV2RequestSchema = reflect.TypeFor[VerifyCodeV2Request]()
	responseTypes         = map[string]reflect.Type{
		"send-code-v1":   reflect.TypeFor[MessageResponse](),
		"verify-code-v1": reflect.TypeFor[ProofResponse](),
		"send-code-v2":   reflect.TypeFor[SendCodeV2Response](),
		"verify-code-v2": reflect.TypeFor[ProofResponse](),
	}
)

func (s *server) handleRoot() http.Handler {
	body := map[string]string{"message": "Welcome to " + s.ProjectName}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, body)
	})
}

type healthOutput struct {
	Body struct {
		Status string `json:"status" example:"ok"`
	}
}

func (s *server) handleHealth(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	out := &healthOutput{}
	out.Body.Status = "ok"
	return out, nil
}

func (s *server) send(ctx context.Context, in *rawInput) (authd.SendResult, error) {
	if err := checkContentType(in.ContentType); err != nil {
		return authd.SendResult{}, err
	}
	req, err := decodeSend(in.RawBody)
	if err != nil {
		return authd.SendResult{}, err
	}
	noteEmail(ctx, req.email)
	res, err := s.Flow.SendCode(ctx, authd.SendRequest{Email: req.email, ProjectID: req.projectID, ClientIP: clientIPFrom(ctx)})
	noteOutcome(ctx, "send", err)
	if err != nil {
		return res, limitHeaders(fromDomain(s.log, err), res.IP)
	}
	return res, nil
}

func (s *server) handleSendV1(ctx context.Context, in *rawInput) (*jsonOutput, error) {
	res, err := s.send(ctx, in)
	if err != nil {
		return nil, err
	}
	return withLimit(res.IP, MessageResponse{Message: msgCodeSent}), nil
}

func (s *server) handleSendV2(ctx context.Context, in *rawInput) (*jsonOutput, error) {
	res, err := s.send(ctx, in)
	if err != nil {
		return nil, err
	}
	return withLimit(res.IP, SendCodeV2Response{
		Message:     msgCodeSent,
		ExpiresIn:   int64(res.ExpiresIn.Seconds()),
		ResendAfter: int64(res.ResendAfter.Seconds()),
		DeliveryID:  res.DeliveryID,
	}), nil
}

func (s *server) verify(ctx context.Context, in *rawInput, v2 bool) (authd.VerifyResult, error) {
	if err := checkContentType(in.ContentType); err != nil {
		return authd.VerifyResult{}, err
	}
	req, err := decodeVerify(in.RawBody, v2)
	if err != nil {
		return authd.VerifyResult{}, err
	}
	noteEmail(ctx, req.email)
	res, err := s.Flow.VerifyCode(ctx, authd.VerifyRequest{Email: req.email, ProjectID: req.projectID, Code: req.code, ClientIP: clientIPFrom(ctx), WantToken: v2, Nonce: req.nonce})
	noteOutcome(ctx, "verify", err)
	if err != nil {
		return res, limitHeaders(fromDomain(s.log, err), res.IP)
	}
	return res, nil
}

func (s *server) handleVerifyV1(ctx context.Context, in *rawInput) (*jsonOutput, error) {
	res, err := s.verify(ctx, in, false)
	if err != nil {
		return nil, err
	}
	return withLimit(res.IP, res.Proof), nil
}

func (s *server) handleVerifyV2(ctx context.Context, in *rawInput) (*jsonOutput, error) {
	res, err := s.verify(ctx, in, true)
	if err != nil {
		return nil, err
	}
	return withLimit(res.IP, v2Body(res)), nil
}

// withLimit sets the RateLimit-* headers of the client-IP limit: a
// per-address figure would tell one caller about another's activity.
func withLimit(l authd.LimitState, body any) *jsonOutput {
	out := &jsonOutput{Body: body}
	if l.Limit > 0 {
		out.RateLimitLimit = strconv.Itoa(l.Limit)
		out.RateLimitRemaining = strconv.Itoa(l.Remaining)
		out.RateLimitReset = strconv.Itoa(resetSeconds(l.Reset))
	}
	return out
}

// limitHeaders adds the client-IP limit's RateLimit-* headers to an error
// answer, as withLimit does to a success.
func limitHeaders(err error, l authd.LimitState) error {
	e, ok := err.(*apiError)
	if !ok || l.Limit <= 0 {
		return err
	}
	if e.headers == nil {
		e.headers = http.Header{}
	}
	e.headers.Set("RateLimit-Limit", strconv.Itoa(l.Limit))
	e.headers.Set("RateLimit-Remaining", strconv.Itoa(l.Remaining))
	e.headers.Set("RateLimit-Reset", strconv.Itoa(resetSeconds(l.Reset)))
	return e
}
