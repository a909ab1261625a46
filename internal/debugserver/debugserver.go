// Package debugserver serves Go's profiling endpoints for cloudcore and
// edgecore (--debug-addr). Off by default: profiles reveal internals.
package debugserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Serve serves Go's profiling endpoints on addr until ctx ends or stop
// is called. Off by default: profiles reveal internals.
func Serve(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug server stopped", "err", err)
		}
	}()
	stopCtx := context.AfterFunc(ctx, func() { _ = srv.Close() })
	log.Info("debug endpoints serving", "addr", ln.Addr().String())
	return func() {
		stopCtx()
		_ = srv.Close()
		<-done
	}, nil
}
