package httpapi

import (
	"testing"

	"github.com/custinfo/custinfo/internal/lookup"
)

// benchBodies are request bodies as the helpdesk sends them.
var benchBodies = []struct{ name, body string }{
	{"helpdesk", `{"callNum":"010-1234-5678","nation":"82"}`},
	{"number", `{"callNum":821012345678,"nation":82}`},
	{"extra fields", `{"ticketId":"T-20251130-0042","agent":{"name":"상담원 김","ext":[1234,null,true]},"callNum":"+82 10-1234-5678","nation":"KR","memo":"고객이 \"배송\" 문의\n재통화 요청"}`},
}

func BenchmarkDecodeFields(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			body := []byte(bb.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeFields(body, benchWants); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchWants(k string) bool { return k == "callNum" || k == "nation" }

func BenchmarkAppendData(b *testing.B) {
	fields := []lookup.Field{{Name: "userName", Value: "홍길동"}, {Name: "id", Value: "C-0001001"}, {Name: "tier", Value: "gold <vip> & \"friends\""}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendData(buf[:0], fields)
	}
}
