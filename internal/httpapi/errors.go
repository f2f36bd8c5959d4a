package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/signature"
)

// Error codes of the envelope's "code" member, one per cause. They are part
// of the wire contract and documented in the README.
const (
	CodeInvalidTimestamp    = "invalid_timestamp"
	CodeInvalidBody         = "invalid_body"
	CodeMissingField        = "missing_field"
	CodeInvalidField        = "invalid_field"
	CodeAccessDenied        = "access_denied"
	CodeNoData              = "no_data"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeBodyTooLarge        = "body_too_large"
	CodeLookupMisconfigured = "lookup_misconfigured"
	CodeDatabaseTimeout     = "database_timeout"
	CodeDatabaseError       = "database_error"
	CodeInternal            = "internal_error"
	CodeClientClosed        = "client_closed"
)

// The spec's messages, one per status.
const (
	msgInvalid  = "Invalid request"
	msgDenied   = "Access to the requested resource is denied"
	msgNoData   = "No data found"
	msgServer   = "Server error"
	msgNotFound = "Not found"
	msgMethod   = "Method not allowed"
	msgTooLarge = "Request body too large"
)

// deniedDetail is the one detail of every 403: before a request is
// authenticated it learns nothing about what exists.
const deniedDetail = "signature does not verify"

// deniedError is a 403; Reason is for the server log only.
type deniedError struct{ Reason string }

func (e *deniedError) Error() string { return "access denied: " + e.Reason }

// bodyError is a request body that is not a usable JSON object.
type bodyError struct{ Detail string }

func (e *bodyError) Error() string { return "invalid body: " + e.Detail }

// tooLargeError is a body over the size limit.
type tooLargeError struct{ Limit int64 }

func (e *tooLargeError) Error() string { return fmt.Sprintf("body exceeds %d bytes", e.Limit) }

// timeoutError is a lookup that ran past the query timeout.
type timeoutError struct {
	After string
	Err   error
}

func (e *timeoutError) Error() string {
	return "query timed out after " + e.After + ": " + e.Err.Error()
}
func (e *timeoutError) Unwrap() error { return e.Err }

// clientGoneError is a request whose client went away before it was
// answered; nobody reads the answer, but the access log tells it apart from a
// slow database.
type clientGoneError struct{ Err error }

func (e *clientGoneError) Error() string { return "client closed the request: " + e.Err.Error() }
func (e *clientGoneError) Unwrap() error { return e.Err }

// statusClientClosed is the status recorded for a client that went away
// (nginx's 499); no client ever receives it.
const statusClientClosed = 499

// apiError is the resolved wire form of an error.
type apiError struct {
	Status  int
	Code    string
	Message string
	Detail  string
}

// resolve maps an error to its status, code, message and detail: the one
// place that knows the wire contract for errors.
func resolve(err error) apiError {
	var (
		te  *signature.TimestampError
		be  *bodyError
		ie  *lookup.InputError
		de  *deniedError
		tl  *tooLargeError
		bro *lookup.BrokenError
		to  *timeoutError
		cg  *clientGoneError
		qe  *lookup.QueryError
		he  echo.HTTPStatusCoder
	)
	switch {
	case errors.As(err, &te):
		return apiError{http.StatusBadRequest, CodeInvalidTimestamp, msgInvalid, te.Detail}
	case errors.As(err, &be):
		return apiError{http.StatusBadRequest, CodeInvalidBody, msgInvalid, be.Detail}
	case errors.As(err, &ie):
		code := CodeInvalidField
		if ie.Reason == "is required" {
			code = CodeMissingField
		}
		return apiError{http.StatusBadRequest, code, msgInvalid, ie.Error()}
	case errors.As(err, &de):
		return apiError{http.StatusForbidden, CodeAccessDenied, msgDenied, deniedDetail}
	case errors.Is(err, lookup.ErrNoMatch):
		return apiError{http.StatusNotFound, CodeNoData, msgNoData, "no row of the lookup's source matches the query"}
	case errors.As(err, &tl):
		return apiError{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, msgTooLarge,
			fmt.Sprintf("request body exceeds %d bytes", tl.Limit)}
	case errors.As(err, &bro):
		return apiError{http.StatusInternalServerError, CodeLookupMisconfigured, msgServer, bro.Error()}
	case errors.As(err, &cg):
		return apiError{statusClientClosed, CodeClientClosed, msgInvalid, "the client closed the connection before the answer"}
	case errors.As(err, &to):
		return apiError{http.StatusInternalServerError, CodeDatabaseTimeout, msgServer,
			"the database did not answer within " + to.After}
	case errors.Is(err, lookup.ErrQueueFull):
		return apiError{http.StatusInternalServerError, CodeDatabaseError, msgServer,
			"too many requests are waiting for this lookup's database queries; try again"}
	case errors.As(err, &qe):
		if errors.Is(err, context.DeadlineExceeded) {
			return apiError{http.StatusInternalServerError, CodeDatabaseTimeout, msgServer, "the database did not answer in time"}
		}
		return apiError{http.StatusInternalServerError, CodeDatabaseError, msgServer, "the database query failed; see the server log"}
	case errors.As(err, &he):
		switch code := he.StatusCode(); code {
		case http.StatusNotFound:
			return apiError{http.StatusNotFound, CodeNotFound, msgNotFound, "no such route; lookups are at POST /v1/lookups/{name}"}
		case http.StatusMethodNotAllowed:
			return apiError{http.StatusMethodNotAllowed, CodeMethodNotAllowed, msgMethod, "this route does not accept that method"}
		case http.StatusRequestEntityTooLarge:
			return apiError{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, msgTooLarge, "request body too large"}
		default:
			if code >= 400 && code < 500 {
				return apiError{code, CodeInvalidBody, msgInvalid, http.StatusText(code)}
			}
		}
	}
	return apiError{http.StatusInternalServerError, CodeInternal, msgServer, "unexpected server error; see the server log"}
}

// writeError writes the envelope for err unless a response was already sent.
func writeError(c *echo.Context, err error) apiError {
	ae := resolve(err)
	if resp, uerr := echo.UnwrapResponse(c.Response()); uerr == nil && resp.Committed {
		return ae
	}
	buf := make([]byte, 0, 256)
	buf = appendErrorEnvelope(buf, ae)
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set("Cache-Control", "no-store")
	if ae.Status == http.StatusMethodNotAllowed {
		if allow, ok := c.Get(echo.ContextKeyHeaderAllow).(string); ok && allow != "" {
			h.Set("Allow", allow)
		}
	}
	c.Response().WriteHeader(ae.Status)
	_, _ = c.Response().Write(buf)
	return ae
}

// Envelope returns the status and the JSON error envelope the server answers
// for err, for tools that show an admin what a request would get.
func Envelope(err error) (int, []byte) {
	ae := resolve(err)
	return ae.Status, appendErrorEnvelope(nil, ae)
}

// DataBody returns the JSON success body for fields.
func DataBody(fields []lookup.Field) []byte {
	return appendData(nil, fields)
}
