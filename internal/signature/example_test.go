package signature_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/custinfo/custinfo/internal/signature"
)

func ExampleSign() {
	body := []byte(`{"callNum":"010-1234-5678","nation":"82"}`)
	fmt.Println(signature.Sign([]byte("bf7769e5321448de88838cdb"), signature.SchemeBody, "", body, "1764466000000"))
	// Output: ZViyAyYYcDFTuVfH6LC9/1euNLLlsFamNb2ADGbeyXY=
}

func ExampleVerify() {
	keys := []signature.Key{
		{ID: 1, Secret: []byte("old-key"), Schemes: []signature.Scheme{signature.SchemeBody}},
		{ID: 2, Secret: []byte("bf7769e5321448de88838cdb"), Schemes: []signature.Scheme{signature.SchemeBody, signature.SchemeURIBody}},
	}
	body := []byte(`{"callNum":"010-1234-5678","nation":"82"}`)
	k, err := signature.Verify(keys, "/v1/lookups/customer", body, "1764466000000", "ZViyAyYYcDFTuVfH6LC9/1euNLLlsFamNb2ADGbeyXY=")
	fmt.Println(k.ID, err)
	_, err = signature.Verify(keys, "/v1/lookups/customer", body, "1764466000000", "Bearer ZViyAyYYcDFTuVfH6LC9/1euNLLlsFamNb2ADGbeyXY=")
	fmt.Println(errors.Is(err, signature.ErrMismatch))
	// Output:
	// 2 <nil>
	// true
}

func ExampleParseTimestamp() {
	now := time.UnixMilli(1764466000000)
	_, err := signature.ParseTimestamp("1764466000", now, 5*time.Minute)
	var te *signature.TimestampError
	if errors.As(err, &te) {
		fmt.Println(te.Reason)
		fmt.Println(te.Detail)
	}
	// Output:
	// too_old
	// timestamp 1764466000 ms (1970-01-21T10:07:46.000Z) is 1762701534 s in the past; server time is 1764466000000 ms (2025-11-30T01:26:40.000Z), allowed window ±300 s; looks like seconds; expected milliseconds
}
