package jobs

import (
	"context"
	"log/slog"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/queries"
)

// Provider names, as services.provider stores them.
const (
	ProviderProxmox     = proxmox.Provider
	ProviderPterodactyl = pterodactyl.Provider
)

// A Provider is where services live: a hypervisor, a game panel, a
// bare-metal manager. It says what it supports by implementing the
// capability interfaces below (PowerController, Terminator, Verifier,
// UsageReader, Registrar, LiveReader, WorkerSet); what a provider does not implement, the API
// answers unsupported_provider for, the reconciler and the alert collector
// leave out, and a job asking for it fails at once.
//
// Adding a provider is an adapter package, a jobs file whose type
// implements Provider and its capabilities, and its registration in the
// process's Registry (see docs/DESIGN.md, "Adding a provider").
type Provider interface {
	// Name is the provider as services.provider stores it ("proxmox").
	Name() string
	// Title is its name as people write it ("Proxmox").
	Title() string
}

// PowerController carries out a service's power actions (start, stop,
// restart, reset, kill, suspend, resume), waiting for the state they lead
// to. The PowerWorker has recorded a suspension's reasons before.
type PowerController interface {
	Provider
	// PowerActions are the PowerActions the provider carries out.
	PowerActions() []string
	Power(ctx context.Context, job *Job[PowerArgs]) error
}

// Terminator ends a service at its provider for its scheduled termination
// and marks the service terminated.
type Terminator interface {
	Provider
	Terminate(ctx context.Context, job *Job[TerminationArgs]) error
}

// Verifier compares a service with its provider's resource, and lists the
// resources that carry a service's mark, for the reconciler.
type Verifier interface {
	Provider
	// Verify returns what differs between the service and its resource,
	// after fixing what is safe on its own (the recorded power state).
	Verify(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]Drift, error)
	// Resource returns the provider's id of the resource the service points
	// at (a VMID, a panel server id), false when it has none yet.
	Resource(svc *queries.Service) (string, bool)
	// Marked lists the provider's resources that carry a service's mark.
	Marked(ctx context.Context, log *slog.Logger) ([]Marked, error)
}

// Marked is a provider resource that carries a service's mark.
type Marked struct {
	// Resource is the provider's id of it, as Verifier.Resource returns
	// it; Name says what it is in logs.
	Resource, Name string
	Service        uuid.UUID
	// Log carries the resource's attributes.
	Log *slog.Logger
	// Ours adds to the mark a proof that the fleet made it for the
	// service; nil when the mark is proof enough.
	Ours func(ctx context.Context, svc queries.Service) (bool, error)
	// Delete deletes it after checking its mark once more.
	Delete func(ctx context.Context) error
}

// UsageReader reads services' usage for the alert rules.
type UsageReader interface {
	Provider
	// UsageGroup names the group of services one Usage call reads together
	// (a Proxmox node); "" when the provider reads one service at a time.
	UsageGroup(svc *queries.Service) string
	// Usage reads the services of one group. A service missing from the
	// answer could not be read (no sample); one gone from its provider
	// reads as not running.
	Usage(ctx context.Context, group string, svcs []queries.Service) (map[uuid.UUID]Usage, error)
}

// Usage is a service's reading at its provider.
type Usage struct {
	Online bool
	// CPU, Memory and Disk are percentages of the plan's.
	CPU, Memory, Disk float64
	// NetIn and NetOut are byte counters since the resource started.
	NetIn, NetOut int64
}

// Registrar adopts an existing resource for a service registered rather
// than provisioned (POST /api/services with a providerRef): the pending
// service's reference names it. The resource must be free (no other
// service's mark); it is then marked the service's.
type Registrar interface {
	Provider
	Register(ctx context.Context, svc queries.Service) error
}

// LiveReader answers the live reads every service has (GET /status and
// /traffic), each after checking that the resource is the service's own.
type LiveReader interface {
	Provider
	// LiveStatus reads the resource's state now (power, usage, what it
	// runs), in the provider's own answer (a VMStatus, a BareMetalStatus).
	LiveStatus(ctx context.Context, svc *queries.Service, log *slog.Logger) (any, error)
	// Traffic reads its network traffic over a timeframe, one of
	// Timeframes.
	Traffic(ctx context.Context, svc *queries.Service, timeframe string, log *slog.Logger) (Traffic, error)
}

// WorkerSet adds the provider's own job kinds (a provision, a backup) to
// the workers.
type WorkerSet interface {
	Provider
	AddWorkers(ws *Workers)
}

// Registry holds the process's providers by name.
type Registry struct {
	byName map[string]Provider
	names  []string
}

// NewRegistry returns a registry of the providers; a nil one (a provider
// this process has no configuration for) is left out.
func NewRegistry(providers ...Provider) *Registry {
	r := &Registry{byName: map[string]Provider{}}
	for _, p := range providers {
		if p == nil || r.byName[p.Name()] != nil {
			continue
		}
		r.byName[p.Name()] = p
		r.names = append(r.names, p.Name())
	}
	return r
}

// Lookup returns the provider named name.
func (r *Registry) Lookup(name string) (Provider, bool) {
	if r == nil {
		return nil, false
	}
	p, ok := r.byName[name]
	return p, ok
}

// Names lists the registered providers in registration order.
func (r *Registry) Names() []string {
	if r == nil {
		return nil
	}
	return r.names
}

// Capability returns the provider named name as capability C, false when
// the provider is not registered or does not have it.
func Capability[C Provider](r *Registry, name string) (C, bool) {
	p, _ := r.Lookup(name)
	c, ok := p.(C)
	return c, ok
}

// Capable lists the registered providers that have capability C.
func Capable[C Provider](r *Registry) []C {
	var out []C
	for _, name := range r.Names() {
		if c, ok := r.byName[name].(C); ok {
			out = append(out, c)
		}
	}
	return out
}
