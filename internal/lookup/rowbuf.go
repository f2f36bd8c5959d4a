package lookup

import (
	"sync"

	"github.com/jackc/pgx/v5/pgtype"
)

// rowBuf is the scan destination of one answer row: for a coalesced query
// the request's index first, then the result fields as text, then the match
// count. Buffers are reused, so a request allocates only its answer.
type rowBuf struct {
	ord     int32
	texts   []pgtype.Text
	matches int64
	withOrd bool
	dest    []any
}

var rowBufs sync.Pool

// getRowBuf returns a buffer for n result fields, with the request index
// when withOrd is set; give it back with putRowBuf.
func getRowBuf(n int, withOrd bool) *rowBuf {
	if b, ok := rowBufs.Get().(*rowBuf); ok && len(b.texts) == n && b.withOrd == withOrd {
		return b
	}
	b := &rowBuf{texts: make([]pgtype.Text, n), withOrd: withOrd}
	b.dest = make([]any, 0, n+2)
	if withOrd {
		b.dest = append(b.dest, &b.ord)
	}
	for i := range b.texts {
		b.dest = append(b.dest, &b.texts[i])
	}
	b.dest = append(b.dest, &b.matches)
	return b
}

// putRowBuf forgets the values of b (customer data is not kept around) and
// makes it available again.
func putRowBuf(b *rowBuf) {
	clear(b.texts)
	b.ord, b.matches = 0, 0
	rowBufs.Put(b)
}

// fields returns the buffer's result fields, named after l's results.
func (b *rowBuf) fields(l *Lookup) []Field {
	out := make([]Field, len(b.texts))
	for i, t := range b.texts {
		out[i] = Field{Name: l.Results[i].Field, Value: t.String}
	}
	return out
}
