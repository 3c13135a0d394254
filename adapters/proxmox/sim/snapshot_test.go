package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
)

// serve serves s over HTTP and returns a go-proxmox client for it and its
// base URL; the server is closed when the test ends.
func serve(t *testing.T, s *sim.Server) (*pve.Client, string) {
	t.Helper()
	base := httpServer(t, s)
	return pve.NewClient(base+"/api2/json", pve.WithAPIToken(tokenID, tokenSecret),
		pve.WithHTTPClient(&http.Client{Timeout: 2 * time.Second})), base
}

// newServer is a server without VMs whose tasks take d.
func newServer(d time.Duration) *sim.Server {
	return sim.New(sim.Config{TokenID: tokenID, TokenSecret: tokenSecret, TaskDuration: d, Seed: 1})
}

// saveAndLoad saves s and loads the snapshot into a new server without
// VMs, served, and returns the snapshot too.
func saveAndLoad(t *testing.T, s *sim.Server) (*sim.Server, *pve.Client, string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatalf("Save: %v", err)
	}
	snapshot := bytes.Clone(buf.Bytes())
	loaded := newServer(taskTime)
	if err := loaded.Load(&buf); err != nil {
		t.Fatalf("Load: %v", err)
	}
	c, base := serve(t, loaded)
	return loaded, c, base, snapshot
}

func post(t *testing.T, c *pve.Client, path string, body map[string]any) pve.UPID {
	t.Helper()
	var upid pve.UPID
	if err := c.Post(context.Background(), path, body, &upid); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return upid
}

func wantTaskOK(t *testing.T, c *pve.Client, upid pve.UPID) {
	t.Helper()
	if got := waitTask(t, c, upid); !got.IsSuccessful {
		t.Fatalf("task %s ended %q", upid, got.ExitStatus)
	}
}

// volatile are the keys of a VM summary that change with time: they are
// left out when two servers' answers are compared.
var volatile = []string{"uptime", "cpu", "mem", "netin", "netout", "diskread", "diskwrite", "disk"}

func stripVolatile(m map[string]any) map[string]any {
	for _, k := range volatile {
		delete(m, k)
	}
	return m
}

// observe reads, through the API, everything a client can see of VMs and
// storages, keyed by what was read.
func observe(t *testing.T, c *pve.Client) map[string]any {
	t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	get := func(path string, v any) {
		t.Helper()
		if err := c.Get(ctx, path, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	for _, n := range []string{"pve1", "pve2"} {
		var vms []map[string]any
		get("/nodes/"+n+"/qemu", &vms)
		for _, vm := range vms {
			stripVolatile(vm)
			id := fmt.Sprint(vm["vmid"])
			var status, cfg, current map[string]any
			var pending []map[string]any
			get("/nodes/"+n+"/qemu/"+id+"/status/current", &status)
			get("/nodes/"+n+"/qemu/"+id+"/config", &cfg)
			get("/nodes/"+n+"/qemu/"+id+"/config?current=1", &current)
			get("/nodes/"+n+"/qemu/"+id+"/pending", &pending)
			out[n+"/"+id+"/status"] = stripVolatile(status)
			out[n+"/"+id+"/config"] = cfg
			out[n+"/"+id+"/config?current=1"] = current
			out[n+"/"+id+"/pending"] = pending
		}
		out[n+"/qemu"] = vms
		var storages []map[string]any
		get("/nodes/"+n+"/storage", &storages)
		out[n+"/storage"] = storages
		for _, sid := range []string{"local", "local-lvm"} {
			var content []map[string]any
			get("/nodes/"+n+"/storage/"+sid+"/content", &content)
			out[n+"/"+sid+"/content"] = content
		}
	}
	var resources []map[string]any
	get("/cluster/resources", &resources)
	for _, r := range resources {
		stripVolatile(r)
	}
	out["resources"] = resources
	return out
}

// built is what buildState made.
type built struct {
	backup string // the volid of the clone's backup
	mac    string // the clone's net0
}

const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0b6rQ3TKY0ixlB0UcCeF4Ndk0HmYlzZpCcg1mBdxx user@host"

// buildState changes the demo state through the API the way VPS jobs do:
// a full clone of template 9000 into 200, resized, with cloud-init
// configuration, started, with a pending change and backed up; a linked
// clone 201; VM 100 stopped, 101 hibernated, 102 paused; an ISO deleted.
func buildState(t *testing.T, c *pve.Client) built {
	t.Helper()
	ctx := context.Background()
	_, task, err := getVM(t, c, "pve1", 9000).Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: 200, Name: "svc-200", Full: true})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmclone")
	_, task, err = getVM(t, c, "pve1", 9000).Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: 201, Name: "linked"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmclone")
	vm := getVM(t, c, "pve1", 200)
	if task, err = vm.ResizeDisk(ctx, "scsi0", "+5G"); err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "resize")
	task, err = vm.Config(ctx,
		pve.VirtualMachineOption{Name: "ciuser", Value: "admin"},
		pve.VirtualMachineOption{Name: "cipassword", Value: "hunter2"},
		pve.VirtualMachineOption{Name: "sshkeys", Value: pve.EncodeSSHKeys(sshKey)},
		pve.VirtualMachineOption{Name: "ipconfig0", Value: "ip=203.0.113.7/24,gw=203.0.113.1"},
		pve.VirtualMachineOption{Name: "nameserver", Value: "1.1.1.1"},
		pve.VirtualMachineOption{Name: "ide2", Value: "local:iso/rescue.iso,media=cdrom"},
		pve.VirtualMachineOption{Name: "boot", Value: "order=ide2;scsi0"},
		pve.VirtualMachineOption{Name: "tags", Value: "svc-200;vps"},
		pve.VirtualMachineOption{Name: "description", Value: "service 200"},
		pve.VirtualMachineOption{Name: "memory", Value: 2048},
	)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmconfig")
	if task, err = vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "qmstart")
	// Running: cores changes at the next start.
	if err := vm.ConfigSync(ctx, pve.VirtualMachineOption{Name: "cores", Value: 2}); err != nil {
		t.Fatal(err)
	}
	task, err = node(c, "pve1").Vzdump(ctx, &pve.VirtualMachineBackupOptions{VMID: 200, Storage: "local", Compress: "zstd",
		NotesTemplate: "{{guestname}} before the restart"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, c, task, "vzdump")
	wantTaskOK(t, c, post(t, c, "/nodes/pve1/qemu/100/status/stop", nil))
	wantTaskOK(t, c, post(t, c, "/nodes/pve1/qemu/101/status/start", nil))
	wantTaskOK(t, c, post(t, c, "/nodes/pve1/qemu/101/status/suspend", map[string]any{"todisk": 1}))
	wantTaskOK(t, c, post(t, c, "/nodes/pve2/qemu/102/status/suspend", nil))
	var upid pve.UPID
	if err := c.Delete(ctx, "/nodes/pve1/storage/local/content/local:iso/AlmaLinux-9.5-x86_64-minimal.iso", &upid); err != nil {
		t.Fatal(err)
	}
	wantTaskOK(t, c, upid)

	var backups []*pve.StorageContent
	if err := c.Get(ctx, "/nodes/pve1/storage/local/content?content=backup&vmid=200", &backups); err != nil || len(backups) != 1 {
		t.Fatalf("backups of 200: %v, %v", backups, err)
	}
	return built{backup: backups[0].Volid, mac: getVM(t, c, "pve1", 200).VirtualMachineConfig.Nets["net0"]}
}

func TestSaveAndLoadRoundTrip(t *testing.T) {
	orig, c, _ := newSim(t)
	b := buildState(t, c)
	before := observe(t, c)
	loaded, c2, base, snapshot := saveAndLoad(t, orig)
	ctx := context.Background()

	t.Run("the API shows the same VMs, configurations and storages", func(t *testing.T) {
		after := observe(t, c2)
		for _, k := range slices.Sorted(maps.Keys(before)) {
			if !reflect.DeepEqual(before[k], after[k]) {
				t.Errorf("%s:\n before %v\n after  %v", k, before[k], after[k])
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("%s appeared after the load: %v", k, after[k])
			}
		}
	})

	t.Run("the snapshot is version 1 JSON", func(t *testing.T) {
		var snap sim.Snapshot
		if err := json.Unmarshal(snapshot, &snap); err != nil || snap.Version != 1 {
			t.Fatalf("snapshot version %d, %v", snap.Version, err)
		}
		if !bytes.Contains(snapshot, []byte(`"version": 1`)) {
			t.Errorf("snapshot does not start with its version: %.80s", snapshot)
		}
	})

	t.Run("each VM keeps what a job reads", func(t *testing.T) {
		vm200, vm100, vm101, vm102 := getVM(t, c2, "pve1", 200), getVM(t, c2, "pve1", 100), getVM(t, c2, "pve1", 101), getVM(t, c2, "pve2", 102)
		cfg := vm200.VirtualMachineConfig
		var cfg101 map[string]any
		if err := c2.Get(ctx, "/nodes/pve1/qemu/101/config", &cfg101); err != nil {
			t.Fatal(err)
		}
		checks := []struct {
			name      string
			got, want any
		}{
			{"clone runs", vm200.Status, "running"},
			{"clone counts as started at the load", vm200.Uptime <= 2, true},
			{"resized disk", cfg.SCSIs["scsi0"], "local-lvm:vm-200-disk-0,size=15G"},
			{"resized disk size", vm200.MaxDisk, uint64(15 << 30)},
			{"ciuser", cfg.CIUser, "admin"},
			{"sshkeys", cfg.SSHKeys, pve.EncodeSSHKeys(sshKey)},
			{"ipconfig0", cfg.IPConfigs["ipconfig0"], "ip=203.0.113.7/24,gw=203.0.113.1"},
			{"ide2", cfg.IDEs["ide2"], "local:iso/rescue.iso,media=cdrom"},
			{"boot", cfg.Boot, "order=ide2;scsi0"},
			{"tags", cfg.Tags, "svc-200;vps"},
			{"description", cfg.Description, "service 200"},
			{"net0 MAC", cfg.Nets["net0"], b.mac},
			{"pending cores", *cfg.Cores, 2},
			{"running cores", vm200.CPUs, 1},
			{"stopped VM", vm100.Status, "stopped"},
			{"hibernated VM keeps its lock", vm101.Lock, "suspended"},
			{"hibernated VM keeps its state volume", cfg101["vmstate"] != nil, true},
			{"paused VM", vm102.QMPStatus, "paused"},
			{"linked clone", getVM(t, c2, "pve1", 201).VirtualMachineConfig.SCSIs["scsi0"], "local-lvm:base-9000-disk-0/vm-201-disk-0,size=10G"},
			{"template", bool(getVM(t, c2, "pve1", 9000).Template), true},
		}
		for _, ck := range checks {
			if ck.got != ck.want {
				t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
			}
		}
		var isos []*pve.StorageContent
		if err := c2.Get(ctx, "/nodes/pve1/storage/local/content?content=iso", &isos); err != nil || len(isos) != 3 {
			t.Errorf("ISOs after the load: %d, %v; want the 3 left after the delete", len(isos), err)
		}
		var backups []*pve.StorageContent
		if err := c2.Get(ctx, "/nodes/pve1/storage/local/content?content=backup&vmid=200", &backups); err != nil || len(backups) != 1 ||
			backups[0].Volid != b.backup || backups[0].Notes != "svc-200 before the restart" || backups[0].Size == 0 || backups[0].Ctime == 0 {
			t.Errorf("backups of 200 after the load: %+v, %v", backups, err)
		}
		// VM 100 ran until the test stopped it: the hour before shows it
		// running, by the power history the snapshot kept.
		var rrd []map[string]any
		if err := c2.Get(ctx, "/nodes/pve1/qemu/100/rrddata?timeframe=hour", &rrd); err != nil || len(rrd) != 70 || rrd[0]["cpu"] == nil {
			t.Errorf("rrddata of VM 100: %v, %v; want 70 points, running an hour ago", rrd, err)
		}
	})

	t.Run("a backup made before the save restores", func(t *testing.T) {
		wantTaskOK(t, c2, post(t, c2, "/nodes/pve1/qemu", map[string]any{"vmid": 300, "archive": b.backup, "unique": 1}))
		vm := getVM(t, c2, "pve1", 300)
		cfg := vm.VirtualMachineConfig
		if vm.Name != "svc-200" || cfg.SCSIs["scsi0"] != "local-lvm:vm-300-disk-0,size=15G" || cfg.CIUser != "admin" ||
			cfg.IPConfigs["ipconfig0"] != "ip=203.0.113.7/24,gw=203.0.113.1" || cfg.Nets["net0"] == b.mac {
			t.Errorf("restored VM: name %q scsi0 %q ciuser %q ipconfig0 %q net0 %q (clone's %q)", vm.Name, cfg.SCSIs["scsi0"],
				cfg.CIUser, cfg.IPConfigs["ipconfig0"], cfg.Nets["net0"], b.mac)
		}
	})

	t.Run("nextid hands out a free id and a full clone into it works", func(t *testing.T) {
		cl, err := c2.Cluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id, err := cl.NextID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, taken := loaded.VM("pve1", id); taken || id != 103 {
			t.Fatalf("nextid %d, want 103, the lowest free id", id)
		}
		if _, taken := loaded.VM("pve2", id); taken {
			t.Fatalf("nextid %d is taken on pve2", id)
		}
		_, task, err := getVM(t, c2, "pve1", 9000).Clone(ctx, &pve.VirtualMachineCloneOptions{NewID: id, Full: true, Name: "fresh"})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, c2, task, "qmclone")
		macs := map[string]bool{}
		for _, vmid := range []int{200, 201, 300, id} {
			macs[getVM(t, c2, "pve1", vmid).VirtualMachineConfig.Nets["net0"]] = true
		}
		if len(macs) != 4 {
			t.Errorf("clones and restores share MAC addresses: %v", macs)
		}
	})

	t.Run("VMs keep working", func(t *testing.T) {
		wantTaskOK(t, c2, post(t, c2, "/nodes/pve1/qemu/100/status/start", nil))
		wantTaskOK(t, c2, post(t, c2, "/nodes/pve1/qemu/101/status/start", nil))
		wantTaskOK(t, c2, post(t, c2, "/nodes/pve1/qemu/200/status/reboot", nil))
		wantTaskOK(t, c2, post(t, c2, "/nodes/pve2/qemu/102/status/resume", nil))
		for _, tt := range []struct {
			node      string
			vmid, cpu int
		}{{"pve1", 100, 2}, {"pve1", 101, 4}, {"pve1", 200, 2}, {"pve2", 102, 4}} {
			vm := getVM(t, c2, tt.node, tt.vmid)
			if vm.Status != "running" || vm.QMPStatus != "running" || vm.Lock != "" || vm.CPUs != tt.cpu {
				t.Errorf("VM %d: %s/%s lock %q cpus %d; want running, unlocked, %d CPUs", tt.vmid, vm.Status, vm.QMPStatus, vm.Lock, vm.CPUs, tt.cpu)
			}
		}
		if status, body := raw(t, "PUT", base+"/api2/json/nodes/pve1/qemu/200/resize", "disk=scsi0&size=%2B1G"); status != "200 OK" {
			t.Errorf("resize after the load: %s %s", status, body)
		}
	})
}

// TestSaveDuringATaskKeepsTheStateTheTaskStartedFrom saves while a task
// runs (tasks take a minute here): the loaded server has the VM as it was
// before the task, without the task's lock or half-made VM, and the VM
// takes new work.
func TestSaveDuringATaskKeepsTheStateTheTaskStartedFrom(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T, c *pve.Client)
		check func(t *testing.T, s *sim.Server, c *pve.Client)
	}{
		{
			name: "full clone: the half-made clone is gone and the template clones again",
			start: func(t *testing.T, c *pve.Client) {
				post(t, c, "/nodes/pve1/qemu/9000/clone", map[string]any{"newid": 250, "full": 1, "name": "half"})
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm, ok := s.VM("pve1", 250); ok {
					t.Fatalf("the clone target came back: %+v", vm)
				}
				if vm := getVM(t, c, "pve1", 9000); vm.Lock != "" {
					t.Errorf("template lock %q", vm.Lock)
				}
				wantTaskOK(t, c, post(t, c, "/nodes/pve1/qemu/9000/clone", map[string]any{"newid": 250, "full": 1}))
			},
		},
		{
			name: "backup: the VM is unlocked and no backup appears",
			start: func(t *testing.T, c *pve.Client) {
				post(t, c, "/nodes/pve1/vzdump", map[string]any{"vmid": 101, "storage": "local"})
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm := getVM(t, c, "pve1", 101); vm.Lock != "" {
					t.Errorf("lock %q, want none", vm.Lock)
				}
				var backups []*pve.StorageContent
				if err := c.Get(context.Background(), "/nodes/pve1/storage/local/content?content=backup&vmid=101", &backups); err != nil || len(backups) != 1 {
					t.Errorf("backups of 101: %d, %v; want only the seeded one", len(backups), err)
				}
				wantTaskOK(t, c, post(t, c, "/nodes/pve1/qemu/101/status/start", nil))
			},
		},
		{
			name: "destroy: the VM is back, unlocked",
			start: func(t *testing.T, c *pve.Client) {
				var upid pve.UPID
				if err := c.Delete(context.Background(), "/nodes/pve1/qemu/101", &upid); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm := getVM(t, c, "pve1", 101); vm.Lock != "" || vm.Name != "db-1" {
					t.Errorf("VM 101: lock %q name %q", vm.Lock, vm.Name)
				}
			},
		},
		{
			name: "restore into a new VMID: the VM is gone",
			start: func(t *testing.T, c *pve.Client) {
				var backups []*pve.StorageContent
				if err := c.Get(context.Background(), "/nodes/pve1/storage/local/content?content=backup&vmid=100", &backups); err != nil || len(backups) == 0 {
					t.Fatalf("backups of 100: %v", err)
				}
				post(t, c, "/nodes/pve1/qemu", map[string]any{"vmid": 160, "archive": backups[0].Volid})
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm, ok := s.VM("pve1", 160); ok {
					t.Fatalf("the restore target came back: %+v", vm)
				}
			},
		},
		{
			name: "restore over a VM: it keeps its own configuration, unlocked",
			start: func(t *testing.T, c *pve.Client) {
				var backups []*pve.StorageContent
				if err := c.Get(context.Background(), "/nodes/pve1/storage/local/content?content=backup&vmid=100", &backups); err != nil || len(backups) == 0 {
					t.Fatalf("backups of 100: %v", err)
				}
				post(t, c, "/nodes/pve1/qemu", map[string]any{"vmid": 101, "archive": backups[0].Volid, "force": 1})
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm := getVM(t, c, "pve1", 101); vm.Lock != "" || vm.Name != "db-1" || vm.CPUs != 4 {
					t.Errorf("VM 101: lock %q name %q cpus %d; want db-1 as it was", vm.Lock, vm.Name, vm.CPUs)
				}
			},
		},
		{
			name: "create: the new VM is gone",
			start: func(t *testing.T, c *pve.Client) {
				post(t, c, "/nodes/pve1/qemu", map[string]any{"vmid": 170, "name": "new", "scsi0": "local-lvm:4"})
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm, ok := s.VM("pve1", 170); ok {
					t.Fatalf("the new VM came back: %+v", vm)
				}
			},
		},
		{
			name: "resize: the disk keeps its size and resizes again",
			start: func(t *testing.T, c *pve.Client) {
				if _, err := getVM(t, c, "pve1", 101).ResizeDisk(context.Background(), "scsi0", "+10G"); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm := getVM(t, c, "pve1", 101); vm.MaxDisk != 80<<30 {
					t.Errorf("disk %d, want 80G", vm.MaxDisk)
				}
				task, err := getVM(t, c, "pve1", 101).ResizeDisk(context.Background(), "scsi0", "+10G")
				if err != nil {
					t.Fatal(err)
				}
				wantOK(t, c, task, "resize")
			},
		},
		{
			name: "start: the VM is still stopped",
			start: func(t *testing.T, c *pve.Client) {
				post(t, c, "/nodes/pve1/qemu/101/status/start", nil)
			},
			check: func(t *testing.T, s *sim.Server, c *pve.Client) {
				if vm := getVM(t, c, "pve1", 101); vm.Status != "stopped" {
					t.Errorf("status %s, want stopped", vm.Status)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(time.Minute)
			for _, vm := range sim.DemoVMs() {
				s.AddVM(vm)
			}
			c, _ := serve(t, s)
			tt.start(t, c)
			loaded, c2, _, _ := saveAndLoad(t, s)
			tt.check(t, loaded, c2)
		})
	}
}

func TestLoadRefusesWhatSaveDidNotWrite(t *testing.T) {
	vm := func(node string, vmid int, status string) string {
		return fmt.Sprintf(`{"node":%q,"vmid":%d,"status":%q,"diskBytes":1073741824,"disk":"local-lvm:vm-%d-disk-0"}`, node, vmid, status, vmid)
	}
	tests := []struct{ name, input, want string }{
		{"garbage", "not json at all", "not a snapshot written by Save: invalid character"},
		{"empty", "", "not a snapshot written by Save: unexpected end of JSON input"},
		{"a JSON array", "[]", "not a snapshot written by Save: json: cannot unmarshal array"},
		{"no version", `{"vms":[]}`, `not a snapshot written by Save: it has no "version"`},
		{"a newer version", `{"version":2,"vms":[]}`, "snapshot version 2 is not supported; this simulator reads version 1"},
		{"version 0", `{"version":0}`, "snapshot version 0 is not supported"},
		{"a VM on an unknown node", `{"version":1,"vms":[` + vm("pve9", 100, "stopped") + `]}`,
			`VM 100 is on node "pve9", which this simulator does not have (it has pve1, pve2)`},
		{"a VMID twice", `{"version":1,"vms":[` + vm("pve1", 100, "stopped") + "," + vm("pve2", 100, "stopped") + `]}`,
			"VM 100 appears twice (on pve1 and pve2)"},
		{"an unknown status", `{"version":1,"vms":[` + vm("pve1", 100, "paused") + `]}`, `VM 100 has status "paused"`},
		{"a storage on an unknown node", `{"version":1,"storages":[{"node":"pve9","id":"local","total":1}]}`, `storage "local" is on node "pve9"`},
		{"a wrongly typed field", `{"version":1,"vms":[{"node":"pve1","vmid":"hundred"}]}`, "version 1 snapshot: json: cannot unmarshal string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(taskTime)
			defer s.Close()
			for _, vm := range sim.DemoVMs() {
				s.AddVM(vm)
			}
			before := s.VMs()
			err := s.Load(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error %v, want one containing %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "load proxmox simulator state: ") {
				t.Errorf("error %q does not say what failed", err)
			}
			if after := s.VMs(); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused load changed the VMs:\n before %+v\n after  %+v", before, after)
			}
		})
	}
}

// TestLoadReplacesADemoServersState loads into a server that has the demo
// VMs and runs a task, as `provisiond dev` loads into its fresh fleet:
// the snapshot's state replaces the demo's, and the running task ends.
func TestLoadReplacesADemoServersState(t *testing.T) {
	orig, c, _ := newSim(t)
	var upid pve.UPID
	wantTaskOK(t, c, post(t, c, "/nodes/pve2/qemu/102/status/stop", nil))
	if err := c.Delete(context.Background(), "/nodes/pve2/qemu/102", &upid); err != nil {
		t.Fatal(err)
	}
	wantTaskOK(t, c, upid)
	var buf bytes.Buffer
	if err := orig.Save(&buf); err != nil {
		t.Fatal(err)
	}

	target := newServer(time.Minute)
	for _, vm := range sim.DemoVMs() {
		target.AddVM(vm)
	}
	tc, _ := serve(t, target)
	running := post(t, tc, "/nodes/pve1/qemu/9000/clone", map[string]any{"newid": 260, "full": 1})
	if err := target.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if vm, ok := target.VM("pve2", 102); ok {
		t.Errorf("VM 102, destroyed before the save, is back: %+v", vm)
	}
	if vm, ok := target.VM("pve1", 260); ok {
		t.Errorf("the running clone's target survived the load: %+v", vm)
	}
	if got, want := target.VMs(), orig.VMs(); !reflect.DeepEqual(got, want) {
		t.Errorf("VMs after the load:\n %+v\nwant\n %+v", got, want)
	}
	task := pve.NewTask(running, tc)
	if err := task.Ping(context.Background()); err != nil || !task.IsCompleted || task.ExitStatus != "unexpected status" {
		t.Errorf("the running task: completed %v exit %q, %v; want it ended with unexpected status", task.IsCompleted, task.ExitStatus, err)
	}
	for _, path := range []string{"/nodes/pve1/storage/local/content?content=backup", "/nodes/pve2/storage/local/content?content=backup"} {
		var want, got []map[string]any
		if err := c.Get(context.Background(), path, &want); err != nil {
			t.Fatal(err)
		}
		if err := tc.Get(context.Background(), path, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s after the load:\n %v\nwant the saved server's\n %v", path, got, want)
		}
	}
}

// TestSaveRoundTripsThroughItsOwnOutput checks that a loaded state saves
// to the same VMs and storages: nothing is lost or made up by a second
// restart.
func TestSaveRoundTripsThroughItsOwnOutput(t *testing.T) {
	orig, c, _ := newSim(t)
	buildState(t, c)
	first, _, _, snap1 := saveAndLoad(t, orig)
	_, _, _, snap2 := saveAndLoad(t, first)
	var a, b sim.Snapshot
	if err := json.Unmarshal(snap1, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(snap2, &b); err != nil {
		t.Fatal(err)
	}
	if len(a.VMs) != 6 || len(b.VMs) != len(a.VMs) {
		t.Fatalf("%d VMs saved, then %d; want 6", len(a.VMs), len(b.VMs))
	}
	// The power history grows by the restart; the rest stays.
	for i := range a.VMs {
		a.VMs[i].History, b.VMs[i].History = nil, nil
	}
	if !reflect.DeepEqual(a.VMs, b.VMs) || !reflect.DeepEqual(a.Storages, b.Storages) || a.MACs != b.MACs {
		t.Errorf("second snapshot differs:\n%s\n%s", snap1, snap2)
	}
}
