package mapper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// healthServer serves the mapper's health endpoints:
//
//	GET /healthz  200 "ok" while the mapper runs
//	GET /readyz   200 once registered with edgecore, else 503
//	GET /devices  JSON: every device's state, message and twins, and Stats
type healthServer struct {
	srv  *http.Server
	done chan struct{}
}

func (m *Mapper) startHealth(ctx context.Context) (*healthServer, error) {
	lis, err := net.Listen("tcp", m.cfg.HealthAddr)
	if err != nil {
		return nil, fmt.Errorf("mapper: health endpoint %s: %w", m.cfg.HealthAddr, err)
	}
	m.log.Info("health endpoint", "addr", lis.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-m.ready:
			_, _ = w.Write([]byte("ok\n"))
		default:
			http.Error(w, "not registered with edgecore yet", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /devices", func(w http.ResponseWriter, _ *http.Request) {
		type twin struct {
			Property, Value, Error, Desired, DesiredError string `json:",omitempty"`
		}
		type dev struct {
			Namespace, Name, State, Message string `json:",omitempty"`
			Twins                           []twin `json:",omitempty"`
		}
		var out struct {
			Stats   Stats
			Devices []dev
		}
		out.Stats = m.Stats()
		for _, d := range m.Devices() {
			jd := dev{Namespace: d.Namespace, Name: d.Name, State: string(d.State), Message: d.Message}
			for _, t := range d.Twins {
				jd.Twins = append(jd.Twins, twin{
					Property: t.GetPropertyName(), Value: t.GetReported().GetValue(), Error: t.GetReported().GetMetadata()["error"],
					Desired: t.GetObservedDesired().GetValue(), DesiredError: t.GetObservedDesired().GetMetadata()["error"],
				})
			}
			out.Devices = append(out.Devices, jd)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	h := &healthServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := h.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("health endpoint stopped", "err", err)
		}
	}()
	go func() {
		defer close(h.done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = h.srv.Shutdown(sctx)
		<-served
	}()
	return h, nil
}

// wait returns when the server has stopped.
func (h *healthServer) wait() { <-h.done }
