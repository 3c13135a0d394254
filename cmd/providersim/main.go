// Command providersim serves the provider simulators on their own ports, for
// staging and for running the workers against something that behaves like
// the real providers. `provisiond dev` embeds the same simulators.
//
// Configuration, from the environment:
//
//	PROXMOX_SIM_ADDR      listen address of the Proxmox VE simulator (127.0.0.1:8006)
//	PROXMOX_TOKEN_ID      the API token it accepts (root@pam!provisiond)
//	PROXMOX_TOKEN_SECRET  that token's secret (devsecret)
//	SIM_TASK_DURATION     how long a provider task runs (2s)
//	SIM_SEED              seed of random faults (1)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil {
		log.Error("providersim", "err", err)
		os.Exit(1)
	}
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, log *slog.Logger) error {
	taskDuration, err := time.ParseDuration(getenv("SIM_TASK_DURATION", "2s"))
	if err != nil {
		return fmt.Errorf("SIM_TASK_DURATION: %w", err)
	}
	seed, err := strconv.ParseUint(getenv("SIM_SEED", "1"), 10, 64)
	if err != nil {
		return fmt.Errorf("SIM_SEED: %w", err)
	}
	pve := sim.New(sim.Config{
		TokenID:      getenv("PROXMOX_TOKEN_ID", "root@pam!provisiond"),
		TokenSecret:  getenv("PROXMOX_TOKEN_SECRET", "devsecret"),
		TaskDuration: taskDuration,
		Seed:         seed,
	})
	defer pve.Close()
	for _, vm := range sim.DemoVMs() {
		pve.AddVM(vm)
	}
	ln, err := net.Listen("tcp", getenv("PROXMOX_SIM_ADDR", "127.0.0.1:8006"))
	if err != nil {
		return fmt.Errorf("proxmox simulator: %w", err)
	}
	srv := &http.Server{Handler: pve, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("proxmox  http://%s/api2/json  (control: http://%s/_sim/)\n", ln.Addr(), ln.Addr())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}
