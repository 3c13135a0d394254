package web

import (
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/internal/service"
)

// envelope is the seeds' response shape: {"success": bool, <entity>: ...}.
type envelope map[string]any

// writeJSON writes v with status. Encoding errors can only come from our own
// types, so they are logged, not answered.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Default().Error("encode response", "err", err)
	}
}

// ok answers {"success": true, key: v, ...}.
func ok(w http.ResponseWriter, status int, kv ...any) {
	body := envelope{"success": true}
	for i := 0; i+1 < len(kv); i += 2 {
		body[kv[i].(string)] = kv[i+1]
	}
	writeJSON(w, status, body)
}

// apiError is an error answer in the seeds' shape.
type apiError struct {
	Status           int
	Message          string
	ValidationErrors []string
	ErrorKey         string
	// Extra fields beside "error", e.g. retryAfter or jobId.
	Extra envelope
}

func (e *apiError) Error() string { return e.Message }

func (e *apiError) write(w http.ResponseWriter) {
	body := envelope{"success": false, "error": e.Message}
	if len(e.ValidationErrors) > 0 {
		body["validationErrors"] = e.ValidationErrors
	}
	if e.ErrorKey != "" {
		body["errorKey"] = e.ErrorKey
	}
	for k, v := range e.Extra {
		body[k] = v
	}
	writeJSON(w, e.Status, body)
}

func invalid(errs ...string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: "Validation failed", ValidationErrors: errs}
}

func notFound(what string) *apiError {
	return &apiError{Status: http.StatusNotFound, Message: what + " not found"}
}

var errInternal = &apiError{Status: http.StatusInternalServerError, Message: "Internal server error"}

// retryAfterSeconds rounds a wait up to whole seconds, at least one.
func retryAfterSeconds(secs float64) string {
	n := int(secs)
	if float64(n) < secs {
		n++
	}
	return strconv.Itoa(max(n, 1))
}

// unsupported answers a route that the service's provider does not serve.
func (s *Server) unsupported(provider string) *apiError {
	return &apiError{Status: http.StatusBadRequest, ErrorKey: "unsupported_provider",
		Message: "This endpoint is not available for " + s.title(provider) + " services"}
}

// wrongProvider answers a route of one provider's services called on a
// service of another.
func (s *Server) wrongProvider(want, got string) *apiError {
	return &apiError{Status: http.StatusBadRequest, ErrorKey: "unsupported_provider",
		Message: "This endpoint is for " + s.title(want) + " services; this service is on " + got}
}

// title is the provider's name as people write it, from the registry; the
// stored name capitalised for a provider this process does not run.
func (s *Server) title(provider string) string {
	if p, ok := s.Providers.Lookup(provider); ok {
		return p.Title()
	}
	if provider == "" {
		return provider
	}
	return strings.ToUpper(provider[:1]) + provider[1:]
}

// providerMissing answers a request that needs a provider this process has
// no configuration for.
func providerMissing(provider string) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, ErrorKey: "provider_unavailable",
		Message: provider + " is not configured on this server"}
}

// providerError answers a live read from a provider that failed: 404 for
// an object the provider does not have, 502 with the provider's message
// otherwise.
func providerError(err error) error {
	var fe *failure.Error
	if !errors.As(err, &fe) {
		return err
	}
	if errors.Is(err, failure.ErrNotFound) {
		return &apiError{Status: http.StatusNotFound, ErrorKey: "provider_not_found", Message: failure.UserMessage(err)}
	}
	if fe.Status == http.StatusConflict {
		// The provider's object is busy or suspended; the caller may try later.
		return &apiError{Status: http.StatusConflict, ErrorKey: "provider_conflict", Message: failure.UserMessage(err)}
	}
	return &apiError{Status: http.StatusBadGateway, ErrorKey: "provider_error", Message: failure.UserMessage(err)}
}

// fromServiceError answers a use case's refusal.
func fromServiceError(e *service.Error) *apiError {
	status := map[service.Code]int{service.Invalid: http.StatusBadRequest, service.NotFound: http.StatusNotFound,
		service.Conflict: http.StatusConflict, service.Unavailable: http.StatusServiceUnavailable}[e.Code]
	return &apiError{Status: cmp.Or(status, http.StatusInternalServerError), Message: e.Message, ErrorKey: e.Key, ValidationErrors: e.Details}
}
