package metaserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kubeedge-go/kubeedge/internal/store"
)

// FuzzRequests sends arbitrary paths and query strings: every answer is a
// well-formed response (a Kubernetes Status on errors), never a panic.
func FuzzRequests(f *testing.F) {
	f.Add("/api/v1/pods", "labelSelector=app%3Dweb")
	f.Add("/api/v1/namespaces/default/pods/a", "")
	f.Add("/api/v1/pods", "watch=true&resourceVersion=99999999999999999999")
	f.Add("/api/v1/pods", "fieldSelector=status.phase%3D%3DRunning,metadata.name!%3Dx")
	f.Add("/api/v1/namespaces/x/configmaps", "watch=1&timeoutSeconds=-1")
	st := store.NewMemory()
	srv, err := New(Config{WindowSize: 8}, Deps{Store: st})
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := json.Marshal(pod("default", "a", "Running", map[string]string{"app": "web"}))
	ch := store.Change{Op: store.OpPut, Object: store.Object{Type: "pod", Namespace: "default", Name: "a", Value: raw}}
	if err := st.Apply(context.Background(), []store.Change{ch}); err != nil {
		f.Fatal(err)
	}
	srv.Notify(ch)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, path, query string) {
		u := &url.URL{Path: path, RawQuery: query}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond) // ends watches
		defer cancel()
		req := httptest.NewRequest(http.MethodGet, "http://metaserver/", nil).WithContext(ctx)
		req.URL = u
		req.RequestURI = u.RequestURI()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 400 && rec.Code != http.StatusMovedPermanently {
			var status struct{ Kind string }
			if json.Unmarshal(rec.Body.Bytes(), &status) != nil || status.Kind != "Status" {
				if rec.Code != http.StatusBadRequest { // net/http's own rejections of bad paths
					t.Fatalf("%s?%s: %d without a Status body: %q", path, query, rec.Code, rec.Body.String())
				}
			}
		}
	})
}
