package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"
)

// readBody reads the whole body, at most limit bytes. A larger body is a
// *tooLargeError, found without buffering more than limit+1 bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &tooLargeError{Limit: limit}
	}
	n := r.ContentLength
	if n < 0 || n > limit {
		n = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	_, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(buf.Len()) > limit {
		return nil, &tooLargeError{Limit: limit}
	}
	return buf.Bytes(), nil
}

// decodeFields decodes a JSON object and returns the values of the wanted
// fields: JSON strings as they are, numbers as their literal text, null as
// absent. Other fields are ignored whatever their value. The body must be
// valid UTF-8 and hold exactly one JSON object.
//
// It walks the body with encoding/json's tokenizer and decodes only the
// wanted fields' values; ignored values are skipped as raw JSON, nested as
// deep as encoding/json allows (10,000 levels) and no deeper.
func decodeFields(body []byte, wanted func(string) bool) (map[string]string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &bodyError{"body is empty; expected a JSON object such as {\"callNum\":\"010-1234-5678\"}"}
	}
	if !utf8.Valid(body) {
		return nil, &bodyError{"body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, &bodyError{"body is not JSON: " + jsonReason(err)}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &bodyError{"body is not a JSON object"}
	}
	values := make(map[string]string, 4)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &bodyError{"body is not JSON: " + jsonReason(err)}
		}
		key, _ := tok.(string)
		if !wanted(key) {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, &bodyError{"body is not JSON: " + jsonReason(err)}
			}
			continue
		}
		if _, dup := values[key]; dup {
			return nil, &bodyError{fmt.Sprintf("field %q appears more than once", key)}
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, &bodyError{"body is not JSON: " + jsonReason(err)}
		}
		switch v := v.(type) {
		case string:
			values[key] = v
		case json.Number:
			values[key] = v.String()
		case nil:
			values[key] = ""
		default:
			return nil, &bodyError{fmt.Sprintf("field %q must be a string or a number", key)}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, &bodyError{"body is not JSON: " + jsonReason(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &bodyError{"body has data after the JSON object"}
	}
	return values, nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return err.Error()
}
