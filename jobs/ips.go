package jobs

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ReleaseIPArgs ask for one of a VPS's additional IPs to be taken off it,
// at the end of its billing period.
type ReleaseIPArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	IP        string    `json:"ip"`
}

// Kind implements Args.
func (ReleaseIPArgs) Kind() string { return "vps.release-ip" }

// InsertOpts: a scheduled release does not hold its service meanwhile.
func (ReleaseIPArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 20, Timeout: 15 * time.Minute, Mutating: false}
}

// ReleaseIP implements Worker for ReleaseIPArgs: the cloud-init network
// entry carrying the address is removed from the VM and the address from
// the service's plan. An address no longer in the plan counts as released.
func (w *VPSWorkers) ReleaseIP(ctx context.Context, job *Job[ReleaseIPArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	plan, err := ServicePlan(job.Service)
	if err != nil {
		return err
	}
	ip := job.Args.IP
	if job.Service.Status == "terminated" || !slices.Contains(plan.AdditionalIPs, ip) {
		job.Log.Info("the address is not the service's any more", "ip", ip)
		return nil
	}
	ref, _ := v.vm()
	carrying := func(ctx context.Context) ([]string, error) {
		cfg, err := w.Proxmox.Config(ctx, ref)
		if err != nil {
			return nil, err
		}
		var keys []string
		for k, val := range cfg.Raw {
			if strings.HasPrefix(k, "ipconfig") && k != "ipconfig0" && carriesIP(val, ip) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return keys, nil
	}
	err = job.Steps(ctx, Step{"unconfigure", func(ctx context.Context) error {
		return v.tasks.do(ctx, pveOp{Key: "ipconfig", VM: ref,
			Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
				keys, err := carrying(ctx)
				if err != nil || len(keys) == 0 {
					return "", nil, err
				}
				return "qmconfig", func(ctx context.Context) (string, error) {
					return w.Proxmox.Configure(ctx, ref, map[string]any{"delete": strings.Join(keys, ",")})
				}, nil
			},
			Check: func(ctx context.Context) error {
				keys, err := carrying(ctx)
				if err != nil || len(keys) == 0 {
					return err
				}
				return configDrift(ref, strings.Join(keys, ","), "still carries "+ip)
			},
		})
	}})
	if err != nil {
		return v.stopped(ctx, err)
	}
	plan.AdditionalIPs = slices.DeleteFunc(plan.AdditionalIPs, func(a string) bool { return a == ip })
	if err := w.savePlan(ctx, job.Service, plan); err != nil {
		return err
	}
	job.SetResult(map[string]string{"released": ip})
	return nil
}

// carriesIP reports whether a cloud-init ipconfig value ("ip=203.0.113.7/24,gw=…")
// sets the address.
func carriesIP(ipconfig, ip string) bool {
	for _, part := range strings.Split(ipconfig, ",") {
		if v, ok := strings.CutPrefix(part, "ip="); ok {
			addr, _, _ := strings.Cut(v, "/")
			if addr == ip {
				return true
			}
		}
		if v, ok := strings.CutPrefix(part, "ip6="); ok {
			addr, _, _ := strings.Cut(v, "/")
			if addr == ip {
				return true
			}
		}
	}
	return false
}
