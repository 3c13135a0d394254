package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// service is one service the driver acts on.
type service struct {
	id, name   string
	game       bool
	bm         bool // a bare-metal server (Tenantos)
	registered bool
	// out: cancelled, terminated or never made; no more jobs.
	out bool
}

// accepted is a job the API accepted.
type accepted struct {
	id, kind string
	at       time.Time
}

// driver sends the job stream and keeps what the API answered.
type driver struct {
	c     config
	api   *client
	pve   *sim
	ptero *sim
	bm    *sim // Tenantos

	mu          sync.Mutex
	rng         *rand.Rand
	services    []*service
	jobs        []accepted
	answers     map[string]map[string]int // op → answer label → count
	sent        int                       // job requests sent during the chaos
	provisioned int
	// bmOrdered are the bare-metal services ordered, at setup and in the
	// stream.
	bmOrdered  int
	errSamples map[string]string // answer label → one error text
}

func newDriver(c config, api *client, pve, ptero, bm *sim) *driver {
	return &driver{c: c, api: api, pve: pve, ptero: ptero, bm: bm, rng: rand.New(rand.NewPCG(c.seed, 0x5eed)),
		answers: map[string]map[string]int{}, errSamples: map[string]string{}}
}

// intn draws from the run's seeded source.
func (d *driver) intn(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.IntN(n)
}

// record counts an answer to op and keeps the job it accepted.
func (d *driver) record(op string, a answer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.answers[op] == nil {
		d.answers[op] = map[string]int{}
	}
	l := a.label()
	d.answers[op][l]++
	if (a.status == 0 || a.status >= 500) && d.errSamples[l] == "" {
		d.errSamples[l] = op + ": " + a.errText()
	}
	if (a.status == http.StatusAccepted || a.status == http.StatusCreated) && op != "job cancel" {
		if job := obj(a.body, "job"); job != nil && str(job, "id") != "" {
			d.jobs = append(d.jobs, accepted{id: str(job, "id"), kind: str(job, "kind"), at: time.Now()})
		}
	}
}

// --- setup ------------------------------------------------------------------

const gamePlanJSON = `{"memoryMb":%d,"diskMb":%d,"cpu":%d,"databases":1,"allocations":1,"backups":2,` +
	`"nest":1,"egg":1,"locations":[1],"user":2,"environment":{"SERVER_JARFILE":"paper.jar"}}`

// setup registers the simulator's demo VMs (and extraVMs added to it),
// provisions VPS from the template and game servers, and waits until their
// jobs end. Services that did not come up are left out of the stream.
func (d *driver) setup(ctx context.Context) error {
	for i := range d.c.extraVMs {
		vm := simVM{Node: []string{"pve2", "pve1"}[i%2], VMID: 5001 + i, Name: fmt.Sprintf("chaos-reg-%d", i+1),
			Status: "running", Cores: 2, MemoryMB: 2048, DiskGB: 20, SeedBackups: 1}
		if err := d.pve.control(ctx, http.MethodPost, "/_sim/vms", vm); err != nil {
			return fmt.Errorf("add VM %d to the simulator: %w", vm.VMID, err)
		}
	}
	vms, err := d.pve.vms(ctx)
	if err != nil {
		return fmt.Errorf("list the simulator's VMs: %w", err)
	}
	var waits []string
	for _, vm := range vms {
		if vm.Template || slices.ContainsFunc(vm.Tags, func(t string) bool { return strings.HasPrefix(t, "svc-") }) {
			continue
		}
		body := fmt.Sprintf(`{"name":%q,"provider":"proxmox","location":"chaos","plan":{"cores":%d,"memoryMb":%d,"diskGb":%d,"backupLimit":3},"providerRef":{"node":%q,"vmid":%d}}`,
			vm.Name, vm.Cores, vm.MemoryMB, vm.DiskGB, vm.Node, vm.VMID)
		a := d.api.do(ctx, http.MethodPost, "/api/services", body)
		d.record("setup: register VM", a)
		if a.status != http.StatusCreated {
			return fmt.Errorf("register VM %d: %s %s", vm.VMID, a.label(), a.errText())
		}
		d.services = append(d.services, &service{id: str(obj(a.body, "service"), "id"), name: vm.Name, registered: true})
	}
	for i := range d.c.vps {
		if s, job := d.provision(ctx, "setup: provision VPS", i+1); s != nil {
			d.services = append(d.services, s)
			waits = append(waits, job)
		}
	}
	for i := range d.c.games {
		name := fmt.Sprintf("chaos-game-%d", i+1)
		body := fmt.Sprintf(`{"name":%q,"provider":"pterodactyl","plan":`+gamePlanJSON+`}`, name, 2048, 10240, 200)
		a := d.api.do(ctx, http.MethodPost, "/api/services", body)
		d.record("setup: create game server", a)
		if a.status != http.StatusAccepted {
			return fmt.Errorf("create game server: %s %s", a.label(), a.errText())
		}
		d.services = append(d.services, &service{id: str(obj(a.body, "service"), "id"), name: name, game: true})
		waits = append(waits, str(obj(a.body, "job"), "id"))
	}
	if err := d.addPoolServers(ctx); err != nil {
		return err
	}
	for range d.c.bareMetal {
		s, job := d.orderBareMetal(ctx, "setup: order bare metal")
		if s == nil {
			return fmt.Errorf("setup: the API did not accept a bare-metal order")
		}
		d.services = append(d.services, s)
		waits = append(waits, job)
	}
	logf("setup: %d services; waiting for %s", len(d.services), plural(len(waits), "provision job"))
	deadline := time.Now().Add(3 * time.Minute)
	for _, id := range waits {
		for {
			a := d.api.do(ctx, http.MethodGet, "/api/jobs/"+id, "")
			job := obj(a.body, "job")
			if st := str(job, "status"); st == "succeeded" || st == "failed" || st == "cancelled" {
				if st != "succeeded" {
					logf("setup: job %s (%s) ended %s: %s", id, str(job, "kind"), st, str(job, "error"))
				}
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("setup: job %s did not end within 3 minutes", id)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, s := range d.services {
		a := d.api.do(ctx, http.MethodGet, "/api/services/"+s.id, "")
		if st := str(obj(a.body, "service"), "status"); st != "active" {
			logf("setup: service %s is %s; left out of the stream", s.name, st)
			s.out = true
		}
	}
	return nil
}

// provision asks for a VPS from the template and returns its service and
// job, or nil when the API did not accept it.
func (d *driver) provision(ctx context.Context, op string, n int) (*service, string) {
	name := fmt.Sprintf("chaos-vps-%d", n)
	password := ""
	if n%2 == 0 {
		password = fmt.Sprintf(`,"password":"Chaos-%d-pass!"`, n)
	}
	body := fmt.Sprintf(`{"name":%q,"provider":"proxmox","location":"chaos","plan":{"cores":1,"memoryMb":1024,"diskGb":12,"backupLimit":2},`+
		`"templateId":%d,"hostname":"%s.example.com","user":"chaos"%s}`, name, d.c.template, name, password)
	a := d.api.do(ctx, http.MethodPost, "/api/services", body)
	d.record(op, a)
	if a.status != http.StatusAccepted {
		if strings.HasPrefix(op, "setup") {
			logf("%s: %s %s", op, a.label(), a.errText())
		}
		return nil, ""
	}
	d.mu.Lock()
	d.provisioned++
	d.mu.Unlock()
	return &service{id: str(obj(a.body, "service"), "id"), name: name}, str(obj(a.body, "job"), "id")
}

// bmPoolFirst is the id of the first server the driver adds to the
// Tenantos simulator (its demo servers are 1 to 4).
const bmPoolFirst = 101

// addPoolServers adds free servers to the Tenantos simulator, tagged with
// the pool's tags: one for each bare-metal service ordered at setup, one
// for the order during the chaos and one spare (beside the simulator's own
// free demo servers).
func (d *driver) addPoolServers(ctx context.Context) error {
	for i := range d.c.bareMetal + 2 {
		srv := bmServer{ID: bmPoolFirst + i, ServerName: fmt.Sprintf("chaos-bm-%03d", bmPoolFirst+i), Tags: d.c.poolTags,
			Power: []string{"online", "offline"}[i%2]}
		if err := d.bm.control(ctx, http.MethodPost, "/_sim/servers", srv); err != nil {
			return fmt.Errorf("add server %d to the Tenantos simulator: %w", srv.ID, err)
		}
	}
	return nil
}

// orderBareMetal orders a bare-metal server from the pool, installed with
// a Debian profile, and returns its service and job, or nil when the API
// did not accept it.
func (d *driver) orderBareMetal(ctx context.Context, op string) (*service, string) {
	d.mu.Lock()
	d.bmOrdered++
	n := d.bmOrdered
	d.mu.Unlock()
	name := fmt.Sprintf("chaos-bm-%d", n)
	body := fmt.Sprintf(`{"name":%q,"provider":"tenantos","location":"chaos","plan":{"tags":%s},"profileId":%d,"rootPassword":"Chaos-bm-%d-pass!","hostname":"%s.example.com"}`,
		name, jsonList(d.c.poolTags), 1+(n-1)%3, n, name)
	a := d.api.do(ctx, http.MethodPost, "/api/services", body)
	d.record(op, a)
	if a.status != http.StatusAccepted {
		logf("%s: %s %s", op, a.label(), a.errText())
		return nil, ""
	}
	return &service{id: str(obj(a.body, "service"), "id"), name: name, bm: true}, str(obj(a.body, "job"), "id")
}

func jsonList(ss []string) string {
	b, _ := json.Marshal(ss)
	return string(b)
}

// --- the stream -------------------------------------------------------------

// stream sends up to c.jobs job requests, evenly spread until `until`, at
// most 6 at a time, and returns when the last has been answered.
func (d *driver) stream(ctx context.Context, until time.Time) {
	interval := time.Until(until) / time.Duration(d.c.jobs)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; i < d.c.jobs; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Now().After(until) {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.one(ctx)
		}()
	}
}

// one sends one job request of a kind drawn at random.
func (d *driver) one(ctx context.Context) {
	d.mu.Lock()
	d.sent++
	n := d.sent
	d.mu.Unlock()
	switch r := d.intn(100); {
	case r < 8:
		d.cancelJob(ctx)
		return
	case r < 11 && d.provisioned < d.c.vps+d.c.vps/2+1:
		if s, _ := d.provision(ctx, "vps provision", 100+n); s != nil {
			d.mu.Lock()
			d.services = append(d.services, s)
			d.mu.Unlock()
		}
		return
	case r < 13 && d.bmOrders() < d.c.bareMetal+1:
		if s, _ := d.orderBareMetal(ctx, "bare-metal order"); s != nil {
			d.mu.Lock()
			d.services = append(d.services, s)
			d.mu.Unlock()
		}
		return
	}
	s := d.pick()
	if s == nil {
		return
	}
	// Read the service first, as a panel does: its status decides.
	a := d.api.do(ctx, http.MethodGet, "/api/services/"+s.id, "")
	svc := obj(a.body, "service")
	if svc == nil {
		d.record("read service", a)
		return
	}
	switch str(svc, "status") {
	case "terminated":
		d.mu.Lock()
		s.out = true
		d.mu.Unlock()
		return
	case "needs_repair", "pending":
		if s.bm {
			d.bareMetalRepair(ctx, s, str(svc, "status"))
			return
		}
		if !s.game {
			d.record("vps repair", d.api.do(ctx, http.MethodPost, "/api/services/"+s.id+"/repair", fmt.Sprintf(`{"templateId":%d}`, d.c.template)))
			return
		}
	}
	switch {
	case s.bm:
		d.bareMetalOp(ctx, s)
	case s.game:
		d.gameOp(ctx, s)
	default:
		d.vpsOp(ctx, s, obj(svc, "plan"))
	}
}

// pick draws a service still in the stream.
func (d *driver) pick() *service {
	d.mu.Lock()
	defer d.mu.Unlock()
	var in []*service
	for _, s := range d.services {
		if !s.out {
			in = append(in, s)
		}
	}
	if len(in) == 0 {
		return nil
	}
	return in[d.rng.IntN(len(in))]
}

// weighted draws one of the choices by weight.
func (d *driver) weighted(choices []choice) string {
	total := 0
	for _, c := range choices {
		total += c.weight
	}
	r := d.intn(total)
	for _, c := range choices {
		if r < c.weight {
			return c.name
		}
		r -= c.weight
	}
	return choices[0].name
}

type choice struct {
	name   string
	weight int
}

var vpsOps = []choice{{"power", 30}, {"reinstall", 6}, {"upgrade", 5}, {"change-plan", 4}, {"backup", 12},
	{"restore", 6}, {"backup delete", 5}, {"rescue", 8}, {"console", 6}}

var vpsPower = []choice{{"start", 6}, {"stop", 5}, {"restart", 6}, {"reset", 3}, {"suspend", 2}, {"resume", 3}}

func (d *driver) vpsOp(ctx context.Context, s *service, plan map[string]any) {
	path := "/api/services/" + s.id
	op := d.weighted(vpsOps)
	switch op {
	case "power":
		action := d.weighted(vpsPower)
		d.record("vps power", d.api.do(ctx, http.MethodPost, path+"/action", fmt.Sprintf(`{"action":%q}`, action)))
	case "reinstall":
		d.record("vps reinstall", d.api.do(ctx, http.MethodPost, path+"/reinstall", fmt.Sprintf(`{"templateId":%d}`, d.c.template)))
	case "upgrade":
		body := fmt.Sprintf(`{"cores":%d,"memoryMb":%d}`, 1+d.intn(4), []int{1024, 2048, 4096}[d.intn(3)])
		if d.intn(3) == 0 {
			body = fmt.Sprintf(`{"diskGb":%d}`, num(plan, "diskGb")+1+d.intn(4))
		}
		d.record("vps upgrade", d.api.do(ctx, http.MethodPost, path+"/upgrade", body))
	case "change-plan":
		body := fmt.Sprintf(`{"plan":{"cores":%d,"memoryMb":%d,"diskGb":%d,"backupLimit":%d}}`,
			1+d.intn(3), []int{1024, 2048, 3072}[d.intn(3)], max(num(plan, "diskGb"), 1), max(num(plan, "backupLimit"), 2))
		d.record("vps change-plan", d.api.do(ctx, http.MethodPost, path+"/change-plan", body))
	case "backup":
		d.record("vps backup", d.api.do(ctx, http.MethodPost, path+"/backups", `{"note":"chaos"}`))
	case "restore", "backup delete":
		a := d.api.do(ctx, http.MethodGet, path+"/backups", "")
		list, _ := a.body["backups"].([]any)
		if len(list) == 0 {
			d.record("vps backup list (none to use)", a)
			return
		}
		id := str(list[d.intn(len(list))].(map[string]any), "id")
		if op == "restore" {
			d.record("vps restore", d.api.do(ctx, http.MethodPost, path+"/backups/"+id, ""))
		} else {
			d.record("vps backup delete", d.api.do(ctx, http.MethodDelete, path+"/backups/"+id, ""))
		}
	case "rescue":
		method := http.MethodPost
		if d.intn(2) == 0 {
			method = http.MethodDelete
		}
		d.record("vps rescue "+map[string]string{http.MethodPost: "on", http.MethodDelete: "off"}[method],
			d.api.do(ctx, method, path+"/rescue", ""))
	case "console":
		d.record("vps console", d.api.do(ctx, http.MethodPost, path+"/console", ""))
	}
}

var gameOps = []choice{{"power", 45}, {"reinstall", 10}, {"change-plan", 10}, {"backup", 15}, {"restore", 10}, {"backup delete", 10}}

var gamePower = []choice{{"start", 6}, {"stop", 5}, {"restart", 5}, {"kill", 2}, {"suspend", 2}, {"resume", 3}}

func (d *driver) gameOp(ctx context.Context, s *service) {
	path := "/api/services/" + s.id
	op := d.weighted(gameOps)
	switch op {
	case "power":
		action := d.weighted(gamePower)
		d.record("game power", d.api.do(ctx, http.MethodPost, path+"/action", fmt.Sprintf(`{"action":%q}`, action)))
	case "reinstall":
		d.record("game reinstall", d.api.do(ctx, http.MethodPost, path+"/reinstall", `{"environment":{"SERVER_JARFILE":"server.jar"}}`))
	case "change-plan":
		body := fmt.Sprintf(`{"plan":`+gamePlanJSON+`}`, []int{1024, 2048, 3072}[d.intn(3)], []int{10240, 20480}[d.intn(2)], 100+100*d.intn(3))
		d.record("game change-plan", d.api.do(ctx, http.MethodPost, path+"/change-plan", body))
	case "backup":
		d.record("game backup", d.api.do(ctx, http.MethodPost, path+"/backups", `{"note":"chaos"}`))
	case "restore", "backup delete":
		a := d.api.do(ctx, http.MethodGet, path+"/backups", "")
		list, _ := a.body["backups"].([]any)
		if len(list) == 0 {
			d.record("game backup list (none to use)", a)
			return
		}
		id := str(list[d.intn(len(list))].(map[string]any), "UUID")
		if op == "restore" {
			d.record("game restore", d.api.do(ctx, http.MethodPost, path+"/backups/"+id, `{"truncate":true}`))
		} else {
			d.record("game backup delete", d.api.do(ctx, http.MethodDelete, path+"/backups/"+id, ""))
		}
	}
}

func (d *driver) bmOrders() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bmOrdered
}

var bareMetalOps = []choice{{"power", 30}, {"bmc power", 20}, {"reinstall", 12}, {"rescue on", 10}, {"rescue off", 8}}

// bareMetalPower are the /action actions; bmcPower Tenantos' own words
// (POST /bare-metal/power).
var (
	bareMetalPower = []choice{{"start", 6}, {"stop", 5}, {"restart", 5}, {"reset", 3}, {"kill", 2}, {"suspend", 2}, {"resume", 3}}
	bmcPower       = []choice{{"on", 5}, {"off", 4}, {"reset", 3}, {"cycle", 4}}
)

func (d *driver) bareMetalOp(ctx context.Context, s *service) {
	path := "/api/services/" + s.id
	switch d.weighted(bareMetalOps) {
	case "power":
		action := d.weighted(bareMetalPower)
		d.record("bare-metal power", d.api.do(ctx, http.MethodPost, path+"/action", fmt.Sprintf(`{"action":%q}`, action)))
	case "bmc power":
		action := d.weighted(bmcPower)
		d.record("bare-metal bmc power", d.api.do(ctx, http.MethodPost, path+"/bare-metal/power", fmt.Sprintf(`{"action":%q}`, action)))
	case "reinstall":
		d.record("bare-metal reinstall", d.api.do(ctx, http.MethodPost, path+"/bare-metal/reinstall",
			fmt.Sprintf(`{"profileId":%d,"rootPassword":"Chaos-reinstall-%d!"}`, 1+d.intn(3), d.intn(1000))))
	case "rescue on":
		d.record("bare-metal rescue on", d.api.do(ctx, http.MethodPost, path+"/bare-metal/rescue", `{"profileId":10}`))
	case "rescue off":
		d.record("bare-metal rescue off", d.api.do(ctx, http.MethodDelete, path+"/bare-metal/rescue", ""))
	}
}

// bareMetalRepair reinstalls a bare-metal service needing repair (a
// reinstall is its repair); a pending one is left to its provision.
func (d *driver) bareMetalRepair(ctx context.Context, s *service, status string) {
	if status == "pending" {
		return
	}
	d.record("bare-metal repair (reinstall)", d.api.do(ctx, http.MethodPost, "/api/services/"+s.id+"/bare-metal/reinstall",
		fmt.Sprintf(`{"profileId":1,"rootPassword":"Chaos-repair-%d!"}`, d.intn(1000))))
}

// cancelJob cancels one of the jobs accepted in the last 20 seconds.
func (d *driver) cancelJob(ctx context.Context) {
	d.mu.Lock()
	var recent []accepted
	for _, j := range d.jobs {
		if time.Since(j.at) < 20*time.Second {
			recent = append(recent, j)
		}
	}
	var j accepted
	if len(recent) > 0 {
		j = recent[d.rng.IntN(len(recent))]
	}
	d.mu.Unlock()
	if j.id == "" {
		return
	}
	d.record("job cancel", d.api.do(ctx, http.MethodPost, "/api/jobs/"+j.id+"/cancel", ""))
}

// cancelServices cancels some VPS, game and bare-metal servers immediately: they are
// suspended now and terminated after CANCEL_GRACE.
func (d *driver) cancelServices(ctx context.Context) {
	d.mu.Lock()
	// The first VPS cancelled was provisioned, the second registered, and
	// so on alternately; then the game servers.
	want := map[string]int{"provisioned": (d.c.cancelVPS + 1) / 2, "registered": d.c.cancelVPS / 2, "game": d.c.cancelGames,
		"bare metal": d.c.cancelBareMetal}
	var picked []*service
	for _, s := range d.services {
		k := map[bool]string{true: "registered", false: "provisioned"}[s.registered]
		switch {
		case s.game:
			k = "game"
		case s.bm:
			k = "bare metal"
		}
		if !s.out && want[k] > 0 {
			want[k]--
			picked = append(picked, s)
		}
	}
	d.mu.Unlock()
	for _, s := range picked {
		a := d.api.do(ctx, http.MethodPost, "/api/services/"+s.id+"/cancel", `{"when":"immediately","cancellationReason":"chaos"}`)
		d.record("service cancel", a)
		logf("cancelled service %s immediately: %s", s.name, a.label())
		if a.status < 300 {
			d.mu.Lock()
			s.out = true
			d.mu.Unlock()
		}
	}
}

// requestRows returns the answers by operation, for the report.
func (d *driver) requestRows() [][]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ops := make([]string, 0, len(d.answers))
	for op := range d.answers {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var rows [][]string
	for _, op := range ops {
		labels := make([]string, 0, len(d.answers[op]))
		total := 0
		for l, n := range d.answers[op] {
			labels = append(labels, fmt.Sprintf("%s ×%d", l, n))
			total += n
		}
		sort.Strings(labels)
		rows = append(rows, []string{op, fmt.Sprint(total), strings.Join(labels, ", ")})
	}
	return rows
}
