package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// benchValue is a serialized pod of typical size.
var benchValue = []byte(strings.Repeat("x", 2048))

// BenchmarkApplyBatch100 is the group-commit path: 100 puts of 2 KiB objects
// per transaction and fsync, upserting over 1000 keys.
func BenchmarkApplyBatch100(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	batch := make([]Change, 100)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i] = Change{Op: OpPut, Object: Object{Type: "pod", Namespace: "default", Name: "pod-" + strconv.Itoa(n%1000), ResourceVersion: strconv.Itoa(n), Value: benchValue}}
			n++
		}
		if err := s.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "objects/s")
}

// BenchmarkApplySingle is one put per transaction: the cost of not batching.
func BenchmarkApplySingle(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		c := []Change{{Op: OpPut, Object: Object{Type: "pod", Namespace: "default", Name: "pod-" + strconv.Itoa(n%1000), ResourceVersion: strconv.Itoa(n), Value: benchValue}}}
		n++
		if err := s.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	var batch []Change
	for i := range 1000 {
		batch = append(batch, Change{Op: OpPut, Object: Object{Type: "pod", Namespace: "default", Name: fmt.Sprint("pod-", i), ResourceVersion: "1", Value: benchValue}})
	}
	if err := s.Apply(ctx, batch); err != nil {
		b.Fatal(err)
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		o, err := s.Get(ctx, "pod", "default", batch[n%1000].Object.Name)
		if err != nil || len(o.Value) != len(benchValue) {
			b.Fatalf("Get: %v (%d bytes)", err, len(o.Value))
		}
		n++
	}
}
