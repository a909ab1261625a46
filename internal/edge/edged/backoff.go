package edged

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// backoff is the kubelet's restart and pull back-off: per key, a delay that
// starts at initial and doubles up to max with each failure, measured from
// the failure's time. A failure more than 2*max (10 min with the defaults)
// after the previous one starts over at initial, so a container that ran
// for ten minutes restarts at once again.
type backoff struct {
	clk          clock.Clock
	initial, max time.Duration

	mu      sync.Mutex
	entries map[string]*backoffEntry // guarded by mu
}

type backoffEntry struct {
	delay      time.Duration
	lastUpdate time.Time // time of the failure that set delay
}

func newBackoff(clk clock.Clock, initial, max time.Duration) *backoff {
	return &backoff{clk: clk, initial: initial, max: max, entries: map[string]*backoffEntry{}}
}

// inBackoff reports whether a retry after a failure at eventTime must still
// wait, and how long.
func (b *backoff) inBackoff(key string, eventTime time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	if !ok || b.expired(e, eventTime) {
		return false, 0
	}
	left := e.delay - b.clk.Since(eventTime)
	if left <= 0 {
		return false, 0
	}
	return true, left
}

// next records a failure at eventTime and returns the delay before the
// retry after the following failure.
func (b *backoff) next(key string, eventTime time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	switch {
	case !ok || b.expired(e, eventTime):
		e = &backoffEntry{delay: b.initial}
		b.entries[key] = e
	default:
		e.delay = min(2*e.delay, b.max)
	}
	e.lastUpdate = eventTime
	return e.delay
}

// delay returns the current delay for key, 0 if none.
func (b *backoff) delay(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[key]; ok {
		return e.delay
	}
	return 0
}

func (b *backoff) expired(e *backoffEntry, eventTime time.Time) bool {
	return eventTime.Sub(e.lastUpdate) > 2*b.max
}

// reset forgets key (the container succeeded, the pod is gone).
func (b *backoff) reset(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, key)
}

// forgetPrefix drops every key starting with prefix (a pod's keys).
func (b *backoff) forgetPrefix(prefix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.entries {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(b.entries, k)
		}
	}
}
