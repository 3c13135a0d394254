package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
)

// BenchmarkStepRunnerOverhead compares a job of five steps, each making one
// Proxmox call, run through the step runner (a cancellation check and two
// checkpoint writes per step, on PostgreSQL) with the same five calls made
// directly. It reports both per job and their ratio.
func BenchmarkStepRunnerOverhead(b *testing.B) {
	f := newFixture(b)
	s := sim.New(sim.Config{TokenID: "root@pam!b", TokenSecret: "b"})
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	ts := httptest.NewServer(s)
	defer func() { ts.Close(); s.Close() }()
	c, err := proxmox.New(proxmox.Config{URL: ts.URL + "/api2/json", TokenID: "root@pam!b", TokenSecret: "b"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ref := proxmox.VMRef{Node: "pve1", VMID: 100}
	call := func(ctx context.Context) error { _, err := c.State(ctx, ref); return err }
	const steps = 5

	start := time.Now()
	for range b.N {
		for range steps {
			if err := call(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	direct := time.Since(start) / time.Duration(b.N)

	// Jobs without a service, so that they do not wait for each other.
	jobs := make([]*Run, b.N)
	for i := range jobs {
		job, _, err := f.client.Insert(ctx, PowerArgs{Action: "restart"}, Request{TeamID: f.team.ID, RequestedBy: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		jobs[i] = f.attempt(b, job.ID)
		jobs[i].log = slog.New(slog.DiscardHandler) // the worker logs at info; tests at debug
	}
	list := make([]Step, steps)
	for i := range list {
		list[i] = Step{Name: fmt.Sprintf("step%d", i), Do: call}
	}
	start = time.Now()
	for _, run := range jobs {
		if err := run.Steps(ctx, list...); err != nil {
			b.Fatal(err)
		}
	}
	stepped := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(direct.Microseconds()), "µs/job-direct")
	b.ReportMetric(float64(stepped.Microseconds()), "µs/job-steps")
	b.ReportMetric(float64(stepped-direct)/steps/1000, "µs-overhead/step")
	b.ReportMetric(float64(stepped)/float64(direct), "ratio")
}
