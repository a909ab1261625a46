// Package metaserver serves the edge store to applications on the edge host
// as a read-only, Kubernetes-compatible REST API (list, get and watch), on
// 127.0.0.1:10550 by default, as KubeEdge's MetaServer does. It answers from
// the local SQLite store, so it keeps working while the cloud is
// unreachable; client-go, informers and kubectl work against it.
//
// Resource versions: objects in the store carry the cloud's resourceVersions,
// which are not one ordered sequence at the edge (some objects arrive, some
// are deleted while offline, the store is rebuilt on resync). The server
// therefore keeps its own revision counter: every change it is told about
// gets the next revision, lists report the current one, and served objects
// carry the revision of their last change in metadata.resourceVersion. A
// watch from an older revision replays the changes still in its window, or
// fails with 410 Gone so that the client lists again, as with the API
// server. The counter starts at the process start time in microseconds, so
// revisions a client saw before an edgecore restart are always too old.
//
// Secrets are not served unless Config.ServeSecrets is set: any process on
// the host can reach the port, and it does not authenticate callers.
package metaserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/store"
)

// Config sets where and what the server serves.
type Config struct {
	// Address is host:port; it should be a loopback address.
	Address string
	// ServeSecrets also serves secrets (off by default).
	ServeSecrets bool
	// WindowSize is how many recent changes a watch can resume from.
	WindowSize int
}

// Deps are the server's collaborators.
type Deps struct {
	Store  store.Store
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// resource describes one served resource.
type resource struct {
	name, kind, storeType string
	namespaced            bool
	fields                func(u *unstructured.Unstructured) fields.Set
}

func baseFields(u *unstructured.Unstructured) fields.Set {
	return fields.Set{"metadata.name": u.GetName(), "metadata.namespace": u.GetNamespace()}
}

func podFields(u *unstructured.Unstructured) fields.Set {
	f := baseFields(u)
	f["spec.nodeName"], _, _ = unstructured.NestedString(u.Object, "spec", "nodeName")
	f["status.phase"], _, _ = unstructured.NestedString(u.Object, "status", "phase")
	return f
}

// event is one change in the watch window.
type event struct {
	rev      uint64
	typ      string // ADDED, MODIFIED, DELETED
	store    string // store type
	ns, name string
	object   []byte // JSON with the revision set
}

// Server is the MetaServer.
type Server struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	resources map[string]resource // by resource name
	byType    map[string]resource // by store type

	mu       sync.Mutex
	rev      uint64                // guarded by mu; the newest revision
	objRev   map[string]uint64     // guarded by mu; "type/ns/name" → revision of its last change
	window   []event               // guarded by mu; oldest first, at most WindowSize
	watchers map[*watcher]struct{} // guarded by mu
	addr     net.Addr              // guarded by mu; set once listening
}

type watcher struct {
	res    resource
	ns     string
	events chan event
	// overflow is closed when the watcher fell behind; its stream ends and
	// the client re-lists, as after any broken watch.
	overflow chan struct{}
}

// New builds a Server; nothing listens until Run.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Store == nil {
		return nil, errors.New("metaserver: Store is required")
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:10550"
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("metaserver: address %q: %w", cfg.Address, err)
	}
	if cfg.WindowSize <= 0 {
		cfg.WindowSize = 4096
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("component", "metaserver"),
		resources: map[string]resource{}, byType: map[string]resource{},
		rev: uint64(deps.Clock.Now().UnixMicro()), objRev: map[string]uint64{}, watchers: map[*watcher]struct{}{}}
	served := []resource{
		{"pods", "Pod", "pod", true, podFields},
		{"configmaps", "ConfigMap", "configmap", true, baseFields},
		{"services", "Service", "service", true, baseFields},
		{"endpoints", "Endpoints", "endpoints", true, baseFields},
		{"persistentvolumeclaims", "PersistentVolumeClaim", "persistentvolumeclaim", true, baseFields},
		{"persistentvolumes", "PersistentVolume", "persistentvolume", false, baseFields},
	}
	if cfg.ServeSecrets {
		served = append(served, resource{"secrets", "Secret", "secret", true, baseFields})
	}
	for _, r := range served {
		s.resources[r.name], s.byType[r.storeType] = r, r
	}
	return s, nil
}

// Addr is the listening address once Run listens, else nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func objKey(typ, ns, name string) string { return typ + "/" + ns + "/" + name }

// Notify records a change the store has committed; it never blocks.
func (s *Server) Notify(ch store.Change) {
	o := ch.Object
	res, served := s.byType[o.Type]
	if !served {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	key := objKey(o.Type, o.Namespace, o.Name)
	ev := event{rev: s.rev, store: o.Type, ns: o.Namespace, name: o.Name}
	var err error
	if ch.Op == store.OpDelete {
		ev.typ = "DELETED"
		delete(s.objRev, key)
		ev.object, err = stub(res, o.Namespace, o.Name, s.rev)
	} else {
		ev.typ = "MODIFIED"
		if _, known := s.objRev[key]; !known {
			ev.typ = "ADDED"
		}
		s.objRev[key] = s.rev
		ev.object, err = withRevision(res, o.Value, s.rev)
	}
	if err != nil {
		s.log.Warn("stored object cannot be served", "object", key, "err", err)
		return
	}
	s.window = append(s.window, ev)
	if len(s.window) > s.cfg.WindowSize {
		s.window = slices.Delete(s.window, 0, len(s.window)-s.cfg.WindowSize)
	}
	for w := range s.watchers {
		if !w.matches(ev) {
			continue
		}
		select {
		case w.events <- ev:
		default:
			delete(s.watchers, w)
			close(w.overflow)
		}
	}
}

func (w *watcher) matches(ev event) bool {
	return ev.store == w.res.storeType && (w.ns == "" || w.ns == ev.ns)
}

// stub is the body of a DELETED event: the store keeps no copy of what
// was deleted, and clients need only the identity.
func stub(res resource, ns, name string, rev uint64) ([]byte, error) {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion("v1")
	u.SetKind(res.kind)
	u.SetName(name)
	if res.namespaced {
		u.SetNamespace(ns)
	}
	u.SetResourceVersion(strconv.FormatUint(rev, 10))
	return u.MarshalJSON()
}

func decode(res resource, value []byte) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(value); err != nil {
		// Objects from the cloud carry apiVersion and kind; fill them in if not.
		var obj map[string]any
		if jerr := json.Unmarshal(value, &obj); jerr != nil {
			return nil, jerr
		}
		u.Object = obj
	}
	if u.GetAPIVersion() == "" {
		u.SetAPIVersion("v1")
	}
	if u.GetKind() == "" {
		u.SetKind(res.kind)
	}
	return u, nil
}

func withRevision(res resource, value []byte, rev uint64) ([]byte, error) {
	u, err := decode(res, value)
	if err != nil {
		return nil, err
	}
	u.SetResourceVersion(strconv.FormatUint(rev, 10))
	u.SetManagedFields(nil)
	return u.MarshalJSON()
}

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("metaserver: %w", err)
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("metaserver listening", "address", ln.Addr().String())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // watches end with their request contexts
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("metaserver: %w", err)
	}
}

// Handler returns the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"major": "1", "minor": "35", "gitVersion": "v1.35.4-kubeedge-metaserver"})
	})
	mux.HandleFunc("GET /api", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []map[string]string{{"clientCIDR": "0.0.0.0/0", "serverAddress": s.cfg.Address}}})
	})
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{}})
	})
	mux.HandleFunc("GET /api/v1", s.discovery)
	mux.HandleFunc("GET /api/v1/{resource}", func(w http.ResponseWriter, r *http.Request) {
		s.collection(w, r, "", r.PathValue("resource"))
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/{resource}", func(w http.ResponseWriter, r *http.Request) {
		s.collection(w, r, r.PathValue("ns"), r.PathValue("resource"))
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/{resource}/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.get(w, r, r.PathValue("ns"), r.PathValue("resource"), r.PathValue("name"))
	})
	mux.HandleFunc("GET /api/v1/{resource}/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.get(w, r, "", r.PathValue("resource"), r.PathValue("name"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
				fmt.Sprintf("%s is not allowed: the edge metaserver is read-only (write through the cloud)", r.Method))
			return
		}
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("the edge metaserver does not serve %s", r.URL.Path))
	})
	return mux
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	var list []map[string]any
	for _, r := range s.resources {
		list = append(list, map[string]any{"name": r.name, "singularName": strings.ToLower(r.kind),
			"namespaced": r.namespaced, "kind": r.kind, "verbs": []string{"get", "list", "watch"}})
	}
	slices.SortFunc(list, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
	writeJSON(w, http.StatusOK, map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": list})
}

func (s *Server) lookup(w http.ResponseWriter, name string, ns string) (resource, bool) {
	res, ok := s.resources[name]
	if !ok {
		if name == "secrets" {
			writeStatus(w, http.StatusForbidden, "Forbidden", "secrets are not served by the edge metaserver (modules.metaServer.serveSecrets is off)")
		} else {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("the edge metaserver does not serve %q", name))
		}
		return res, false
	}
	if ns != "" && !res.namespaced {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s are not namespaced", name))
		return res, false
	}
	return res, true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, ns, resName, name string) {
	res, ok := s.lookup(w, resName, ns)
	if !ok {
		return
	}
	o, err := s.deps.Store.Get(r.Context(), res.storeType, ns, name)
	if errors.Is(err, store.ErrNotFound) {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", resName, name))
		return
	}
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	body, err := withRevision(res, o.Value, s.revisionOf(objKey(res.storeType, ns, name)))
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "InternalError", fmt.Sprintf("stored %s %s/%s: %v", resName, ns, name, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// revisionOf returns key's revision, the current one for objects that have
// not changed since the server started.
func (s *Server) revisionOf(key string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.objRev[key]; ok {
		return r
	}
	return s.rev
}

type selectors struct {
	labels labels.Selector
	fields fields.Selector
}

func parseSelectors(r *http.Request) (selectors, error) {
	sel := selectors{labels: labels.Everything(), fields: fields.Everything()}
	q := r.URL.Query()
	var err error
	if ls := q.Get("labelSelector"); ls != "" {
		if sel.labels, err = labels.Parse(ls); err != nil {
			return sel, fmt.Errorf("labelSelector %q: %w", ls, err)
		}
	}
	if fs := q.Get("fieldSelector"); fs != "" {
		if sel.fields, err = fields.ParseSelector(fs); err != nil {
			return sel, fmt.Errorf("fieldSelector %q: %w", fs, err)
		}
	}
	return sel, nil
}

func (sel selectors) match(res resource, u *unstructured.Unstructured) bool {
	return sel.labels.Matches(labels.Set(u.GetLabels())) && sel.fields.Matches(res.fields(u))
}

func (sel selectors) checkFields(res resource) error {
	known := res.fields(&unstructured.Unstructured{Object: map[string]any{}})
	for _, req := range sel.fields.Requirements() {
		if _, ok := known[req.Field]; !ok {
			return fmt.Errorf("field label %q is not supported for %s", req.Field, res.name)
		}
	}
	return nil
}

func (s *Server) collection(w http.ResponseWriter, r *http.Request, ns, resName string) {
	res, ok := s.lookup(w, resName, ns)
	if !ok {
		return
	}
	sel, err := parseSelectors(r)
	if err == nil {
		err = sel.checkFields(res)
	}
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if w1 := r.URL.Query().Get("watch"); w1 == "true" || w1 == "1" {
		s.watch(w, r, res, ns, sel)
		return
	}
	s.list(w, r, res, ns, sel)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res resource, ns string, sel selectors) {
	// The revision is read before the store: a change committed meanwhile
	// has a higher revision, so a watch from it cannot miss that change.
	s.mu.Lock()
	rev := s.rev
	s.mu.Unlock()
	objs, err := s.deps.Store.List(r.Context(), res.storeType, ns)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	items := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		u, err := decode(res, o.Value)
		if err != nil {
			s.log.Warn("stored object cannot be served", "object", objKey(o.Type, o.Namespace, o.Name), "err", err)
			continue
		}
		if !sel.match(res, u) {
			continue
		}
		u.SetResourceVersion(strconv.FormatUint(min(s.revisionOf(objKey(o.Type, o.Namespace, o.Name)), rev), 10))
		u.SetManagedFields(nil)
		b, err := u.MarshalJSON()
		if err != nil {
			continue
		}
		items = append(items, b)
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": res.kind + "List", "apiVersion": "v1",
		"metadata": map[string]string{"resourceVersion": strconv.FormatUint(rev, 10)}, "items": items})
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, res resource, ns string, sel selectors) {
	from, hasFrom := uint64(0), false
	if v := r.URL.Query().Get("resourceVersion"); v != "" && v != "0" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("resourceVersion %q is not a number", v))
			return
		}
		from, hasFrom = n, true
	}
	timeout := 30 * time.Minute
	if v := r.URL.Query().Get("timeoutSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("timeoutSeconds %q is not a non-negative number", v))
			return
		}
		if n > 0 {
			timeout = time.Duration(n) * time.Second
		}
	}
	// client-go's reflectors ask for a "watch list": the current objects as
	// ADDED events, a bookmark marking their end, then changes.
	initial := r.URL.Query().Get("sendInitialEvents") == "true"
	wt := &watcher{res: res, ns: ns, events: make(chan event, 256), overflow: make(chan struct{})}
	s.mu.Lock()
	var replay []event
	if initial {
		from, hasFrom = s.rev, true
	} else if hasFrom {
		oldest := s.rev + 1
		if len(s.window) > 0 {
			oldest = s.window[0].rev
		}
		if from+1 < oldest || from > s.rev {
			s.mu.Unlock()
			writeStatus(w, http.StatusGone, "Expired", fmt.Sprintf("too old resource version: %d (%d)", from, oldest-1))
			return
		}
		for _, ev := range s.window {
			if ev.rev > from && wt.matches(ev) {
				replay = append(replay, ev)
			}
		}
	}
	s.watchers[wt] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, wt)
		s.mu.Unlock()
	}()

	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	send := func(ev event) bool {
		if sel.labels.Empty() && sel.fields.Empty() || ev.typ == "DELETED" || s.selected(res, sel, ev.object) {
			line, err := json.Marshal(map[string]any{"type": ev.typ, "object": json.RawMessage(ev.object)})
			if err != nil {
				return true
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return false
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		return true
	}
	for _, ev := range replay {
		if !send(ev) {
			return
		}
	}
	if initial && !s.sendInitial(r.Context(), w, flusher, res, ns, sel, from) {
		return
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
			return
		case <-wt.overflow:
			return
		case ev := <-wt.events:
			if hasFrom && ev.rev <= from {
				continue // already replayed
			}
			if !send(ev) {
				return
			}
		}
	}
}

// sendInitial writes the objects as of revision rev as ADDED events and
// the bookmark that ends them; false means the client is gone.
func (s *Server) sendInitial(ctx context.Context, w http.ResponseWriter, flusher http.Flusher, res resource, ns string, sel selectors, rev uint64) bool {
	objs, err := s.deps.Store.List(ctx, res.storeType, ns)
	if err != nil {
		s.log.Warn("watch list failed", "resource", res.name, "err", err)
		return false
	}
	write := func(typ string, body []byte) bool {
		line, err := json.Marshal(map[string]any{"type": typ, "object": json.RawMessage(body)})
		if err != nil {
			return true
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return false
		}
		return true
	}
	for _, o := range objs {
		u, err := decode(res, o.Value)
		if err != nil || !sel.match(res, u) {
			continue
		}
		u.SetResourceVersion(strconv.FormatUint(min(s.revisionOf(objKey(o.Type, o.Namespace, o.Name)), rev), 10))
		u.SetManagedFields(nil)
		b, err := u.MarshalJSON()
		if err != nil {
			continue
		}
		if !write("ADDED", b) {
			return false
		}
	}
	bookmark := &unstructured.Unstructured{Object: map[string]any{}}
	bookmark.SetAPIVersion("v1")
	bookmark.SetKind(res.kind)
	bookmark.SetResourceVersion(strconv.FormatUint(rev, 10))
	bookmark.SetAnnotations(map[string]string{"k8s.io/initial-events-end": "true"})
	b, err := bookmark.MarshalJSON()
	if err != nil || !write("BOOKMARK", b) {
		return false
	}
	if flusher != nil {
		flusher.Flush()
	}
	return true
}

func (s *Server) selected(res resource, sel selectors, object []byte) bool {
	u, err := decode(res, object)
	return err == nil && sel.match(res, u)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	writeJSON(w, code, map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": message, "reason": reason, "code": code})
}
