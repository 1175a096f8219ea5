package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/authd/authd"
)

// The answers' bodies; openapi.yaml's schemas of the same names say the
// same. Field order is the bytes' order: frozen for /api/v1.
type messageResponse struct {
	Message string `json:"message"`
}

type sendCodeV2Response struct {
	Message     string `json:"message"`
	ExpiresIn   int64  `json:"expires_in"`
	ResendAfter int64  `json:"resend_after"`
	DeliveryID  string `json:"delivery_id"`
}

func handleRoot(projectName string) http.Handler {
	body := map[string]string{"message": "Welcome to " + projectName}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, body)
	})
}

func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func handleSendV1(flow Flow, org *origins, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := send(r, flow, org, log)
		if err != nil {
			writeError(w, err)
			return
		}
		setLimitHeaders(w.Header(), res.IP)
		writeJSON(w, http.StatusOK, messageResponse{Message: msgCodeSent})
	})
}

func handleSendV2(flow Flow, org *origins, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := send(r, flow, org, log)
		if err != nil {
			writeError(w, err)
			return
		}
		setLimitHeaders(w.Header(), res.IP)
		writeJSON(w, http.StatusOK, sendCodeV2Response{
			Message:     msgCodeSent,
			ExpiresIn:   int64(res.ExpiresIn.Seconds()),
			ResendAfter: int64(res.ResendAfter.Seconds()),
			DeliveryID:  res.DeliveryID,
		})
	})
}

func handleVerifyV1(flow Flow, org *origins, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := verifyCode(r, flow, org, log, false)
		if err != nil {
			writeError(w, err)
			return
		}
		setLimitHeaders(w.Header(), res.IP)
		writeJSON(w, http.StatusOK, res.Proof)
	})
}

func handleVerifyV2(flow Flow, org *origins, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := verifyCode(r, flow, org, log, true)
		if err != nil {
			writeError(w, err)
			return
		}
		setLimitHeaders(w.Header(), res.IP)
		writeJSON(w, http.StatusOK, v2Body(res))
	})
}

// send runs send-code for both versions: the body read and checked (a
// browser's cross-origin request refused first), the flow asked, its
// refusal mapped.
func send(r *http.Request, flow Flow, org *origins, log *slog.Logger) (authd.SendResult, error) {
	body, err := readBody(r)
	if err == nil {
		err = org.forBody(r, body, "project_id")
	}
	if err != nil {
		return authd.SendResult{}, err
	}
	req, err := decodeSend(body)
	if err != nil {
		return authd.SendResult{}, err
	}
	ctx := r.Context()
	noteEmail(ctx, req.email)
	res, err := flow.SendCode(ctx, authd.SendRequest{Email: req.email, ProjectID: req.projectID, ClientIP: clientIPFrom(ctx)})
	noteOutcome(ctx, "send", err)
	if err != nil {
		return res, withLimit(fromDomain(log, err), res.IP)
	}
	return res, nil
}

// verifyCode runs verify-code for both versions; v2 asks for a token.
func verifyCode(r *http.Request, flow Flow, org *origins, log *slog.Logger, v2 bool) (authd.VerifyResult, error) {
	body, err := readBody(r)
	if err == nil {
		err = org.forBody(r, body, "project_id")
	}
	if err != nil {
		return authd.VerifyResult{}, err
	}
	req, err := decodeVerify(body, v2)
	if err != nil {
		return authd.VerifyResult{}, err
	}
	ctx := r.Context()
	noteEmail(ctx, req.email)
	res, err := flow.VerifyCode(ctx, authd.VerifyRequest{Email: req.email, ProjectID: req.projectID, Code: req.code, ClientIP: clientIPFrom(ctx), WantToken: v2, Nonce: req.nonce})
	noteOutcome(ctx, "verify", err)
	if err != nil {
		return res, withLimit(fromDomain(log, err), res.IP)
	}
	return res, nil
}

// setLimitHeaders sets the RateLimit-* headers of the client-IP limit: a
// per-address figure would tell one caller about another's activity.
func setLimitHeaders(h http.Header, l authd.LimitState) {
	if l.Limit <= 0 {
		return
	}
	h.Set("RateLimit-Limit", strconv.Itoa(l.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(l.Remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(resetSeconds(l.Reset)))
}

// withLimit adds the client-IP limit's RateLimit-* headers to an error
// answer, as a success carries them.
func withLimit(e *apiError, l authd.LimitState) *apiError {
	if l.Limit <= 0 {
		return e
	}
	if e.headers == nil {
		e.headers = http.Header{}
	}
	setLimitHeaders(e.headers, l)
	return e
}
