package wings_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/wings"
)

// fanout is a load: servers each printing rate console lines a second,
// watched by viewers spread evenly over them through one hub, and one
// direct Wings client per server that the hub's latency is measured
// against.
type fanout struct {
	tb        testing.TB
	w         *wingsSim
	keys      []string
	direct    []*directClient
	viewers   []*benchViewer
	recording atomic.Bool
}

// directClient is a plain Wings websocket client of one server: when each
// console line reached it.
type directClient struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// benchViewer drains a hub viewer, noting when each console line arrived
// while recording.
type benchViewer struct {
	server  int
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	line string
	at   time.Time
}

// figures are what a fanout run measured.
type figures struct {
	samples       int
	negative      int // viewer before direct client: scheduling noise
	p50, p99, max time.Duration
	heapPerViewer float64 // bytes
	baseCPU       float64 // CPU seconds per second: sim and direct clients
	hubCPU        float64 // added by the hub, its viewers and the sim's side of the upstreams
	goroutines    int
}

// newFanout starts the simulator with servers running servers and a
// direct client on each.
func newFanout(tb testing.TB, servers, rate int) *fanout {
	tb.Helper()
	panel := sim.DemoPanel()
	for i := range servers {
		panel.Allocations = append(panel.Allocations, sim.Allocation{ID: 1000 + i, NodeID: 1, IP: "10.0.9.10", Port: 30000 + i})
	}
	w := newWings(tb, func(c *sim.Config) {
		c.Panel = &panel
		c.ConsoleInterval = time.Second / time.Duration(rate)
		c.StatsInterval = time.Second
	})
	f := &fanout{tb: tb, w: w}
	for i := range servers {
		g, err := w.AddServer(sim.GameServer{Name: fmt.Sprintf("bench-%d", i), OwnerID: 2, EggID: 1, AllocationID: 1000 + i,
			State: sim.StateRunning, Limits: sim.Limits{Memory: 1024, Disk: 1024, CPU: 100}})
		if err != nil {
			tb.Fatal(err)
		}
		f.keys = append(f.keys, g.Identifier)
		f.direct = append(f.direct, f.dialDirect(g.Identifier))
	}
	return f
}

// dialDirect connects a plain client to a server's console and reads it
// until the test ends.
func (f *fanout) dialDirect(identifier string) *directClient {
	f.tb.Helper()
	token, socket, err := f.w.credentials(context.Background(), identifier)
	if err != nil {
		f.tb.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(socket, http.Header{"Origin": {panelURL}})
	if err != nil {
		f.tb.Fatal(err)
	}
	f.tb.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]any{"event": "auth", "args": []string{token}}); err != nil {
		f.tb.Fatal(err)
	}
	d := &directClient{seen: map[string]time.Time{}}
	go func() {
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				return
			}
			now := time.Now()
			if !f.recording.Load() {
				continue
			}
			var m struct {
				Event string   `json:"event"`
				Args  []string `json:"args"`
			}
			if json.Unmarshal(p, &m) == nil && m.Event == "console output" && len(m.Args) == 1 {
				d.mu.Lock()
				d.seen[m.Args[0]] = now
				d.mu.Unlock()
			}
		}
	}()
	return d
}

// watch adds viewers spread over the servers, each drained by its own
// goroutine as a browser's connection handler would.
func (f *fanout) watch(h *wings.Hub, viewers int) {
	f.tb.Helper()
	for i := range viewers {
		srv := i % len(f.keys)
		key := f.keys[srv]
		v, err := h.Watch(context.Background(), key, func(ctx context.Context) (string, string, error) {
			return f.w.credentials(ctx, key)
		})
		if err != nil {
			f.tb.Fatal(err)
		}
		f.tb.Cleanup(v.Close)
		bv := &benchViewer{server: srv}
		f.viewers = append(f.viewers, bv)
		go func() {
			for ev := range v.Events() {
				if ev.Type != wings.TypeConsole || !f.recording.Load() {
					continue
				}
				now := time.Now()
				bv.mu.Lock()
				bv.samples = append(bv.samples, sample{ev.Data, now})
				bv.mu.Unlock()
			}
		}()
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuOver is the CPU seconds the process spends per second over d.
func cpuOver(tb testing.TB, d time.Duration) float64 {
	start, t0 := cpuTime(tb), time.Now()
	time.Sleep(d)
	return float64(cpuTime(tb)-start) / float64(time.Since(t0))
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// runFanout measures servers × viewers at rate lines a second: the
// baseline without the hub, then the hub's heap, CPU and the latency it
// adds over record.
func runFanout(tb testing.TB, servers, viewers, rate int, window, record time.Duration) figures {
	f := newFanout(tb, servers, rate)
	var fig figures
	time.Sleep(window / 4) // let the direct clients settle
	fig.baseCPU = cpuOver(tb, window)
	before := heapInUse()

	h := wings.NewHub(wings.Config{Origin: panelURL, Log: discard(), BackoffMin: 10 * time.Millisecond})
	tb.Cleanup(h.Close)
	f.watch(h, viewers)
	adaptertest.Eventually(tb, "every upstream to connect", func() bool {
		return f.w.CountCalls("ws.connect", "") == 2*servers
	})
	time.Sleep(window / 2) // past the replay of Wings' recent lines
	fig.heapPerViewer = float64(int64(heapInUse())-int64(before)) / float64(viewers)
	fig.hubCPU = cpuOver(tb, window) - fig.baseCPU
	fig.goroutines = runtime.NumGoroutine()

	f.recording.Store(true)
	time.Sleep(record)
	f.recording.Store(false)
	time.Sleep(100 * time.Millisecond) // let the last lines land

	var lat []time.Duration
	for _, v := range f.viewers {
		d := f.direct[v.server]
		v.mu.Lock()
		d.mu.Lock()
		for _, s := range v.samples {
			at, ok := d.seen[s.line]
			if !ok {
				continue // the direct client saw it before recording began
			}
			l := s.at.Sub(at)
			if l < 0 {
				fig.negative++
				l = 0
			}
			lat = append(lat, l)
		}
		d.mu.Unlock()
		v.mu.Unlock()
	}
	if len(lat) == 0 {
		tb.Fatal("no latency samples")
	}
	slices.Sort(lat)
	fig.samples = len(lat)
	fig.p50, fig.p99, fig.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	return fig
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkFanout is 10 servers × 100 viewers at 20 lines a second; one
// op is one console line per server. Its metrics are the latency the hub
// adds over a direct Wings client, the heap per viewer and the CPU.
func BenchmarkFanout(b *testing.B) {
	const servers, viewers, rate = 10, 100, 20
	record := time.Duration(b.N) * time.Second / rate
	fig := runFanout(b, servers, viewers, rate, 500*time.Millisecond, record)
	b.ReportMetric(float64(fig.p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(fig.p99.Microseconds()), "p99-µs")
	b.ReportMetric(fig.heapPerViewer, "heap-B/viewer")
	b.ReportMetric(fig.hubCPU*100, "hub-cpu-%")
}

// BenchmarkFanoutTarget measures the target, 1,000 viewers on 100 servers
// at 20 lines a second (p99 added latency under 5 ms, under 64 KiB per
// viewer), once: go test -run '^$' -bench FanoutTarget -benchtime 1x -v.
func BenchmarkFanoutTarget(b *testing.B) {
	const servers, viewers, rate = 100, 1000, 20
	fig := runFanout(b, servers, viewers, rate, 3*time.Second, 10*time.Second)
	b.Logf("%d servers × %d viewers, %d lines/s each (%d events/s relayed), GOMAXPROCS %d",
		servers, viewers, rate, viewers*rate, runtime.GOMAXPROCS(0))
	b.Logf("added latency over %d samples: p50 %v, p99 %v, max %v (%d samples where the viewer was first)",
		fig.samples, fig.p50, fig.p99, fig.max, fig.negative)
	b.Logf("heap per viewer: %.0f B (%.1f KiB), everything added included; goroutines: %d",
		fig.heapPerViewer, fig.heapPerViewer/1024, fig.goroutines)
	b.Logf("CPU: %.1f%% of a core for the sim and direct clients, +%.1f%% with the hub, viewers and the sim's side of the upstreams",
		fig.baseCPU*100, fig.hubCPU*100)
	b.Logf("target p99 < 5ms: %v; target < 64 KiB per viewer: %v", fig.p99 < 5*time.Millisecond, fig.heapPerViewer < 64*1024)
}
