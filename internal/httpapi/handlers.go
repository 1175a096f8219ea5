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
	res, err := s.Flow.SendCode(ctx, authd.SendRequest{Email: req.email, ProjectID: req.projectID, ClientIP: clientIPFrom(ctx)})
	if err != nil {
		return authd.SendResult{}, fromDomain(s.log, err)
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
	res, err := s.Flow.VerifyCode(ctx, authd.VerifyRequest{Email: req.email, ProjectID: req.projectID, Code: req.code, ClientIP: clientIPFrom(ctx)})
	if err != nil {
		return authd.VerifyResult{}, fromDomain(s.log, err)
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
	return withLimit(res.IP, res.Proof), nil
}

// withLimit sets the RateLimit-* headers of the client-IP limit: a
// per-address figure would tell one caller about another's activity.
func withLimit(l authd.LimitState, body any) *jsonOutput {
	out := &jsonOutput{Body: body}
	if l.Limit > 0 {
		out.RateLimitLimit = strconv.Itoa(l.Limit)
		out.RateLimitRemaining = strconv.Itoa(l.Remaining)
		out.RateLimitReset = strconv.Itoa(retryAfterSeconds(l.Reset))
	}
	return out
}
