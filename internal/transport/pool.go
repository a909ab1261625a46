package transport

import (
	"io"
	"net/http"
	"strings"
	"sync"
)

// poolAdapter lets gorilla/websocket borrow write buffers per message.
type poolAdapter struct{ p sync.Pool }

func (a *poolAdapter) Get() any  { return a.p.Get() }
func (a *poolAdapter) Put(x any) { a.p.Put(x) }

func readReason(resp *http.Response) string {
	if resp.Body == nil {
		return resp.Status
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return strings.TrimSpace(string(b))
}
