package eventbus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/utils/clock"

	"github.com/kubeedge-go/kubeedge/internal/edge/devicetwin"
	"github.com/kubeedge-go/kubeedge/internal/store"
	"github.com/kubeedge-go/kubeedge/internal/testenv"
)

// BenchmarkTwinUpdateRoundTrip measures a device app's twin/update until
// its twin/update/result arrives, with DeviceTwin on SQLite (each update is
// durable before its result is published), through the embedded broker and
// through Mosquitto. It reports p50 and p99 latency.
func BenchmarkTwinUpdateRoundTrip(b *testing.B) {
	for _, mode := range []string{"internal", "mosquitto"} {
		b.Run(mode, func(b *testing.B) {
			dir, err := os.MkdirTemp("", "kebench")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			s, err := store.Open(context.Background(), filepath.Join(dir, "edge.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			seed(b, s)
			cfg := Config{NodeName: "node-a", Mode: ModeInternal, InternalAddr: "127.0.0.1:0"}
			var url string
			if mode == "mosquitto" {
				mq := testenv.StartMosquitto(b)
				cfg = Config{NodeName: "node-a", Mode: ModeExternal, ExternalURL: mq.URL}
				url = mq.URL
			}
			var bus *EventBus
			dt, err := devicetwin.New(devicetwin.Config{NodeName: "node-a"}, devicetwin.Deps{Store: s, Clock: clock.RealClock{},
				Publish: func(p devicetwin.Publication) { bus.Publish(p) }})
			if err != nil {
				b.Fatal(err)
			}
			if bus, err = New(cfg, Deps{Handler: dt}); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _ = dt.Run(ctx) }()
			go func() { defer wg.Done(); _ = bus.Run(ctx) }()
			defer func() { cancel(); wg.Wait() }()
			<-bus.Ready()
			if url == "" {
				url = "tcp://" + bus.InternalAddr()
			}
			results := make(chan string, 16)
			cl := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("bench-app"))
			if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatal(tok.Error())
			}
			defer cl.Disconnect(100)
			cl.Subscribe("$hw/events/device/default/t1/twin/update/result", 0, func(_ paho.Client, m paho.Message) {
				p := string(m.Payload())
				if i := strings.Index(p, `"event_id":"`); i >= 0 {
					p = p[i+12:]
					results <- p[:strings.IndexByte(p, '"')]
				}
			}).WaitTimeout(10 * time.Second)
			// Wait until the bus answers (the external one may still be subscribing).
			deadline := time.Now().Add(20 * time.Second)
		warm:
			for {
				cl.Publish("$hw/events/device/default/t1/twin/update", 0, false, `{"event_id":"warm","twin":{"temp":{"actual":{"value":"0"}}}}`)
				select {
				case <-results:
					break warm
				case <-time.After(100 * time.Millisecond):
					if time.Now().After(deadline) {
						b.Fatal("no result from the bus")
					}
				}
			}
			for len(results) > 0 {
				<-results
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprint(i)
				start := time.Now()
				cl.Publish("$hw/events/device/default/t1/twin/update", 0, false,
					`{"event_id":"`+id+`","twin":{"temp":{"actual":{"value":"`+id+`.5"}}}}`)
				for got := range results {
					if got == id {
						break
					}
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
